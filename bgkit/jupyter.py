"""The engineer's side of a release: is a person at this notebook, and who.

Headless or interactive: interactive only if an IPython *kernel* runs this code (a notebook, not
a script or terminal IPython) and the environment does not say headless:

- BGKIT_HEADLESS set to "0": interactive (`bgkit lab` sets it for the kernels it serves, so a
  CI variable inherited by a person's JupyterLab changes nothing);
- BGKIT_HEADLESS set to anything else but "": headless (bgkit's papermill engine and the test
  suite set it for the kernels they start);
- CI="true" (GitHub Actions, GitLab CI and most CI services set it): headless.

A headless run never waits at a gate: nobody would click, and traffic must not stay half-shifted.
"""

from __future__ import annotations

import atexit
import getpass
import os
import socket
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .audit import LAB_KEY  # notebook metadata: prepared by `bgkit lab`, and when sealed
from .record import RECORD_MIME

HEADLESS_ENV = "BGKIT_HEADLESS"


def is_interactive(environ: Mapping[str, str] | None = None) -> bool:
    """True in a notebook kernel that no one said is headless (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    headless = environ.get(HEADLESS_ENV, "")
    if headless not in ("", "0"):
        return False
    if headless == "" and environ.get("CI", "").lower() == "true":
        return False
    return _kernel_running()


def default_who() -> str:
    """The person at the notebook: JupyterHub's user, else the OS user; @ the host."""
    user = os.environ.get("JUPYTERHUB_USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no login name (a container's numeric user): still say where
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _kernel_running() -> bool:
    if "ipykernel" not in sys.modules:  # never imported: no kernel runs this process
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# -- the record of an interactive run ---------------------------------------------------------
#
# A headless run's record is written by papermill's engine, which receives every output of the
# kernel. In JupyterLab the outputs go to the browser, and the browser saves the notebook when it
# likes (or never: a closed tab). So the kernel keeps the record itself: it notes each output it
# publishes, by the cell that asked for it (JupyterLab sends the cell's id with each execution),
# and when a cell has published the record of an ended release it writes the notebook, as the
# frontend last saved its cells, with those outputs, `metadata["bgkit"]` and its hash chain: the
# same record as `bgkit run` writes, whether the tab is open or not.

_OUTPUTS = ("stream", "display_data", "execute_result", "error", "update_display_data")
_NOTED = (*_OUTPUTS, "clear_output", "execute_input")
_ENDED = ("promoted", "rolled_back", "failed")


def begin(runbook: str) -> InteractiveRecord | None:
    """Step 1 of a runbook (bgkit.validate_parameters): in a notebook a person runs, keep the
    record of this kernel's release; refuse, before any AWS call, a notebook that cannot be a
    record (a runbook template, a notebook that is already the record of an ended release)."""
    if not is_interactive():
        return None
    from IPython import get_ipython

    shell = get_ipython()
    current: InteractiveRecord | None = getattr(shell, "_bgkit_record", None)
    if current is not None:
        current.refuse_if_sealed()
        return current
    path = os.environ.get("JPY_SESSION_NAME", "")
    lab = _lab_metadata(path, runbook)
    current = InteractiveRecord(shell, path, lab)
    current.install()
    shell._bgkit_record = current
    return current


def _lab_metadata(path: str, runbook: str) -> dict:
    import nbformat

    from .errors import NotebookError

    howto = (
        f"open a release record of it with `bgkit lab {runbook}` (it prepares one in outputs/, "
        "as `bgkit run` names it, and opens it in JupyterLab), or run it headless with "
        f"`bgkit run {runbook}`"
    )
    if not path or not os.path.isfile(path):
        raise NotebookError(
            "this kernel cannot tell which notebook it runs (the Jupyter server names it in "
            f"JPY_SESSION_NAME), so it cannot keep the release's record: {howto}"
        )
    nb = nbformat.read(path, as_version=4)
    lab = nb.metadata.get(LAB_KEY)
    if not isinstance(lab, dict):
        raise NotebookError(
            f"{path} is not a release record (a runbook template, or a copy of one): a release "
            f"run here would leave no record, and would write its outputs into it; {howto}"
        )
    if "bgkit_chain" in nb.metadata or lab.get("sealed_at"):
        raise NotebookError(_sealed_message(path, runbook))
    return dict(lab)


def _sealed_message(path: str, runbook: str) -> str:
    return (
        f"{path} is already the sealed record of an ended release, and a record is never "
        f"written twice: run `bgkit lab {runbook}` for the next release"
    )


class InteractiveRecord:
    """The outputs of the cells this kernel runs, by cell id, and the record they make."""

    def __init__(self, shell: Any, path: str, lab: dict) -> None:
        self.shell = shell
        self.path = path
        self.lab = lab
        self.sealed: dict | None = None  # where the record went, and its chain
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}  # cell id -> {code, execution_count, outputs, order}
        self._by_message: dict[str, str] = {}  # execute_request msg_id -> cell id
        self._counts: dict[str, int] = {}  # execute_request msg_id -> its execution count
        self._sequence = 0  # the order in which cells ran
        self._displays: dict[str, list[dict]] = {}  # display_id -> the outputs showing it
        self._clear_next: set[str] = set()  # cells whose outputs a clear_output(wait) clears
        self._ended = False  # a cell published the record of an ended release

    def install(self) -> None:
        kernel = self.shell.kernel
        session, send = kernel.session, kernel.session.send

        def send_and_note(stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
            msg = send(stream, msg_or_type, *args, **kwargs)
            if isinstance(msg, dict) and msg.get("msg_type") in _NOTED:
                self._note(msg)
            return msg

        session.send = send_and_note  # one Session publishes every output of this kernel
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        self.shell.events.register("post_run_cell", self._post_run_cell)
        atexit.register(self._at_exit)
        self._earlier_cells()
        parent = kernel.get_parent()  # the cell running now (step 1) began before this hook
        count = len(self.shell.history_manager.input_hist_raw) - 1  # this cell's, as shown
        self._started(parent, count, parent.get("content", {}).get("code"))

    def _earlier_cells(self) -> None:
        """The cells this kernel ran before step 1 (the parameters cells, which print nothing),
        known by their code in IPython's input history."""
        import nbformat

        history = self.shell.history_manager.input_hist_raw  # [""] + each cell's code
        unmatched = [c for c in nbformat.read(self.path, as_version=4).cells if c.get("id")]
        for count, code in enumerate(history[1:-1], start=1):
            cell = next((c for c in unmatched if c.source.strip() == code.strip()), None)
            if cell is not None:
                unmatched.remove(cell)
                self._runs[cell.id] = {
                    "code": code,
                    "execution_count": count,
                    "outputs": [],
                    "order": count,
                }
        self._sequence = len(history)

    def refuse_if_sealed(self) -> None:
        from .errors import NotebookError

        if self.sealed is not None:
            raise NotebookError(_sealed_message(self.path, self.lab.get("runbook", "<runbook>")))

    # -- what the kernel publishes ------------------------------------------------------

    def _pre_run_cell(self, info: Any) -> None:
        parent = self.shell.kernel.get_parent()
        message = parent.get("header", {}).get("msg_id")
        with self._lock:  # execute_input, published before the cell runs, said its count
            count = self._counts.pop(message, None)
        self._started(parent, count, info.raw_cell)

    def _started(self, parent: dict, count: int | None, code: str | None) -> None:
        message = parent.get("header", {}).get("msg_id")
        cell = (parent.get("metadata") or {}).get("cellId") or f"unsaved-{message}"
        if not message:
            return
        with self._lock:
            self._sequence += 1
            self._by_message[message] = cell
            self._runs[cell] = {
                "code": code,
                "execution_count": count,
                "outputs": [],
                "order": self._sequence,
            }
            self._clear_next.discard(cell)

    def _note(self, msg: dict) -> None:
        import nbformat

        kind, content = msg["msg_type"], msg["content"]
        display_id = (content.get("transient") or {}).get("display_id")
        with self._lock:
            if kind == "execute_input":
                self._counts[msg["parent_header"].get("msg_id")] = content["execution_count"]
                return
            if kind == "update_display_data":
                shown = nbformat.v4.output_from_msg(
                    {**msg, "header": {**msg["header"], "msg_type": "display_data"}}
                )
                for output in self._displays.get(display_id, []):
                    output["data"], output["metadata"] = shown["data"], shown["metadata"]
                return
            cell = self._by_message.get(msg.get("parent_header", {}).get("msg_id"))
            run = self._runs.get(cell) if cell else None
            if run is None:  # a widget's callback, a thread's print after its cell: no cell
                return
            outputs = run["outputs"]
            if cell in self._clear_next:
                outputs.clear()
                self._clear_next.discard(cell)
            if kind == "clear_output":
                if content.get("wait"):
                    self._clear_next.add(cell)
                else:
                    outputs.clear()
                return
            last = outputs[-1] if outputs else None
            if kind == "stream" and last is not None and last.get("name") == content["name"]:
                last["text"] += content["text"]
                return
            output = nbformat.v4.output_from_msg(msg)
            outputs.append(output)
            if display_id:
                self._displays.setdefault(display_id, []).append(output)
            record = content.get("data", {}).get(RECORD_MIME)
            if isinstance(record, dict) and record.get("outcome") in _ENDED:
                self._ended = True

    def _post_run_cell(self, result: Any) -> None:
        if self._ended and self.sealed is None:
            self.seal()

    def _at_exit(self) -> None:
        """The kernel shuts down (the notebook closed, the server stopped): a release that ended
        meanwhile (bgkit.release rolls an unfinished one back at exit) is still sealed."""
        if self._ended and self.sealed is None:
            try:
                self.seal()
            except Exception as error:  # at exit, printing is all that is left
                print(f"bgkit: the record could not be written at exit: {error}", file=sys.stderr)

    # -- the record ---------------------------------------------------------------------

    def notebook(self) -> Any:
        """The notebook as the frontend last saved its cells, with this kernel's outputs (cells
        it ran that were never saved come after the cell that ran before them)."""
        import copy

        import nbformat

        nb = nbformat.read(self.path, as_version=4)
        with self._lock:
            runs = copy.deepcopy(self._runs)
        cells, placed = [], set()
        for cell in nb.cells:
            run = runs.get(cell.get("id"))
            if cell.cell_type == "code":
                cell.outputs = run["outputs"] if run else []
                cell.execution_count = run["execution_count"] if run else None
                if run and run["code"] is not None:
                    cell.source = run["code"]  # what ran, if it was edited and not saved
            cells.append(cell)
            if run:
                placed.add(cell.id)
        for cell_id, run in sorted(runs.items(), key=lambda item: item[1]["order"]):
            if cell_id in placed:
                continue
            earlier = [c for c in cells if runs.get(c.get("id"), {}).get("order", 0) < run["order"]]
            at = cells.index(earlier[-1]) + 1 if earlier else len(cells)
            cells.insert(at, _code_cell(run))
        nb.cells = cells
        return nb

    def seal(self) -> dict:
        """Write the record (the notebook, its metadata["bgkit"]) and chain it; say where."""
        from . import audit
        from .params import environment_secrets, scrub
        from .record import attach_record

        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # a cell's last lines reach the IOPub thread, and _note, first
        nb = self.notebook()
        attach_record(nb)
        nb.metadata[LAB_KEY] = {**self.lab, "sealed_at": datetime.now(UTC).isoformat()}
        scrub(nb, environment_secrets())
        folder = os.path.dirname(os.path.abspath(self.path))
        record, chain_root = self.lab.get("record"), self.lab.get("chain") or "."
        if not audit.is_s3(chain_root):
            chain_root = os.path.normpath(os.path.join(folder, chain_root))
        target = record or self.path
        if audit.is_s3(target):
            from .cli import use_s3_records

            use_s3_records(target, self.lab.get("target", "aws"))
        audit.write(nb, target)
        chain = audit.link(target, chain_root)
        if target != self.path:  # the copy open here becomes the record too
            audit.write(audit.read(target), self.path)
        self.sealed = {"record": target, "chain": chain}
        print(
            f"bgkit: this release's record is sealed: {target} (record {chain['sequence']} of "
            f"{chain['target']} in {chain_root}, sha256 {chain['hash'][:16]}…). This line is not in "
            "it. The notebook open here is that record now: File ▸ Reload Notebook from Disk "
            "shows it as written; bgkit refuses to save over it.",
            flush=True,
        )
        return self.sealed


def _code_cell(run: dict) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(run["code"] or "", execution_count=run["execution_count"])
    cell.outputs = run["outputs"]
    cell.metadata["bgkit"] = {"not_saved_in_the_notebook": True}
    return cell
