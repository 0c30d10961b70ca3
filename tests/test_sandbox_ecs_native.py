"""The sandbox's ECS service deployments (blue/green, canary, linear), tested with boto3 as
against AWS."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from bgkit.sandbox.ecs_native import production_schedule, weights

IN_FLIGHT = ["PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"]
DONE = ("SUCCESSFUL", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED", "STOPPED")


@pytest.fixture
def ecs(sandbox):
    scenario = sandbox.provision("ecs_native", minute_seconds=0.5, request_rate=10)
    session = sandbox.session()
    yield scenario, session.client("ecs"), session.client("elbv2")
    sandbox.release_scenario(scenario.id)


def service(ecs_client, p) -> dict:
    return ecs_client.describe_services(cluster=p["cluster_name"], services=[p["service_name"]])[
        "services"
    ][0]


def start(ecs_client, p, **config) -> str:
    """UpdateService to the new task definition; returns the service deployment it started."""
    if config:
        current = service(ecs_client, p)["deploymentConfiguration"]
        ecs_client.update_service(
            cluster=p["cluster_name"],
            service=p["service_name"],
            deploymentConfiguration={**current, **config},
        )
    ecs_client.update_service(
        cluster=p["cluster_name"],
        service=p["service_name"],
        taskDefinition=p["task_definition_arn"],
    )
    briefs = ecs_client.list_service_deployments(
        cluster=p["cluster_name"], service=p["service_name"], status=IN_FLIGHT
    )["serviceDeployments"]
    assert len(briefs) == 1
    return briefs[0]["serviceDeploymentArn"]


def describe(ecs_client, arn) -> dict:
    return ecs_client.describe_service_deployments(serviceDeploymentArns=[arn])[
        "serviceDeployments"
    ][0]


def wait_for(ecs_client, arn, done, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = describe(ecs_client, arn)
        if done(d):
            return d
        time.sleep(0.05)
    raise AssertionError(f"{arn} stayed {d['status']} at {d['lifecycleStage']}")


def paused(d) -> bool:
    return any(h["status"] == "AWAITING_ACTION" for h in d["lifecycleHookDetails"])


def rule_split(elb, rule_arn, p) -> tuple[int, int]:
    rule = elb.describe_rules(RuleArns=[rule_arn])["Rules"][0]
    groups = {
        g["TargetGroupArn"]: g["Weight"]
        for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
    }
    return groups[p["blue_target_group_arn"]], groups[p["green_target_group_arn"]]


def targets(elb, target_group) -> int:
    return len(elb.describe_target_health(TargetGroupArn=target_group)["TargetHealthDescriptions"])


def test_linear_deployment_pauses_for_test_traffic_then_shifts_step_by_step(ecs):
    scenario, client, elb = ecs
    p = scenario.parameters
    test_rule = service(client, p)["loadBalancers"][0]["advancedConfiguration"]["testListenerRule"]
    arn = start(client, p)

    d = wait_for(client, arn, paused)
    assert (d["status"], d["lifecycleStage"]) == ("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT")
    hook = d["lifecycleHookDetails"][0]
    assert (hook["targetType"], hook["timeoutAction"]) == ("PAUSE", "ROLLBACK")
    assert rule_split(elb, test_rule, p) == (0, 100)  # green has all test traffic...
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)  # ...and no production traffic
    assert targets(elb, p["green_target_group_arn"]) == 1
    time.sleep(1.0)  # it stays paused: nothing moves without ContinueServiceDeployment
    assert describe(client, arn)["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)

    client.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE"
    )
    seen = []
    while (d := describe(client, arn))["status"] not in DONE:
        split = rule_split(elb, p["production_rule_arn"], p)
        if not seen or seen[-1] != split:
            seen.append(split)
        time.sleep(0.05)
    assert d["status"] == "SUCCESSFUL"
    # stepPercent 25 every stepBakeTimeInMinutes, in order, then all of it
    assert seen == [(100, 0), (75, 25), (50, 50), (25, 75), (0, 100)]
    assert service(client, p)["taskDefinition"] == p["task_definition_arn"]
    assert targets(elb, p["blue_target_group_arn"]) == 0  # CLEAN_UP removed blue
    revision = client.describe_service_revisions(
        serviceRevisionArns=[d["targetServiceRevision"]["arn"]]
    )["serviceRevisions"][0]
    assert revision["taskDefinition"] == p["task_definition_arn"]


def test_stop_with_rollback_mid_shift_returns_all_traffic_to_blue(ecs):
    scenario, client, elb = ecs
    p = scenario.parameters
    arn = start(client, p)
    hook = wait_for(client, arn, paused)["lifecycleHookDetails"][0]["hookId"]
    client.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook, action="CONTINUE")
    wait_for(
        client, arn, lambda d: d["targetServiceRevision"]["requestedProductionTrafficWeight"] > 0
    )
    assert rule_split(elb, p["production_rule_arn"], p)[1] > 0

    client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    # a second stop while it rolls back is accepted, and the rollback goes on
    client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    d = wait_for(client, arn, lambda d: d["status"] == "ROLLBACK_IN_PROGRESS")
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)  # rules first, then tasks
    d = wait_for(client, arn, lambda d: d["status"] in DONE)
    assert d["status"] == "ROLLBACK_SUCCESSFUL"
    assert d["rollback"]["serviceRevisionArn"] == d["sourceServiceRevisions"][0]["arn"]
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)
    assert targets(elb, p["green_target_group_arn"]) == 0
    assert service(client, p)["taskDefinition"] != p["task_definition_arn"]
    with pytest.raises(ClientError) as stopped_twice:
        client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert stopped_twice.value.response["Error"]["Code"] == "ConflictException"


def test_continue_with_rollback_at_the_pause_never_shifts_production(ecs):
    scenario, client, elb = ecs
    p = scenario.parameters
    arn = start(client, p)
    hook = wait_for(client, arn, paused)["lifecycleHookDetails"][0]["hookId"]
    with pytest.raises(ClientError) as wrong_hook:
        client.continue_service_deployment(serviceDeploymentArn=arn, hookId="nope")
    assert wrong_hook.value.response["Error"]["Code"] == "InvalidParameterException"
    client.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook, action="ROLLBACK")
    d = wait_for(client, arn, lambda d: d["status"] in DONE)
    assert d["status"] == "ROLLBACK_SUCCESSFUL"
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)


def test_a_pause_that_times_out_rolls_back(ecs):
    scenario, client, elb = ecs
    p = scenario.parameters
    hooks = [
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 1, "action": "ROLLBACK"},
        }
    ]
    arn = start(client, p, lifecycleHooks=hooks)
    wait_for(client, arn, paused)
    d = wait_for(client, arn, lambda d: d["status"] in DONE)
    assert d["status"] == "ROLLBACK_SUCCESSFUL"
    assert "timed out" in d["statusReason"]
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)


def test_production_shift_hooks_hold_every_step(ecs):
    """Hooks at PRODUCTION_TRAFFIC_SHIFT run after each step, and the next step waits for them."""
    scenario, client, elb = ecs
    p = scenario.parameters
    current = service(client, p)["deploymentConfiguration"]
    hooks = [
        *current["lifecycleHooks"],
        {"targetType": "PAUSE", "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"]},
    ]
    arn = start(client, p, lifecycleHooks=hooks)
    seen = []
    while (d := wait_for(client, arn, lambda d: paused(d) or d["status"] in DONE))[
        "status"
    ] not in DONE:
        seen.append((d["lifecycleStage"], rule_split(elb, p["production_rule_arn"], p)[1]))
        time.sleep(0.6)  # longer than a step: still held
        assert rule_split(elb, p["production_rule_arn"], p)[1] == seen[-1][1]
        hook = next(h for h in d["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION")
        client.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"])
        wait_for(client, arn, lambda d: not paused(d))
    assert d["status"] == "SUCCESSFUL"
    assert seen == [
        ("POST_TEST_TRAFFIC_SHIFT", 0),
        ("PRODUCTION_TRAFFIC_SHIFT", 25),
        ("PRODUCTION_TRAFFIC_SHIFT", 50),
        ("PRODUCTION_TRAFFIC_SHIFT", 75),
        ("PRODUCTION_TRAFFIC_SHIFT", 100),
    ]


HOOK_CODE = """
def handler(event, context):
    calls = (event.get("hookDetails") or {}).get("calls", 0) + 1
    if RESULT == "GARBLED":
        return {"hookStatus": "IN_PROGRESS", "callBackDelay": "soon"}
    if calls < 3:
        return {"hookStatus": "IN_PROGRESS", "callBackDelay": 1, "hookDetails": {"calls": calls}}
    return {"hookStatus": RESULT, "hookDetails": {"calls": calls}}
