"""The ALB runbook executed by papermill in the sandbox; assertions on what AWS (the sandbox) says."""

from __future__ import annotations

import json
import re

import pytest
from conftest import STEADY, assert_followed, planned_run, run_cells, run_runbook

FAST = {"bake_seconds": 5, "plan": "30,60", **STEADY}


def listener_weights(sandbox, listener_arn: str) -> dict[str, int]:
    elb = sandbox.session().client("elbv2")
    action = elb.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"][
        0
    ]
    return {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}


def control_plane_state(sandbox) -> str:
    elb = sandbox.session().client("elbv2")
    state = {
        "target_groups": sorted(
            g["TargetGroupArn"] for g in elb.describe_target_groups()["TargetGroups"]
        )
    }
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
            rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
            state[listener["ListenerArn"]] = {"actions": listener["DefaultActions"], "rules": rules}
    return json.dumps(state, sort_keys=True, default=str)


def test_healthy_green_is_promoted_and_the_listener_sends_everything_to_green(
    shared_sandbox, tmp_path
):
    # planned first, then run following the plan; plain papermill: the default engine
    _, run = planned_run(shared_sandbox, tmp_path, "alb_weighted", engine=None, **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    for field in (
        "runbook",
        "release",
        "target",
        "started_at",
        "finished_at",
        "operator",
        "events",
        "verdicts",
    ):
        assert record[field], field
    assert record["operator"].startswith("arn:aws:sts::")
    assert record["final_split"] == {"blue": 0, "green": 100}
    resources = record["parameters"]
    weights = listener_weights(shared_sandbox, resources["listener_arn"])
    assert weights == {
        resources["blue_target_group_arn"]: 0,
        resources["green_target_group_arn"]: 100,
    }
    assert [v["green_percent"] for v in record["verdicts"]] == [30, 60]
    for verdict in record["verdicts"]:
        assert (
            verdict["decision"] == "CONTINUE"
            and verdict["window_counts"]["green"]["requests"] >= 20
        )
        assert verdict["e_values"]["errors"] < verdict["boundaries"]["errors"]
    text = run.outputs_text()
    assert "image/png" in text and "Release summary" in text
    # one release per target: locked first, released at the end
    locks = [e["message"] for e in record["events"] if e["kind"] == "lock"]
    assert locks[0].startswith(
        f"locked {resources['listener_arn']} for this release in bgkit-locks"
    )
    assert locks[-1] == "released the lock"
    dynamodb = shared_sandbox.session().client("dynamodb")
    key = {"target": {"S": resources["listener_arn"]}}
    assert "Item" not in dynamodb.get_item(TableName="bgkit-locks", Key=key)
    # the verdict table shows each reason whole: "<" is escaped, not read as an HTML tag
    assert re.search(
        r"5xx: evidence [0-9.e+-]+ &lt; 125, slower than [0-9.]+ ms \(blue.{1,6}s p90\): evidence",
        text,
    )
    assert run.path.stat().st_size < 1_000_000


def test_green_with_errors_is_rolled_back_and_traffic_is_on_blue(shared_sandbox, tmp_path):
    _, run = planned_run(shared_sandbox, tmp_path, "alb_weighted", green_error_rate=0.2, **FAST)
    assert run.error is None  # a rollback is a completed release, not a crashed notebook
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back"
    assert record["final_split"] == {"blue": 100, "green": 0}
    resources = record["parameters"]
    weights = listener_weights(shared_sandbox, resources["listener_arn"])
    assert weights == {
        resources["blue_target_group_arn"]: 100,
        resources["green_target_group_arn"]: 0,
    }
    # the lock is released after a rollback too
    assert [e["message"] for e in record["events"] if e["kind"] == "lock"][
        -1
    ] == "released the lock"
    key = {"target": {"S": resources["listener_arn"]}}
    dynamodb = shared_sandbox.session().client("dynamodb")
    assert "Item" not in dynamodb.get_item(TableName="bgkit-locks", Key=key)
    if record["smoke"][
        "failures"
    ]:  # the smoke test on the test route caught it before real traffic
        assert "smoke test failed" in record["reason"] and record["verdicts"] == []
    else:  # the judge caught it with production traffic
        verdict = record["verdicts"][-1]
        assert verdict["decision"] == "ROLLBACK" and verdict["total"]["green"]["errors"] > 0
        assert verdict["e_values"]["errors"] >= verdict["boundaries"]["errors"]
        assert "green is worse than blue: green 5xx" in record["reason"]


def test_slow_green_is_rolled_back_by_the_judge_on_measured_latency(shared_sandbox, tmp_path):
    # 20 s windows at 100 requests/s: blue's baseline (up to 2,000 requests; fewer when its
    # window began before the load did, or under the suite's load) estimates its p99 when it has
    # 1,000 (tests/test_windows.py reads every threshold from known latencies), never its p99.9
    slow = {"bake_seconds": 20, "sandbox_request_rate": 100, "slow_margin_ms": 10.0}
    run = run_runbook(tmp_path, "alb_weighted", green_added_latency_ms=150, **{**FAST, **slow})
    record = run.record
    assert record["outcome"] == "rolled_back"
    verdict = record["verdicts"][0]
    assert verdict["decision"] == "ROLLBACK" and "slower than" in verdict["reason"]
    (judge,) = [e for e in record["events"] if e["kind"] == "judge" and "thresholds_left_out" in e]
    thresholds, left_out = verdict["slow_thresholds_ms"], judge["thresholds_left_out"]
    assert judge["slow_thresholds_ms"] == thresholds and thresholds["p90"] < 150
    assert set(thresholds) | set(left_out) == {"p90", "p99", "p99.9"}
    assert "needs 10,000" in left_out["p99.9"] and "p99.9 not judged" in judge["message"]
    measured = int(
        re.search(r"blue's baseline has ([\d,]+) requests", left_out["p99.9"])[1].replace(",", "")
    )
    assert ("p99" in thresholds) == (measured >= 1000)
    # every green request was slow at each threshold (150 ms more than blue); few of blue's were
    green, blue = verdict["total"]["green"], verdict["total"]["blue"]
    for q in thresholds:
        assert green["slow"][q] == green["requests"] > 0
        assert blue["slow"][q] < 0.5 * blue["requests"]
    assert any(
        verdict["e_values"][f"slow_{q}"] >= verdict["boundaries"][f"slow_{q}"] for q in thresholds
    )
    text = run.outputs_text()
    assert all(f"slow {q} evidence" in text for q in thresholds)  # a column per threshold
    resources = record["parameters"]
    assert (
        listener_weights(shared_sandbox, resources["listener_arn"])[
            resources["green_target_group_arn"]
        ]
        == 0
    )


@pytest.mark.parametrize(
    ("parameters", "name"),
    [
        ({"plan": "canary", "canary_percent": 150}, "canary_percent"),
        ({"plan": "big-bang"}, "plan"),
        (
            {
                "blue_target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x-blue/73e2d6bc24d8a067",
                "green_target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x-blue/73e2d6bc24d8a067",
            },
            "green_target_group_arn",
        ),
    ],
)
def test_invalid_parameters_fail_before_any_mutation(shared_sandbox, tmp_path, parameters, name):
    before = control_plane_state(shared_sandbox)
    run = run_cells(tmp_path, "alb_weighted", **parameters)
    assert run.error is not None
    assert run.error.ename == "ParameterError"
    assert run.error.evalue.startswith(f"{name}: ")
    assert control_plane_state(shared_sandbox) == before


@pytest.fixture
def aws_env_on_sandbox(sandbox, monkeypatch):
    """target='aws' with the standard credential chain, pointed at the sandbox by environment only."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    scenario = sandbox.provision("alb_weighted")
    yield scenario
    sandbox.release_scenario(scenario.id)


def aws_parameters(scenario) -> dict:
    p = scenario.parameters
    return {
        "target": "aws",
        "listener_arn": p["listener_arn"],
        "blue_target_group_arn": p["blue_target_group_arn"],
        "green_target_group_arn": p["green_target_group_arn"],
        "smoke_url": p["smoke_url"],
        # the sandbox publishes every second; on AWS these default to 60 s and 180 s
        "metric_period_seconds": 1,
        "metric_lag_seconds": 1.5,
    }


def test_aws_target_runs_the_same_code_path_by_endpoint_only(sandbox, aws_env_on_sandbox, tmp_path):
    run = run_runbook(tmp_path, "alb_weighted", **aws_parameters(aws_env_on_sandbox), **FAST)
    assert run.error is None
    assert run.record["outcome"] == "promoted"
    assert run.record["target"] == "aws"
    p = aws_env_on_sandbox.parameters
    assert listener_weights(sandbox, p["listener_arn"])[p["green_target_group_arn"]] == 100


def test_missing_listener_is_refused_in_preflight_naming_it(sandbox, aws_env_on_sandbox, tmp_path):
    parameters = aws_parameters(aws_env_on_sandbox)
    real = parameters["listener_arn"]
    parameters["listener_arn"] = real[:-16] + "0123456789abcdef"
    before = control_plane_state(sandbox)
    run = run_cells(tmp_path, "alb_weighted", **parameters, **FAST)
    assert run.error.ename == "PreflightError"
    assert (
        run.error.evalue.startswith("listener_arn: listener ")
        and "does not exist" in run.error.evalue
    )
    assert control_plane_state(sandbox) == before


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("alb_weighted")
