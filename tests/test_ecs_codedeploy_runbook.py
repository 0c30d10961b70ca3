"""The ECS CodeDeploy runbook executed by papermill in the sandbox; assertions through boto3."""

from __future__ import annotations

import pytest
from conftest import (
    STEADY,
    Capture,
    assert_followed,
    assert_refused,
    deployments_of,
    planned_run,
    run_cells,
    run_runbook,
)

FAST = {"sandbox_minute_seconds": 4.0, "bake_seconds": 5, **STEADY}


def state(sandbox, record):
    p = record["parameters"]
    session = sandbox.session()
    codedeploy, elb, ecs = (
        session.client("codedeploy"),
        session.client("elbv2"),
        session.client("ecs"),
    )
    deployments = codedeploy.list_deployments(
        applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
    )["deployments"]
    infos = [codedeploy.get_deployment(deploymentId=d)["deploymentInfo"] for d in deployments]
    group = codedeploy.get_deployment_group(
        applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
    )["deploymentGroupInfo"]
    listener = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]["prodTrafficRoute"][
        "listenerArns"
    ][0]
    action = elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"][0]
    weights = {
        g["TargetGroupArn"].split("/")[-2]: g["Weight"]
        for g in action["ForwardConfig"]["TargetGroups"]
    }
    service = ecs.describe_services(
        cluster=group["ecsServices"][0]["clusterName"], services=["web"]
    )["services"][0]
    primary = [t["taskDefinition"] for t in service["taskSets"] if t["status"] == "PRIMARY"]
    return infos, weights, primary


def test_healthy_green_is_promoted_by_codedeploy(shared_sandbox, tmp_path):
    _, run = planned_run(shared_sandbox, tmp_path, "ecs_codedeploy", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    assert record["final_split"] == {"blue": 0, "green": 100}
    infos, weights, primary = state(shared_sandbox, record)
    assert [i["status"] for i in infos] == ["Succeeded"]
    assert {name.rsplit("-", 1)[1]: w for name, w in weights.items()} == {"blue": 0, "green": 100}
    assert primary == [record["parameters"]["task_definition_arn"]]
    assert any(v["decision"] == "CONTINUE" and v["green_percent"] == 10 for v in record["verdicts"])
    assert "image/png" in run.outputs_text()


def test_bgkit_reports_the_after_allow_test_traffic_hook_through_its_relay(
    shared_sandbox, tmp_path
):
    # the hook comes before any production traffic: one all-at-once shift is enough after it
    run = run_runbook(
        tmp_path,
        "ecs_codedeploy",
        hook_function_name="bgkit-hook-relay",
        deployment_config_name="CodeDeployDefault.ECSAllAtOnce",
        **FAST,
    )
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    said = [e["message"] for e in record["events"] if e["kind"] == "deploy"]
    assert any("reported the AfterAllowTestTraffic hook Succeeded" in m for m in said)
    assert any("ended READY_WAIT" in m for m in said)  # the group's READY_WAIT comes next
    infos, weights, primary = state(shared_sandbox, record)
    assert [i["status"] for i in infos] == ["Succeeded"]
    assert {name.rsplit("-", 1)[1]: w for name, w in weights.items()} == {"blue": 0, "green": 100}
    assert primary == [record["parameters"]["task_definition_arn"]]


def test_green_with_errors_is_stopped_and_rolled_back(shared_sandbox, tmp_path):
    _, run = planned_run(shared_sandbox, tmp_path, "ecs_codedeploy", green_error_rate=0.2, **FAST)
    assert run.error is None
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back"
    infos, weights, primary = state(shared_sandbox, record)
    statuses = sorted(i["status"] for i in infos)
    assert statuses == ["Stopped", "Succeeded"]  # the release, and CodeDeploy's rollback deployment
    assert {name.rsplit("-", 1)[1]: w for name, w in weights.items()}["green"] == 0
    assert primary != [record["parameters"]["task_definition_arn"]]


def test_failing_smoke_test_stops_before_any_production_traffic(shared_sandbox, tmp_path):
    run = run_runbook(tmp_path, "ecs_codedeploy", green_error_rate=1.0, **FAST)
    record = run.record
    assert record["outcome"] == "rolled_back"
    assert "smoke test failed: 10/10" in record["reason"]
    assert not [e for e in record["events"] if e["kind"] == "shift"]
    assert record["verdicts"] == []
    infos, weights, _ = state(shared_sandbox, record)
    stopped = next(i for i in infos if i["status"] == "Stopped")
    assert stopped["rollbackInfo"]["rollbackDeploymentId"]
    assert {name.rsplit("-", 1)[1]: w for name, w in weights.items()} == {"blue": 100, "green": 0}


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        (
            {"deployment_config_name": "CodeDeployDefault.ECSCanary50Percent1Minutes"},
            "ParameterError",
            "deployment_config_name",
        ),
        (
            {"deployment_config_name": "my-custom-config"},
            "PreflightError",
            "deployment_config_name",
        ),
        (
            {"task_definition_arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/missing:7"},
            "PreflightError",
            "task_definition_arn",
        ),
        ({"task_definition_arn": "web:7"}, "ParameterError", "task_definition_arn"),
        ({"deployment_group_name": "no-such-group"}, "PreflightError", "deployment_group_name"),
        ({"hook_function_name": "no-such-relay"}, "PreflightError", "hook_function_name"),
        ({"hook_function_name": "bad name!"}, "ParameterError", "hook_function_name"),
    ],
)
def test_bad_parameters_are_refused_before_any_deployment(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "ecs_codedeploy", **parameters, **FAST)
    assert_refused(run, error, name)
    codedeploy = shared_sandbox.session().client("codedeploy")
    for application in codedeploy.list_applications()["applications"]:
        for group in codedeploy.list_deployment_groups(applicationName=application)[
            "deploymentGroups"
        ]:
            if group == parameters.get("deployment_group_name"):
                pytest.fail("the bad group name must not exist")
    if run.record:
        assert deployments_of(shared_sandbox, run.record) == []


def test_an_alarm_that_stops_codedeploy_is_recorded_as_the_reason(shared_sandbox):
    """CodeDeploy stops the deployment itself on its group's alarm; bgkit sees it, waits for
    CodeDeploy's rollback, and the record says why."""
    import bgkit
    from bgkit.patterns.ecs_codedeploy import EcsCodeDeploy

    scenario = shared_sandbox.provision("ecs_codedeploy", minute_seconds=4.0, request_rate=20)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in EcsCodeDeploy.parameters if k in p}
        resources["deployment_config_name"] = "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"
        params = bgkit.validate_parameters(
            "ecs_codedeploy",
            {**resources, "target": "aws", "bake_seconds": 5, "metric_period_seconds": 1,
             "metric_lag_seconds": 1.5},
        )  # fmt: skip
        release = bgkit.Release(params, shared_sandbox.session(), display=Capture())
        release.preflight()
        release.deploy()
        release.smoke_test()
        alarm = f"{p['application_name']}-green-5xx"
        shared_sandbox.session().client("cloudwatch").set_alarm_state(
            AlarmName=alarm, StateValue="ALARM", StateReason="5xx on green"
        )
        release.shift()
        record = release.finish(plot=False)
        assert record["outcome"] == "rolled_back"
        assert (
            "Stopped while shifting: ALARM_ACTIVE" in record["reason"] and alarm in record["reason"]
        )
        assert release.pattern.read_split() == {"blue": 100, "green": 0}
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("ecs_codedeploy")
