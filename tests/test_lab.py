"""`bgkit lab`, without a browser: the record notebook it prepares; a kernel driven as JupyterLab
drives it (Run All sends every cell at once, each with its cell id; a click is a widget's comm
message), which waits at the gate, promotes on the click and seals the record itself; what the
kernel keeps of its outputs; and the contents manager that never saves over a sealed record.
The browser itself is in browser_tests/ (make browser-check)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import RUNBOOKS
from jupyter_client.manager import KernelManager

import bgkit
from bgkit import audit, cli, jupyter
from bgkit.audit import LAB_KEY
from bgkit.errors import NotebookError
from bgkit.lab_record import InteractiveRecord

SECRET = "s3cr3t-bearer-token-for-the-smoke-test"


def prepare(tmp_path: Path, *argv: str) -> Path:
    """`bgkit lab --prepare-only` in tmp_path, as a person runs it in their project folder;
    returns the notebook it wrote."""
    before = set(tmp_path.rglob("*.ipynb"))
    with contextlib.chdir(tmp_path):
        assert cli.main(["lab", "alb_weighted", "--prepare-only", *argv]) == 0
    (notebook,) = set(tmp_path.rglob("*.ipynb")) - before
    return notebook


def test_lab_prepares_the_record_as_run_names_it_and_never_writes_the_template(tmp_path, capsys):
    template = (RUNBOOKS / "alb_weighted.ipynb").read_bytes()
    notebook = prepare(tmp_path, "-p", "plan", "canary", "-p", "release", "rel-lab-1")
    assert (RUNBOOKS / "alb_weighted.ipynb").read_bytes() == template
    assert notebook.parent.parent == tmp_path / "outputs"  # outputs/<UTC date>/
    assert notebook.name.startswith("alb_weighted-rel-lab-1-")
    assert f"record notebook: outputs/{notebook.parent.name}/{notebook.name}" in (
        capsys.readouterr().out
    )
    nb = nbformat.read(str(notebook), as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'plan = "canary"' in injected.source and 'release = "rel-lab-1"' in injected.source
    assert nb.metadata.papermill["parameters"] == {"plan": "canary", "release": "rel-lab-1"}
    lab = nb.metadata[LAB_KEY]
    assert (lab["runbook"], lab["release"], lab["target"]) == (
        "alb_weighted",
        "rel-lab-1",
        "sandbox",
    )
    assert lab["chain"] == ".." and lab["record"] is None  # chained in outputs/, written in place
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # a second one of the same release and second is not written over the first
    second = prepare(tmp_path, "-p", "plan", "canary", "-p", "release", "rel-lab-1")
    assert second != notebook and second.name.startswith("alb_weighted-rel-lab-1-")


def test_a_prepared_notebook_is_no_record_until_a_kernel_seals_it(tmp_path):
    notebook = prepare(tmp_path, "-p", "release", "rel-later")
    outputs = str(tmp_path / "outputs")
    assert audit.verify(outputs) == (0, [])  # never run: not a record, and nothing is missing
    (row,) = audit.index(outputs)
    assert (row.release, row.outcome) == ("rel-later", "not run")
    marker = audit.started_marker(str(notebook))  # a kernel ran step 1, then died before the
    marker.parent.mkdir()  # browser saved anything
    marker.write_text("{}")
    count, (problem,) = audit.verify(outputs)
    assert count == 1 and "run in Jupyter but never sealed" in problem.what
    assert audit.index(outputs)[0].outcome == "no record"


def test_lab_refuses_a_secret_as_a_parameter_and_writes_nothing(tmp_path, capsys):
    with contextlib.chdir(tmp_path):
        assert cli.main(["lab", "alb_weighted", "-p", "smoke_token", SECRET]) == cli.EXIT_USAGE
        # nothing would carry a prompted secret to a Jupyter server started elsewhere
        argv = ["lab", "alb_weighted", "--prepare-only", "--secret", "smoke_token"]
        assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "use --secret smoke_token" in err and SECRET not in err
    assert "set BGKIT_SECRET_<NAME> in that server's environment" in err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("notebook", ["template", "sealed", "unnamed"])
def test_a_person_running_a_notebook_that_cannot_be_a_record_is_refused_at_step_1(
    notebook, tmp_path, monkeypatch
):
    """Before any AWS call: nothing would record the release, or the record exists already."""
    monkeypatch.setattr(jupyter, "_kernel_running", lambda: True)
    monkeypatch.setenv("BGKIT_HEADLESS", "0")
    path = {"template": str(RUNBOOKS / "alb_weighted.ipynb"), "unnamed": ""}.get(notebook)
    if notebook == "sealed":
        sealed = nbformat.read(str(prepare(tmp_path)), as_version=4)
        sealed.metadata["bgkit_chain"] = {"sequence": 1}
        path = str(tmp_path / "sealed.ipynb")
        nbformat.write(sealed, path)
    monkeypatch.setenv("JPY_SESSION_NAME", path)
    says = {
        "template": "is not a release record (a runbook template",
        "sealed": "is already the sealed record of an ended release",
        "unnamed": "cannot tell which notebook it runs",
    }[notebook]
    with pytest.raises(NotebookError, match=r"(?s)" + re.escape(says) + ".*bgkit lab alb_weighted"):
        bgkit.validate_parameters("alb_weighted", {})


# -- what the kernel keeps of its outputs --------------------------------------------------------


def message(kind: str, parent: str, **content) -> dict:
    return {
        "msg_type": kind,
        "header": {"msg_type": kind, "msg_id": f"{kind}-{time.monotonic_ns()}"},
        "parent_header": {"msg_id": parent},
        "content": content,
    }


def test_the_kernel_keeps_each_cells_outputs_as_the_frontend_shows_them(tmp_path):
    nb = nbformat.v4.new_notebook()
    first, second = nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("print('x')")
    third = nbformat.v4.new_code_cell("never run")
    nb.cells = [nbformat.v4.new_markdown_cell("# runbook"), first, second, third]
    nb.metadata[LAB_KEY] = {"runbook": "alb_weighted", "chain": "."}
    path = tmp_path / "record.ipynb"
    nbformat.write(nb, str(path))
    shell = SimpleNamespace(history_manager=SimpleNamespace(input_hist_raw=[""]))
    kept = InteractiveRecord(shell, str(path), nb.metadata[LAB_KEY])
    run = {"req-1": first.id, "req-3": "added-in-the-browser", "req-2": second.id}
    for count, (request, cell) in enumerate(run.items(), start=1):
        kept._note(message("execute_input", request, code="", execution_count=count))
        kept._counts.pop(request)  # as _pre_run_cell takes it
        kept._started({"header": {"msg_id": request}, "metadata": {"cellId": cell}}, count, None)
    kept._runs[second.id]["code"] = "print('edited, then run')"
    stream = {"name": "stdout"}
    kept._note(message("stream", "req-2", text="one ", **stream))
    kept._note(message("stream", "req-2", text="line\n", **stream))  # one output, as shown
    shown = {"data": {"text/plain": "step 1"}, "metadata": {}, "transient": {"display_id": "p"}}
    kept._note(message("display_data", "req-3", **shown))
    kept._note(message("clear_output", "req-1", wait=True))
    kept._note(message("stream", "req-1", text="after the clear\n", **stream))
    later = {
        "data": {"text/plain": "step 2 of 2"},
        "metadata": {},
        "transient": {"display_id": "p"},
    }
    kept._note(message("update_display_data", "req-2", **later))
    kept._note(message("stream", "unknown-request", text="a widget callback's\n", **stream))
    cells = kept.notebook().cells
    # the cell added in the browser and run second stands after the first, not at the end
    assert [c.source for c in cells] == [
        "# runbook", "a = 1", "", "print('edited, then run')", "never run"
    ]  # fmt: skip
    assert [c.execution_count for c in cells[1:]] == [1, 2, 3, None]
    assert cells[1].outputs == [
        nbformat.v4.new_output("stream", name="stdout", text="after the clear\n")
    ]
    assert cells[2].metadata["bgkit"] == {"not_saved_in_the_notebook": True}
    assert cells[2].outputs[0].data == {"text/plain": "step 2 of 2"}  # updated in place
    assert cells[3].outputs[0].text == "one line\n"  # one stream output, as shown
    assert cells[4].outputs == []


# -- a kernel driven as JupyterLab drives it -----------------------------------------------------


@pytest.fixture
def lab_kernel(shared_sandbox, tmp_path):
    """Start a kernel for a prepared record as JupyterLab's server starts one: in the notebook's
    folder, told its path (JPY_SESSION_NAME), with a person at it; over Unix sockets. What it
    prints outside cells goes to `lab_kernel.log`."""
    kernels: list[tuple[KernelManager, object]] = []
    folder = Path(tempfile.mkdtemp(prefix="bgkit-lab-test-"))

    def start(notebook: Path):
        env = {
            **os.environ,
            "JPY_SESSION_NAME": str(notebook),
            "BGKIT_HEADLESS": "0",
            "JUPYTERHUB_USER": "alice",
            "BGKIT_SECRET_SMOKE_TOKEN": SECRET,
        }
        env.pop("CI", None)
        manager = KernelManager(kernel_name="python3", transport="ipc", ip=f"{folder}/kernel")
        log = logs.enter_context(start.log.open("a"))
        manager.start_kernel(env=env, cwd=str(notebook.parent), stdout=log, stderr=log)
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        kernels.append((manager, client))
        return client

    start.log = folder / "kernel.log"
    with contextlib.ExitStack() as logs:
        yield start
        for manager, client in kernels:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    shutil.rmtree(folder, ignore_errors=True)


def run_all(client, notebook: Path, typed: tuple[int, str]) -> list[str]:
    """Send every code cell at once, as JupyterLab's Run All does, and `typed` = (after which
    code cell, code): a cell typed in the browser and never saved. Returns the request ids."""
    nb = nbformat.read(str(notebook), as_version=4)
    cells = [(c.id, c.source) for c in nb.cells if c.cell_type == "code"]
    cells.insert(typed[0] + 1, ("typed-in-the-browser", typed[1]))
    ids = []
    for cell_id, code in cells:
        request = client.session.msg(
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": True},
            metadata={"cellId": cell_id},
        )  # fmt: skip
        client.shell_channel.send(request)
        ids.append(request["header"]["msg_id"])
    return ids


def test_run_all_waits_at_the_gate_and_one_click_seals_a_promoted_chained_record(
    lab_kernel, shared_sandbox, tmp_path
):
    notebook = prepare(tmp_path, "-p", "plan", "50", "-p", "release", "rel-clicked",
                       "-p", "slow_margin_ms", "25")  # fmt: skip
    client = lab_kernel(notebook)
    # after step 1 (the third code cell), a cell the person typed shows the secret it was given
    typed = "import os\nprint('token:', os.environ['BGKIT_SECRET_SMOKE_TOKEN'])"
    requests = run_all(client, notebook, (2, typed))
    replies: dict[str, str] = {}
    at_the_click: set[str] | None = None
    deadline = time.monotonic() + 240
    while len(replies) < len(requests) and time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            msg = None
        state = (msg or {}).get("content", {}).get("data", {}).get("state", {})
        if msg and msg["msg_type"] == "comm_open" and state.get("description") == "Approve":
            time.sleep(1.0)  # the gate's cell waits; nothing after it runs meanwhile
            drain(client, replies)
            at_the_click = set(replies)
            click = {"method": "custom", "content": {"event": "click"}}
            client.shell_channel.send(
                client.session.msg(
                    "comm_msg", {"comm_id": msg["content"]["comm_id"], "data": click}
                )
            )
        drain(client, replies)
    assert at_the_click is not None, "no Approve button was shown"
    assert set(replies.values()) == {"ok"} and len(replies) == len(requests)
    gate_cell = len(requests) - 3  # the gate, promote and record cells are the last three
    assert set(requests[:gate_cell]) <= at_the_click  # Run All ran up to the gate...
    assert not at_the_click & set(requests[gate_cell:])  # ...and stopped there until the click

    nb = nbformat.read(str(notebook), as_version=4)  # sealed by the kernel, not by a browser
    record = nb.metadata["bgkit"]
    assert (record["outcome"], record["mode"]) == ("promoted", "interactive")
    decided = [e for e in record["events"] if e["kind"] == "gate" and e.get("decision")]
    assert [(e["decision"], e["mode"]) for e in decided] == [("approve", "interactive")]
    assert decided[0]["by"].startswith("alice@")
    assert record["parameters"]["smoke_token"] == "***redacted***"
    assert SECRET not in notebook.read_text()  # scrubbed from every output, as bgkit run's
    step_1 = next(i for i, c in enumerate(nb.cells) if "validate_parameters" in c.source)
    shown = nb.cells[step_1 + 1]  # kept after the cell run before it, though never saved
    assert shown.source == typed and shown.outputs[0].text == "token: ***redacted***\n"
    assert not audit.started_marker(str(notebook)).exists()  # sealed: the record says it all
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == list(
        range(1, len(requests) + 1)
    )
    gate = next(c for c in nb.cells if "promotion_gate" in c.source)
    assert any("**Approved** by alice@" in o.get("data", {}).get("text/markdown", "")
               for o in gate.outputs)  # fmt: skip
    assert audit.verify(str(tmp_path / "outputs")) == (1, [])
    (row,) = audit.index(str(tmp_path / "outputs"))
    assert (row.mode, row.outcome, row.decided_by) == ("interactive", "promoted", decided[0]["by"])
    assert listener_weights(shared_sandbox, record) == {"blue": 0, "green": 100}


def listener_weights(sandbox, record: dict) -> dict[str, int]:
    """The release's listener as boto3 reads it back: each colour's weight."""
    parameters = record["parameters"]
    (listener,) = (
        sandbox.session()
        .client("elbv2")
        .describe_listeners(ListenerArns=[parameters["listener_arn"]])["Listeners"]
    )
    groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in groups}
    return {
        "blue": weights[parameters["blue_target_group_arn"]],
        "green": weights[parameters["green_target_group_arn"]],
    }


def drain(client, replies: dict[str, str]) -> None:
    while True:
        try:
            reply = client.get_shell_msg(timeout=0.01)
        except queue.Empty:
            return
        if reply["msg_type"] == "execute_reply":
            replies[reply["parent_header"]["msg_id"]] = reply["content"]["status"]


# -- the contents manager of bgkit lab's server --------------------------------------------------


def test_the_lab_server_never_saves_over_a_sealed_record(tmp_path):
    from tornado.web import HTTPError

    from bgkit.lab_server import RecordsContentsManager

    manager = RecordsContentsManager(root_dir=str(tmp_path))
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, str(tmp_path / "open.ipynb"))
    sealed = nbformat.v4.new_notebook()
    sealed.metadata["bgkit_chain"] = {"sequence": 1, "hash": "ab"}
    nbformat.write(sealed, str(tmp_path / "record.ipynb"))
    model = {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}
    asyncio.run(manager.save(model, "open.ipynb"))  # an ordinary notebook: saved
    with pytest.raises(HTTPError) as refused:
        asyncio.run(manager.save(model, "record.ipynb"))
    assert refused.value.status_code == 409
    assert "sealed record of a release" in refused.value.log_message
    assert "bgkit_chain" in (tmp_path / "record.ipynb").read_text()  # unchanged


def test_a_kernel_shut_down_at_the_gate_rolls_back_and_seals_its_record(
    lab_kernel, shared_sandbox, tmp_path
):
    """The notebook closed, or JupyterLab stopped, while the gate waits: the kernel's exit puts
    blue back (bgkit.release) and seals the record (bgkit.lab_record) before it ends."""
    notebook = prepare(tmp_path, "-p", "plan", "50", "-p", "release", "rel-closed",
                       "-p", "slow_margin_ms", "25")  # fmt: skip
    client = lab_kernel(notebook)
    run_all(client, notebook, (2, "pass"))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        state = msg.get("content", {}).get("data", {}).get("state", {})
        if msg["msg_type"] == "comm_open" and state.get("description") == "Approve":
            break
    else:
        raise AssertionError("no Approve button was shown")
    client.shutdown()  # as JupyterLab's server asks a kernel to end
    deadline = time.monotonic() + 120
    while "bgkit_chain" not in notebook.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    nb = nbformat.read(str(notebook), as_version=4)
    assert "bgkit" in nb.metadata, (
        f"not sealed; the kernel said: {lab_kernel.log.read_text()[-3000:]}"
    )
    record = nb.metadata["bgkit"]
    assert record["outcome"] == "rolled_back"
    assert "the kernel exited in state 'shifted'" in record["reason"]
    assert audit.verify(str(tmp_path / "outputs")) == (1, [])
    assert listener_weights(shared_sandbox, record) == {"blue": 100, "green": 0}
