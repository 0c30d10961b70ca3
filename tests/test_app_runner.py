"""The App Runner runbook executed by papermill in the sandbox; the service read back through boto3."""

from __future__ import annotations

import pytest
from conftest import STEADY, assert_followed, assert_refused, planned_run, run_cells, run_runbook

FAST = {"bake_seconds": 5, "sandbox_minute_seconds": 2.0, **STEADY}


def service_state(sandbox, record) -> tuple[str, dict]:
    """The image the service is configured with, and its latest operation."""
    apprunner = sandbox.session().client("apprunner")
    arn = record["parameters"]["service_arn"]
    service = apprunner.describe_service(ServiceArn=arn)["Service"]
    latest = apprunner.list_operations(ServiceArn=arn, MaxResults=1)["OperationSummaryList"][0]
    return service["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"], latest


def events(record, kind: str) -> list[dict]:
    return [e for e in record["events"] if e["kind"] == kind]


def test_healthy_green_is_promoted_and_judged_against_blue_before_the_switch(
    shared_sandbox, tmp_path
):
    _, run = planned_run(shared_sandbox, tmp_path, "app_runner", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    image, latest = service_state(shared_sandbox, record)
    assert image == record["parameters"]["image_identifier"]
    assert (latest["Type"], latest["Status"]) == ("UPDATE_SERVICE", "SUCCEEDED")
    assert record["final_split"] == {"blue": 0, "green": 100}
    [switch] = events(record, "shift")
    [verdict] = record["verdicts"]
    assert verdict["decision"] == "CONTINUE" and verdict["blue_is"] == "baseline"
    # blue's window ends before the deployment started; green's starts after the switch
    update = next(e for e in events(record, "deploy") if e["message"].startswith("UpdateService"))
    assert (
        verdict["blue_window"]["end"] <= update["at"] < switch["at"] <= verdict["window"]["start"]
    )
    assert verdict["total"]["blue"]["requests"] >= 20
    assert verdict["window_counts"]["green"]["requests"] >= 20
    assert "image/png" in run.outputs_text()


def test_a_slow_green_is_judged_and_the_previous_image_redeployed(shared_sandbox, tmp_path):
    # 150 ms more per request passes the smoke test (all 2xx); the judge finds it slow
    run = run_runbook(
        tmp_path, "app_runner", green_added_latency_ms=150, **{**FAST, "slow_margin_ms": 10.0}
    )
    assert run.error is None
    record = run.record
    assert record["outcome"] == "rolled_back", record["reason"]
    assert record["reason"].startswith("after the switch:") and "slower than" in record["reason"]
    image, latest = service_state(shared_sandbox, record)
    assert image.endswith(":v1")
    assert (latest["Type"], latest["Status"]) == ("UPDATE_SERVICE", "SUCCEEDED")
    [rollback] = events(record, "rollback")
    assert "redeployed the previous image" in rollback["message"]


def test_green_with_errors_is_rolled_back_to_the_previous_image(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox, tmp_path, "app_runner", green_error_rate=0.2, smoke_requests=1, **FAST
    )
    assert run.error is None
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back", record["reason"]
    image, latest = service_state(shared_sandbox, record)
    assert image.endswith(":v1") and latest["Status"] == "SUCCEEDED"
    assert record["final_split"] == {"blue": 100, "green": 0}


def test_an_image_that_fails_its_health_check_is_rolled_back_by_app_runner(
    shared_sandbox, tmp_path
):
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/bgkit-web:v3"  # no process serves it
    run = run_runbook(tmp_path, "app_runner", image_identifier=image, **FAST)
    assert run.error is None
    record = run.record
    assert record["outcome"] == "rolled_back"
    assert "rolled the deployment" in record["reason"] and "back itself" in record["reason"]
    configured, latest = service_state(shared_sandbox, record)
    assert configured.endswith(":v1")
    assert latest["Status"] == "ROLLBACK_SUCCEEDED"
    assert not events(record, "smoke") and not record["verdicts"]


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        ({"plan": "linear"}, "ParameterError", "plan"),
        ({"image_identifier": "nginx:latest"}, "ParameterError", "image_identifier"),
        ({"service_arn": "arn:aws:apprunner:us-east-1:123456789012:service/x"}, "ParameterError", "service_arn"),
        ({"service_arn": "arn:aws:apprunner:us-east-1:123456789012:service/none/0123456789abcdef0123456789abcdef"}, "PreflightError", "service_arn"),
        ({"image_identifier": "123456789012.dkr.ecr.us-east-1.amazonaws.com/bgkit-web:v1"}, "PreflightError", "image_identifier"),
        ({"image_identifier": "public.ecr.aws/bgkit/web:v2"}, "PreflightError", "image_identifier"),
        ({"image_identifier": "123456789012.dkr.ecr.us-east-1.amazonaws.com/bgkit-web:v9"}, "PreflightError", "image_identifier"),
    ],
)  # fmt: skip
def test_bad_parameters_are_refused_before_any_deployment(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "app_runner", **parameters, **FAST)
    assert_refused(run, error, name)
    if error == "PreflightError" and name == "image_identifier":  # the service exists: untouched
        image, latest = service_state(shared_sandbox, run.record)
        assert image.endswith(":v1") and latest["Type"] == "CREATE_SERVICE"


def test_a_rollback_after_blues_tag_moved_redeploys_blue_by_digest(shared_sandbox):
    """Someone pushed another image under blue's tag meanwhile: the rollback pins what ran."""
    import json
    import urllib.request

    import bgkit
    from bgkit.sandbox.apprunner import REPOSITORY, push_images

    scenario = shared_sandbox.provision("app_runner", minute_seconds=2.0, request_rate=5)
    blue_digest = push_images(shared_sandbox.session(), ("v1",))["v1"]
    try:
        p = scenario.parameters
        pattern = bgkit.patterns.get("app_runner")(shared_sandbox.session(), dict(p))
        pattern.preflight()
        assert pattern.blue_digest == blue_digest and blue_digest.startswith("sha256:")
        pattern.deploy_green("r1", print)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "layers": [{"digest": "sha256:" + "f" * 64}],
            }
        )
        shared_sandbox.session().client("ecr").put_image(
            repositoryName="bgkit-web", imageManifest=manifest, imageTag="v1"
        )
        assert pattern.set_split(0) == {"blue": 100, "green": 0}
        image, latest = service_state(shared_sandbox, {"parameters": p})
        assert image == f"{REPOSITORY}@{blue_digest}" and latest["Status"] == "SUCCEEDED"
        assert "redeployed by digest" in pattern.how_rolled_back()
        with urllib.request.urlopen(p["smoke_url"], timeout=5) as answer:
            assert json.loads(answer.read())["colour"] == "blue"
    finally:
        shared_sandbox.release_scenario(scenario.id)
        # v1 back where the other scenarios of this sandbox expect it
        assert push_images(shared_sandbox.session(), ("v1",))["v1"] == blue_digest


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("app_runner")
