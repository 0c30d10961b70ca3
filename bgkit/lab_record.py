"""The record of a release a person runs in Jupyter, kept by the kernel that runs it.

A headless run's record is written by papermill's engine, which receives every output of the
kernel. In JupyterLab the outputs go to the browser, and the browser saves the notebook when it
likes (or never: a closed tab). So the kernel keeps the record itself:

    step 1 (begin) ─► note each output this kernel publishes, by the cell that asked for it
                      (JupyterLab sends the cell's id with each execution)
    the release publishes its record, ended (bgkit.release: promoted, rolled back, failed)
                   ─► once that cell has run (or at the kernel's exit): seal
    seal ─► the notebook as the frontend last saved its cells, with those outputs,
            metadata["bgkit"], secrets scrubbed ─► written and hash-chained (bgkit.audit)

The same record as `bgkit run` writes, whether the tab is open or not. Only a notebook that
`bgkit lab` prepared (metadata["bgkit_lab"]) can be one; step 1 refuses any other, before any
AWS call. While the release runs, a marker beside the notebook (`.bgkit/<name>.started`) says
that it did, so that `bgkit audit verify` reports a record that a dead kernel never sealed.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from . import audit
from .audit import CHAIN_KEY, LAB_KEY
from .jupyter import is_interactive
from .notify import RECORD_ENV

LAB_SERVER_ENV = "BGKIT_LAB_SERVER"  # set by `bgkit lab` for its server: it guards sealed records
_NOTED = (  # the IOPub messages a record is made of
    "stream",
    "display_data",
    "execute_result",
    "error",
    "update_display_data",
    "clear_output",
    "execute_input",
)
_ENDED = ("promoted", "rolled_back", "failed")
_current: InteractiveRecord | None = None  # this kernel's, from step 1 on


def begin(runbook: str) -> InteractiveRecord | None:
    """Step 1 of a runbook (bgkit.validate_parameters): in a notebook a person runs, keep the
    record of this kernel's release; refuse, before any AWS call, a notebook that cannot be a
    record (a runbook template, a notebook that is already the record of an ended release)."""
    global _current
    if not is_interactive():
        return None
    if _current is not None:
        _current.refuse_if_sealed()
        return _current
    from IPython import get_ipython

    path = os.environ.get("JPY_SESSION_NAME", "")
    _current = InteractiveRecord(get_ipython(), path, _lab_metadata(path, runbook))
    _current.install()
    return _current


def published(record: dict[str, Any]) -> None:
    """The release showed its record (bgkit.release's display): an ended one is sealed once the
    cell that showed it has run. Nothing happens outside a person's notebook."""
    if _current is not None:
        _current.record_published(record)


def _lab_metadata(path: str, runbook: str) -> dict[str, Any]:
    import nbformat

    from .errors import NotebookError

    howto = (
        f"open a release record of it with `bgkit lab {runbook}` (it prepares one in outputs/, "
        "as `bgkit run` names it, and opens it in JupyterLab), or run it headless with "
        f"`bgkit run {runbook}` (another headless runner: set BGKIT_HEADLESS=1)"
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
    if CHAIN_KEY in nb.metadata or lab.get("sealed_at"):
        raise NotebookError(_sealed_message(path, runbook))
    return dict(lab)


def _sealed_message(path: str, runbook: str) -> str:
    return (
        f"{path} is already the sealed record of an ended release, and a record is never "
        f"written twice: run `bgkit lab {runbook}` for the next release"
    )


class InteractiveRecord:
    """The outputs of the cells this kernel runs, by cell id, and the record they make.

    `_note` runs on the thread that publishes (ipykernel's IOPub thread for printed lines), the
    cell hooks on the kernel's main thread: what they share is kept under `_lock`.
    """

    def __init__(self, shell: Any, path: str, lab: dict[str, Any]) -> None:
        self.shell = shell
        self.path = path
        self.lab = lab
        self.record: dict[str, Any] | None = None  # the last one the release published
        self.sealed: dict[str, Any] | None = None  # where the record went, and its chain
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}  # cell id -> {code, execution_count, outputs, order}
        self._by_message: dict[str, str] = {}  # execute_request msg_id -> cell id
        self._counts: dict[str, int] = {}  # execute_request msg_id -> its execution count
        self._sequence = 0  # the order in which cells ran
        self._last: str | None = None  # the cell that ran last
        self._displays: dict[str, list[dict]] = {}  # display_id -> the outputs showing it
        self._clear_next: set[str] = set()  # cells whose outputs a clear_output(wait) clears

    @property
    def location(self) -> str:
        """Where the record goes: the notebook itself, or an s3:// URL."""
        return self.lab.get("record") or self.path

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
        atexit.register(self._at_exit)  # before the release's own: it runs after it
        os.environ[RECORD_ENV] = self.location  # for the release's notifications (bgkit.notify)
        marker = audit.started_marker(self.path)
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(json.dumps({**self.lab, "started_at": datetime.now(UTC).isoformat()}))
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

    def _started(self, parent: dict[str, Any], count: int | None, code: str | None) -> None:
        message = parent.get("header", {}).get("msg_id")
        if not message:
            return
        cell = (parent.get("metadata") or {}).get("cellId") or f"unsaved-{message}"
        with self._lock:
            self._sequence += 1
            self._by_message[message] = cell
            self._runs[cell] = {
                "code": code,
                "execution_count": count,
                "outputs": [],
                "order": self._sequence,
            }
            self._last = cell
            self._clear_next.discard(cell)

    def _note(self, msg: dict[str, Any]) -> None:
        import nbformat

        kind, content = msg["msg_type"], msg["content"]
        parent = (msg.get("parent_header") or {}).get("msg_id")
        display_id = (content.get("transient") or {}).get("display_id")
        with self._lock:
            if kind == "execute_input":
                self._counts[parent] = content["execution_count"]
                return
            if kind == "update_display_data":
                shown = nbformat.v4.output_from_msg(
                    {**msg, "header": {**msg["header"], "msg_type": "display_data"}}
                )
                for output in self._displays.get(display_id, []):
                    output["data"], output["metadata"] = shown["data"], shown["metadata"]
                return
            # No parent: the kernel's exit (a release rolled back then): the last cell's output.
            # A parent that is no cell (a widget's message): not an output of the notebook.
            cell = self._by_message.get(parent) if parent else self._last
            run = self._runs.get(cell) if cell else None
            if run is None:
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

    def record_published(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.record = copy.deepcopy(record)

    def _ended(self) -> bool:
        return self.sealed is None and (self.record or {}).get("outcome") in _ENDED

    def _post_run_cell(self, result: Any) -> None:
        if self._ended():
            self._seal_or_say(exiting=False)

    def _at_exit(self) -> None:
        """The kernel shuts down (the notebook closed, the server stopped): a release that ended
        meanwhile (bgkit.release rolls an unfinished one back at exit) is still sealed."""
        if self._ended():
            self._seal_or_say(exiting=True)

    def _seal_or_say(self, *, exiting: bool) -> None:
        """A record that cannot be written is said under the cell (a hook has no cell to
        fail), or on the kernel's own stderr at its exit; its marker stays, so
        `bgkit audit verify` reports the record as missing."""
        try:
            self.seal(exiting=exiting)
        except Exception as error:
            print(
                f"bgkit: the release ended {self.record['outcome']}, but its record could not be "
                f"written to {self.location}: {type(error).__name__}: {error}. Keep what this "
                "notebook shows (File ▸ Save Notebook As…); `bgkit audit verify` reports the "
                "record as missing.",
                file=_stderr(exiting),
                flush=True,
            )

    # -- the record ---------------------------------------------------------------------

    def notebook(self) -> Any:
        """The notebook as the frontend last saved its cells, with this kernel's outputs (a
        cell it ran that was never saved comes after the cell that ran just before it)."""
        import nbformat

        nb = nbformat.read(self.path, as_version=4)
        with self._lock:
            runs = copy.deepcopy(self._runs)
        cells: list[Any] = []
        order: dict[int, int] = {}  # id() of a cell in `cells` that ran -> its order
        for cell in nb.cells:
            run = runs.pop(cell.get("id"), None)
            if cell.cell_type == "code":
                cell.outputs = run["outputs"] if run else []
                cell.execution_count = run["execution_count"] if run else None
                if run and run["code"] is not None:
                    cell.source = run["code"]  # what ran, if it was edited and not saved
            cells.append(cell)
            if run:
                order[id(cell)] = run["order"]
        for run in sorted(runs.values(), key=lambda run: run["order"]):  # never saved
            earlier = [c for c in cells if order.get(id(c), run["order"]) < run["order"]]
            before = max(earlier, key=lambda c: order[id(c)], default=None)
            cell = _code_cell(run)
            cells.insert(cells.index(before) + 1 if before is not None else len(cells), cell)
            order[id(cell)] = run["order"]
        nb.cells = cells
        return nb

    def seal(self, *, exiting: bool = False) -> dict[str, Any]:
        """Write the record (the notebook, its metadata["bgkit"]) and chain it; say where.
        `exiting`: at the kernel's exit, when its output channel may already be closed."""
        from .params import environment_secrets, scrub
        from .record import attach_record, to_json

        if not exiting:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()  # a cell's last lines reach the IOPub thread, and _note, first
        nb = self.notebook()
        if not attach_record(nb):  # shown at the kernel's exit, under no cell
            nb.metadata["bgkit"] = json.loads(to_json(self.record))
        nb.metadata[LAB_KEY] = {**self.lab, "sealed_at": datetime.now(UTC).isoformat()}
        scrub(nb, environment_secrets())
        chain_root = self.lab.get("chain") or "."
        if not audit.is_s3(chain_root):
            chain_root = os.path.normpath(os.path.join(os.path.dirname(self.path), chain_root))
        target = self.location
        if audit.is_s3(target):
            audit.use_s3(target, self.lab.get("target", "aws"))
        audit.write(nb, target)
        chain = audit.link(target, chain_root)
        if target != self.path:  # the copy open here becomes the record too
            audit.write(audit.read(target), self.path)
        audit.started_marker(self.path).unlink(missing_ok=True)  # the record says it all now
        self.sealed = {"record": target, "chain": chain}
        guard = (
            "bgkit lab refuses to save over it"
            if os.environ.get(LAB_SERVER_ENV)
            else "saving over it from here would break its hash"
        )
        print(
            f"bgkit: this release's record is sealed: {target} (record {chain['sequence']} of "
            f"{chain['target']} in {chain_root}, sha256 {chain['hash'][:16]}…). This line is not in "
            "it. The notebook open here is that record now: File ▸ Reload Notebook from Disk "
            f"shows it as written; {guard}.",
            file=sys.__stderr__ if exiting else sys.stdout,
            flush=True,
        )
        return self.sealed


def _stderr(exiting: bool) -> Any:
    """Where to say what happened: under the cell, or at the kernel's exit (its output channel
    may be closed by then) the process's own stderr, which Jupyter's server logs."""
    return sys.__stderr__ if exiting else sys.stderr


def _code_cell(run: dict[str, Any]) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(run["code"] or "", execution_count=run["execution_count"])
    cell.outputs = run["outputs"]
    cell.metadata["bgkit"] = {"not_saved_in_the_notebook": True}
    return cell


__all__ = ["LAB_SERVER_ENV", "InteractiveRecord", "begin", "published"]
