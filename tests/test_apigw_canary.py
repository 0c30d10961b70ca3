"""API Gateway canary releases: the sandbox's canary model and stage data plane straight through
boto3, the pattern against a provisioned stage, and the runbook executed by papermill with
assertions on the stage read back afterwards."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from conftest import (
    STEADY,
    Capture,
    assert_followed,
    assert_refused,
    planned_run,
    run_cells,
)

from bgkit.sandbox.apigateway import StageDataPlane
from bgkit.sandbox.services import ColourService

FAST = {"bake_seconds": 5, **STEADY}


def _api(sandbox, blue_backend="127.0.0.1:1"):
    """A REST API like the scenario's: {proxy+} ANY with an HTTP_PROXY integration to the stage
    variable `backend`, deployed to stage prod."""
    apigw = sandbox.session().client("apigateway")
    api = apigw.create_rest_api(name=f"checks-{time.time_ns()}")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    proxy = apigw.create_resource(restApiId=api, parentId=root, pathPart="{proxy+}")["id"]
    apigw.put_method(
        restApiId=api, resourceId=proxy, httpMethod="ANY", authorizationType="NONE",
        requestParameters={"method.request.path.proxy": True},
    )  # fmt: skip
    apigw.put_integration(
        restApiId=api, resourceId=proxy, httpMethod="ANY", type="HTTP_PROXY",
        integrationHttpMethod="ANY", uri="http://${stageVariables.backend}/{proxy}",
        requestParameters={"integration.request.path.proxy": "method.request.path.proxy"},
    )  # fmt: skip
    first = apigw.create_deployment(
        restApiId=api, stageName="prod", description="v1", variables={"backend": blue_backend}
    )["id"]
    return apigw, api, first


def _canary(apigw, api, percent=10.0, **overrides):
    return apigw.create_deployment(
        restApiId=api,
        stageName="prod",
        canarySettings={
            "percentTraffic": percent,
            "stageVariableOverrides": overrides or {"backend": "127.0.0.1:2"},
        },
    )["id"]


def _stage(apigw, api, name="prod"):
    return apigw.get_stage(restApiId=api, stageName=name)


def _refused(call, code="BadRequestException"):
    with pytest.raises(ClientError) as refused:
        call()
    assert refused.value.response["Error"]["Code"] == code
    return refused.value.response["Error"]["Message"]


# -- the control plane, straight through boto3 ----------------------------------------------


def test_a_canary_deployment_leaves_the_stage_on_its_deployment(sandbox):
    apigw, api, first = _api(sandbox)
    canary = _canary(apigw, api, 10.5, backend="127.0.0.1:2", extra="x")
    stage = _stage(apigw, api)
    assert stage["deploymentId"] == first
    assert stage["variables"] == {"backend": "127.0.0.1:1"}
    assert stage["canarySettings"] == {
        "deploymentId": canary,
        "percentTraffic": 10.5,
        "stageVariableOverrides": {"backend": "127.0.0.1:2", "extra": "x"},
        "useStageCache": False,
    }
    listed = apigw.get_stages(restApiId=api)["item"]
    assert [s["canarySettings"]["deploymentId"] for s in listed] == [canary]
    # "In any subsequent API deployments to the same stage, you must always specify
    # canarySettings": the next deployment replaces the canary, not the stage's deployment.
    second = _canary(apigw, api, 20.0)
    assert _stage(apigw, api)["canarySettings"]["deploymentId"] == second
    assert _stage(apigw, api)["deploymentId"] == first


def test_a_canary_needs_an_existing_stage_and_nothing_is_created_otherwise(sandbox):
    apigw, api, _ = _api(sandbox)
    before = len(apigw.get_deployments(restApiId=api)["items"])
    settings = {"percentTraffic": 10.0}
    says = _refused(
        lambda: apigw.create_deployment(restApiId=api, stageName="beta", canarySettings=settings)
    )
    assert "Stage beta must already be created" in says
    says = _refused(lambda: apigw.create_deployment(restApiId=api, canarySettings=settings))
    assert "non empty stageName must be provided for canary deployment" in says
    assert len(apigw.get_deployments(restApiId=api)["items"]) == before
    _refused(lambda: apigw.get_stage(restApiId=api, stageName="beta"), "NotFoundException")


def test_percent_traffic_is_patched_within_0_to_100_and_a_refused_patch_changes_nothing(sandbox):
    apigw, api, _ = _api(sandbox)
    _canary(apigw, api, 10.0)

    def patch(*operations):
        return apigw.update_stage(restApiId=api, stageName="prod", patchOperations=list(operations))

    def percent(value):
        return {"op": "replace", "path": "/canarySettings/percentTraffic", "value": value}

    assert patch(percent("42.5"))["canarySettings"]["percentTraffic"] == 42.5
    for bad in ("100.5", "-1", "lots", "nan"):
        assert "between 0.0 and 100.0" in _refused(lambda bad=bad: patch(percent(bad)))
    # operations apply all or none: the valid first one is not applied either
    _refused(lambda: patch(percent("60"), {"op": "add", "path": "/canarySettings/deploymentId",
                                           "value": "x"}))  # fmt: skip
    assert _stage(apigw, api)["canarySettings"]["percentTraffic"] == 42.5
    override = {"op": "replace", "path": "/canarySettings/stageVariableOverrides/v", "value": "2"}
    assert patch(override)["canarySettings"]["stageVariableOverrides"]["v"] == "2"
    cache = {"op": "replace", "path": "/canarySettings/useStageCache", "value": "true"}
    assert patch(cache)["canarySettings"]["useStageCache"] is True


def test_a_canary_started_by_stage_update_runs_the_stage_deployment(sandbox):
    apigw, api, first = _api(sandbox)
    stage = apigw.update_stage(
        restApiId=api,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "15.0"}
        ],
    )
    assert stage["canarySettings"] == {
        "deploymentId": first,
        "percentTraffic": 15.0,
        "useStageCache": False,
    }


def test_promote_as_documented_then_turn_the_canary_off(sandbox):
    apigw, api, _ = _api(sandbox)
    canary = _canary(apigw, api, 10.5, backend="127.0.0.1:2", sv2="val3")
    # "Promote a canary release", API section: copy the deployment and the stage variables,
    # set the canary's share to 0; the canary stays until it is turned off.
    promoted = apigw.update_stage(
        restApiId=api,
        stageName="prod",
        patchOperations=[
            {"op": "copy", "path": "/deploymentId", "from": "/canarySettings/deploymentId"},
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "0.0"},
            {"op": "copy", "path": "/variables", "from": "/canarySettings/stageVariableOverrides"},
        ],
    )
    assert promoted["deploymentId"] == canary
    assert promoted["variables"] == {"backend": "127.0.0.1:2", "sv2": "val3"}
    assert promoted["canarySettings"]["percentTraffic"] == 0.0
    off = apigw.update_stage(
        restApiId=api,
        stageName="prod",
        patchOperations=[{"op": "remove", "path": "/canarySettings"}],
    )
    assert "canarySettings" not in off
    assert "canarySettings" not in _stage(apigw, api)


def test_while_a_canary_exists_the_stage_takes_no_other_deployment(sandbox):
    apigw, api, _ = _api(sandbox)
    other = apigw.create_deployment(restApiId=api, description="built elsewhere")["id"]
    canary = _canary(apigw, api)
    assert "must specify canarySettings" in _refused(
        lambda: apigw.create_deployment(restApiId=api, stageName="prod")
    )

    def move(deployment):
        return apigw.update_stage(
            restApiId=api,
            stageName="prod",
            patchOperations=[{"op": "replace", "path": "/deploymentId", "value": deployment}],
        )

    assert "can move only to the canary's" in _refused(lambda: move(other))
    assert move(canary)["deploymentId"] == canary
    _refused(lambda: move("nosuchdeploy"), "NotFoundException")
    _refused(
        lambda: apigw.get_deployment(restApiId=api, deploymentId="nosuchdeploy"),
        "NotFoundException",
    )


# -- the data plane --------------------------------------------------------------------------


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _sums(sandbox, api_name, stage, metric, since):
    cloudwatch = sandbox.session().client("cloudwatch")
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApiGateway",
                        "MetricName": metric,
                        "Dimensions": [
                            {"Name": "ApiName", "Value": api_name},
                            {"Name": "Stage", "Value": stage},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=since - timedelta(minutes=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
    )
    return sum(answer["MetricDataResults"][0]["Values"])


def test_the_stage_splits_by_percent_traffic_and_measures_its_canary_apart(
    sandbox, no_leaked_threads
):
    blue = ColourService("blue", "v1", seed=1).start()
    green = ColourService("green", "v2", error_rate=0.5, seed=2).start()
    apigw, api, _ = _api(sandbox, f"127.0.0.1:{blue.port}")
    _canary(apigw, api, 30.0, backend=f"127.0.0.1:{green.port}")
    plane = StageDataPlane(sandbox.session(), api, seed=3).start()
    since = datetime.now(UTC)
    try:
        answers = [_get(f"{plane.url}/prod/orders/{i}") for i in range(400)]
        missing_stage = _get(f"{plane.url}/beta/orders")
        no_route = _get(f"{plane.url}/prod")  # "/" has no method: Missing Authentication Token
    finally:
        plane.stop()  # publishes the last second
        blue.stop()
        green.stop()
    colours = Counter(body.get("colour") for _, body in answers)
    assert colours["blue"] + colours["green"] == 400
    assert 80 <= colours["green"] <= 160  # 30 % of 400 (a 4-sigma band of the binomial)
    assert missing_stage == (403, {"message": "Forbidden"})
    assert no_route == (403, {"message": "Missing Authentication Token"})
    green_5xx = sum(1 for status, body in answers if status == 500)
    assert 0 < green_5xx < colours["green"]
    api_name = apigw.get_rest_api(restApiId=api)["name"]
    # every request is one Count sample under its Stage dimension, the canary's apart (the
    # unrouted request went to whichever the stage drew for it)
    canary_4xx = _sums(sandbox, api_name, "prod/Canary", "4XXError", since)
    stage_4xx = _sums(sandbox, api_name, "prod", "4XXError", since)
    assert canary_4xx + stage_4xx == 1
    assert _sums(sandbox, api_name, "prod/Canary", "Count", since) == colours["green"] + canary_4xx
    assert _sums(sandbox, api_name, "prod", "Count", since) == colours["blue"] + stage_4xx
    assert _sums(sandbox, api_name, "prod/Canary", "5XXError", since) == green_5xx
    assert _sums(sandbox, api_name, "prod", "5XXError", since) == 0


# -- the pattern against a provisioned stage -------------------------------------------------


def _pattern(sandbox, scenario, session=None, **changes):
    from bgkit.patterns.apigw_canary import ApiGatewayCanary

    p = {**scenario.parameters, **changes}
    names = ("rest_api_id", "stage_name", "green_stage_variables", "canary_deployment_id")
    return ApiGatewayCanary(session or sandbox.session(), {k: p.get(k, "") for k in names})


def test_a_stage_with_a_canary_in_flight_is_refused_before_any_change(shared_sandbox):
    import bgkit
    from bgkit.errors import PreflightError

    scenario = shared_sandbox.provision("apigw_canary", request_rate=5)
    try:
        p = scenario.parameters
        apigw = shared_sandbox.session().client("apigateway")
        other = _canary(apigw, p["rest_api_id"], 0.0)
        params = bgkit.validate_parameters(
            "apigw_canary",
            {"target": "aws", "metric_period_seconds": 1, "rest_api_id": p["rest_api_id"],
             "stage_name": p["stage_name"]},
        )  # fmt: skip
        release = bgkit.Release(params, shared_sandbox.session(), display=Capture())
        with pytest.raises(PreflightError, match="already has a canary") as refused:
            release.preflight()
        assert refused.value.parameter == "stage_name"
        assert release.mutated is False
        assert _stage(apigw, p["rest_api_id"])["canarySettings"]["deploymentId"] == other
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_an_existing_deployment_is_released_and_a_promotion_can_be_undone(
    shared_sandbox, no_leaked_threads
):
    scenario = shared_sandbox.provision("apigw_canary", request_rate=5)
    try:
        api = scenario.parameters["rest_api_id"]
        apigw = shared_sandbox.session().client("apigateway")
        built = apigw.create_deployment(restApiId=api, description="CI build 42")["id"]
        session = shared_sandbox.session()
        pattern = _pattern(shared_sandbox, scenario, session, canary_deployment_id=built)
        before = _stage(apigw, api)
        assert pattern.preflight() == {"blue": 100, "green": 0}
        # a plan of this path, built before any change: each call's parameters are known
        planned = [
            *pattern.deploy_changes("r1"),
            *pattern.changes_to(30),
            *pattern.changes_to(100),
            *pattern.rollback_changes(100),  # after the promotion
        ]
        assert f"deployment {built} attached as the canary" in pattern.deploy_green("r1", print)
        assert pattern.set_split(30) == {"blue": 70, "green": 30}
        assert _stage(apigw, api)["canarySettings"]["percentTraffic"] == 30.0
        assert pattern.set_split(100) == {"blue": 0, "green": 100}
        promoted = _stage(apigw, api)
        assert promoted["deploymentId"] == built and "canarySettings" not in promoted
        assert promoted["variables"]["backend"] != before["variables"]["backend"]
        # a failure after the promotion still returns every request to blue
        assert pattern.set_split(0) == {"blue": 100, "green": 0}
        after = _stage(apigw, api)
        assert after["deploymentId"] == before["deploymentId"]
        assert after["variables"] == before["variables"]
        made = [(c["operation"], c["digest"]) for c in session.changes]
        assert made == [(c.operation, c.row()["digest"]) for c in planned]
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_a_canary_someone_else_put_on_the_stage_is_never_promoted(shared_sandbox):
    from bgkit.errors import TrafficError

    scenario = shared_sandbox.provision("apigw_canary", request_rate=5)
    try:
        api = scenario.parameters["rest_api_id"]
        apigw = shared_sandbox.session().client("apigateway")
        pattern = _pattern(shared_sandbox, scenario)
        pattern.preflight()
        pattern.deploy_green("r1", print)
        before = _stage(apigw, api)["deploymentId"]
        theirs = _canary(apigw, api, 0.0)  # a CI deploy meanwhile replaces the canary
        with pytest.raises(TrafficError, match="not this release's"):
            pattern.set_split(100)
        with pytest.raises(TrafficError, match="leaves it to whoever deployed it"):
            pattern.set_split(0)  # the release's rollback does not remove their canary either
        stage = _stage(apigw, api)
        assert stage["deploymentId"] == before and stage["canarySettings"]["deploymentId"] == theirs
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_an_api_whose_name_another_api_shares_is_refused(shared_sandbox):
    from bgkit.errors import PreflightError

    scenario = shared_sandbox.provision("apigw_canary", request_rate=5)
    apigw = shared_sandbox.session().client("apigateway")
    api = scenario.parameters["rest_api_id"]
    namesake = apigw.create_rest_api(name=apigw.get_rest_api(restApiId=api)["name"])["id"]
    try:
        with pytest.raises(PreflightError, match="share the name") as refused:
            _pattern(shared_sandbox, scenario).preflight()
        assert refused.value.parameter == "rest_api_id"
        assert "canarySettings" not in _stage(apigw, api)
    finally:
        apigw.delete_rest_api(restApiId=namesake)
        shared_sandbox.release_scenario(scenario.id)


# -- the runbook -----------------------------------------------------------------------------


def _final_stage(sandbox, record):
    p = record["parameters"]
    return _stage(sandbox.session().client("apigateway"), p["rest_api_id"], p["stage_name"])


def test_healthy_green_is_promoted_and_the_stage_runs_its_deployment(shared_sandbox, tmp_path):
    _, run = planned_run(shared_sandbox, tmp_path, "apigw_canary", plan="25,50", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    stage = _final_stage(shared_sandbox, record)
    green = record["final_state"]["green_deployment"]
    assert stage["deploymentId"] == green
    assert "canarySettings" not in stage
    green_backend = record["parameters"]["green_stage_variables"].split("=", 1)[1]
    assert stage["variables"]["backend"] == green_backend
    shifts = [e["green_percent"] for e in record["events"] if e["kind"] == "shift"]
    assert shifts == [25, 50]
    for verdict in record["verdicts"]:
        assert verdict["decision"] == "CONTINUE"
        counts = verdict["window_counts"]
        measured = counts["green"]["requests"] / (
            counts["green"]["requests"] + counts["blue"]["requests"]
        )
        assert abs(100 * measured - verdict["green_percent"]) < 15  # the canary's measured share


def test_green_with_errors_is_rolled_back_to_the_stage_deployment(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox, tmp_path, "apigw_canary", green_error_rate=0.2, smoke_requests=1, **FAST
    )
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back", record["reason"]
    stage = _final_stage(shared_sandbox, record)
    assert "canarySettings" not in stage
    first = (
        shared_sandbox.session()
        .client("apigateway")
        .get_deployment(
            restApiId=record["parameters"]["rest_api_id"], deploymentId=stage["deploymentId"]
        )
    )
    assert first["description"] == "v1"  # the scenario's blue deployment
    assert record["final_split"] == {"blue": 100, "green": 0}
    if record["verdicts"]:  # the smoke test (one request at 20 % errors) may end it first
        assert record["verdicts"][-1]["decision"] == "ROLLBACK"


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        ({"rest_api_id": "Not-An-Api"}, "ParameterError", "rest_api_id"),
        ({"rest_api_id": "abcde12345"}, "PreflightError", "rest_api_id"),
        ({"stage_name": "prod stage"}, "ParameterError", "stage_name"),
        ({"stage_name": "beta"}, "PreflightError", "stage_name"),
        ({"green_stage_variables": "backend"}, "ParameterError", "green_stage_variables"),
        ({"canary_deployment_id": "nosuch1234"}, "PreflightError", "canary_deployment_id"),
    ],
)
def test_bad_parameters_are_refused_before_any_change(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "apigw_canary", **parameters, **FAST)
    assert_refused(run, error, name, step="deploy")


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("apigw_canary")
