"""Shared fixtures: one sandbox per test session, and running a runbook through papermill."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from bgkit.connect import SANDBOX_URL_ENV
from bgkit.sandbox import Sandbox
from bgkit.sandbox.shared import STATE_DIR_ENV

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"

# A loaded CI machine (six workers, each running sandboxes, on two cores) delays a request by
# tens of milliseconds now and then, and not always blue's as often as green's. Tests that check
# something else than latency count a request as slow only 25 ms above blue's p90; the latency
# tests keep the runbooks' 10 ms.
STEADY = {"slow_margin_ms": 25.0}


@pytest.fixture(scope="session", autouse=True)
def _own_state_dir():
    """Never attach to a developer's `bgkit sandbox up`: the suite's shared-sandbox state lives
    in a folder of its own (kernels inherit the environment), removed at the end."""
    folder = tempfile.mkdtemp(prefix="bgkit-test-state-")
    before = os.environ.get(STATE_DIR_ENV)
    os.environ[STATE_DIR_ENV] = folder
    yield folder
    if before is None:
        os.environ.pop(STATE_DIR_ENV, None)
    else:
        os.environ[STATE_DIR_ENV] = before
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox():
    """A sandbox in this process; runbook kernels reach it through BGKIT_SANDBOX_URL."""
    box = Sandbox().start()
    box.admin_url = box.serve_admin()
    yield box
    box.stop()


@pytest.fixture
def shared_sandbox(sandbox, monkeypatch):
    monkeypatch.setenv(SANDBOX_URL_ENV, sandbox.admin_url)
    return sandbox


class Run:
    def __init__(self, path: Path, nb: Any, error: PapermillExecutionError | None) -> None:
        self.path = path
        self.nb = nb
        self.error = error
        self.record = nb.metadata.get("bgkit")

    def outputs_text(self) -> str:
        return nbformat.writes(self.nb)


def run_runbook(
    tmp_path: Path, name: str, *, engine: str | None = "bgkit", **parameters: Any
) -> Run:
    out = tmp_path / f"{name}-out.ipynb"
    error = None
    try:
        papermill.execute_notebook(
            str(RUNBOOKS / f"{name}.ipynb"),
            str(out),
            parameters=parameters,
            engine_name=engine,
            progress_bar=False,
            cwd=str(RUNBOOKS),
        )
    except PapermillExecutionError as exc:
        error = exc
    return Run(out, nbformat.read(str(out), as_version=4), error)


def assert_refused(run: Run, error: str, parameter: str, *, step: str = "deploy") -> None:
    """The run failed with `error` naming `parameter`, before any `step` event (no change)."""
    assert run.error is not None
    assert run.error.ename == error
    assert run.error.evalue.startswith(f"{parameter}: ")
    if run.record:  # preflight failures are recorded
        assert run.record["outcome"] == "failed"
        assert not [e for e in run.record["events"] if e["kind"] == step]


def deployments_of(sandbox, record: dict) -> list[str]:
    """The CodeDeploy deployments of the group a runbook's record names."""
    p = record["parameters"]
    return (
        sandbox.session()
        .client("codedeploy")
        .list_deployments(
            applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
        )["deployments"]
    )


class Capture:
    """A display for Release that drops everything but keeps each emitted record."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def record(self, record, to_json) -> None:
        self.records.append(record)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@pytest.fixture
def no_leaked_threads():
    """Fails a test that leaves one of bgkit's threads running (servers, loops, load, engines:
    all are named bgkit-*; per-connection handler threads end with their keep-alive timeout)."""
    before = set(threading.enumerate())
    yield
    extra: list[threading.Thread] = []
    for _ in range(50):
        extra = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith("bgkit-")
        ]
        if not extra:
            return
        threading.Event().wait(0.1)
    pytest.fail(f"threads left running: {[t.name for t in extra]}")
