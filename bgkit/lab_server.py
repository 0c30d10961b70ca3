"""The Jupyter server side of `bgkit lab`: a contents manager that never saves over a record.

When a release ends, its kernel writes the notebook as the sealed record (bgkit.jupyter): its
outputs, `metadata["bgkit"]`, and a hash chain that `bgkit audit verify` checks. The copy open
in the browser has the same cells and outputs but not that metadata, and JupyterLab saves it by
itself every two minutes, or when asked. Saved over the record, it would replace the record by a
notebook that no longer verifies. So a save of a notebook whose file on disk is a sealed record
is refused, saying what to do; everything else is saved as by Jupyter's own manager.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web

from .audit import CHAIN_KEY, LAB_KEY


class RecordsContentsManager(AsyncLargeFileManager):
    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        if model.get("type") == "notebook" and self._is_sealed_record(path):
            raise web.HTTPError(
                409,
                f"{path} is the sealed record of a release (hash-chained; `bgkit audit verify` "
                "checks it), and bgkit never saves over a record. Reload it (File ▸ Reload "
                "Notebook from Disk) to see it as written, or keep your changes under another "
                "name (File ▸ Save Notebook As…).",
            )
        return await super().save(model, path)

    def _is_sealed_record(self, path: str) -> bool:
        os_path = self._get_os_path(path.strip("/"))
        try:
            with open(os_path, encoding="utf-8") as file:
                metadata = json.load(file).get("metadata", {})
        except (OSError, ValueError, AttributeError):
            return False  # no file yet, or not a notebook that bgkit could have sealed
        if not isinstance(metadata, dict):
            return False
        lab = metadata.get(LAB_KEY)  # sealed_at: written, its chain about to be
        return CHAIN_KEY in metadata or (isinstance(lab, dict) and bool(lab.get("sealed_at")))
