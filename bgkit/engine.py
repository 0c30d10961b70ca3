"""The papermill engine `bgkit`: nbclient execution, plus the record in `metadata["bgkit"]`.

A kernel cannot write its notebook's metadata, so the release emits its record as an
output (MIME type `bgkit.record.RECORD_MIME`) and this engine copies it into the notebook
metadata when execution ends, whether the run succeeded or a cell failed.

papermill loads this module through the `papermill.engine` entry point when it starts, and
the module then also makes this engine papermill's default, so that a plain
`papermill runbooks/<name>.ipynb out.ipynb` records `metadata["bgkit"]` too. For any other
notebook it is exactly nbclient's engine: without a bgkit record output it changes nothing.
"""

from __future__ import annotations

import os
import tempfile

from papermill.engines import NBClientEngine

from .record import RECORD_MIME, from_notebook


class BgkitEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # type: ignore[no-untyped-def]
        with tempfile.TemporaryDirectory(prefix="bgkit-kernel-") as folder:
            if "km" not in kwargs and os.name == "posix":
                kwargs["km"] = _ipc_kernel_manager(kernel_name, folder)
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            finally:
                attach_record(nb_man.nb)


def _ipc_kernel_manager(kernel_name: str, folder: str):  # type: ignore[no-untyped-def]
    """A kernel reached over Unix sockets in a private folder: no TCP port, nothing to eavesdrop."""
    from jupyter_client.manager import AsyncKernelManager

    return AsyncKernelManager(
        kernel_name=kernel_name, transport="ipc", ip=os.path.join(folder, "kernel")
    )


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

__all__ = ["RECORD_MIME", "BgkitEngine", "attach_record"]
