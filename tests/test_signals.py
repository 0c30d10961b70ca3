"""Ctrl-C or SIGTERM to `bgkit run` mid-release (a person at the terminal, a cancelled CI job,
`bgkit waves` stopping a target): the release puts blue back and its record is written and
chained, exit 4. GitHub sends SIGINT and then SIGTERM when it cancels a job: the second signal
must not cut the rollback short."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from bgkit import audit
from bgkit.record import from_notebook


def test_sigint_then_sigterm_mid_shift_rolls_back_and_writes_the_record(shared_sandbox, tmp_path):
    command = [
        sys.executable, "-m", "bgkit.cli", "run", "alb_weighted", "-p", "release", "rel-sig",
        "-p", "plan", "25,50", "-p", "bake_seconds", "5", "-p", "slow_margin_ms", "25",
        "--log-output", "--quiet", "--output", str(tmp_path) + "/",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # as `bgkit waves` and a CI runner start it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if "step 1: green 25%" in line:  # the weights have changed: mid-shift
                break
        else:
            raise AssertionError("the release never shifted:\n" + "".join(seen))
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # as GitHub does when cancelling: ignored
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    out = "".join(seen) + rest
    assert process.returncode == 4, out
    assert "bgkit: SIGINT: stopping the release: it puts blue back and writes its record" in out
    assert "bgkit: SIGTERM ignored: the release is already stopping" in out
    (record_path,) = re.findall(r"^record: (.+\.ipynb)$", out, re.M)  # bgkit run's last lines
    nb = audit.read(record_path)
    record = from_notebook(nb)
    assert record["outcome"] == "failed"
    assert "interrupted: KeyboardInterrupt" in record["reason"], record["reason"]
    assert record["final_split"] == {"blue": 100, "green": 0}  # read back from the sandbox
    rollbacks = [e["message"] for e in record["events"] if e["kind"] == "rollback"]
    assert rollbacks, record["events"]
    assert nb.metadata["bgkit_chain"]["sequence"] == 1  # written and chained like any record


def test_a_signal_between_two_cells_interrupts_the_next_cell_once_it_runs(monkeypatch):
    """ipykernel ignores SIGINT between cells (while papermill saves the notebook, say): the
    stop waits for the next cell and interrupts it then, once; it is never dropped."""
    from bgkit import engine

    interrupts: list[int | None] = []
    monkeypatch.setattr(
        engine, "interrupt_kernels", lambda: interrupts.append(engine._Cells.running) or 1
    )
    with engine.releases_stop_on_signals():
        engine._Cells.start(3)
        engine._Cells.complete()  # between cells 3 and 4
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the handler has run
        assert interrupts == [] and engine._Cells.pending
        engine._Cells.start(4)
        time.sleep(engine.PENDING_DELAY + 0.3)
        assert interrupts == [4]  # the next cell, once it ran
        engine._Cells.complete()
        engine._Cells.start(5)
        time.sleep(engine.PENDING_DELAY + 0.3)
        assert interrupts == [4]  # not again
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM: ignored
        time.sleep(0.1)
        assert interrupts == [4]
        engine._Cells.complete()
        engine._Cells.ended()  # the record is being chained: even a Ctrl-C waits for it
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert interrupts == [4]
