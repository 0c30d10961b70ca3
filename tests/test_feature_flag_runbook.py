"""The feature_flag runbook in the sandbox, both ways of moving the flag (bgkit's steps and
AppConfig's strategy): promoted, rolled back by the judge, by a sample ratio mismatch and by
AppConfig's own monitor; what AppConfig has deployed is read back after each."""

from __future__ import annotations

import json
import threading

from conftest import STEADY, assert_followed, planned_run, run_runbook
from test_feature_flag import in_process_release, wait_for

from bgkit.flags import document as flagdoc
from bgkit.flags.rules import evaluate
from bgkit.sandbox.flag_service import FLAG

# 30 requests a second: a 25 % step still gives `on` more than min_requests per 5 s window
FAST = {"bake_seconds": 5, "sandbox_request_rate": 30.0, **STEADY}

# -- the runbook --------------------------------------------------------------------------------


def flag_for(sandbox, record, users=200) -> float:
    """The share of users the sandbox's agent says `on` for, now (by the record's scenario)."""
    p = record["parameters"]
    client = sandbox.session().client("appconfig")
    items = client.list_deployments(
        ApplicationId=p["application_id"], EnvironmentId=p["environment_id"]
    )["Items"]
    newest = items[0]
    content = client.get_hosted_configuration_version(
        ApplicationId=p["application_id"], ConfigurationProfileId=p["configuration_profile_id"],
        VersionNumber=int(newest["ConfigurationVersion"]),
    )["Content"].read()  # fmt: skip
    document = flagdoc.load(content)
    on = sum(
        next(
            v["name"] for v in document["values"][FLAG]["_variants"]
            if v.get("rule") is None or evaluate(v["rule"], {"userId": f"user-{i}"})
        ) == "on"
        for i in range(users)
    )  # fmt: skip
    return on / users, newest


def test_bgkit_steps_turn_the_flag_on_for_everyone(shared_sandbox, tmp_path):
    # planned first, then run following the plan
    _, run = planned_run(shared_sandbox, tmp_path, "feature_flag", plan="25,75", **FAST)
    assert run.error is None, run.error
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    assert [v["green_percent"] for v in record["verdicts"]] == [25, 75]
    for verdict in record["verdicts"]:  # each step's share of `on`, measured
        ratio = verdict["sample_ratio"]
        assert (
            not ratio["mismatch"] and abs(ratio["measured_percent"] - verdict["green_percent"]) < 15
        )
    share, newest = flag_for(shared_sandbox, record)
    assert share == 1.0 and newest["State"] in ("BAKING", "COMPLETE")
    assert record["final_split"] == {"blue": 0, "green": 100}
    smoke = record["smoke"]
    assert smoke["requests"] == 10 and smoke["failures"] == 0
    assert "on` for the smoke test's user" in json.dumps(record["events"])


def test_a_slower_on_path_is_rolled_back_to_off_for_everyone(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox, tmp_path, "feature_flag", plan="25", green_added_latency_ms=60, **FAST
    )
    assert_followed(run, "rolled back from step 1")
    record = run.record
    assert record["outcome"] == "rolled_back" and "step 1 at 25%" in record["reason"]
    share, newest = flag_for(shared_sandbox, record)
    assert share == 0.0 and newest["ConfigurationVersion"] == "1"  # the version live before
    assert record["final_split"] == {"blue": 100, "green": 0}


def test_appconfigs_strategy_moves_the_flag_and_bgkit_judges_it(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox, tmp_path, "feature_flag", plan="AppConfig.Linear50PercentEvery30Seconds",
        sandbox_minute_seconds=8.0, **FAST,
    )  # fmt: skip
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    assert record["plan"].startswith("AppConfig deployment strategy AppConfig.Linear50Percent")
    shifts = [e["green_percent"] for e in record["events"] if e["kind"] == "shift"]
    assert 50 in shifts and shifts[-1] == 100
    share, newest = flag_for(shared_sandbox, record)
    assert share == 1.0 and newest["State"] == "COMPLETE"