"""


def lambda_hook(sandbox, name: str, result: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hook.py", f"RESULT = {result!r}\n" + HOOK_CODE)
    session = sandbox.session()
    role = session.client("iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    return session.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="hook.handler",
        Code={"ZipFile": buffer.getvalue()},
    )["FunctionArn"]


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ("SUCCEEDED", "SUCCESSFUL"),
        ("FAILED", "ROLLBACK_SUCCESSFUL"),
        ("GARBLED", "ROLLBACK_SUCCESSFUL"),
    ],
)
def test_lambda_hooks_are_invoked_until_they_answer(sandbox, ecs, result, status):
    scenario, client, elb = ecs
    p = scenario.parameters
    function = lambda_hook(sandbox, f"hook-{scenario.id}-{result.lower()}", result)
    hooks = [
        {
            "targetType": "AWS_LAMBDA",
            "hookTargetArn": function,
            "roleArn": "arn:aws:iam::123456789012:role/ecs-hooks",
            "lifecycleStages": ["POST_SCALE_UP"],
            "hookDetails": {"calls": 0},
        }
    ]
    arn = start(client, p, strategy="BLUE_GREEN", bakeTimeInMinutes=0, lifecycleHooks=hooks)
    d = wait_for(client, arn, lambda d: d["lifecycleHookDetails"])
    assert d["lifecycleStage"] == "POST_SCALE_UP"
    assert d["lifecycleHookDetails"][0]["targetArn"] == function
    d = wait_for(client, arn, lambda d: d["status"] in DONE)
    assert d["status"] == status
    green = rule_split(elb, p["production_rule_arn"], p)[1]
    assert green == (100 if result == "SUCCEEDED" else 0)


def test_configuration_and_concurrency_are_checked_as_ecs_does(ecs):
    scenario, client, _ = ecs
    p = scenario.parameters
    current = service(client, p)["deploymentConfiguration"]
    refusals = [
        {**current, "strategy": "BLUE_GREEN", "bakeTimeInMinutes": None},
        {**current, "strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.0}},
        {**current, "strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.05}},
        {
            **current,
            "lifecycleHooks": [{"targetType": "AWS_LAMBDA", "lifecycleStages": ["SCALE_UP"]}],
        },
    ]
    for config in refusals:
        config = {k: v for k, v in config.items() if v is not None}
        with pytest.raises(ClientError) as refused:
            client.update_service(
                cluster=p["cluster_name"], service=p["service_name"], deploymentConfiguration=config
            )
        assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert service(client, p)["deploymentConfiguration"] == current  # nothing was stored

    arn = start(client, p)
    with pytest.raises(ClientError) as busy:
        client.update_service(
            cluster=p["cluster_name"], service=p["service_name"], forceNewDeployment=True
        )
    assert "in-progress service deployment" in busy.value.response["Error"]["Message"]
    unknown = client.describe_service_deployments(serviceDeploymentArns=[arn + "x"])
    assert unknown["failures"] == [{"arn": arn + "x", "reason": "MISSING"}]
    with pytest.raises(ClientError) as missing:
        client.stop_service_deployment(serviceDeploymentArn=arn + "x", stopType="ROLLBACK")
    assert missing.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"
    client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    wait_for(client, arn, lambda d: d["status"] in DONE)


def test_strategies_schedule_production_traffic_as_documented():
    assert production_schedule({"strategy": "BLUE_GREEN"}) == [(0.0, 100.0)]
    canary = {
        "strategy": "CANARY",
        "canaryConfiguration": {"canaryPercent": 5.0, "canaryBakeTimeInMinutes": 10},
    }
    assert production_schedule(canary) == [(0.0, 5.0), (10.0, 100.0)]
    linear = {
        "strategy": "LINEAR",
        "linearConfiguration": {"stepPercent": 30.0, "stepBakeTimeInMinutes": 2},
    }
    assert production_schedule(linear) == [(0.0, 30.0), (2.0, 60.0), (4.0, 90.0), (6.0, 100.0)]
    assert weights(25) == (75, 25)
    assert weights(2.5) == (975, 25)  # tenths of a percent, within ALB's 0-999
    assert weights(0) == (100, 0)


def test_an_alarm_in_alarm_state_fails_the_deployment_and_rolls_it_back(sandbox, ecs):
    scenario, client, elb = ecs
    p = scenario.parameters
    alarms = service(client, p)["deploymentConfiguration"]["alarms"]
    assert alarms["enable"] and alarms["rollback"]
    arn = start(client, p)
    d = wait_for(client, arn, paused)
    assert d["alarms"]["status"] == "MONITORING"
    cloudwatch = sandbox.session().client("cloudwatch")
    cloudwatch.set_alarm_state(
        AlarmName=alarms["alarmNames"][0], StateValue="ALARM", StateReason="test"
    )
    d = wait_for(client, arn, lambda d: d["status"] in DONE)
    assert d["status"] == "ROLLBACK_SUCCESSFUL"
    assert d["alarms"]["status"] == "TRIGGERED"
    assert d["alarms"]["triggeredAlarmNames"] == alarms["alarmNames"]
    assert rule_split(elb, p["production_rule_arn"], p) == (100, 0)
