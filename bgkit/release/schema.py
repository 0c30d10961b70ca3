"""The database side of a release: green's migrations checked against blue (bgkit.schema)
after preflight and before green gets any production traffic (before a managed service's
deployment starts), and applied to the shared database only when asked.

Under `schema_check = enforce` a migration that would break blue ends the release, refused
before anything moved; `warn` records the same and goes on; `off` records that it was off.
Without `migrations` the step records "no schema change" and costs nothing.

A mixin of `Release`; it uses the release's params, session, record, state and events.
"""

from __future__ import annotations

from typing import Any

from .. import schema

NO_CHANGE = "no schema change (no migrations)"
NO_STATEMENTS = (
    "warning: the database held none of blue's statements (pg_stat_statements is empty, or was "
    "reset): only squawk and the migrations' own run on blue's schema and rows checked them"
)


class SchemaStep:
    _schema_done = False

    def check_schema(self) -> dict[str, Any] | str:
        """Green's migrations against blue, statically and on a real PostgreSQL, before any
        traffic moves; the record's schema section."""
        if self.state != "ready" or self._schema_done:
            return self._note(f"schema check not run (state: {self.state})")
        with self._guard("schema"):
            self._check_schema()
        return self.record.schema or {}

    def _schema_preflight(self) -> None:
        """Read-only, before the target is locked: the migrations can be read (s3:// too) and
        the database answers. Bad input is refused here, before anything is written."""
        params = self.params
        if params.migrations and params.schema_check != "off":
            schema.reachable(params.migrations, params.database_url, self.session)

    def _migrations_left(self) -> str:
        """What a rollback says of migrations this release applied."""
        if not (self.record.schema or {}).get("applied"):
            return ""
        return (
            "; green's migrations stay applied: an expand change that blue works with, as checked"
        )

    def _schema_before_traffic(self) -> None:
        """The schema step, if the runbook has not run it: it always comes before traffic."""
        if self.state == "ready" and not self._schema_done:
            self._check_schema()

    def _check_schema(self) -> None:
        self._schema_done = True
        params = self.params
        if not params.migrations:
            self.record.schema = {"result": NO_CHANGE}
            self._event("schema", NO_CHANGE)
            return
        if params.schema_check == "off":
            self.record.schema = {"result": "not checked (schema_check = off)"}
            self._event("schema", f"green's migrations ({params.migrations}) were not checked: "
                        "schema_check is off")  # fmt: skip
            return
        self._activity = "checking green's migrations against blue's statements"
        report = schema.check(
            params.migrations, database_url=params.database_url, session=self.session
        )
        self.record.schema = {"mode": params.schema_check, **report.to_dict(), "applied": False}
        ran = sum(s.result == "runs" for s in report.proof.statements)
        warnings = sum(not f.blocks for f in report.findings)
        self._event(
            "schema",
            f"checked {len(report.migrations)} migration(s) against blue ({report.blue_source}): "
            f"{ran} of blue's statements ran on green's schema, {len(report.reasons)} reason(s) "
            f"it would break blue, {warnings} warning(s), in {report.seconds:.1f} s",
        )
        if not any(s.result != "not blue's" for s in report.proof.statements):
            self._event("schema", NO_STATEMENTS)
        if not report.compatible:
            reason = "green's migrations would break blue: " + "; ".join(report.reasons)
            if params.schema_check == "enforce":
                self._end("rolled_back", f"{reason}; refused before any traffic moved")
                return
            self._event("schema", f"schema_check is warn, so the release goes on: {reason}")
        if params.apply_migrations:
            self._activity = "applying green's migrations to the database"
            applied = schema.apply(report.migrations, params.database_url)
            self.record.schema["applied"] = applied
            self._event(
                "schema",
                f"applied {', '.join(applied['files'])} to the database in "
                f"{applied['seconds']:.2f} s (lock_timeout {applied['lock_timeout']}); a rollback "
                "of this release leaves them in place: blue works with them, as checked",
            )