def test_a_bad_on_path_under_appconfigs_strategy_is_stopped_and_put_back(shared_sandbox, tmp_path):
    run = run_runbook(
        tmp_path, "feature_flag", plan="AppConfig.Linear50PercentEvery30Seconds",
        sandbox_minute_seconds=8.0, green_added_latency_ms=60, **FAST,
    )  # fmt: skip
    record = run.record
    assert record["outcome"] == "rolled_back", record["reason"]
    p = record["parameters"]
    client = shared_sandbox.session().client("appconfig")
    items = client.list_deployments(
        ApplicationId=p["application_id"], EnvironmentId=p["environment_id"]
    )["Items"]
    # newest first: the rollback's redeploy of version 1, the strategy's (stopped), the smoke one
    assert [i["State"] for i in items[:2]] in (
        ["COMPLETE", "ROLLED_BACK"],
        ["BAKING", "ROLLED_BACK"],
    )
    assert items[0]["ConfigurationVersion"] == "1"
    assert flag_for(shared_sandbox, record)[0] == 0.0


def test_a_stale_agent_is_a_sample_ratio_mismatch_held_then_rolled_back(sandbox):
    """After step 1 the agent stops polling (a stuck cache): step 2 is configured at 75 % but
    the service keeps serving 25 %. The judge alone sees nothing wrong with `on`; the share is."""
    scenario = sandbox.provision("feature_flag", request_rate=40, minute_seconds=1.0)
    try:
        release = in_process_release(sandbox, scenario, plan="25,75", max_holds=1)

        def freeze_after_the_first_verdict() -> None:
            wait_for(lambda: release.record.verdicts, timeout=60)
            scenario.agent.stale = True

        threading.Thread(target=freeze_after_the_first_verdict, daemon=True).start()
        for step in (release.preflight, release.deploy, release.smoke_test, release.shift):
            step()
        release.finish(plot=False)
        record = release.record
        assert record.outcome == "rolled_back", record.reason
        assert "sample ratio mismatch" in record.reason and "configured 75% on" in record.reason
        held = [v for v in record.verdicts if v.get("step") == 2]
        assert len(held) == 2 and all(v["sample_ratio"]["mismatch"] for v in held)
        assert all(v["decision"] == "NO_DATA" for v in held)
        assert all(15 < v["sample_ratio"]["measured_percent"] < 35 for v in held), held
    finally:
        scenario.agent.stale = False
        sandbox.release_scenario(scenario.id)


def test_appconfigs_monitor_alarm_stops_the_strategy_and_the_release_rolls_back(sandbox):
    """AppConfig rolls its deployment back by itself when a monitor's alarm fires (moto does not
    evaluate alarms: the test sets it once traffic moves); bgkit sees it stopped and puts the
    live version back."""
    scenario = sandbox.provision("feature_flag", request_rate=30, minute_seconds=8.0)
    cloudwatch = sandbox.session().client("cloudwatch")
    try:
        p = scenario.parameters
        release = in_process_release(
            sandbox, scenario, plan="AppConfig.Linear50PercentEvery30Seconds"
        )

        def alarm_once_it_shifts() -> None:
            wait_for(lambda: any(e["kind"] == "shift" for e in release.record.events), 60)
            cloudwatch.set_alarm_state(
                AlarmName=p["alarm_name"], StateValue="ALARM", StateReason="t"
            )

        threading.Thread(target=alarm_once_it_shifts, daemon=True).start()
        for step in (release.preflight, release.deploy, release.smoke_test, release.shift):
            step()
        record = release.finish(plot=False)
        assert record["outcome"] == "rolled_back", record["reason"]
        assert "ROLLED_BACK" in record["reason"] and "CLOUDWATCH_ALARM" in record["reason"]
        assert p["alarm_name"] in record["reason"]
        newest = (
            sandbox.session()
            .client("appconfig")
            .list_deployments(ApplicationId=p["application_id"], EnvironmentId=p["environment_id"])[
                "Items"
            ][0]
        )
        assert newest["ConfigurationVersion"] == "1" and record["final_split"]["green"] == 0
    finally:
        cloudwatch.set_alarm_state(AlarmName=p["alarm_name"], StateValue="OK", StateReason="t")
        sandbox.release_scenario(scenario.id)


def test_the_iam_policy_allows_exactly_what_these_releases_called(iam_calls):
    iam_calls.assert_least_privilege("feature_flag")
