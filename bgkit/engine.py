"""The papermill engine `bgkit`: nbclient execution, plus the record in `metadata["bgkit"]`.

A kernel cannot write its notebook's metadata, so the release emits its record as an
output (MIME type `bgkit.record.RECORD_MIME`) and this engine copies it into the notebook
metadata when execution ends, whether the run succeeded or a cell failed.

papermill loads this module through the `papermill.engine` entry point when it starts, and
the module then also makes this engine papermill's default, so that a plain
`papermill runbooks/<name>.ipynb out.ipynb` records `metadata["bgkit"]` too. For any other
notebook it is exactly nbclient's engine, with the kernel reached over IPC.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.utils import run_sync
from papermill.engines import NBClientEngine

from .record import RECORD_MIME, from_notebook


class IpcKernelManager(AsyncKernelManager):
    """A kernel reached over Unix sockets in a private folder: no TCP port, nothing to eavesdrop.

    nbclient creates it, so nbclient also shuts the kernel down after the run;
    jupyter_client removes the socket files, and the folder goes with the kernel's resources.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._folder = tempfile.mkdtemp(prefix="bgkit-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._folder, "kernel")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._folder, ignore_errors=True)

    cleanup_resources = run_sync(_async_cleanup_resources)


class BgkitEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # type: ignore[no-untyped-def]
        if os.name == "posix":
            kwargs.setdefault("kernel_manager_class", IpcKernelManager)
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        finally:
            attach_record(nb_man.nb)


def attach_record(nb) -> bool:  # type: ignore[no-untyped-def]
    """Copy the last record output into nb.metadata["bgkit"]. True if there was one."""
    nb.metadata.pop("bgkit", None)
    record = from_notebook(nb)
    if record is None:
        return False
    nb.metadata["bgkit"] = record
    return True


def _become_default() -> None:
    from papermill.engines import papermill_engines

    papermill_engines.register(None, BgkitEngine)


_become_default()

__all__ = ["RECORD_MIME", "BgkitEngine", "IpcKernelManager", "attach_record"]
