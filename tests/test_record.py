from datetime import UTC, datetime

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from bgkit.engine import attach_record
from bgkit.record import RECORD_MIME, Record, from_notebook


def make_record(**kw) -> Record:
    record = Record(
        runbook="alb_weighted",
        release="rel-1",
        target="sandbox",
        parameters={"plan": "linear"},
        plan="linear: 25% → promote",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        **kw,
    )
    record.add_event(
        datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), "shift", "step 1: green 25%", green_percent=25
    )
    record.outcome, record.reason = "promoted", "all steps passed"
    record.finished_at = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    record.final_split = {"blue": 0, "green": 100}
    return record


def test_record_fields_and_duration():
    data = make_record(operator="arn:aws:sts::123456789012:user/alice").to_dict()
    assert data["duration_seconds"] == 60.0
    assert data["finished_at"] == "2026-01-01T00:01:00+00:00"
    assert data["events"][0]["green_percent"] == 25
    summary = make_record(operator="me").summary_markdown()
    assert "✓ promoted" in summary and "blue 0%, green 100%" in summary


def test_engine_copies_the_last_record_output_into_metadata():
    first, last = make_record().to_dict(), {**make_record().to_dict(), "outcome": "rolled_back"}
    cell = new_code_cell("release.finish()")
    cell.outputs = [
        new_output("display_data", data={RECORD_MIME: first}),
        new_output("display_data", data={RECORD_MIME: last}),
    ]
    nb = new_notebook(cells=[cell])
    assert attach_record(nb) is True
    assert nb.metadata["bgkit"]["outcome"] == "rolled_back"
    assert (
        from_notebook(nbformat.reads(nbformat.writes(nb), as_version=4))["outcome"] == "rolled_back"
    )


def test_no_record_output_means_no_metadata():
    nb = new_notebook(cells=[new_code_cell("1/0")])
    assert attach_record(nb) is False
    assert "bgkit" not in nb.metadata


def test_runs_through_the_bgkit_engine_use_an_ipc_kernel_in_a_private_folder():
    import os

    from bgkit.engine import IpcKernelManager

    manager = IpcKernelManager(kernel_name="python3")
    assert manager.transport == "ipc"
    folder = os.path.dirname(manager.ip)
    assert os.path.isdir(folder) and os.path.basename(folder).startswith("bgkit-kernel-")
    manager.cleanup_resources()
    assert not os.path.exists(folder)


def test_a_kernel_started_by_bgkit_has_no_tcp_socket_at_all(tmp_path):
    """Issue 6, kernel transport: the kernel's own file descriptors hold no TCP socket
    (listening or not): every channel is a Unix socket in its private folder."""
    import json
    import sys

    import nbformat
    import papermill

    if not sys.platform.startswith("linux"):  # /proc is how the kernel inspects itself
        pytest.fail("this check reads /proc; run it on Linux (CI does)")
    probe = nbformat.v4.new_notebook()
    probe.cells = [
        nbformat.v4.new_code_cell(
            "import json, os\n"
            "from ipykernel import get_connection_info\n"
            "inodes = set()\n"
            "for fd in os.listdir('/proc/self/fd'):\n"
            "    target = os.readlink(f'/proc/self/fd/{fd}') if os.path.exists(f'/proc/self/fd/{fd}') else ''\n"
            "    if target.startswith('socket:['):\n"
            "        inodes.add(target[8:-1])\n"
            "tcp = [line.split()[9] for name in ('tcp', 'tcp6') for line in open(f'/proc/net/{name}').readlines()[1:]]\n"
            "print(json.dumps({'transport': json.loads(get_connection_info())['transport'],\n"
            "                  'sockets': len(inodes), 'tcp': sorted(inodes & set(tcp))}))"
        )
    ]
    source, out = tmp_path / "probe.ipynb", tmp_path / "probe-out.ipynb"
    nbformat.write(probe, str(source))
    papermill.execute_notebook(
        str(source), str(out), engine_name="bgkit", kernel_name="python3", progress_bar=False
    )
    text = nbformat.read(str(out), as_version=4).cells[0].outputs[0]["text"]
    seen = json.loads(text)
    assert seen["transport"] == "ipc"
    assert seen["sockets"] >= 5  # the kernel's channels, all of them Unix sockets
    assert seen["tcp"] == []
