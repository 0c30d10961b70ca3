"""The release record: what happened, when, why, and where traffic ended.

The record is shown in the executed notebook as readable cells (summary, timeline,
verdicts, plots) and emitted once more as machine-readable JSON under the MIME type
`RECORD_MIME`. The papermill engine `bgkit` (used by `bgkit run`) copies that JSON into
the notebook's `metadata["bgkit"]`; `load()` reads it back from either place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .params import redact

if TYPE_CHECKING:  # nbformat's import (jsonschema's) costs a kernel about a second: on use only
    import nbformat

RECORD_MIME = "application/vnd.bgkit.record+json"
OUTCOMES = ("promoted", "rolled_back", "failed", "planned")
# Symbols that text fonts have (DejaVu, Liberation, Arial...): emoji ones draw as empty boxes
# where no emoji font is installed, as on most servers a reviewer's page is read.
OUTCOME_TEXT = {
    "promoted": "✓ promoted",
    "rolled_back": "↩ rolled back",
    "failed": "✗ failed",
    "planned": "planned: nothing was changed",
}


@dataclass
class Record:
    runbook: str
    release: str
    target: str
    parameters: dict[str, Any]
    plan: str
    started_at: datetime
    operator: str | None = None
    mode: str = "headless"  # "interactive": a person at a notebook (bgkit.jupyter); gates wait
    target_id: str | None = None
    outcome: str | None = None
    reason: str | None = None
    finished_at: datetime | None = None
    final_split: dict[str, int] | None = None
    final_state: dict[str, Any] | None = None
    smoke: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None  # the schema step: green's migrations against blue
    events: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    planned: dict[str, Any] | None = None  # a plan's calls, rollbacks, duration (bgkit.planning)
    followed_plan: dict[str, Any] | None = None  # the plan this release followed: hash, path taken

    def add_event(self, at: datetime, kind: str, message: str, **data: Any) -> dict[str, Any]:
        event = {"at": at.isoformat(), "kind": kind, "message": message, **data}
        self.events.append(event)
        return event

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "release": self.release,
            "target": self.target,
            "target_id": self.target_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": self.duration_seconds,
            "operator": self.operator,
            "mode": self.mode,
            "plan": self.plan,
            # redacted again here: a Record built from raw parameters still hides its secrets
            "parameters": redact(self.parameters),
            "final_split": self.final_split,
            "final_state": self.final_state,
            "smoke": self.smoke,
            "schema": self.schema,
            "events": self.events,
            "verdicts": self.verdicts,
            "planned": self.planned,
            "followed_plan": self.followed_plan,
        }

    def summary_markdown(self) -> str:
        outcome = OUTCOME_TEXT
        split = ", ".join(f"{c} {p}%" for c, p in (self.final_split or {}).items()) or "unknown"
        rows = [
            ("Outcome", outcome.get(self.outcome or "", self.outcome or "in progress")),
            ("Why", self.reason or ""),
            ("Release", f"`{self.release}` ({self.runbook}, target {self.target})"),
            ("Operator", f"`{self.operator}`"),
            ("Mode", self.mode),
            ("Started (UTC)", self.started_at.isoformat(timespec="seconds")),
            (
                "Duration",
                f"{self.duration_seconds:.1f} s" if self.duration_seconds is not None else "",
            ),
            ("Plan", self.plan),
            ("Traffic now (read back from AWS)", split),
        ]
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return f"## Release summary\n\n| | |\n|---|---|\n{table}\n"


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=1, default=str)


def from_notebook(nb: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The record in a notebook: metadata["bgkit"] if present, else the last record output."""
    if "bgkit" in nb.metadata:
        return dict(nb.metadata["bgkit"])
    found = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if RECORD_MIME in data:
                found = data[RECORD_MIME]
    if isinstance(found, str):
        found = json.loads(found)
    return dict(found) if found is not None else None


def attach_record(nb) -> bool:  # type: ignore[no-untyped-def]
    """Copy the last record output into nb.metadata["bgkit"]. True if there was one."""
    nb.metadata.pop("bgkit", None)
    record = from_notebook(nb)
    if record is None:
        return False
    nb.metadata["bgkit"] = record
    return True


def load(path: str | Path) -> dict[str, Any] | None:
    import nbformat

    return from_notebook(nbformat.read(str(path), as_version=4))
