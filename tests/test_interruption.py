"""kill -9 a release at each point, run the next release of the target, check where traffic is.

The killed release runs in a process of its own (tests/interrupted_release.py) against this
test's sandbox, which lives on. Each case names the line of its output at which it is killed:
an event, or a mark of the driver (CHECKPOINT: the state is in the lock item, the change not
yet made; SET: the weights changed). The next release finds the dead one's state in its lock
item in DynamoDB, not on disk, and rolls it back or resumes it; the final state is read back
through boto3.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time

import interrupted_release
import pytest
from conftest import STEADY, Capture, release_all

import bgkit
from bgkit.patterns.alb_weighted import AlbWeighted

TABLE = "bgkit-locks"
# One-second bakes and metrics: each release takes seconds. min_requests is low because a
# 25 % step of 50 requests/s gives green about 12 requests a second.
QUICK = {
    "target": "aws",  # the same code path; the endpoint is the sandbox's
    "bake_seconds": 1,
    "metric_period_seconds": 1,
    "metric_lag_seconds": 1.0,
    "min_requests": 5,
    "smoke_requests": 3,
    **STEADY,
}


# The killed releases are children of a fork server that imported the driver (bgkit, boto3)
# once per test process: a child starts in a moment instead of importing it all again.
FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(["interrupted_release"])


def kill_at(
    sandbox,
    runbook: str,
    namespace: dict,
    line: str,
    *,
    mark_calls=(),
    other_machine: bool = False,
    timeout: float = 90.0,
) -> list[str]:
    """Run the release in a process of its own; kill -9 it when its output matches `line`
    (`mark_calls`: pattern methods whose calls the driver marks; `other_machine`: its lock
    names another machine). Returns its output up to the kill."""
    config = {
        "endpoint": sandbox.endpoint_url,
        "runbook": runbook,
        "namespace": namespace,
        "mark_calls": list(mark_calls),
        "other_machine": other_machine,
        "kill_at": line,  # the release holds there until killed
    }
    lines, writer = FORKS.Pipe(duplex=False)
    child = FORKS.Process(target=interrupted_release.in_child, args=(config, writer), daemon=True)
    child.start()
    writer.close()  # the child's end: at its exit, reading ends
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not lines.poll(max(0.0, deadline - time.monotonic())):
                pytest.fail(f"no {line!r} within {timeout:g} s:\n" + "\n".join(seen))
            try:
                text = lines.recv()
            except EOFError:
                pytest.fail(f"the release ended before {line!r}:\n" + "\n".join(seen))
            seen.append(text)
            if re.search(line, re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", text)):  # events: [time]
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=10)
        lines.close()
    assert child.exitcode == -signal.SIGKILL, "\n".join(seen)
    return seen


def next_release(sandbox, runbook: str, namespace: dict, *, through: str = "preflight") -> dict:
    """The next release of the same target, in this process: its preflight finds the dead one.
    `through`: "preflight" (then finish) or "all" (every step)."""
    params = bgkit.validate_parameters(runbook, namespace)
    release = bgkit.Release(params, sandbox.session(runbook), display=Capture())
    if through == "all":
        return release_all(release)
    release.preflight()
    return release.finish(plot=False)


def lock_item(sandbox, target: str) -> dict | None:
    answer = (
        sandbox.session()
        .client("dynamodb")
        .get_item(TableName=TABLE, Key={"target": {"S": target}}, ConsistentRead=True)
    )
    return answer.get("Item")


def recovered(record: dict) -> list[str]:
    return [e["message"] for e in record["events"] if e["kind"] == "recover"]


@pytest.fixture
def alb(sandbox):
    """An ALB scenario (green with the given faults): its resources and the release's parameters."""
    made = []

    def make(**options):
        scenario = sandbox.provision("alb_weighted", request_rate=50, **options)
        made.append(scenario)
        p = scenario.parameters
        resources = {k: p[k] for k in AlbWeighted.parameters}
        return resources, {**resources, **QUICK, "plan": "25,50", "smoke_url": p["smoke_url"]}

    yield make
    for scenario in made:
        sandbox.release_scenario(scenario.id)


