"""The kernel that bgkit's engine starts: ipykernel with no TCP socket at all.

With the IPC transport (bgkit.engine.IpcKernelManager), the kernel's five channels are Unix
sockets in a private folder. ipykernel 7 still binds one TCP port on 127.0.0.1 of its own: the
IOPub "pipe" through which forked child processes' print output would reach the notebook
(`IOPubThread(..., pipe=True)` in IPKernelApp.init_iopub, not configurable). Runbooks fork no
Python children that print, so the pipe is turned off here, and the kernel listens on nothing
but its sockets. Output of child processes started with subprocess is unaffected (it goes
through file descriptors, not the pipe).

    python -m bgkit.kernel -f <connection file>     (as `python -m ipykernel_launcher`)
"""

from __future__ import annotations


def main() -> None:
    from ipykernel import iostream
    from ipykernel.kernelapp import launch_new_instance

    original = iostream.IOPubThread.__init__

    def without_pipe(self, socket, pipe=False, session=False):  # type: ignore[no-untyped-def]
        original(self, socket, pipe=False, session=session)

    iostream.IOPubThread.__init__ = without_pipe
    launch_new_instance()


if __name__ == "__main__":
    main()
