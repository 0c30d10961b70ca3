"""The sandbox's CodeDeploy, tested directly with boto3 as against AWS."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def ecs(sandbox):
    scenario = sandbox.provision("ecs_codedeploy", minute_seconds=0.5, request_rate=10)
    session = sandbox.session()
    yield scenario, session.client("codedeploy"), session.client("elbv2"), session.client("ecs")
    sandbox.release_scenario(scenario.id)


def appspec(task_definition: str, hooks: list | None = None) -> dict:
    spec = {
        "version": 0.0,
        "Resources": [
            {
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": task_definition,
                        "LoadBalancerInfo": {"ContainerName": "web", "ContainerPort": 8080},
                    },
                }
            }
        ],
    }
    if hooks:
        spec["Hooks"] = hooks
    return {"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(spec)}}


def deploy(scenario, codedeploy, config="CodeDeployDefault.ECSAllAtOnce") -> str:
    p = scenario.parameters
    return codedeploy.create_deployment(
        applicationName=p["application_name"],
        deploymentGroupName=p["deployment_group_name"],
        deploymentConfigName=config,
        revision=appspec(p["task_definition_arn"]),
    )["deploymentId"]


def wait_for(codedeploy, deployment_id, statuses, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] in statuses:
            return info
        time.sleep(0.1)
    raise AssertionError(f"{deployment_id} stayed {info['status']}")


def weights(elb, listener_arn, scenario) -> tuple[int, int]:
    action = elb.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"][
        0
    ]
    by_arn = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    p = scenario.parameters
    return by_arn.get(p["blue_target_group_arn"], 0), by_arn.get(p["green_target_group_arn"], 0)


def test_predefined_configurations_are_listed_and_described(ecs):
    _, codedeploy, _, _ = ecs
    names = codedeploy.list_deployment_configs()["deploymentConfigsList"]
    for name in (
        "CodeDeployDefault.ECSAllAtOnce",
        "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
        "CodeDeployDefault.ECSCanary10Percent5Minutes",
        "CodeDeployDefault.ECSCanary10Percent15Minutes",
        "CodeDeployDefault.LambdaCanary10Percent5Minutes",
        "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
        "CodeDeployDefault.LambdaAllAtOnce",
    ):
        assert name in names
    info = codedeploy.get_deployment_config(
        deploymentConfigName="CodeDeployDefault.ECSCanary10Percent15Minutes"
    )
    routing = info["deploymentConfigInfo"]["trafficRoutingConfig"]
    assert routing == {
        "type": "TimeBasedCanary",
        "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 15},
    }
    with pytest.raises(ClientError, match="DeploymentConfigDoesNotExistException"):
        codedeploy.get_deployment_config(deploymentConfigName="nope")


def test_deployment_group_keeps_its_alarm_and_rollback_configuration(ecs):
    scenario, codedeploy, _, _ = ecs
    p = scenario.parameters
    group = codedeploy.get_deployment_group(
        applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
    )["deploymentGroupInfo"]
    assert group["alarmConfiguration"]["alarms"] == [{"name": f"{p['application_name']}-green-5xx"}]
    assert group["autoRollbackConfiguration"]["enabled"] is True


def test_ready_wait_then_canary_then_termination_wait(ecs):
    scenario, codedeploy, elb, ecs_client = ecs
    p = scenario.parameters
    deployment = deploy(scenario, codedeploy, "CodeDeployDefault.ECSCanary10Percent5Minutes")
    info = wait_for(codedeploy, deployment, ("Ready",))
    assert weights(elb, p["listener_arn"], scenario) == (
        100,
        0,
    )  # no production traffic before continue
    with pytest.raises(ClientError, match="DeploymentLimitExceededException"):
        deploy(scenario, codedeploy)
    codedeploy.continue_deployment(deploymentId=deployment, deploymentWaitType="READY_WAIT")
    deadline = time.monotonic() + 5
    while weights(elb, p["listener_arn"], scenario) != (90, 10):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]
    assert info["status"] == "InProgress" and not info["instanceTerminationWaitTimeStarted"]
    deadline = time.monotonic() + 10  # 5 CodeDeploy minutes of 0.5 s
    while not codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"][
        "instanceTerminationWaitTimeStarted"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert weights(elb, p["listener_arn"], scenario) == (0, 100)
    codedeploy.continue_deployment(deploymentId=deployment, deploymentWaitType="TERMINATION_WAIT")
    wait_for(codedeploy, deployment, ("Succeeded",))
    service = ecs_client.describe_services(cluster=p["application_name"], services=["web"])[
        "services"
    ][0]
    assert [(t["status"], t["taskDefinition"]) for t in service["taskSets"]] == [
        ("PRIMARY", p["task_definition_arn"])
    ]


def test_stop_with_rollback_returns_traffic_to_the_original_task_set(ecs):
    scenario, codedeploy, elb, ecs_client = ecs
    p = scenario.parameters
    deployment = deploy(scenario, codedeploy, "CodeDeployDefault.ECSLinear10PercentEvery1Minutes")
    wait_for(codedeploy, deployment, ("Ready",))
    codedeploy.continue_deployment(deploymentId=deployment, deploymentWaitType="READY_WAIT")
    time.sleep(1.2)  # a few linear steps of 10 %
    assert weights(elb, p["listener_arn"], scenario)[1] >= 10
    answer = codedeploy.stop_deployment(deploymentId=deployment, autoRollbackEnabled=True)
    assert answer["status"] == "Pending"  # asynchronous, as on AWS
    info = wait_for(codedeploy, deployment, ("Stopped",))
    assert info["errorInformation"]["code"] == "MANUAL_STOP"
    rollback = info["rollbackInfo"]["rollbackDeploymentId"]
    rolled = wait_for(codedeploy, rollback, ("Succeeded",))
    assert rolled["creator"] == "codeDeployRollback"
    assert weights(elb, p["listener_arn"], scenario) == (100, 0)
    service = ecs_client.describe_services(cluster=p["application_name"], services=["web"])[
        "services"
    ][0]
    assert [t["status"] for t in service["taskSets"]] == ["PRIMARY"]
    assert service["taskSets"][0]["taskDefinition"] != p["task_definition_arn"]


def test_ready_wait_times_out_into_a_stopped_deployment(sandbox):
    scenario = sandbox.provision("ecs_codedeploy", minute_seconds=0.01, request_rate=5)
    try:
        codedeploy = sandbox.session().client("codedeploy")
        deployment = deploy(scenario, codedeploy)  # waitTimeInMinutes 60 → 0.6 s here
        info = wait_for(codedeploy, deployment, ("Stopped",), timeout=10)
        assert info["errorInformation"]["code"] == "TIMEOUT"
    finally:
        sandbox.release_scenario(scenario.id)


def test_custom_time_based_configuration(ecs):
    _, codedeploy, _, _ = ecs
    codedeploy.create_deployment_config(
        deploymentConfigName="canary-25-2",
        computePlatform="ECS",
        trafficRoutingConfig={
            "type": "TimeBasedCanary",
            "timeBasedCanary": {"canaryPercentage": 25, "canaryInterval": 2},
        },
    )
    info = codedeploy.get_deployment_config(deploymentConfigName="canary-25-2")[
        "deploymentConfigInfo"
    ]
    assert info["trafficRoutingConfig"]["timeBasedCanary"]["canaryPercentage"] == 25
    with pytest.raises(ClientError, match="InvalidTrafficRoutingConfigurationException"):
        codedeploy.create_deployment_config(
            deploymentConfigName="bad",
            computePlatform="ECS",
            trafficRoutingConfig={
                "type": "TimeBasedLinear",
                "timeBasedLinear": {"linearPercentage": 0, "linearInterval": 1},
            },
        )
    codedeploy.delete_deployment_config(deploymentConfigName="canary-25-2")


def lifecycle(codedeploy, deployment_id) -> dict[str, str]:
    target = codedeploy.list_deployment_targets(deploymentId=deployment_id)["targetIds"][0]
    events = codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=target)[
        "deploymentTarget"
    ]["ecsTarget"]["lifecycleEvents"]
    return {e["lifecycleEventName"]: e["status"] for e in events}


def relayed(sandbox, deployment_id, timeout=60.0) -> str:
    """The hook execution id bgkit's relay function stored for the deployment (a minute: under
    the suite's load on two cores, 20 s once passed before the sandbox's Lambda ran it)."""
    ssm = sandbox.session().client("ssm")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = ssm.get_parameter(Name=f"/bgkit/codedeploy-hooks/{deployment_id}")
            return json.loads(value["Parameter"]["Value"])["executionId"]
        except ssm.exceptions.ParameterNotFound:
            time.sleep(0.1)
    raise AssertionError("the relay function never ran")


def deploy_with_hook(
    scenario, codedeploy, event="AfterAllowTestTraffic", function="bgkit-hook-relay"
):
    p = scenario.parameters
    return codedeploy.create_deployment(
        applicationName=p["application_name"],
        deploymentGroupName=p["deployment_group_name"],
        deploymentConfigName="CodeDeployDefault.ECSAllAtOnce",
        revision=appspec(p["task_definition_arn"], hooks=[{event: function}]),
    )["deploymentId"]


def test_a_hook_holds_its_event_until_its_execution_is_reported(sandbox, ecs):
    scenario, codedeploy, elb, _ = ecs
    deployment = deploy_with_hook(scenario, codedeploy)
    execution = relayed(sandbox, deployment)  # the function ran, in its own process, via boto3
    events = lifecycle(codedeploy, deployment)
    assert events["AllowTestTraffic"] == "Succeeded"
    assert events["AfterAllowTestTraffic"] == "InProgress"
    time.sleep(0.5)
    assert (
        codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"]
        == "InProgress"
    )

    with pytest.raises(ClientError, match="InvalidLifecycleEventHookExecutionStatusException"):
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment, lifecycleEventHookExecutionId=execution, status="Pending"
        )
    with pytest.raises(ClientError, match="InvalidLifecycleEventHookExecutionIdException"):
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment, lifecycleEventHookExecutionId="nope", status="Succeeded"
        )
    answer = codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment, lifecycleEventHookExecutionId=execution, status="Succeeded"
    )
    assert answer["lifecycleEventHookExecutionId"] == execution
    with pytest.raises(ClientError, match="LifecycleEventAlreadyCompletedException"):
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment, lifecycleEventHookExecutionId=execution, status="Failed"
        )
    wait_for(codedeploy, deployment, ("Ready",))  # then READY_WAIT, as the group says
    assert lifecycle(codedeploy, deployment)["AfterAllowTestTraffic"] == "Succeeded"
    assert weights(elb, scenario.parameters["listener_arn"], scenario) == (100, 0)
    codedeploy.stop_deployment(deploymentId=deployment, autoRollbackEnabled=True)
    wait_for(codedeploy, deployment, ("Stopped",))


def test_a_failed_hook_fails_the_deployment_and_rolls_it_back(sandbox, ecs):
    scenario, codedeploy, elb, _ = ecs
    deployment = deploy_with_hook(scenario, codedeploy)
    execution = relayed(sandbox, deployment)
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment, lifecycleEventHookExecutionId=execution, status="Failed"
    )
    info = wait_for(codedeploy, deployment, ("Failed",))
    assert info["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
    rollback = info["rollbackInfo"]["rollbackDeploymentId"]  # autoRollback on DEPLOYMENT_FAILURE
    wait_for(codedeploy, rollback, ("Succeeded",))
    assert weights(elb, scenario.parameters["listener_arn"], scenario) == (100, 0)


def test_a_hook_function_that_cannot_run_fails_the_deployment(ecs):
    scenario, codedeploy, _, _ = ecs
    deployment = deploy_with_hook(scenario, codedeploy, "BeforeAllowTraffic", "no-such-function")
    info = wait_for(codedeploy, deployment, ("Failed", "Ready"))
    if info["status"] == "Ready":  # BeforeAllowTraffic comes after READY_WAIT
        codedeploy.continue_deployment(deploymentId=deployment, deploymentWaitType="READY_WAIT")
        info = wait_for(codedeploy, deployment, ("Failed",))
    assert info["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"


def test_hooks_the_sandbox_cannot_run_are_refused(ecs):
    scenario, codedeploy, _, _ = ecs
    p = scenario.parameters
    with pytest.raises(ClientError, match="InvalidRevisionException"):
        codedeploy.create_deployment(
            applicationName=p["application_name"],
            deploymentGroupName=p["deployment_group_name"],
            revision=appspec(p["task_definition_arn"], hooks=[{"BeforeInstall": "validate"}]),
        )


def test_task_sets_report_their_counts_through_a_deployment(ecs):
    scenario, codedeploy, _, ecs_client = ecs
    p = scenario.parameters

    def counts():
        service = ecs_client.describe_services(cluster=p["application_name"], services=["web"])[
            "services"
        ][0]
        return service["runningCount"], sorted(
            (t["status"], t["computedDesiredCount"], t["runningCount"], t["pendingCount"])
            for t in service["taskSets"]
        )

    assert counts() == (2, [("PRIMARY", 2, 2, 0)])
    deployment = deploy(scenario, codedeploy)
    wait_for(codedeploy, deployment, ("Ready",))
    assert counts() == (4, [("ACTIVE", 2, 2, 0), ("PRIMARY", 2, 2, 0)])  # green beside blue
    codedeploy.continue_deployment(deploymentId=deployment, deploymentWaitType="READY_WAIT")
    deadline = time.monotonic() + 10
    while not codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"][
        "instanceTerminationWaitTimeStarted"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    codedeploy.continue_deployment(deploymentId=deployment, deploymentWaitType="TERMINATION_WAIT")
    wait_for(codedeploy, deployment, ("Succeeded",))
    assert counts() == (2, [("PRIMARY", 2, 2, 0)])


def test_an_alarm_in_alarm_state_stops_the_deployment_and_rolls_it_back(sandbox, ecs):
    scenario, codedeploy, elb, _ = ecs
    p = scenario.parameters
    group = codedeploy.get_deployment_group(
        applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
    )["deploymentGroupInfo"]
    alarm = group["alarmConfiguration"]["alarms"][0]["name"]
    cloudwatch = sandbox.session().client("cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]  # a real alarm
    deployment = deploy(scenario, codedeploy)
    wait_for(codedeploy, deployment, ("Ready",))  # the alarm is not firing: nothing stops
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test")
    info = wait_for(codedeploy, deployment, ("Stopped",))
    assert info["errorInformation"]["code"] == "ALARM_ACTIVE"
    assert alarm in info["errorInformation"]["message"]
    wait_for(codedeploy, info["rollbackInfo"]["rollbackDeploymentId"], ("Succeeded",))
    assert weights(elb, p["listener_arn"], scenario) == (100, 0)
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="test")


def test_isolated_invocations_get_the_sandbox_and_never_the_hosts_aws_config(sandbox):
    import io
    import os
    import zipfile

    code = (
        "import os\n"
        "def handler(event, context):\n"
        "    print('a log line, not the answer')\n"
        "    keys = ('AWS_ENDPOINT_URL', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CONFIG_FILE', 'COLOUR')\n"
        "    return {k: os.environ.get(k) for k in keys}\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe.py", code)
    session = sandbox.session()
    role = session.client("iam").create_role(RoleName="probe-role", AssumeRolePolicyDocument="{}")
    session.client("lambda").create_function(
        FunctionName="probe",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="probe.handler",
        Code={"ZipFile": buffer.getvalue()},
        Environment={"Variables": {"COLOUR": "green"}},
        Timeout=30,
    )
    error, result = sandbox.lambda_runtime.invoke_isolated("probe", {})
    assert error is None
    assert result == {
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "COLOUR": "green",
    }


def test_a_group_whose_alarms_would_not_roll_back_is_refused():
    from bgkit.errors import PreflightError
    from bgkit.patterns.codedeploy import ManagedByCodeDeploy

    class Group:
        def __init__(self, info):
            self.info = info

        def group_info(self):
            return self.info

        def check_config(self, name, platform):
            return {}

        def active(self):
            return []

    class Pattern(ManagedByCodeDeploy):
        config = "CodeDeployDefault.ECSAllAtOnce"

        def __init__(self, info):
            self.deployment = Group(info)

    base = {
        "computePlatform": "ECS",
        "alarmConfiguration": {"enabled": True, "alarms": [{"name": "a"}]},
    }
    for events in ([], ["DEPLOYMENT_FAILURE"]):
        group = {**base, "autoRollbackConfiguration": {"enabled": True, "events": events}}
        with pytest.raises(PreflightError, match="DEPLOYMENT_STOP_ON_ALARM") as refused:
            Pattern(group).check_group("ECS")
        assert refused.value.parameter == "deployment_group_name"
    group = {
        **base,
        "autoRollbackConfiguration": {"enabled": True, "events": ["DEPLOYMENT_STOP_ON_ALARM"]},
    }
    assert Pattern(group).check_group("ECS") == group


def test_a_release_finds_its_deployment_that_ended_by_description_and_create_time(ecs):
    """A release killed after CreateDeployment, before it kept the id: the next release finds
    the deployment by its description among the active ones, and, with `since`, among those
    that ended too (ListDeployments createTimeRange, honoured by the sandbox as by AWS)."""
    from datetime import UTC, datetime, timedelta

    from bgkit.patterns.codedeploy import CodeDeployDeployment

    scenario, codedeploy, _, _ = ecs
    p = scenario.parameters
    before = datetime.now(UTC) - timedelta(seconds=1)
    group = {
        "applicationName": p["application_name"],
        "deploymentGroupName": p["deployment_group_name"],
    }
    deployment = codedeploy.create_deployment(
        **group, deploymentConfigName="CodeDeployDefault.ECSAllAtOnce",
        revision=appspec(p["task_definition_arn"]), description="bgkit release rel-k",
    )["deploymentId"]  # fmt: skip
    finder = CodeDeployDeployment(codedeploy, p["application_name"], p["deployment_group_name"])
    assert finder.find("bgkit release rel-k") == deployment  # active
    codedeploy.stop_deployment(deploymentId=deployment, autoRollbackEnabled=False)
    wait_for(codedeploy, deployment, ("Stopped",))
    assert finder.find("bgkit release rel-k") is None  # ended: not among the active ones
    assert finder.find("bgkit release rel-k", since=before) == deployment
    assert finder.find("bgkit release rel-other", since=before) is None
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert (
        deployment
        not in codedeploy.list_deployments(**group, createTimeRange={"start": later})["deployments"]
    )
