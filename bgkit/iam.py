"""Least privilege: the IAM policy a runbook's releases need, and nothing more.

Each pattern declares the AWS API actions it calls, as IAM names them, beside the code that
calls them (its `iam_actions`); every release also asks STS who runs it (the record's
operator), CloudWatch for the judge's evidence, and DynamoDB for its lock. The runbook tests
hold `called_actions` to the sandbox's log of what that runbook's releases called
(bgkit.sandbox.calls), both ways: nothing called is missing, nothing never called is allowed.

What IAM checks besides the action of a call (AWS's "dependent actions", such as
ec2:RunInstances when EC2 Auto Scaling creates a group from a launch template) never shows in
a log of calls; a pattern declares those apart, as statements (`iam_dependent_actions`).

    bgkit iam-policy alb_weighted [--lock-table bgkit-locks]

prints the policy document to attach to the role (or user) that runs the runbook.
"""

from __future__ import annotations

from typing import Any

from . import patterns
from .params import _SNS_TOPIC, _TABLE, ReleaseParams
from .relay import PARAMETER_PREFIX

DEFAULT_LOCK_TABLE = ReleaseParams.lock_table  # the runbooks' default
# Every release: who runs it (AwsSession.caller_arn) and the evidence (bgkit.metrics).
RELEASE_ACTIONS = ("cloudwatch:GetMetricData", "sts:GetCallerIdentity")
# One release per target (bgkit.lock): a lease item in the lock table.
LOCK_ACTIONS = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)

# Resources known whatever the release's parameters: bgkit's own (the parameters its hook relay
# writes) and, for API Gateway's management actions (named by HTTP method, so apigateway:PATCH
# on "*" would reach every API Gateway resource of the account), REST APIs. Every other action
# is allowed on "*": its resources are the release's parameters (the policy is per runbook, not
# per release), or it has no resource-level permissions (Describe*, List*).
_SCOPED: dict[str, tuple[str, list[str]]] = {
    "apigateway": (
        "RestApis",
        ["arn:aws:apigateway:*::/restapis", "arn:aws:apigateway:*::/restapis/*"],
    ),
    "ssm": ("HookRelayParameters", [f"arn:aws:ssm:*:*:parameter{PARAMETER_PREFIX}*"]),
}


def called_actions(runbook: str, lock_table: str = DEFAULT_LOCK_TABLE) -> list[str]:
    """The actions a release of `runbook` calls, sorted (the lock's only with a lock table).
    KeyError, naming the known runbooks, when there is no such runbook."""
    lock = LOCK_ACTIONS if lock_table else ()
    return sorted({*RELEASE_ACTIONS, *lock, *patterns.get(runbook).iam_actions})


def policy(
    runbook: str, lock_table: str = DEFAULT_LOCK_TABLE, notify_topic_arn: str = ""
) -> dict[str, Any]:
    """The IAM policy document that allows a release of `runbook` what it needs.

    `lock_table` is the runbook's `lock_table` parameter; empty (no lock) leaves DynamoDB out.
    `notify_topic_arn` (the runbook's parameter) adds sns:Publish on that topic alone.
    KeyError for an unknown runbook, ValueError for a name DynamoDB would refuse or an ARN that
    is not an SNS topic's.
    """
    if notify_topic_arn and not _SNS_TOPIC.fullmatch(notify_topic_arn):
        raise ValueError(f"{notify_topic_arn[:80]!r} is not an SNS topic ARN")
    pattern = patterns.get(runbook)
    if lock_table and not _TABLE.fullmatch(lock_table):
        raise ValueError(
            f"lock table {lock_table!r}: a DynamoDB table name is 3-255 letters, digits, "
            "'_', '-' or '.'"
        )
    own = sorted(set(pattern.iam_actions) - set(RELEASE_ACTIONS))
    statements = [
        _allow("CallerIdentity", ["sts:GetCallerIdentity"], ["*"]),
        _allow("Metrics", ["cloudwatch:GetMetricData"], ["*"]),
    ]
    if lock_table:
        statements.append(
            _allow("ReleaseLock", LOCK_ACTIONS, [f"arn:aws:dynamodb:*:*:table/{lock_table}"])
        )
    if notify_topic_arn:
        statements.append(_allow("Notifications", ["sns:Publish"], [notify_topic_arn]))
    statements.append(
        _allow("TrafficControl", [a for a in own if _service(a) not in _SCOPED], ["*"])
    )
    for service, (sid, resources) in sorted(_SCOPED.items()):
        statements.append(_allow(sid, [a for a in own if _service(a) == service], resources))
    for dependent in getattr(pattern, "iam_dependent_actions", ()):
        sid = "Dependent" + "".join(a.split(":", 1)[1] for a in dependent["Action"])
        statements.append({**_allow(sid, dependent["Action"], ["*"]), **_condition(dependent)})
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s["Action"]]}


def _service(action: str) -> str:
    return action.split(":", 1)[0]


def _condition(statement: dict[str, Any]) -> dict[str, Any]:
    return {"Condition": statement["Condition"]} if "Condition" in statement else {}


def _allow(sid: str, actions: Any, resources: list[str]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(set(actions)),
        "Resource": resources[0] if len(resources) == 1 else resources,
    }