def alb_split(sandbox, resources: dict) -> dict[str, int]:
    pattern = AlbWeighted(sandbox.session(), resources)
    return pattern.read_split()


# (case id, line to kill at, what the lock item said, extra parameters of the killed release)
ALB_POINTS = [
    ("before-the-first-change", r"^smoke test passed", None, {}),
    ("at-25-percent", r"^step 1: green 25%", "at step 1 (green 25%)", {}),
    ("at-50-percent", r"^step 2: green 50%", "at step 2 (green 50%)", {}),
    ("promotion-state-kept", r"^CHECKPOINT promoting", "while promoting", {}),
    ("promotion-weights-changed", r"^SET 100", "while promoting", {}),
    (
        "during-rollback",
        r"^CHECKPOINT rolling_back",
        "while rolling back",
        {"green_error_rate": 0.5},  # green is bad: the killed release was rolling back
    ),
]


@pytest.mark.parametrize(
    ("line", "where", "extra"),
    [pytest.param(line, where, extra, id=case) for case, line, where, extra in ALB_POINTS],
)
def test_a_killed_alb_release_is_rolled_back_by_the_next_release(sandbox, alb, line, where, extra):
    resources, namespace = alb(**extra)  # green_error_rate: the killed release rolls back
    smoke = {"smoke_url": ""} if extra else {}  # a bad green meets the judge, not the smoke test
    kill_at(sandbox, "alb_weighted", {**namespace, **smoke, "release": "rel-killed"}, line)
    record = next_release(sandbox, "alb_weighted", {**namespace, "release": "rel-next"})
    assert alb_split(sandbox, resources) == {"blue": 100, "green": 0}
    lock_events = [e["message"] for e in record["events"] if e["kind"] == "lock"]
    assert "took over the stale lock of release rel-killed" in lock_events[0]
    assert "its process" in lock_events[0] and "is gone" in lock_events[0]
    if where is None:  # nothing had changed: nothing to undo
        assert recovered(record) == []
    else:
        found, done = recovered(record)
        assert "release rel-killed of arn:aws:sts::123456789012:user/moto (on " in found
        assert f"was interrupted {where}; rolling it back" in found
        assert done.startswith("rolled back release rel-killed: blue 100%")
    assert record["outcome"] == "rolled_back"  # this one ended before changing anything
    assert lock_item(sandbox, resources["listener_arn"]) is None


def test_a_release_whose_machine_died_is_waited_out_for_its_lease_then_rolled_back(sandbox, alb):
    """The killed release's lock names another machine (a laptop that died, a lost CI runner):
    no process check can tell it is gone, so the next release is refused, naming it, until its
    lease runs out; then it is taken over and rolled back."""
    resources, namespace = alb()
    dead = {**namespace, "release": "rel-laptop", "lock_lease_seconds": 10}
    kill_at(sandbox, "alb_weighted", dead, r"^SET 25", other_machine=True)
    item = lock_item(sandbox, resources["listener_arn"])
    assert item is not None and item["holder"]["S"] == "other-host:4242"
    with pytest.raises(bgkit.BgkitError) as refused:
        next_release(sandbox, "alb_weighted", {**namespace, "release": "rel-next"})
    assert "is locked by release rel-laptop of arn:aws:sts::123456789012:user/moto on " in str(
        refused.value
    )
    assert "other-host:4242 since " in str(refused.value) and "(lease until " in str(refused.value)
    assert alb_split(sandbox, resources) == {"blue": 75, "green": 25}  # refused: untouched
    while (item := lock_item(sandbox, resources["listener_arn"])) is not None and (
        float(item["lease_until"]["N"]) > time.time() - 0.2
    ):  # read again: a renewal sent just before the kill may land after it
        time.sleep(max(0.0, float(item["lease_until"]["N"]) - time.time()) + 0.3)
    record = next_release(sandbox, "alb_weighted", {**namespace, "release": "rel-next"})
    lock_events = [e["message"] for e in record["events"] if e["kind"] == "lock"]
    assert "took over the stale lock of release rel-laptop" in lock_events[0]
    assert "its lease ran out at " in lock_events[0]
    found, done = recovered(record)
    assert "release rel-laptop of arn:aws:sts::123456789012:user/moto (on other-host:4242" in found
    assert "was interrupted at step 1 (green 25%); rolling it back" in found
    assert done.startswith("rolled back release rel-laptop: blue 100%")
    assert alb_split(sandbox, resources) == {"blue": 100, "green": 0}
    assert lock_item(sandbox, resources["listener_arn"]) is None


