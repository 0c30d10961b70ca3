"""kill -9 every self-driven runbook at each point of its release (see test_interruption.py for
how a release is killed and the next one run): before the first change, while green is created
and once it is, at each traffic weight, during the promotion and during a rollback. The next
release of the target finds the dead one in its lock item, puts blue back, and the target is
read back through boto3: all traffic on blue, nothing in flight, the lock gone, and a fresh
release's read-only preflight passes. alb_weighted's points are in test_interruption.py.

Each case is its own scenario, so that a case that fails leaves nothing to the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from conftest import Capture
from test_interruption import QUICK, kill_at, lock_item, next_release, recovered

import bgkit
from bgkit import patterns
from bgkit.errors import PreflightError

# Every point of a release: (id, the line of the killed release's output at which it dies, what
# the next release says it was doing: None when nothing had changed yet).
BEFORE_ANY_CHANGE = ("before-the-first-change", r"^STEP preflight", None)
CREATING_GREEN = ("creating-green", r"^CHECKPOINT deploying", "while deploying green")
GREEN_DEPLOYED = ("green-deployed", r"^CHECKPOINT deployed", "after green was deployed")
# each weight of a two-step plan, 25,50 (the other points' plan has one step, 50: quicker)
AT_25 = ("at-25-percent", r"^SET 25", "at step 1 (green 25%)")
AT_50 = ("at-50-percent", r"^SET 50", "at step 2 (green 50%)")
TWO_STEPS = {"plan": "25,50"}
PROMOTION_STATE_KEPT = ("promotion-state-kept", r"^CHECKPOINT promoting", "while promoting")
PROMOTION_DONE = ("promotion-weights-changed", r"^SET 100", "while promoting")
# green is bad (all its requests fail): the killed release was rolling back
ROLLING_BACK = ("during-rollback", r"^CHECKPOINT rolling_back", "while rolling back")
BAD_GREEN = ("during-rollback", "redeploying-blue")


@dataclass(frozen=True)
class Runbook:
    name: str
    points: tuple[tuple[str, str, str | None], ...]
    scenario: dict[str, Any] = field(default_factory=dict)  # provisioning options
    parameters: dict[str, Any] = field(default_factory=dict)
    mark_calls: tuple[str, ...] = ()  # the pattern's methods the driver marks (CALLED)


RUNBOOKS = [
    Runbook(
        "route53_weighted",
        (BEFORE_ANY_CHANGE, AT_25, AT_50, PROMOTION_STATE_KEPT, PROMOTION_DONE, ROLLING_BACK),
        parameters={"plan": "50"},
    ),
    Runbook(
        "apigw_canary",  # green is the stage's canary deployment, made by the release
        (
            BEFORE_ANY_CHANGE,
            CREATING_GREEN,
            AT_25,
            AT_50,
            PROMOTION_STATE_KEPT,
            PROMOTION_DONE,
            ROLLING_BACK,
        ),
        parameters={"plan": "50"},
    ),
    Runbook(
        "asg_swap",  # green is an Auto Scaling group, made by the release
        (
            BEFORE_ANY_CHANGE,
            ("creating-green", r"^created Auto Scaling group", "while deploying green"),
            GREEN_DEPLOYED,
            AT_25,
            AT_50,
            PROMOTION_STATE_KEPT,
            PROMOTION_DONE,
            ROLLING_BACK,
        ),
        scenario={"minute_seconds": 2.0},
        parameters={"plan": "50"},
    ),
    Runbook(
        "app_runner",  # one UpdateService moves all traffic; a rollback redeploys blue's image
        (
            BEFORE_ANY_CHANGE,
            ("deploying-green", r"^UpdateService: image", "while deploying green"),
            ("switched-to-green", r"^CHECKPOINT deployed", "after green was deployed"),
            ("judging-after-the-switch", r"^CHECKPOINT smoked", "after its smoke test"),
            PROMOTION_STATE_KEPT,
            ROLLING_BACK,
            ("redeploying-blue", r"^CALLED _deploy #2", "while rolling back"),
        ),
        scenario={"minute_seconds": 1.0},
        parameters={"plan": "all_at_once"},
        mark_calls=("_deploy",),  # UpdateService: green's image (#1), then blue's (#2)
    ),
]


def cases(runbooks: list[Runbook]) -> list[Any]:
    return [
        pytest.param(runbook, point, line, where, id=f"{runbook.name}-{point}")
        for runbook in runbooks
        for point, line, where in runbook.points
    ]


@pytest.mark.parametrize(("runbook", "point", "line", "where"), cases(RUNBOOKS))
def test_a_killed_release_leaves_blue_serving_after_the_next_release(
    sandbox, runbook, point, line, where
):
    kill_then_release_again(sandbox, runbook, point, line, where)


def kill_then_release_again(sandbox, runbook: Runbook, point: str, line: str, where: str | None):
    """Kill a release of a new scenario at `line`; the next release of the target rolls it back
    (`where`: what it says the dead one was doing) and changes nothing itself; blue serves."""
    bad_green = point in BAD_GREEN
    options = {"request_rate": 20, **runbook.scenario}
    scenario = sandbox.provision(
        runbook.name, green_error_rate=1.0 if bad_green else 0.0, **options
    )
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in patterns.get(runbook.name).parameters if k in p}
        namespace = {**resources, **QUICK, **runbook.parameters}
        if point in (AT_25[0], AT_50[0]):
            namespace.update(TWO_STEPS)
        if "smoke_url" in p and not bad_green:  # a bad green meets the judge, not the smoke test
            namespace["smoke_url"] = p["smoke_url"]
        killed = {**namespace, "release": "rel-killed"}
        kill_at(sandbox, runbook.name, killed, line, mark_calls=runbook.mark_calls)
        mine = {**namespace, "release": "rel-next", **fresh_green(runbook.name, p)}
        # The next release of the target, in this process: its preflight finds the dead one.
        release = bgkit.Release(
            bgkit.validate_parameters(runbook.name, mine),
            sandbox.session(runbook.name),
            display=Capture(),
        )
        refused = None
        try:
            release.preflight()
        except PreflightError as error:  # asserted below: only after a finished promotion
            refused = error
        record = release.finish(plot=False)
        lock_events = [e["message"] for e in record["events"] if e["kind"] == "lock"]
        assert "took over the stale lock of release rel-killed" in lock_events[0]
        if where is None:  # nothing had changed: the stale lock is taken over, nothing undone
            assert recovered(record) == []
        elif SUCCEEDED_SINCE in recovered(record)[0]:
            # A managed deployment killed while promoting, after every verdict had passed, that
            # its service finished meanwhile: green serves, as the record says; this release's
            # own preflight then finds green already deployed, and stops there.
            (found,) = recovered(record)
            assert where == "while promoting", found
            assert_green_serves(sandbox, runbook.name, p)
            assert refused is not None and refused.parameter == GREEN_PARAMETER[runbook.name]
            assert record["outcome"] == "failed"
            assert lock_item(sandbox, record["target_id"]) is None
            return
        else:
            found, done = recovered(record)
            assert refused is None, refused
            assert "release rel-killed of arn:aws:sts::123456789012:user/moto (on " in found
            assert f"was interrupted {where}; rolling it back" in found, found
            assert done.startswith("rolled back release rel-killed: blue 100%"), done
        assert record["outcome"] == "rolled_back", record["reason"]  # it changed nothing itself
        assert_blue_serves(sandbox, runbook.name, p, mine)
    finally:
        sandbox.release_scenario(scenario.id)


SUCCEEDED_SINCE = "had passed every verdict and has succeeded since: green serves"
# the parameter naming green, which a release refuses once green already serves
GREEN_PARAMETER = {
    "lambda_codedeploy": "target_version",
    "ecs_codedeploy": "task_definition_arn",
    "ecs_native": "task_definition_arn",
}


def assert_green_serves(sandbox, runbook: str, p: dict[str, Any]) -> None:
    """A managed deployment that finished: green has all traffic, read back through boto3."""
    session = sandbox.session()
    if runbook == "lambda_codedeploy":
        alias = session.client("lambda").get_alias(
            FunctionName=p["function_name"], Name=p["alias_name"]
        )
        assert alias["FunctionVersion"] == p["target_version"]
        assert not alias.get("RoutingConfig", {}).get("AdditionalVersionWeights")
    elif runbook == "ecs_native":
        ecs = session.client("ecs")
        (service,) = ecs.describe_services(cluster=p["cluster_name"], services=[p["service_name"]])[
            "services"
        ]
        assert service["taskDefinition"] == p["task_definition_arn"]
    if runbook in ("lambda_codedeploy", "ecs_codedeploy"):
        codedeploy = session.client("codedeploy")
        (deployment,) = codedeploy.list_deployments(
            applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
        )["deployments"]
        info = codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]
        assert info["status"] == "Succeeded"


def fresh_green(runbook: str, p: dict[str, Any]) -> dict[str, Any]:
    """What the next release needs of its own: asg_swap keeps a rolled-back green group for
    investigation, so the next release names another."""
    return {"green_asg_name": p["green_asg_name"] + "-next"} if runbook == "asg_swap" else {}


def assert_blue_serves(sandbox, runbook: str, p: dict[str, Any], namespace: dict[str, Any]):
    """Read back through boto3: blue has all traffic, nothing is left in flight, no lock is
    held, and a new release could start (its read-only preflight passes)."""
    resources = {k: namespace[k] for k in patterns.get(runbook).parameters if k in namespace}
    session = sandbox.session()
    pattern = patterns.get(runbook)(session, resources)
    assert pattern.preflight() == {"blue": 100, "green": 0}
    assert lock_item(sandbox, pattern.target_id()) is None
    if runbook == "route53_weighted":
        sets = session.client("route53").list_resource_record_sets(
            HostedZoneId=p["hosted_zone_id"], StartRecordName=p["record_name"]
        )["ResourceRecordSets"]
        weights = {s["SetIdentifier"]: s["Weight"] for s in sets if "SetIdentifier" in s}
        assert weights[p["green_set_identifier"]] == 0 and weights[p["blue_set_identifier"]] > 0
    elif runbook == "apigw_canary":
        stage = session.client("apigateway").get_stage(
            restApiId=p["rest_api_id"], stageName=p["stage_name"]
        )
        assert "canarySettings" not in stage
    elif runbook == "asg_swap":
        autoscaling = session.client("autoscaling")
        groups = {
            g["AutoScalingGroupName"]: g
            for g in autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[p["blue_asg_name"], p["green_asg_name"]]
            )["AutoScalingGroups"]
        }
        assert p["blue_target_group_arn"] in groups[p["blue_asg_name"]]["TargetGroupARNs"]
        green = groups.get(p["green_asg_name"])  # kept, if it was made, but out of service
        assert green is None or p["green_target_group_arn"] not in green["TargetGroupARNs"]
    elif runbook == "app_runner":
        apprunner = session.client("apprunner")
        service = apprunner.describe_service(ServiceArn=p["service_arn"])["Service"]
        image = service["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
        assert image != p["image_identifier"]  # blue's image, not the release's
        (latest,) = apprunner.list_operations(ServiceArn=p["service_arn"], MaxResults=1)[
            "OperationSummaryList"
        ]
        assert latest["Status"] == "SUCCEEDED"
    elif runbook == "lambda_codedeploy":
        alias = session.client("lambda").get_alias(
            FunctionName=p["function_name"], Name=p["alias_name"]
        )
        assert alias["FunctionVersion"] != p["target_version"]
        assert not alias.get("RoutingConfig", {}).get("AdditionalVersionWeights")
    elif runbook == "ecs_native":
        ecs = session.client("ecs")
        (service,) = ecs.describe_services(cluster=p["cluster_name"], services=[p["service_name"]])[
            "services"
        ]
        assert service["taskDefinition"] != p["task_definition_arn"]
        assert not ecs.list_service_deployments(
            cluster=p["cluster_name"], service=p["service_name"], status=["PENDING", "IN_PROGRESS"]
        )["serviceDeployments"]
    if runbook in ("lambda_codedeploy", "ecs_codedeploy"):
        active = session.client("codedeploy").list_deployments(
            applicationName=p["application_name"],
            deploymentGroupName=p["deployment_group_name"],
            includeOnlyStatuses=["Created", "Queued", "InProgress", "Baking", "Ready"],
        )["deployments"]
        assert active == []


def test_an_app_runner_release_killed_after_its_switch_is_resumed_against_blue_before_it(sandbox):
    """on_interrupted = resume after App Runner moved all traffic: blue's window before the
    switch is kept in the lock item, read again from CloudWatch, and green is judged against
    it afresh (never against numbers that were not measured), then promoted."""
    scenario = sandbox.provision("app_runner", request_rate=20, minute_seconds=1.0)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in patterns.get("app_runner").parameters if k in p}
        namespace = {**resources, **QUICK, "plan": "all_at_once", "smoke_url": p["smoke_url"],
                     "release": "rel-r", "on_interrupted": "resume"}  # fmt: skip
        seen = kill_at(sandbox, "app_runner", namespace, r"^CHECKPOINT smoked")
        (measured,) = [line for line in seen if "blue measured before green gets traffic" in line]
        window = re.search(r"(\d\d:\d\d:\d\d–\d\d:\d\d:\d\d): (\d+) requests", measured)
        assert window is not None, measured
        record = next_release(sandbox, "app_runner", namespace, through="all")
        assert record["outcome"] == "promoted", record["reason"]
        (found,) = recovered(record)
        assert "was interrupted after its smoke test; resuming it (on_interrupted)" in found
        assert "then judging it afresh against blue before the switch; traffic now green 100%" in (
            found
        )
        again = [
            e["message"] for e in record["events"] if "read again from CloudWatch" in e["message"]
        ]
        assert again == [
            f"blue as measured before the switch, read again from CloudWatch ({window[1]}): "
            f"{window[2]} requests, " + again[0].split(" requests, ", 1)[1]
        ]
        (verdict,) = record["verdicts"]
        assert verdict["decision"] in ("CONTINUE", "PASS")
        start, end = (datetime.fromisoformat(verdict["blue_window"][k]) for k in ("start", "end"))
        assert f"{start:%H:%M:%S}–{end:%H:%M:%S}" == window[1]  # the same blue window
        shifts = [e for e in record["events"] if e["kind"] == "shift"]
        assert shifts == []  # no second UpdateService: green kept serving
        apprunner = sandbox.session().client("apprunner")
        service = apprunner.describe_service(ServiceArn=p["service_arn"])["Service"]
        assert (
            service["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
            == (p["image_identifier"])
        )
        assert lock_item(sandbox, p["service_arn"]) is None
    finally:
        sandbox.release_scenario(scenario.id)
