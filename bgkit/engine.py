"""The papermill engine `bgkit`: nbclient execution, plus the record in `metadata["bgkit"]`.

A kernel cannot write its notebook's metadata, so the release emits its record as an
output (MIME type `bgkit.record.RECORD_MIME`) and this engine copies it into the notebook
metadata when execution ends, whether the run succeeded or a cell failed.
"""

from __future__ import annotations

from papermill.engines import NBClientEngine

from .record import RECORD_MIME, from_notebook


class BgkitEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # type: ignore[no-untyped-def]
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


__all__ = ["RECORD_MIME", "BgkitEngine", "attach_record"]