def test_a_killed_alb_release_is_resumed_from_its_step_with_on_interrupted_resume(sandbox, alb):
    resources, namespace = alb()
    kill_at(sandbox, "alb_weighted", {**namespace, "release": "rel-r"}, r"^step 2: green 50%")
    assert alb_split(sandbox, resources) == {"blue": 50, "green": 50}
    # resuming needs the same release: another id is refused before anything changes
    with pytest.raises(bgkit.BgkitError, match=r"^on_interrupted: 'resume' carries on"):
        next_release(sandbox, "alb_weighted", {**namespace, "release": "rel-other",
                                               "on_interrupted": "resume"})  # fmt: skip
    # nor with another plan: the step it was at would mean another weight
    with pytest.raises(bgkit.BgkitError, match=r"^on_interrupted: .* its plan were \[25, 50\]"):
        next_release(sandbox, "alb_weighted", {**namespace, "release": "rel-r", "plan": "50",
                                               "on_interrupted": "resume"})  # fmt: skip
    assert alb_split(sandbox, resources) == {"blue": 50, "green": 50}
    record = next_release(
        sandbox, "alb_weighted", {**namespace, "release": "rel-r", "on_interrupted": "resume"},
        through="all",
    )  # fmt: skip
    assert record["outcome"] == "promoted", record["reason"]
    (found,) = recovered(record)
    assert (
        "interrupted at step 2 (green 50%); resuming it (on_interrupted): shifting again from step 2"
        in found
    )
    shifts = [e for e in record["events"] if e["kind"] == "shift"]
    assert [e["green_percent"] for e in shifts] == [50]  # step 1 is not repeated
    assert [v["step"] for v in record["verdicts"]] == [2]
    assert alb_split(sandbox, resources) == {"blue": 0, "green": 100}
    assert lock_item(sandbox, resources["listener_arn"]) is None


def test_a_release_killed_after_creating_its_canary_is_rolled_back_by_the_next(sandbox):
    """A pattern that deploys green itself (an API Gateway canary deployment at 0 %): the dead
    release's canary, kept in its lock item, is removed from the stage."""
    from bgkit import patterns

    scenario = sandbox.provision("apigw_canary", request_rate=50)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in patterns.get("apigw_canary").parameters if k in p}
        namespace = {**resources, **QUICK, "plan": "25,50", "smoke_url": p["smoke_url"]}
        dead = {
            **namespace,
            "release": "rel-killed",
            "green_stage_variables": namespace["green_stage_variables"] + ",version=a",
        }
        kill_at(sandbox, "apigw_canary", dead, r"^CHECKPOINT deployed")  # fmt: skip
        apigw = sandbox.session().client("apigateway")
        stage = apigw.get_stage(restApiId=p["rest_api_id"], stageName=p["stage_name"])
        assert "canarySettings" in stage  # the dead release's canary is on the stage
        assert stage["canarySettings"]["stageVariableOverrides"]["version"] == "a"
        # The next release undoes the dead one with the dead one's state, then releases its own
        # green (its own stage variables), through to the promotion.
        mine = {
            **namespace,
            "release": "rel-next",
            "green_stage_variables": namespace["green_stage_variables"] + ",version=b",
        }
        record = next_release(sandbox, "apigw_canary", mine, through="all")  # fmt: skip
        found, done = recovered(record)
        assert "was interrupted after green was deployed; rolling it back" in found
        assert done.startswith("rolled back release rel-killed: blue 100%")
        assert record["outcome"] == "promoted", record["reason"]
        stage = apigw.get_stage(restApiId=p["rest_api_id"], stageName=p["stage_name"])
        assert "canarySettings" not in stage and stage["variables"]["version"] == "b"
        assert lock_item(sandbox, f"apigateway:{p['rest_api_id']}/{p['stage_name']}") is None
    finally:
        sandbox.release_scenario(scenario.id)
