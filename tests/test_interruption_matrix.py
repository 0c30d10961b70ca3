"""kill -9 a runbook at each point of its release (see test_interruption.py for how a release
is killed and the next one run): before the first change, while green is created and once it
is, at each traffic weight, during the promotion and during a rollback. The next release of the
target finds the dead one in its lock item, puts blue back, and the target is read back through
boto3: all traffic on blue, nothing in flight, the lock gone, and a fresh release's read-only
preflight passes.

This file has the points, the checks, and route53_weighted's and apigw_canary's cases; the
other runbooks' cases are in files of their own, so that pytest-xdist spreads them:
alb_weighted in test_interruption.py, asg_swap and app_runner in test_interruption_groups.py,
the managed runbooks in test_interruption_managed.py and test_interruption_ecs_native.py.

Each case is its own scenario, so that a case that fails leaves nothing to the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import Capture
from test_interruption import QUICK, kill_at, lock_item, recovered

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
    # a bad green gets more load: its canary step (seconds here) must give the judge enough
    # of green's errors to roll back before the service has shifted everything
    options = {"request_rate": 40 if bad_green else 20, **runbook.scenario}
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
            # its service finished meanwhile: green serves, as the record says. This release's
            # own preflight then finds green already there: Lambda and ECS refuse, naming the
            # parameter; CodeDeploy for ECS lets the same task definition go again, and the
            # release ends without a change.
            (found,) = recovered(record)
            assert where == "while promoting", found
            assert_green_serves(sandbox, runbook.name, p)
            if refused is not None:
                assert refused.parameter == GREEN_PARAMETER[runbook.name]
                assert record["outcome"] == "failed"
            else:
                assert runbook.name == "ecs_codedeploy", record["reason"]
                assert record["outcome"] == "rolled_back", record["reason"]  # changed nothing
                assert "before any traffic change" in record["reason"]
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
    "ecs_native": "task_definition_arn",
    "feature_flag": "flag_key",  # already on for everyone
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
    elif runbook == "feature_flag":  # AppConfig completed it: on for everyone
        from bgkit.flags import document as flagdoc

        appconfig = session.client("appconfig")
        (newest, *_) = appconfig.list_deployments(
            ApplicationId=p["application_id"], EnvironmentId=p["environment_id"]
        )["Items"]
        assert newest["State"] == "COMPLETE", newest
        content = appconfig.get_hosted_configuration_version(
            ApplicationId=p["application_id"],
            ConfigurationProfileId=p["configuration_profile_id"],
            VersionNumber=int(newest["ConfigurationVersion"]),
        )["Content"].read()
        assert flagdoc.on_share(flagdoc.load(content), p["flag_key"], "userId") == 100
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
    elif runbook == "feature_flag":  # the version live before: off for everyone, complete
        (newest, *_) = session.client("appconfig").list_deployments(
            ApplicationId=p["application_id"], EnvironmentId=p["environment_id"]
        )["Items"]
        assert (newest["ConfigurationVersion"], newest["State"]) == ("1", "COMPLETE"), newest
    if runbook in ("lambda_codedeploy", "ecs_codedeploy"):
        active = session.client("codedeploy").list_deployments(
            applicationName=p["application_name"],
            deploymentGroupName=p["deployment_group_name"],
            includeOnlyStatuses=["Created", "Queued", "InProgress", "Baking", "Ready"],
        )["deployments"]
        assert active == []
