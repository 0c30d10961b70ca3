"""The kernel that bgkit's engine starts: ipykernel with no TCP socket at all.

With the IPC transport (bgkit.engine.IpcKernelManager), the kernel's five channels are Unix
sockets in a private folder. ipykernel 7 still binds one TCP port on 127.0.0.1 of its own: the
IOPub "pipe" through which forked child processes' print output would reach the notebook
(`IOPubThread(..., pipe=True)` in IPKernelApp.init_iopub, not configurable). Runbooks fork no
Python children that print, so the pipe is turned off here, and the kernel listens on nothing
but its sockets. Output of child processes started with subprocess is unaffected (it goes
through file descriptors, not the pipe).

Once the kernel has shut down, its exit handlers run (a sandbox's `stop`, a release's own
record of an exit mid-release: bgkit.connect, bgkit.release) and the process ends without the
interpreter's teardown, which after a sandbox release spends about 1.5 s of CPU freeing a heap
that the operating system takes back at once anyway; papermill waits for that exit.

    python -m bgkit.kernel -f <connection file>     (as `python -m ipykernel_launcher`)
"""

from __future__ import annotations

import atexit
import os
import sys


def without_iri_grammar() -> None:
    """Reading a notebook imports nbformat, whose validator imports jsonschema, which compiles
    rfc3987-syntax's IRI grammar (lark) at import when that package is installed (JupyterLab's
    jupyter-events pulls it in): about 1.9 s of CPU in every process that reads a notebook (a
    plan followed, `bgkit run`), against 0.16 s without. Only JSON Schema's "iri" formats use
    it, which nothing bgkit validates checks; jsonschema skips them when the import fails."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def main() -> None:
    without_iri_grammar()  # a release following a plan reads it (bgkit.planning.read_plan)
    from ipykernel import iostream
    from ipykernel.kernelapp import launch_new_instance

    original = iostream.IOPubThread.__init__

    def without_pipe(self, socket, pipe=False, session=False):  # type: ignore[no-untyped-def]
        original(self, socket, pipe=False, session=session)

    iostream.IOPubThread.__init__ = without_pipe
    launch_new_instance()
    # The kernel's loop has ended (a shutdown request): what must run at exit runs now, then
    # the process leaves as it would, without tearing its heap down object by object.
    atexit._run_exitfuncs()
    for stream in (sys.__stdout__, sys.__stderr__):  # the process's own, not the notebook's
        if stream is not None:
            stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
