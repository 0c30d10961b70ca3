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
from bgkit.planning import BOOKKEEPING
from bgkit.sandbox import Sandbox
from bgkit.sandbox.shared import STATE_DIR_ENV

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"

# A loaded CI machine (six workers, each running sandboxes, on two cores) delays a request by
# tens of milliseconds now and then, and not always blue's as often as green's. Tests that check
# something else than latency count a request as slow only 25 ms above blue's p90; the latency
# tests keep the runbooks' 10 ms.
STEADY = {"slow_margin_ms": 25.0}


# The longest test modules (their runbooks' releases, with bakes) first in collection order.
# pytest-xdist's --dist loadfile then reorders files by their number of tests (its default
# --loadscope-reorder), so this order only breaks its ties. Measured at b70734c on a clean
# clone: handing files out in this order (--no-loadscope-reorder) took 1106 s against 690 s,
# the kill matrices all running at once and starving the sandboxes of CPU.
# measured with --durations=0 at -n 5 at 69ed455 (seconds of a module under load, 2 cores)
LONGEST_FIRST = (
    "test_interruption_groups.py",  # 244
    "test_interruption_managed.py",  # 182
    "test_interruption_matrix.py",  # 179
    "test_interruption.py",  # 141
    "test_feature_flag_runbook.py",  # 134
    "test_asg_swap.py",  # 133
    "test_ecs_codedeploy_runbook.py",  # 124
    "test_ecs_native_runbook.py",  # 117
    "test_app_runner.py",  # 111
    "test_alb_runbook.py",  # 110
    "test_interruption_flags.py",  # 101
    "test_interruption_ecs_native.py",  # 92
    "test_schema.py",  # 89
    "test_lambda_codedeploy.py",  # 88
    "test_sandbox_codedeploy.py",  # 80
    "test_route53_weighted.py",  # 78
    "test_interruption_flags_strategy.py",  # 70
    "ecs_native.ipynb",  # 70
    "test_sandbox_ecs_native.py",  # 67
    "test_apigw_canary.py",  # 67
    "test_lab.py",  # 53
    "test_interruption_more.py",  # 51
    "test_bad_input.py",  # 49
    "test_html.py",  # 48
    "test_schema_release.py",  # 47
    "route53_weighted.ipynb",  # 42
    "test_plan.py",  # 40
    "asg_swap.ipynb",  # 39
    "ecs_codedeploy.ipynb",  # 37
    "lambda_codedeploy.ipynb",  # 37
    "test_sandbox.py",  # 33
    "test_workflow.py",  # 33
    "feature_flag.ipynb",  # 33
    "test_aws_faults.py",  # 33
    "test_sandbox_apprunner.py",  # 32
    "app_runner.ipynb",  # 30
    "apigw_canary.ipynb",  # 26
    "test_secrets.py",  # 25
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order in a file kept


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
def calls(sandbox):
    """The sandbox's call log, with no fault left behind by a test."""
    yield sandbox.calls
    sandbox.calls.clear_faults()


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
        self.changes: list[str] = []  # planned_run: the run's changes in the sandbox's log
        self.plan: dict[str, Any] = {}  # planned_run: the plan's record

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


def planned_run(
    sandbox: Sandbox, tmp_path: Path, name: str, *, engine: str | None = "bgkit", **parameters: Any
) -> tuple[Run, Run]:
    """`bgkit plan`, then `bgkit run --plan`, as a reviewer's release goes: the release planned
    (dry_run, its cells in this process: `plan_cells`) in the shared sandbox, the plan checked
    to have changed nothing (the sandbox's log of the runbook's calls), then run following it
    (follow_plan, by papermill with `engine`) on the plan's scenario."""
    import uuid

    parameters.setdefault("release", f"rel-{uuid.uuid4().hex[:10]}")
    (tmp_path / "plan").mkdir(exist_ok=True)
    mark = sandbox.calls.mark()
    plan = plan_cells(tmp_path / "plan", name, **parameters)
    assert plan.error is None, plan.error
    assert plan.record["outcome"] == "planned", plan.record["reason"]
    logged = sandbox.calls.calls(mark, runbook=name)
    assert logged and [c.action for c in logged if c.mutating] == []  # read, changed nothing
    mark = sandbox.calls.mark()
    run = run_runbook(tmp_path, name, engine=engine, follow_plan=str(plan.path), **parameters)
    run.changes = [  # what the sandbox's AWS was asked to change, as it logged it
        c.action
        for c in sandbox.calls.calls(mark, runbook=name)
        if c.mutating and not c.action.startswith(BOOKKEEPING)
    ]
    run.plan = plan.record
    return plan, run


def assert_followed(run: Run, path: str) -> None:
    """The release made exactly the calls of the plan's `path` ("promoted", "rolled back from
    step 1: green 30%"...), in order, as its record says and as the sandbox logged them; and
    it linked the plan by its hash."""
    from bgkit.planning import paths

    followed = run.record["followed_plan"]
    assert followed["followed"] and followed["path"].startswith(path), followed
    assert len(followed["hash"]) == 64
    planned = paths(run.plan["planned"])[followed["path"]]
    assert run.changes == [call["IAM action"] for call in planned]


def assert_refused(run: Run, error: str, parameter: str, *, step: str = "deploy") -> None:
    """The run failed with `error` naming `parameter`, before any `step` event (no change)."""
    assert run.error is not None
    assert run.error.ename == error
    assert run.error.evalue.startswith(f"{parameter}: ")
    if run.record:  # preflight failures are recorded
        assert run.record["outcome"] == "failed"
        assert not [e for e in run.record["events"] if e["kind"] == step]


def run_cells(tmp_path: Path, name: str, **parameters: Any) -> Run:
    """The runbook's own code cells up to its preflight, run in this process: for a parameter
    set that must be refused before any change, without a kernel's seconds.

    The parameters are injected as papermill injects them (its injected-parameters cell after
    the `parameters` cell); the cells then run in one namespace, as in a kernel. The first
    failing cell ends the run, its exception as a PapermillExecutionError in `.error`; the record
    the release emitted is in `.record` (metadata["bgkit"], as the bgkit engine keeps it), and
    the notebook with it is saved under tmp_path like run_runbook's. A set that passes
    preflight fails the test there: its release is ended unchanged, never run. The connection
    the cells made is closed, so that no scenario's load generator keeps running.
    """
    return _cells_in_process(tmp_path, name, parameters, to_preflight=True)


def plan_cells(tmp_path: Path, name: str, **parameters: Any) -> Run:
    """A plan (dry_run) of the runbook, every cell run in this process as `run_cells` runs them:
    a plan reads and records, and a kernel's start would cost more than the plan itself."""
    return _cells_in_process(tmp_path, name, {**parameters, "dry_run": True}, to_preflight=False)


def _cells_in_process(
    tmp_path: Path, name: str, parameters: dict[str, Any], *, to_preflight: bool
) -> Run:
    import ast
    import asyncio
    import inspect
    import json
    import traceback
    from unittest import mock

    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from bgkit.record import to_json

    nb = load_notebook_node(str(RUNBOOKS / f"{name}.ipynb"))
    if parameters:
        nb = parameterize_notebook(nb, parameters)
    last = len(nb.cells) - 1
    if to_preflight:
        last = next(i for i, c in enumerate(nb.cells) if "release.preflight()" in c.source)
    cells = [(i, c) for i, c in enumerate(nb.cells[: last + 1]) if c.cell_type == "code"]
    display = Capture()  # the cells make their Release without display=: IPython's is replaced
    namespace: dict[str, Any] = {"__name__": "__main__"}
    error = None
    try:
        # nor a plot: a refused release's would wait seconds for metrics only to show them
        with (
            mock.patch("bgkit.release.display.ipython_display", display),
            mock.patch("bgkit.release.Release._figure", lambda release: None),
        ):
            for count, (index, cell) in enumerate(cells, start=1):
                try:  # as a kernel runs a cell: top-level `await` (the gate's) included
                    code = compile(
                        cell.source,
                        f"<{name}.ipynb cell {index}>",
                        "exec",
                        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                    )
                    awaited = eval(code, namespace)
                    if inspect.iscoroutine(awaited):
                        asyncio.run(awaited)
                except Exception as failed:
                    error = PapermillExecutionError(
                        index,
                        count,
                        cell.source,
                        type(failed).__name__,
                        str(failed),
                        traceback.format_exception(failed),
                    )
                    break
            else:
                if to_preflight:
                    namespace["release"].finish(plot=False)  # nothing changed: unlocks
                    raise AssertionError(f"{name} was not refused: {parameters} passed preflight")
    finally:
        connection = namespace.get("connection")
        if connection is not None:
            connection.close()
    if display.records:  # as the bgkit engine reads it from the record's output: JSON
        nb.metadata["bgkit"] = json.loads(to_json(display.records[-1]))
    out = tmp_path / f"{name}-out.ipynb"
    nbformat.write(nb, str(out))
    return Run(out, nb, error)


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


def release_all(release) -> dict:
    """Every step of a release, in the order a runbook's cells run them; the record (no plot)."""
    for step in (
        release.preflight,
        release.deploy,
        release.smoke_test,
        release.shift,
        release.promote,
    ):
        step()
    return release.finish(plot=False)


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


# -- least privilege: the IAM policy of a runbook against what its releases called -----------


class RunbookCalls:
    """What the releases of one test module asked the sandbox (bgkit.sandbox.calls), and the
    outcomes of the runbooks the module ran through papermill (their records, under basetemp)."""

    def __init__(self, sandbox: Sandbox, notebooks: Path) -> None:
        self._log = sandbox.calls
        self._since = self._log.mark()
        self._notebooks = notebooks
        self._before = set(notebooks.rglob("*.ipynb"))

    def actions(self, runbook: str) -> set[str]:
        return {c.action for c in self._log.calls(since=self._since, runbook=runbook)}

    def outcomes(self, runbook: str) -> set[str]:
        from bgkit.record import load

        records = (load(p) for p in set(self._notebooks.rglob("*.ipynb")) - self._before)
        return {r.get("outcome") for r in records if r and r.get("runbook") == runbook}

    def assert_least_privilege(self, runbook: str) -> None:
        """`bgkit iam-policy <runbook>` allows exactly what the module's releases called:
        nothing they called is missing, nothing they never called is allowed. A promotion and a
        rollback must be among the module's runs, so that both ends of a release are in the log."""
        from bgkit import iam, patterns

        outcomes = self.outcomes(runbook)
        if not {"promoted", "rolled_back"} <= outcomes:
            pytest.fail(
                f"the module's {runbook} runs ended {sorted(outcomes) or 'nowhere'}: the IAM "
                "check needs a promotion and a rollback among them; run the whole module (no -k, "
                "no single test) for it"
            )
        allowed, called = set(iam.called_actions(runbook)), self.actions(runbook)
        pattern = patterns.get(runbook)
        where = f"{pattern.__qualname__}.iam_actions ({pattern.__module__}) or bgkit.iam"
        assert allowed == called, (
            f"{runbook}: called but not allowed (declare them in {where}): "
            f"{sorted(called - allowed)}; allowed but never called in these runs (remove them, "
            f"or make a test exercise them): {sorted(allowed - called)}"
        )


@pytest.fixture(scope="module")
def iam_calls(sandbox, tmp_path_factory) -> RunbookCalls:
    return RunbookCalls(sandbox, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module", autouse=True)
def _iam_calls_from_the_modules_first_test(request):
    """A module-scoped fixture starts with the first test that asks for it; a module's
    least-privilege test is its last, so the call log is marked here, before its first test."""
    module = request.module
    if any(
        "iam_calls" in item.fixturenames
        for item in request.session.items
        if getattr(item, "module", None) is module
    ):
        request.getfixturevalue("iam_calls")
