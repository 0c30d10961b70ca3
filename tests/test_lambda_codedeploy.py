"""Lambda in the sandbox (tested with boto3) and the lambda_codedeploy runbook through papermill."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from conftest import (
    STEADY,
    Capture,
    assert_followed,
    deployments_of,
    planned_run,
    run_cells,
    run_runbook,
)

FAST = {"sandbox_minute_seconds": 4.0, "bake_seconds": 5, **STEADY}


@pytest.fixture
def function(sandbox):
    scenario = sandbox.provision(
        "lambda_codedeploy", minute_seconds=0.5, request_rate=20, green_error_rate=1.0
    )
    yield scenario, sandbox.session().client("lambda")
    sandbox.release_scenario(scenario.id)


def test_invoke_runs_the_versions_handler_and_reports_function_errors(function):
    scenario, lam = function
    p = scenario.parameters
    blue = lam.invoke(FunctionName=p["function_name"], Qualifier="1", Payload=b"{}")
    assert (
        blue["StatusCode"] == 200 and "FunctionError" not in blue and blue["ExecutedVersion"] == "1"
    )
    assert json.loads(json.loads(blue["Payload"].read())["body"])["colour"] == "blue"
    green = lam.invoke(
        FunctionName=p["function_name"], Qualifier=p["target_version"], Payload=b"{}"
    )
    assert green["FunctionError"] == "Unhandled"
    assert json.loads(green["Payload"].read())["errorMessage"] == "injected fault"


def test_alias_weights_choose_the_executed_version_and_metrics_follow(function):
    scenario, lam = function
    p = scenario.parameters
    lam.update_alias(
        FunctionName=p["function_name"],
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {p["target_version"]: 0.5}},
    )
    time.sleep(0.3)  # the runtime re-reads the alias every 200 ms
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    versions = Counter(
        lam.invoke(FunctionName=p["function_name"], Qualifier="live", Payload=b"{}")[
            "ExecutedVersion"
        ]
        for _ in range(200)
    )
    assert 60 < versions["2"] < 140, versions
    # One fixed, finished window for every query: the scenario's own load keeps invoking the
    # alias, so two queries ending "now" would count different seconds.
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    time.sleep((end - datetime.now(UTC)).total_seconds() + 2.0)  # its datapoints are published
    cloudwatch = scenario.session.client("cloudwatch")

    def total(version: str, metric: str) -> float:
        dims = [
            {"Name": "FunctionName", "Value": p["function_name"]},
            {"Name": "Resource", "Value": f"{p['function_name']}:live"},
            {"Name": "ExecutedVersion", "Value": version},
        ]
        result = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": metric,
                            "Dimensions": dims,
                        },
                        "Period": 1,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=start - timedelta(seconds=2),
            EndTime=end,
        )["MetricDataResults"][0]
        return sum(result["Values"])

    assert (
        total("2", "Errors") == total("2", "Invocations") >= versions["2"]
    )  # green fails every call
    assert total("1", "Errors") == 0 and total("1", "Invocations") >= versions["1"]


def test_healthy_target_version_is_promoted_and_the_alias_points_to_it(shared_sandbox, tmp_path):
    _, run = planned_run(shared_sandbox, tmp_path, "lambda_codedeploy", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    p = record["parameters"]
    alias = (
        shared_sandbox.session()
        .client("lambda")
        .get_alias(FunctionName=p["function_name"], Name=p["alias_name"])
    )
    assert alias["FunctionVersion"] == p["target_version"]
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    assert any(v["decision"] == "CONTINUE" and v["green_percent"] == 10 for v in record["verdicts"])


def test_erroring_target_version_is_rolled_back_on_evidence(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox,
        tmp_path,
        "lambda_codedeploy",
        green_error_rate=0.2,
        smoke_requests=1,
        **FAST,
    )
    assert run.error is None
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back"
    p = record["parameters"]
    alias = (
        shared_sandbox.session()
        .client("lambda")
        .get_alias(FunctionName=p["function_name"], Name=p["alias_name"])
    )
    assert alias["FunctionVersion"] == "1"
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    assert record["final_split"] == {"blue": 100, "green": 0}


def test_failing_smoke_test_at_the_hook_stops_before_the_alias_moves(shared_sandbox, tmp_path):
    """The sandbox's runbook gates on bgkit's relay as the BeforeAllowTraffic hook."""
    run = run_runbook(tmp_path, "lambda_codedeploy", green_error_rate=1.0, **FAST)
    record = run.record
    assert record["outcome"] == "rolled_back" and "smoke test failed: 10/10" in record["reason"]
    assert record["parameters"]["hook_function_name"] == "bgkit-hook-relay"
    assert not [e for e in record["events"] if e["kind"] == "shift"]
    codedeploy = shared_sandbox.session().client("codedeploy")
    infos = [
        codedeploy.get_deployment(deploymentId=d)["deploymentInfo"]
        for d in deployments_of(shared_sandbox, record)
    ]
    assert sorted(i["status"] for i in infos) == ["Stopped", "Succeeded"]  # release, rollback
    alias = (
        shared_sandbox.session()
        .client("lambda")
        .get_alias(FunctionName=record["parameters"]["function_name"], Name="live")
    )
    assert alias["FunctionVersion"] == "1"


def test_without_a_hook_the_smoke_test_runs_before_any_deployment(sandbox):
    import bgkit
    from bgkit.patterns.lambda_codedeploy import LambdaCodeDeploy

    scenario = sandbox.provision(
        "lambda_codedeploy", minute_seconds=0.2, request_rate=5, green_error_rate=1.0
    )
    try:
        resources = {
            k: scenario.parameters[k]
            for k in LambdaCodeDeploy.parameters
            if k in scenario.parameters and k != "hook_function_name"
        }
        resources["deployment_config_name"] = "CodeDeployDefault.LambdaAllAtOnce"
        params = bgkit.validate_parameters(
            "lambda_codedeploy",
            {**resources, "target": "aws", "metric_period_seconds": 1, "metric_lag_seconds": 1.5},
        )
        release = bgkit.Release(params, sandbox.session(), display=Capture())
        release.preflight()
        release.deploy()
        release.smoke_test()
        assert release.record.outcome == "rolled_back"
        assert "green never received production traffic" in release.record.reason
        codedeploy = sandbox.session().client("codedeploy")
        assert (
            codedeploy.list_deployments(
                applicationName=resources["application_name"],
                deploymentGroupName=resources["deployment_group_name"],
            )["deployments"]
            == []
        )
    finally:
        sandbox.release_scenario(scenario.id)


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        ({"alias_name": "no-such-alias"}, "PreflightError", "alias_name"),
        ({"target_version": "$LATEST"}, "ParameterError", "target_version"),
        ({"target_version": "99"}, "PreflightError", "target_version"),
        (
            {"deployment_config_name": "CodeDeployDefault.LambdaCanary50Percent1Minute"},
            "ParameterError",
            "deployment_config_name",
        ),
    ],
)
def test_bad_parameters_are_refused_before_any_deployment(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "lambda_codedeploy", **parameters, **FAST)
    assert run.error is not None and run.error.ename == error
    assert run.error.evalue.startswith(f"{name}: ")
    if run.record:
        assert deployments_of(shared_sandbox, run.record) == []


def test_a_verdict_after_codedeploy_finished_still_returns_traffic_to_blue(sandbox):
    """CodeDeploy may complete (Lambda has no termination wait) before a late verdict: bgkit
    then deploys the previous version back instead of stopping a finished deployment."""
    import bgkit
    from bgkit.clock import SystemClock
    from bgkit.patterns.lambda_codedeploy import LambdaCodeDeploy

    scenario = sandbox.provision("lambda_codedeploy", minute_seconds=0.2, request_rate=5)
    try:
        resources = {
            k: scenario.parameters[k]
            for k in LambdaCodeDeploy.parameters
            if k in scenario.parameters
        }
        resources["deployment_config_name"] = "CodeDeployDefault.LambdaAllAtOnce"
        params = bgkit.validate_parameters(
            "lambda_codedeploy",
            {**resources, "target": "aws", "metric_period_seconds": 1, "metric_lag_seconds": 1.5},
        )
        pattern = LambdaCodeDeploy(sandbox.session(), params.resources)
        release = bgkit.Release(
            params,
            sandbox.session(),
            clock=SystemClock(),
            pattern=pattern,
            display=Capture(),
        )
        release.preflight()
        release.deploy()
        release.smoke_test()
        deadline = time.monotonic() + 10
        while pattern.deployment.info()["status"] != "Succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert pattern.read_split() == {"blue": 0, "green": 100}
        release.rollback("a late ROLLBACK verdict")
        alias = (
            sandbox.session()
            .client("lambda")
            .get_alias(FunctionName=pattern.function, Name=pattern.alias)
        )
        assert alias["FunctionVersion"] == "1" and release.record.outcome == "rolled_back"
        assert "had already succeeded" in " ".join(e["message"] for e in release.record.events)
    finally:
        sandbox.release_scenario(scenario.id)


def test_stop_with_rollback_points_the_alias_back(function):
    scenario, lam = function
    p = scenario.parameters
    codedeploy = scenario.session.client("codedeploy")
    spec = {
        "version": 0.0,
        "Resources": [
            {
                "fn": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Name": p["function_name"],
                        "Alias": "live",
                        "CurrentVersion": "1",
                        "TargetVersion": p["target_version"],
                    },
                }
            }
        ],
    }
    deployment = codedeploy.create_deployment(
        applicationName=p["application_name"],
        deploymentGroupName=p["deployment_group_name"],
        deploymentConfigName="CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
        revision={
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": json.dumps(spec)},
        },
    )["deploymentId"]
    deadline = time.monotonic() + 5
    while not (
        lam.get_alias(FunctionName=p["function_name"], Name="live").get("RoutingConfig") or {}
    ).get("AdditionalVersionWeights"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    codedeploy.stop_deployment(deploymentId=deployment, autoRollbackEnabled=True)
    deadline = time.monotonic() + 5
    while "rollbackInfo" not in (
        info := codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["status"] == "Stopped"
    rollback = info["rollbackInfo"]["rollbackDeploymentId"]
    deadline = time.monotonic() + 5
    while (
        codedeploy.get_deployment(deploymentId=rollback)["deploymentInfo"]["status"] != "Succeeded"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    alias = lam.get_alias(FunctionName=p["function_name"], Name="live")
    assert (
        alias["FunctionVersion"] == "1" and not alias["RoutingConfig"]["AdditionalVersionWeights"]
    )


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("lambda_codedeploy")
