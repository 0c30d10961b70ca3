"""`bgkit iam-policy <runbook>`: a valid policy document allowing what the runbook's releases
call. That it is exactly what they call is checked by the last test of each runbook's test
module, against the sandbox's log of that module's runs (conftest.RunbookCalls)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from bgkit import cli, iam, patterns

ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")  # service:Action, no wildcard
SID = re.compile(r"^[A-Za-z0-9]+$")
TESTS = Path(__file__).resolve().parent


def printed_policy(capsys, *argv: str) -> dict:
    assert cli.main(["iam-policy", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def allowed(document: dict) -> set[str]:
    return {a for s in document["Statement"] for a in s["Action"]}


def dependent(runbook: str) -> set[str]:
    statements = getattr(patterns.get(runbook), "iam_dependent_actions", ())
    return {a for s in statements for a in s["Action"]}


@pytest.mark.parametrize("runbook", patterns.names())
def test_the_printed_policy_is_an_iam_policy_document_of_named_actions(capsys, runbook):
    document = printed_policy(capsys, runbook)
    assert set(document) == {"Version", "Statement"}
    assert document["Version"] == "2012-10-17"
    statements = document["Statement"]
    assert isinstance(statements, list) and statements
    sids = [s["Sid"] for s in statements]
    assert len(set(sids)) == len(sids) and all(SID.match(sid) for sid in sids)
    for statement in statements:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == sorted(set(statement["Action"])) and statement["Action"]
        assert all(ACTION.match(action) for action in statement["Action"]), statement["Action"]
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert resource == "*" or resource.startswith("arn:aws:"), resource


@pytest.mark.parametrize("runbook", patterns.names())
def test_the_policy_allows_what_the_release_calls_and_what_iam_checks_besides(capsys, runbook):
    document = printed_policy(capsys, runbook)
    assert allowed(document) == set(iam.called_actions(runbook)) | dependent(runbook)
    assert {"sts:GetCallerIdentity", "cloudwatch:GetMetricData"} <= allowed(document)
    # each action in one statement: a reader finds where it is allowed and on what
    actions = [a for s in document["Statement"] for a in s["Action"]]
    assert len(actions) == len(set(actions))


@pytest.mark.parametrize("runbook", patterns.names())
def test_every_pattern_declares_the_actions_it_calls(runbook):
    declared = patterns.get(runbook).iam_actions
    assert declared and len(set(declared)) == len(declared)
    assert all(ACTION.match(action) for action in declared)
    for statement in getattr(patterns.get(runbook), "iam_dependent_actions", ()):
        assert set(statement) <= {"Action", "Condition"}
        assert not set(statement["Action"]) & set(declared)  # what it calls is checked apart


def test_the_lock_is_allowed_on_the_lock_table_alone(capsys):
    document = printed_policy(capsys, "alb_weighted", "--lock-table", "team-a.locks")
    (lock,) = [s for s in document["Statement"] if any("dynamodb:" in a for a in s["Action"])]
    assert lock["Action"] == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert lock["Resource"] == "arn:aws:dynamodb:*:*:table/team-a.locks"
    default = printed_policy(capsys, "alb_weighted")["Statement"]
    assert [s["Resource"] for s in default if s["Sid"] == "ReleaseLock"] == [
        "arn:aws:dynamodb:*:*:table/bgkit-locks"
    ]


def test_without_a_lock_table_the_policy_allows_no_dynamodb(capsys):
    document = printed_policy(capsys, "ecs_native", "--lock-table", "")
    assert not [a for a in allowed(document) if a.startswith("dynamodb:")]


def test_api_gateway_and_the_hook_relays_parameters_are_scoped(capsys):
    def resources_of(document: dict, service: str) -> list:
        return [s["Resource"] for s in document["Statement"] if s["Action"][0].startswith(service)]

    assert resources_of(printed_policy(capsys, "apigw_canary"), "apigateway:") == [
        ["arn:aws:apigateway:*::/restapis", "arn:aws:apigateway:*::/restapis/*"]
    ]
    for runbook in ("ecs_codedeploy", "lambda_codedeploy"):
        assert resources_of(printed_policy(capsys, runbook), "ssm:") == [
            "arn:aws:ssm:*:*:parameter/bgkit/codedeploy-hooks/*"
        ]


def test_an_unknown_runbook_is_a_usage_error_listing_the_known_ones(capsys):
    assert cli.main(["iam-policy", "alb_weigthed"]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no runbook named 'alb_weigthed'" in captured.err
    assert ", ".join(patterns.names()) in captured.err


def test_a_lock_table_dynamodb_would_refuse_is_a_usage_error(capsys):
    assert cli.main(["iam-policy", "alb_weighted", "--lock-table", "a b"]) == cli.EXIT_USAGE
    assert "--lock-table: lock table 'a b'" in capsys.readouterr().err


def test_every_runbook_has_its_exactness_test_last_in_a_runbook_test_module():
    """The policy is only as good as that check: a new pattern gets one too."""
    checked = set()
    for path in sorted(TESTS.glob("test_*.py")):
        tests = [
            node
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
        calls = [
            node
            for test in tests
            for node in ast.walk(test)
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "assert_least_privilege"
        ]
        if calls:
            assert calls[0] in list(ast.walk(tests[-1])), f"{path.name}: not its last test"
            checked |= {call.args[0].value for call in calls}
    assert checked == set(patterns.names())
