"""The static check: squawk (the `squawk-cli` wheel, pinned) reads each migration's text.

Squawk's rules fall in two kinds here. Those that break the version still running (blue reads
or writes what the migration removes, renames, retypes or newly requires) block the release
under `schema_check = enforce`, each with the expand/contract way to make the same change. The
locking and hygiene rules (a missing lock_timeout, a non-concurrent index, ...) are warnings in
the record: they can hurt production while the migration runs, not blue's correctness.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from .migrations import PARAMETER, Migration

LATER = "in a later release, once no running version uses it (contract)"
# rule -> the expand/contract way to make the same change without breaking blue
BREAKS_BLUE = {
    "renaming-column": "add the new column, write both columns from green, backfill; drop the "
    f"old one {LATER}",
    "renaming-table": "create the new table (or a view under the old name), write both; drop "
    f"the old name {LATER}",
    "renaming-object": f"add the new name beside the old one; drop the old name {LATER}",
    "ban-drop-column": f"stop reading and writing the column first; drop it {LATER}",
    "ban-drop-table": f"stop using the table first; drop it {LATER}",
    "ban-drop-view": f"keep the view; drop it {LATER}",
    "ban-drop-function": f"keep the function (add a new one beside it); drop it {LATER}",
    "ban-drop-database": "never in a release: blue still connects to it",
    "ban-drop-schema": f"stop using the schema first; drop it {LATER}",
    "ban-drop-sequence": f"stop using the sequence first; drop it {LATER}",
    "ban-drop-domain": f"stop using the domain first; drop it {LATER}",
    "ban-drop-extension": f"stop using what the extension provides; drop it {LATER}",
    "ban-drop-default": f"keep the default while blue inserts without the column; drop it {LATER}",
    "ban-drop-generated-expression": f"keep the generated column; change it {LATER}",
    "ban-drop-constraint": f"keep the constraint blue may rely on; drop it {LATER}",
    "ban-drop-not-null": "blue reads the column as never NULL: keep NOT NULL until no running "
    "version relies on it",
    "ban-alter-identity": f"keep the identity as it is; change it {LATER}",
    "ban-set-schema": "create the object in the new schema beside the old one; drop the old one "
    f"{LATER}",
    "adding-required-field": "add the column nullable or with a constant DEFAULT; once every "
    "running version writes it, add NOT NULL (CHECK ... NOT VALID, VALIDATE, then SET NOT NULL)",
    "adding-not-nullable-field": "blue may still write NULL: once every running version writes "
    "the column, add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
    "changing-column-type": "add a column of the new type, write both, backfill, switch reads; "
    f"drop the old column {LATER} (a widening that blue's statements still run with passes)",
    "ban-truncate-cascade": "never in a release: it deletes rows blue serves",
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based
    rule: str
    blocks: bool  # breaks blue (blocks under enforce); else a warning
    message: str
    advice: str  # the expand/contract way, or squawk's help

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def squawk() -> str:
    """The squawk binary of this environment (the squawk-cli wheel)."""
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if not found:
        raise SchemaError("squawk is not installed (pip install squawk-cli)")
    return found


def lint(migrations: list[Migration]) -> list[Finding]:
    """Squawk's findings on each migration, in file and line order."""
    findings: list[Finding] = []
    for migration in migrations:
        # bgkit applies a migration in one transaction, unless it builds an index concurrently
        args = [squawk(), "--reporter", "json"]
        if not migration.concurrent:
            args.append("--assume-in-transaction")
        out = subprocess.run(args, input=migration.sql, capture_output=True, text=True, timeout=60)
        if out.returncode not in (0, 1) or not out.stdout.strip().startswith("["):
            raise SchemaError(
                f"squawk could not read {migration.name}: {out.stderr.strip()[-500:]}",
                parameter=PARAMETER,
            )
        for raw in json.loads(out.stdout):
            findings.append(_finding(migration.name, raw))
    return sorted(findings, key=lambda f: (f.file, f.line, not f.blocks, f.rule))


def _finding(file: str, raw: dict[str, Any]) -> Finding:
    rule = raw["rule_name"]
    if rule == "syntax-error":
        raise SchemaError(
            f"{file}, line {raw['line'] + 1}: syntax error: {raw['message']}", parameter=PARAMETER
        )
    advice = BREAKS_BLUE.get(rule)
    return Finding(
        file=file,
        line=raw["line"] + 1,
        rule=rule,
        blocks=advice is not None,
        message=raw["message"],
        advice=advice or raw.get("help") or "",
    )
