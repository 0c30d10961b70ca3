"""`bgkit waves` on this machine (bgkit.waves.runner) with a stand-in for `bgkit run`: the order
of waves, max_parallel, the bake between waves, and how the first rollback or a Ctrl-C stops the
waves. A real wave release in the sandbox is in tests/test_waves.py."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bgkit.waves.manifest import parse
from bgkit.waves.runner import run_waves

# The stand-in: its target is the release id after the dot; it runs FAKE_PLAN's seconds for
# it and exits with its code, logging start and end; SIGINT ends it at once with exit 4, as a
# stopped release ends failed.
FAKE_RUN = r"""
import json, os, signal, sys, time
args = sys.argv[1:]
target = args[args.index("release") + 1].split(".", 1)[1]
seconds, code = json.loads(os.environ["FAKE_PLAN"])[target]
log = open(os.environ["FAKE_LOG"], "a")
def note(what):
    log.write(json.dumps([target, what, time.monotonic()]) + "\n"); log.flush()
def stopped(signum, frame):
    note("stopped"); print("outcome: failed", flush=True); sys.exit(4)
signal.signal(signal.SIGINT, stopped)
note("start")
print(f"bgkit: running {target}", flush=True)
time.sleep(seconds)
print("outcome: " + {0: "promoted", 3: "rolled_back"}.get(code, "failed"), flush=True)
note("end")  # after its last output, as bgkit run chains its record after printing the path
sys.exit(code)
"""

MANIFEST = {
    "name": "shop",
    "release": "rel-1",
    "runbook": "alb_weighted",
    "max_parallel": 2,
    "bake_between_waves_seconds": 0.5,
    "targets": [{"name": n} for n in ("a", "b", "c", "d", "e")],
    "waves": [["a"], ["b", "c", "d"], ["e"]],
}


def waves(tmp_path: Path, plan: dict[str, list[float]], monkeypatch, credentials=None, **changes):
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_PLAN", json.dumps(plan))
    monkeypatch.setenv("FAKE_LOG", str(log))
    manifest = parse({**copy.deepcopy(MANIFEST), **changes}, "m.yaml")
    said: list[str] = []
    options = {"credentials": credentials} if credentials else {}
    outcome = run_waves(
        manifest, None, say=said.append, command=[sys.executable, str(fake)], **options
    )
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return outcome, events, said


def test_waves_run_in_order_at_most_max_parallel_at_once_with_a_bake_between(tmp_path, monkeypatch):
    plan = {"a": [0.3, 0], "b": [0.6, 0], "c": [0.3, 0], "d": [0.3, 0], "e": [0.1, 0]}
    outcome, events, said = waves(tmp_path, plan, monkeypatch)
    assert [r.process.returncode for r in outcome.ran] == [0] * 5
    starts = {t: at for t, what, at in events if what == "start"}
    ends = {t: at for t, what, at in events if what == "end"}
    assert ends["a"] < min(starts["b"], starts["c"])  # wave 2 after wave 1
    assert starts["e"] > max(ends["b"], ends["c"], ends["d"])  # wave 3 after all of wave 2
    # b, c at once; d only when one of them ended (max_parallel 2)
    assert starts["d"] >= min(ends["b"], ends["c"])
    running = 0
    for _, what, _ in sorted(events, key=lambda e: e[2]):
        running += 1 if what == "start" else -1
        assert running <= 2
    assert [b["after_wave"] for b in outcome.bakes] == [1, 2]
    assert starts["b"] - ends["a"] >= 0.5  # the bake, measured between the processes
    assert "wave 2: every target promoted" in said and outcome.interrupted == ""


def test_the_first_rollback_stops_the_wave_and_no_later_wave_starts(tmp_path, monkeypatch):
    # c is rolled back while b runs beside it: b is stopped (its release puts blue back),
    # d (waiting for a slot) and wave 3 never start; a, promoted in wave 1, stays promoted.
    plan = {"a": [0.1, 0], "b": [30, 0], "c": [0.5, 3], "d": [0.1, 0], "e": [0.1, 0]}
    started = time.monotonic()
    outcome, events, said = waves(tmp_path, plan, monkeypatch)
    assert time.monotonic() - started < 20  # b did not run its 30 s
    ended = {r.target.name: (r.process.returncode, r.stopped) for r in outcome.ran}
    assert ended == {"a": (0, False), "b": (4, True), "c": (3, False)}
    assert [t for t, what, _ in events if what == "stopped"] == ["b"]
    assert "waves stop: c (wave 2) was rolled back; no later target starts" in said
    assert "[b] stopping it: its release puts blue back" in said
    assert [b["after_wave"] for b in outcome.bakes] == [1]


def test_ctrl_c_stops_the_running_targets_and_the_waves(tmp_path, monkeypatch):
    plan = {"a": [30, 0], "b": [0.1, 0], "c": [0.1, 0], "d": [0.1, 0], "e": [0.1, 0]}
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        outcome, _, said = waves(tmp_path, plan, monkeypatch)
    finally:
        timer.cancel()
    assert outcome.interrupted == "SIGINT"
    assert [(r.target.name, r.process.returncode, r.stopped) for r in outcome.ran] == [
        ("a", 4, True)
    ]
    assert "SIGINT: stopping the waves; running targets put blue back and record it" in said
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_role_that_cannot_be_assumed_fails_its_target_and_stops_the_waves(tmp_path, monkeypatch):
    def credentials(target, manifest):
        if target.name == "c":
            time.sleep(1)  # STS answers; meanwhile b, started before it, is under way
            raise PermissionError("AccessDenied: not authorized to perform sts:AssumeRole")
        return {}

    plan = {n: [0.1, 0] for n in "abcde"} | {"b": [30, 0]}
    outcome, _, said = waves(tmp_path, plan, monkeypatch, credentials=credentials)
    assert outcome.failed_to_start == {
        "c": "its role  could not be assumed: PermissionError: AccessDenied: not authorized to "
        "perform sts:AssumeRole"
    }
    # b had started beside it: stopped; d and wave 3 never start
    assert [(r.target.name, r.process.returncode, r.stopped) for r in outcome.ran] == [
        ("a", 0, False),
        ("b", 4, True),
    ]
    assert any(line.startswith("[c] not started: its role") for line in said)


def test_a_killed_waves_process_starts_nothing_more_and_its_running_targets_finish(
    tmp_path, monkeypatch
):
    """kill -9 of `bgkit waves`: no later target starts; a running target's release goes on to
    its end (its own session, its output to a file: nothing breaks under it)."""
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    log = tmp_path / "log.jsonl"
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(MANIFEST))  # JSON is YAML
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys\nfrom bgkit.waves.manifest import load\nfrom bgkit.waves.runner import "
        f"run_waves\nrun_waves(load({str(manifest)!r}), None, "
        f"command=[sys.executable, {str(fake)!r}])\n"
    )
    plan = {"a": [2.0, 0], "b": [0.1, 0], "c": [0.1, 0], "d": [0.1, 0], "e": [0.1, 0]}
    env = {**os.environ, "FAKE_PLAN": json.dumps(plan), "FAKE_LOG": str(log)}
    waves_process = subprocess.Popen([sys.executable, str(driver)], env=env)
    deadline = time.monotonic() + 60
    while not (log.exists() and '"start"' in log.read_text()):
        assert time.monotonic() < deadline and waves_process.poll() is None
        time.sleep(0.05)
    waves_process.kill()
    waves_process.wait(timeout=10)
    time.sleep(3)  # a's 2 s, and more: b would have started by now
    events = [json.loads(line)[:2] for line in log.read_text().splitlines()]
    assert events == [["a", "start"], ["a", "end"]]


def test_a_ctrl_c_while_a_target_is_being_started_starts_nothing(tmp_path, monkeypatch):
    def credentials(target, manifest):  # the operator presses Ctrl-C while STS answers
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        return {}

    plan = {n: [0.1, 0] for n in "abcde"}
    outcome, events, said = waves(tmp_path, plan, monkeypatch, credentials=credentials)
    assert outcome.interrupted == "SIGINT" and outcome.ran == [] and events == []
    assert "SIGINT: stopping the waves; running targets put blue back and record it" in said
