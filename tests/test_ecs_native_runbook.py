"""The ECS native blue/green runbook executed by papermill in the sandbox; assertions through boto3."""

from __future__ import annotations

import pytest
from conftest import (
    STEADY,
    Capture,
    assert_followed,
    assert_refused,
    planned_run,
    run_cells,
    run_runbook,
)

FAST = {"sandbox_minute_seconds": 2.0, "bake_seconds": 5, **STEADY}


def state(sandbox, record) -> tuple[list[dict], dict[str, int], str]:
    """The service's deployments (newest first), the production rule's weights by colour, and
    the task definition the service runs."""
    p = record["parameters"]
    session = sandbox.session()
    ecs, elb = session.client("ecs"), session.client("elbv2")
    service = ecs.describe_services(cluster=p["cluster_name"], services=[p["service_name"]])[
        "services"
    ][0]
    lb = service["loadBalancers"][0]
    rule = elb.describe_rules(RuleArns=[lb["advancedConfiguration"]["productionListenerRule"]])[
        "Rules"
    ][0]
    colours = {
        lb["targetGroupArn"]: "blue",
        lb["advancedConfiguration"]["alternateTargetGroupArn"]: "green",
    }
    weights = {
        colours[g["TargetGroupArn"]]: g["Weight"]
        for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
    }
    briefs = ecs.list_service_deployments(cluster=p["cluster_name"], service=p["service_name"])[
        "serviceDeployments"
    ]
    return briefs, weights, service["taskDefinition"]


def test_healthy_green_is_promoted_by_ecs(shared_sandbox, tmp_path):
    _, run = planned_run(shared_sandbox, tmp_path, "ecs_native", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    assert record["final_split"] == {"blue": 0, "green": 100}
    assert record["plan"].startswith("ECS LINEAR: linear 25% every 3 min")
    deployments, weights, task_definition = state(shared_sandbox, record)
    assert [d["status"] for d in deployments] == ["SUCCESSFUL", "SUCCESSFUL"]  # release, creation
    assert weights == {"blue": 0, "green": 100}
    assert task_definition == record["parameters"]["task_definition_arn"]
    shifts = [e["green_percent"] for e in record["events"] if e["kind"] == "shift"]
    assert shifts == [25, 50, 75, 100]  # as ECS moved the production rule, read back
    decisions = [v["decision"] for v in record["verdicts"]]
    assert decisions.count("CONTINUE") >= 3 and "ROLLBACK" not in decisions
    assert record["smoke"]["failures"] == 0
    assert "image/png" in run.outputs_text()


def test_green_with_errors_is_stopped_and_rolled_back(shared_sandbox, tmp_path):
    # the smoke test would usually catch 20 %; a one-request smoke test lets green reach the gate
    _, run = planned_run(
        shared_sandbox, tmp_path, "ecs_native", green_error_rate=0.2, smoke_requests=1, **FAST
    )
    assert run.error is None
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back"
    deployments, weights, task_definition = state(shared_sandbox, record)
    assert deployments[0]["status"] == "ROLLBACK_SUCCESSFUL"
    assert weights == {"blue": 100, "green": 0}
    assert task_definition != record["parameters"]["task_definition_arn"]
    assert record["final_state"]["deployment"]["rollback"]["reason"]


def test_failing_smoke_test_stops_before_any_production_traffic(shared_sandbox, tmp_path):
    run = run_runbook(tmp_path, "ecs_native", green_error_rate=1.0, **FAST)
    record = run.record
    assert record["outcome"] == "rolled_back"
    assert "smoke test failed: 10/10" in record["reason"]
    assert not [e for e in record["events"] if e["kind"] == "shift"]
    deployments, weights, _ = state(shared_sandbox, record)
    assert deployments[0]["status"] == "ROLLBACK_SUCCESSFUL"
    assert weights == {"blue": 100, "green": 0}


def test_canary_strategy_is_judged_at_the_canary(shared_sandbox, tmp_path):
    # 3 ECS minutes of 4 s: the canary lasts 12 s, at least one whole 5 s window at 20 %
    # (about 50 green requests at 50/s, well over min_requests)
    run = run_runbook(
        tmp_path,
        "ecs_native",
        plan="canary",
        canary_percent=20,
        sandbox_minute_seconds=4.0,
        bake_seconds=5,
    )
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    assert record["plan"].startswith("ECS CANARY: canary 20%")
    shifts = [e["green_percent"] for e in record["events"] if e["kind"] == "shift"]
    assert shifts == [20, 100]
    assert any(v["green_percent"] == 20 and v["decision"] == "CONTINUE" for v in record["verdicts"])


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        ({"task_definition_arn": "web:7"}, "ParameterError", "task_definition_arn"),
        (
            {"task_definition_arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/missing:7"},
            "PreflightError",
            "task_definition_arn",
        ),
        ({"service_name": "no-such-service"}, "PreflightError", "service_name"),
        ({"cluster_name": "no-such-cluster"}, "PreflightError", "cluster_name"),
        ({"cluster_name": "bad/name"}, "ParameterError", "cluster_name"),
    ],
)
def test_bad_parameters_are_refused_before_any_deployment(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "ecs_native", **parameters, **FAST)
    assert_refused(run, error, name)
    if run.record:
        p = run.record["parameters"]
        if "service_name" not in parameters and "cluster_name" not in parameters:
            deployments, weights, _ = state(shared_sandbox, run.record)
            assert [d["status"] for d in deployments] == ["SUCCESSFUL"]  # only the creation
            assert weights == {"blue": 100, "green": 0}
        assert p["task_definition_arn"]


def test_service_without_a_pause_hook_is_refused(shared_sandbox):
    """Without a PAUSE hook after the test traffic shift, ECS would shift production traffic
    before any smoke test: preflight refuses and says how to add one."""
    import bgkit
    from bgkit.errors import PreflightError

    scenario = shared_sandbox.provision("ecs_native", minute_seconds=2.0, request_rate=5)
    try:
        session = shared_sandbox.session()
        ecs, p = session.client("ecs"), scenario.parameters
        config = ecs.describe_services(cluster=p["cluster_name"], services=[p["service_name"]])[
            "services"
        ][0]["deploymentConfiguration"]
        ecs.update_service(
            cluster=p["cluster_name"],
            service=p["service_name"],
            deploymentConfiguration={**config, "lifecycleHooks": []},
        )
        params = bgkit.validate_parameters(
            "ecs_native",
            {
                "region": session.region,
                **{k: p[k] for k in bgkit.patterns.get("ecs_native").parameters},
            },
        )
        release = bgkit.Release(params, session, display=Capture())
        with pytest.raises(PreflightError) as refused:
            release.preflight()
        assert refused.value.parameter == "service_name"
        assert "PAUSE lifecycle hook at POST_TEST_TRAFFIC_SHIFT" in str(refused.value)
        assert release.mutated is False
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("ecs_native")
