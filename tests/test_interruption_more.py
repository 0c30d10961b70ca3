"""kill -9 a whole `bgkit run`, and a CodeDeploy release that is resumed: see test_interruption.py
(a file of its own so that pytest-xdist runs it beside that one). The ECS CodeDeploy release
killed at each point and rolled back is in test_interruption_managed.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_interruption import QUICK, alb, alb_split, kill_at, lock_item, next_release, recovered

from bgkit.patterns.ecs_codedeploy import EcsCodeDeploy

__all__ = ["alb"]  # a fixture


@pytest.fixture
def ecs(sandbox):
    scenario = sandbox.provision("ecs_codedeploy", minute_seconds=1.0, request_rate=20)
    p = scenario.parameters
    resources = {k: p[k] for k in EcsCodeDeploy.parameters if k in p}
    namespace = {**resources, **QUICK, "bake_seconds": 5, "smoke_url": p["smoke_url"]}
    yield scenario, resources, namespace
    sandbox.release_scenario(scenario.id)


def test_bgkit_run_killed_mid_shift_then_run_again_rolls_back_and_releases(
    shared_sandbox, alb, tmp_path
):
    """The whole process group of `bgkit run` (papermill and its kernel) is killed at 25 %;
    `bgkit run` again, with the same target, finds the release in its lock item, puts blue
    back, then makes its own release. Both records are notebooks in the output folder."""
    resources, namespace = alb()
    scenarios = set(shared_sandbox._scenarios)  # the killed run's own is never closed by it
    pairs = [
        *(("-p", k, str(v)) for k, v in resources.items()),
        ("-p", "plan", "25,50"), ("-p", "bake_seconds", "1"), ("-p", "min_requests", "5"),
        ("-p", "slow_margin_ms", "25"), ("-p", "smoke_url", namespace["smoke_url"]),
    ]  # fmt: skip
    arguments = [a for pair in pairs for a in pair]
    bgkit_command = [str(Path(sys.executable).with_name("bgkit")), "run", "alb_weighted"]
    # A killed run cannot remove its kernel's IPC socket folder: it goes in a folder of the test's.
    sockets = tempfile.mkdtemp(prefix="bgkit-t-")  # short: a socket path has at most 107 bytes
    first = subprocess.Popen(
        [*bgkit_command, *arguments, "-p", "release", "rel-a", "--quiet",
         "--output", str(tmp_path / "a.ipynb")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "TMPDIR": sockets},
    )  # fmt: skip
    try:  # killed once the listener reads 25 % green: the first step is live
        deadline = time.monotonic() + 120
        while alb_split(shared_sandbox, resources)["green"] != 25:
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        shutil.rmtree(sockets)
        for leaked in set(shared_sandbox._scenarios) - scenarios:  # its load would run on
            shared_sandbox.release_scenario(leaked)
    seen = first.stdout.read()
    assert first.returncode == -signal.SIGKILL, seen
    assert alb_split(shared_sandbox, resources) == {"blue": 75, "green": 25}
    second = subprocess.run(
        [*bgkit_command, *arguments, "-p", "release", "rel-b", "--quiet",
         "--output", str(tmp_path / "b.ipynb")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr  # promoted
    from bgkit.record import load

    record = load(tmp_path / "b.ipynb")
    found, done = recovered(record)
    assert "release rel-a of" in found and "interrupted at step 1 (green 25%)" in found
    assert done.startswith("rolled back release rel-a: blue 100%")
    assert record["outcome"] == "promoted"
    assert alb_split(shared_sandbox, resources) == {"blue": 0, "green": 100}
    assert lock_item(shared_sandbox, resources["listener_arn"]) is None


def test_a_codedeploy_release_killed_at_its_smoke_test_wait_is_resumed_to_the_end(sandbox, ecs):
    """on_interrupted = resume: the next run picks up the dead release's deployment (still in
    READY_WAIT), smoke-tests green, lets CodeDeploy shift while it judges, and promotes; no
    second deployment is created."""
    _, resources, namespace = ecs
    namespace = {**namespace, "release": "rel-m", "on_interrupted": "resume",
                 "deployment_config_name": "CodeDeployDefault.ECSAllAtOnce"}  # fmt: skip
    kill_at(sandbox, "ecs_codedeploy", namespace, r"green is deployed and waits for the smoke test")
    codedeploy = sandbox.session().client("codedeploy")
    group = {
        "applicationName": resources["application_name"],
        "deploymentGroupName": resources["deployment_group_name"],
    }
    (started,) = codedeploy.list_deployments(**group)["deployments"]
    record = next_release(sandbox, "ecs_codedeploy", namespace, through="all")
    assert record["outcome"] == "promoted", record["reason"]
    (found,) = recovered(record)
    assert f"resuming it (on_interrupted): its deployment {started} is Ready" in found
    assert codedeploy.list_deployments(**group)["deployments"] == [started]
    assert (
        codedeploy.get_deployment(deploymentId=started)["deploymentInfo"]["status"] == "Succeeded"
    )
    assert record["final_split"] == {"blue": 0, "green": 100}
