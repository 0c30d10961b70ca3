"""Schema changes that keep blue working: green's migrations checked before any traffic moves.

Blue and green share one database, so green's migrations run while blue still serves. A
migration that renames a column blue reads breaks blue the moment it runs, and the judge cannot
see it (it compares green with blue, and blue is the one failing). So, before green gets any
production traffic:

    migrations.py  green's .sql files (a file or a folder, local or s3://), with their hashes
    lint.py        the static check: squawk's rules; what breaks the running version blocks
    source.py      blue as the database shows it, read only: schema, statements, sample rows
    proof.py       the proof on a real PostgreSQL: blue's statements on green's schema
    apply.py       applying them to the production database, when asked

`check` runs all of it and returns a `SchemaReport`: compatible or not, and why, naming each
file and line, each of blue's statements and PostgreSQL's error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from ..errors import SchemaError
from . import migrations as _migrations
from . import source
from .apply import apply
from .lint import Finding, lint
from .proof import Proof, prove

MODES = ("enforce", "warn", "off")
WIDENED = "a widening ({changes}): every value of the old type fits, and blue's statements ran"


@dataclass
class SchemaReport:
    migrations: list[_migrations.Migration]
    findings: list[Finding]
    proof: Proof
    blue_source: str
    seconds: float

    @property
    def reasons(self) -> list[str]:
        """Why green's migrations would break blue (empty when they would not)."""
        why = [
            f"{f.file}, line {f.line}: {f.message} [{f.rule}]; instead: {f.advice}"
            for f in self.findings
            if f.blocks
        ]
        if self.proof.migration_error:
            why.append(self.proof.migration_error)
        why += [
            f"blue's statement fails on green's schema: {s.sql!r}: {s.error}"
            for s in self.proof.breaking
        ]
        return why

    @property
    def compatible(self) -> bool:
        return not self.reasons

    def to_text(self) -> str:
        """The report as a person reads it (`bgkit schema check`)."""
        lines = [
            "green's migrations: "
            + ", ".join(f"{m.name} (sha256 {m.sha256[:12]})" for m in self.migrations),
            f"blue: {self.blue_source}; {len(self.proof.statements)} statement(s), "
            f"{self.proof.sampled_rows} sampled row(s)",
            "static check (squawk):" + ("" if self.findings else " no findings"),
        ]
        for f in self.findings:
            lines.append(
                f"  {'BLOCKS' if f.blocks else 'warns '} {f.file}:{f.line} [{f.rule}] {f.message}"
            )
            if f.advice:
                lines.append(f"         {'instead' if f.blocks else 'how'}: {f.advice}")
        lines.append("blue's statements on green's schema (real PostgreSQL):")
        if not self.proof.statements and not self.proof.migration_error:
            lines.append("  none: the database held no statement of blue's (pg_stat_statements)")
        if self.proof.migration_error:
            lines.append(f"  not run: {self.proof.migration_error}")
        for st in self.proof.statements:
            detail = f": {st.error}" if st.error else f" ({st.executed} value set(s))"
            lines.append(f"  {st.result:<10} {st.sql}{detail}")
        verdict = "compatible: blue keeps working" if self.compatible else "INCOMPATIBLE"
        lines.append(f"{verdict} ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "reasons": self.reasons,
            "migrations": [m.describe() for m in self.migrations],
            "findings": [f.to_dict() for f in self.findings],
            "migration_error": self.proof.migration_error,
            "statements": [s.to_dict() for s in self.proof.statements],
            "sampled_rows": self.proof.sampled_rows,
            "type_changes": [list(c) for c in self.proof.type_changes],
            "blue": self.blue_source,
            "seconds": round(self.seconds, 2),
        }


def reachable(migrations: str, database_url: str, session: Any = None) -> None:
    """What the check needs is there (read only): the migrations, free of syntax errors, and a
    database that answers; SchemaError naming the parameter otherwise."""
    lint(_migrations.load(migrations, session))
    if not database_url:
        raise SchemaError(
            "the database both colours use is needed to check migrations against blue",
            parameter="database_url",
        )
    source.ping(database_url)


def check(
    migrations: str,
    *,
    database_url: str = "",
    schema_file: str = "",
    statements_file: str = "",
    session: Any = None,
) -> SchemaReport:
    """Green's migrations at `migrations` against blue: read from `database_url` (read only),
    or given as a schema file and a statements file. SchemaError for bad input."""
    started = time.monotonic()
    found = _migrations.load(migrations, session)
    findings = lint(found)
    if schema_file or statements_file:
        if not (schema_file and statements_file):
            raise SchemaError("give both blue's schema file and its statements file")
        blue = source.from_files(schema_file, statements_file)
    elif database_url:
        blue = source.from_database(database_url)
    else:
        raise SchemaError(
            "give the database both colours use (blue's schema, statements and rows are read "
            "from it), or blue's schema and statements as files",
            parameter="database_url",
        )
    proof = prove(blue.schema_sql, blue.statements, found, blue.samples)
    if proof.type_changes and proof.only_widened and not proof.breaking:
        changes = ", ".join(f"{c} {old} -> {new}" for c, old, new in proof.type_changes)
        findings = [
            replace(f, blocks=False, advice=WIDENED.format(changes=changes))
            if f.rule == "changing-column-type"
            else f
            for f in findings
        ]
    return SchemaReport(found, findings, proof, blue.source, time.monotonic() - started)


__all__ = ["MODES", "Finding", "SchemaReport", "apply", "check", "reachable"]
