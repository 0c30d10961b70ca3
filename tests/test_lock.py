"""One release per target: the DynamoDB lease (bgkit.lock), against the sandbox's DynamoDB."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from conftest import Capture, run_runbook

from bgkit.errors import PreflightError
from bgkit.lock import ReleaseLock

TABLE = "bgkit-locks"


def lock(sandbox, target: str, release: str, lease: float = 60.0, **kwargs) -> ReleaseLock:
    return ReleaseLock(
        sandbox.session(), TABLE, target, release, "arn:aws:iam::1:user/alice", lease, **kwargs
    )


def item(sandbox, target: str) -> dict | None:
    dynamodb = sandbox.session().client("dynamodb")
    return dynamodb.get_item(TableName=TABLE, Key={"target": {"S": target}}).get("Item")


def test_a_second_release_is_refused_naming_the_holder_until_the_first_releases(sandbox):
    first = lock(sandbox, "listener/a", "rel-1")
    assert first.acquire() is None
    try:
        with pytest.raises(PreflightError) as refused:
            lock(sandbox, "listener/a", "rel-2").acquire()
        message = str(refused.value)
        assert "locked by release rel-1 of arn:aws:iam::1:user/alice on " in message
        assert " since 20" in message and "lease until 20" in message
        assert lock(sandbox, "listener/b", "rel-3").acquire() is None  # another target: free
    finally:
        assert first.release_lock()
    second = lock(sandbox, "listener/a", "rel-2")
    assert second.acquire() is None
    assert item(sandbox, "listener/a")["release"]["S"] == "rel-2"
    assert second.release_lock()
    assert item(sandbox, "listener/a") is None


def test_a_stale_lock_is_taken_over_and_the_takeover_says_whose_it_was(sandbox):
    clock = [1_000_000.0]
    dead = lock(sandbox, "listener/stale", "rel-dead", lease=10, now=lambda: clock[0])
    dead.acquire()
    dead._stop.set()  # its process died: no more renewals
    clock[0] += 11  # the lease ran out
    newcomer = lock(sandbox, "listener/stale", "rel-new", lease=10, now=lambda: clock[0])
    note = newcomer.acquire()
    assert note is not None and "took over the stale lock of release rel-dead" in note
    assert "its lease ran out at 1970-01-12T13:46:50+00:00" in note
    # the dead holder cannot release (or renew) what is no longer its lock
    assert dead.release_lock() is False
    assert item(sandbox, "listener/stale")["release"]["S"] == "rel-new"
    assert newcomer.release_lock()


def test_the_lease_is_renewed_while_the_release_runs(sandbox):
    holder = lock(sandbox, "listener/renew", "rel-1", lease=10)
    holder.acquire()
    try:
        before = float(item(sandbox, "listener/renew")["lease_until"]["N"])
        time.sleep(0.1)
        holder.renew()
        assert float(item(sandbox, "listener/renew")["lease_until"]["N"]) > before
    finally:
        holder.release_lock()


def test_a_missing_table_is_a_preflight_error_with_the_command_that_creates_it(sandbox):
    missing = ReleaseLock(sandbox.session(), "no-such-table", "t", "r", "op", 60.0)
    with pytest.raises(PreflightError) as refused:
        missing.acquire()
    assert str(refused.value).startswith("lock_table: DynamoDB table 'no-such-table' does not")
    assert "aws dynamodb create-table --table-name no-such-table" in str(refused.value)


def test_a_runbook_on_a_locked_target_fails_at_once_and_changes_nothing(shared_sandbox, tmp_path):
    scenario = shared_sandbox.provision("alb_weighted", request_rate=5)
    p = scenario.parameters
    elb = shared_sandbox.session().client("elbv2")
    before = elb.describe_listeners(ListenerArns=[p["listener_arn"]])["Listeners"]
    held = lock(shared_sandbox, p["listener_arn"], "rel-other")
    held.acquire()
    try:
        started = time.monotonic()
        run = run_runbook(
            tmp_path,
            "alb_weighted",
            listener_arn=p["listener_arn"],
            blue_target_group_arn=p["blue_target_group_arn"],
            green_target_group_arn=p["green_target_group_arn"],
        )
        # at once: no bake, no wait for the lease (60 s); kernel start-up under load aside
        assert time.monotonic() - started < 55
        assert run.error is not None and run.error.ename == "PreflightError"
        took = datetime.fromisoformat(run.record["finished_at"]) - datetime.fromisoformat(
            run.record["started_at"]
        )
        assert took.total_seconds() < 10
        assert "is locked by release rel-other" in run.error.evalue
        assert run.record["outcome"] == "failed"
        assert not [e for e in run.record["events"] if e["kind"] in ("shift", "deploy")]
        assert elb.describe_listeners(ListenerArns=[p["listener_arn"]])["Listeners"] == before
        assert item(shared_sandbox, p["listener_arn"])["release"]["S"] == "rel-other"
    finally:
        held.release_lock()
        shared_sandbox.release_scenario(scenario.id)


def test_a_release_whose_lock_was_taken_over_stops_before_its_next_change(shared_sandbox):
    """Its lease ran out (a laptop asleep) and another release took the target over: at its
    next change it finds the lock item is not its own, and changes nothing more."""
    import bgkit
    from bgkit.patterns.alb_weighted import AlbWeighted

    scenario = shared_sandbox.provision("alb_weighted", request_rate=20)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in AlbWeighted.parameters}
        params = bgkit.validate_parameters(
            "alb_weighted",
            {**resources, "target": "aws", "bake_seconds": 1, "metric_period_seconds": 1,
             "metric_lag_seconds": 1.5, "min_requests": 5, "plan": "50", "release": "rel-a"},
        )  # fmt: skip
        release = bgkit.Release(params, shared_sandbox.session("alb_weighted"), display=Capture())
        release.preflight()
        release.deploy()
        release.smoke_test()  # (no smoke_url: skipped)
        # another release, two minutes later as far as A's lease is concerned, takes it over
        newcomer = lock(shared_sandbox, p["listener_arn"], "rel-b", now=lambda: time.time() + 120)
        assert "took over the stale lock of release rel-a" in newcomer.acquire()
        try:
            with pytest.raises(bgkit.BgkitError, match="was taken over by another release"):
                release.shift()
            assert AlbWeighted(shared_sandbox.session(), resources).read_split() == {
                "blue": 100,
                "green": 0,
            }
            record = release.finish(plot=False)
            assert record["outcome"] == "failed"
            assert not [e for e in record["events"] if e["kind"] in ("shift", "rollback")]
            item = (
                shared_sandbox.session()
                .client("dynamodb")
                .get_item(TableName=TABLE, Key={"target": {"S": p["listener_arn"]}})["Item"]
            )
            assert item["release"]["S"] == "rel-b"  # A neither released nor changed it
        finally:
            newcomer.release_lock()
    finally:
        shared_sandbox.release_scenario(scenario.id)
