"""The papermill engine `bgkit`: nbclient execution, plus the record in `metadata["bgkit"]`.

A kernel cannot write its notebook's metadata, so the release emits its record as an
output (MIME type `bgkit.record.RECORD_MIME`) and this engine copies it into the notebook
metadata when execution ends, whether the run succeeded or a cell failed.

papermill loads this module through the `papermill.engine` entry point when it starts, and
the module then also makes this engine papermill's default, so that a plain
`papermill runbooks/<name>.ipynb out.ipynb` records `metadata["bgkit"]` too. For any other
notebook it is exactly nbclient's engine, with the kernel reached over IPC.

Secrets (bgkit.params.is_secret) reach the kernel only through its environment: jupyter_client
starts the kernel with a copy of this process's environment (IpcKernelManager passes no `env`),
so BGKIT_SECRET_<NAME> set by `bgkit run --secret` or by the caller is there for
`validate_parameters` to read. Two safety nets keep a value out of the executed notebook:
a secret given as a notebook parameter (`papermill -p smoke_token ...`) is replaced by
`***redacted***` in the injected-parameters cell and in metadata.papermill before the notebook is
first written (the kernel then refuses it); and every value of a BGKIT_SECRET_* variable (8
characters or more) is replaced in the whole notebook, outputs and metadata, each time it is
saved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.utils import run_sync
from papermill.engines import NBClientEngine

from .jupyter import HEADLESS_ENV
from .notify import RECORD_ENV
from .params import REDACTED, environment_secrets, is_secret, scrub
from .record import RECORD_MIME, attach_record


class IpcKernelManager(AsyncKernelManager):
    """A kernel reached over Unix sockets in a private folder: no TCP port, nothing to eavesdrop
    (and bgkit.kernel closes the one TCP port ipykernel opens by itself).

    nbclient creates it, so nbclient also shuts the kernel down after the run;
    jupyter_client removes the socket files, and the folder goes with the kernel's resources.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._folder = tempfile.mkdtemp(prefix="bgkit-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._folder, "kernel")
        _kernels.add(self)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The Python kernel starts as bgkit.kernel: ipykernel without its TCP pipe port."""
        command = super().format_kernel_cmd(extra_arguments)
        return ["bgkit.kernel" if part == "ipykernel_launcher" else part for part in command]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._folder, ignore_errors=True)

    cleanup_resources = run_sync(_async_cleanup_resources)


_kernels: weakref.WeakSet[IpcKernelManager] = weakref.WeakSet()


class _Cells:
    """Which cell of this process's run the kernel is running (papermill's cell_start and
    cell_complete), and an interrupt waiting for the next one: ipykernel ignores SIGINT between
    cells, so a stop that comes then is sent once the next cell runs."""

    started = 0  # cells started so far
    running: int | None = None  # the index of the cell running, None between cells
    pending = False  # a stop came between cells: interrupt the next one
    finished = False  # the run is over (ended()): its record is being written

    @classmethod
    def reset(cls) -> None:
        cls.started, cls.running, cls.pending, cls.finished = 0, None, False, False

    @classmethod
    def ended(cls) -> None:
        cls.finished = True

    @classmethod
    def start(cls, index: int) -> None:
        cls.started += 1
        cls.running = index
        if cls.pending:  # once the kernel has it: the execute request follows this hook
            threading.Timer(PENDING_DELAY, cls._interrupt_if_running, (index,)).start()

    @classmethod
    def _interrupt_if_running(cls, index: int) -> None:
        if cls.pending and cls.running == index:  # else it ended first: start() tries the next
            cls.pending = False
            interrupt_kernels()

    @classmethod
    def complete(cls) -> None:
        cls.running = None


PENDING_DELAY = 0.3  # seconds after papermill starts a cell before an interrupt waiting for it


def interrupt_kernels() -> int:
    """Interrupt the cell each kernel of this process is running, as Jupyter's stop button does
    (SIGINT to the kernel alone: KeyboardInterrupt in its cell, and the release's guard rolls
    back and records why). Returns how many kernels were interrupted."""
    count = 0
    for manager in list(_kernels):
        process = getattr(manager.provisioner, "process", None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            count += 1
    return count


def on_main_thread() -> bool:
    """Only the main thread of a process can install signal handlers."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def releases_stop_on_signals() -> Iterator[type[_Cells]]:
    """While a headless run executes: Ctrl-C (SIGINT), SIGTERM or SIGHUP (a cancelled CI job,
    `bgkit waves` stopping a target, `kill`, a closed terminal) interrupts the release's kernel
    once, so the release puts blue back, ends `failed` with the reason, and its record is
    written and chained as any other. Without this the run died at once and left no record
    (the kernel, in a session of its own, never saw the signal).

    A second SIGINT (a person insisting) interrupts the rollback too, which the record then
    says. A second SIGTERM or SIGHUP is ignored: GitHub, cancelling a job, sends SIGINT, then
    SIGTERM 7.5 s later, then kills the process tree 2.5 s after that; the rollback goes on
    until then, and what it did not finish is in the lock item for the target's next release.
    Before the kernel runs its first cell, a signal stops the run at once; between two cells
    (ipykernel ignores SIGINT while idle), the next cell is interrupted as it starts; once the
    run has ended (`ended()` on what this yields), signals are ignored while its record is read,
    chained and rendered.
    """
    seen: list[int] = []
    _Cells.reset()
    if not on_main_thread():  # only the main thread can take signals
        yield _Cells
        return

    def stop(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if _Cells.finished:  # the record is being read, chained and rendered: let it be
            _say(f"bgkit: {name} ignored: the release has ended; its record is being written\n")
            return
        if not _Cells.started:  # the kernel is not running a cell yet: nothing to put back
            raise KeyboardInterrupt
        if seen and signum != signal.SIGINT:
            _say(f"bgkit: {name} ignored: the release is already stopping\n")
            return
        again = bool(seen)
        seen.append(signum)
        if _Cells.running is None and not again:  # between cells: the next one is interrupted
            _Cells.pending = True
        else:
            interrupt_kernels()
        _say(
            f"bgkit: {name}: "
            + (
                "interrupted again: the rollback itself stops; the record says where traffic is"
                if again
                else "stopping the release: it puts blue back and writes its record"
            )
            + "\n"
        )

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield _Cells
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _say(text: str) -> None:
    """From a signal handler: one write to stderr (print could re-enter a write it interrupted)."""
    os.write(2, text.encode())


class BgkitEngine(NBClientEngine):
    @classmethod
    def execute_notebook(cls, nb, kernel_name, **kwargs):  # type: ignore[no-untyped-def]
        # Before papermill's first save of the output notebook.
        given = redact_secret_parameters(nb, kernel_name)
        # The kernel inherits this process's environment: where its record will be (for the
        # release's notifications), and that no person is at its gates (bgkit.jupyter).
        context = {RECORD_ENV: str(kwargs.get("output_path") or ""), HEADLESS_ENV: "1"}
        before = {name: os.environ.get(name) for name in context}
        os.environ.update(context)
        try:
            return super().execute_notebook(nb, kernel_name, secret_values=given, **kwargs)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @classmethod
    def execute_managed_notebook(  # type: ignore[no-untyped-def]
        cls, nb_man, kernel_name, secret_values=(), **kwargs
    ):
        if os.name == "posix":
            kwargs.setdefault("kernel_manager_class", IpcKernelManager)
        values = [*secret_values, *environment_secrets()]
        save = nb_man.save

        def save_scrubbed(**save_kwargs):  # type: ignore[no-untyped-def]
            scrub(nb_man.nb, values)
            return save(**save_kwargs)

        nb_man.save = save_scrubbed  # every save: per cell, autosave, and at the end
        cell_start = nb_man.cell_start

        cell_complete = nb_man.cell_complete

        def noting_cell_start(cell, cell_index=None, **start_kwargs):  # type: ignore[no-untyped-def]
            _Cells.start(cell_index)
            return cell_start(cell, cell_index, **start_kwargs)

        def noting_cell_complete(cell, cell_index=None, **complete_kwargs):  # type: ignore[no-untyped-def]
            _Cells.complete()
            return cell_complete(cell, cell_index, **complete_kwargs)

        nb_man.cell_start = noting_cell_start
        nb_man.cell_complete = noting_cell_complete
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        finally:
            attach_record(nb_man.nb)
            scrub(nb_man.nb, values)


def redact_secret_parameters(nb, kernel_name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Replace secret parameters papermill injected (cell and metadata) by REDACTED.

    Returns the values replaced, so that they are searched for in the outputs too.
    """
    parameters = dict(nb.metadata.get("papermill", {}).get("parameters") or {})
    given = {name: value for name, value in parameters.items() if is_secret(name) and value != ""}
    if not given:
        return []
    from papermill.translators import translate_parameters
    from papermill.utils import nb_language

    language = nb_language(nb)
    parameters.update(dict.fromkeys(given, REDACTED))
    nb.metadata.papermill["parameters"] = parameters
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = translate_parameters(kernel_name, language, parameters, "Parameters")
    return [str(value) for value in given.values()]


def _become_default() -> None:
    from papermill.engines import papermill_engines

    papermill_engines.register(None, BgkitEngine)


_become_default()

__all__ = [
    "RECORD_MIME",
    "BgkitEngine",
    "IpcKernelManager",
    "attach_record",
    "interrupt_kernels",
    "redact_secret_parameters",
    "releases_stop_on_signals",
    "scrub",
]
