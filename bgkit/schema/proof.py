"""The proof on a real PostgreSQL: do blue's own statements still run once green's migrations
have run?

On a private scratch server (bgkit.postgres; never the production database) bgkit makes two
databases: `blue`, blue's schema with a sample of its rows, and `green`, a copy of it with
green's migrations applied (each file in one transaction, as bgkit would apply it). Then each
of blue's statements is prepared in both (PQprepare: normalized texts with $1 placeholders,
as pg_stat_statements keeps them) and executed in a transaction that is rolled back, with
parameter values taken from blue's rows where the statement names the column (else a plain
value of the parameter's type). A statement that runs on `blue` and not on `green` breaks blue;
one that does not even prepare on `blue` is not blue's (a stale or a green-only statement) and
is left out, saying so.

Errors keep PostgreSQL's primary message only: its DETAIL can quote row values.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import SchemaError
from ..postgres import LocalPostgres
from .migrations import PARAMETER, Migration

STATEMENT_TIMEOUT = "5s"  # one of blue's statements on the scratch databases
VALUE_SETS = 5  # parameter values tried per statement (distinct values from blue's rows)
TYPE_VALUES = {
    "smallint": "1", "integer": "1", "bigint": "1", "numeric": "1", "real": "1",
    "double precision": "1", "text": "bgkit", "character varying": "bgkit", "character": "b",
    "boolean": "true", "uuid": "00000000-0000-4000-8000-000000000001", "date": "2026-01-01",
    "timestamp without time zone": "2026-01-01 00:00:00",
    "timestamp with time zone": "2026-01-01 00:00:00+00", "time without time zone": "00:00",
    "interval": "1 day", "json": "{}", "jsonb": "{}", "bytea": "\\x00", "name": "bgkit",
}  # fmt: skip
# A schema-only dump starts every sequence at 1: each is set past the rows' values, so that
# blue's inserts get new keys as they do in production.
SEQUENCES_PAST_ROWS = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT a.attrelid::regclass AS t, quote_ident(a.attname) AS c,
                  pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) AS s
           FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid
           WHERE k.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
             AND pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) IS NOT NULL
  LOOP
    EXECUTE format('SELECT setval(%L, coalesce((SELECT max(%s) FROM %s), 0) + 1, false)',
                   r.s, r.c, r.t);
  END LOOP;
END $$;
"""
_INSERT = re.compile(
    r"insert\s+into\s+([\w.\"]+)\s*\(([^)]*)\)\s*values\s*\(([^)]*)\)", re.IGNORECASE | re.DOTALL
)
_COMPARED = re.compile(r"([\w\"]+)\s*(?:=|<>|!=|<=|>=|<|>)\s*\$(\d+)")
_TABLE = re.compile(r"\b(?:from|update|into|join)\s+([\w.\"]+)", re.IGNORECASE)


@dataclass
class Statement:
    sql: str
    result: str  # "runs", "breaks", "not blue's", "prepares" (no values blue's schema took)
    error: str = ""  # PostgreSQL's primary message, where it failed
    executed: int = 0  # value sets executed on green

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Proof:
    migration_error: str  # "" when every migration applied on blue's schema and rows
    statements: list[Statement]
    sampled_rows: int
    # columns whose type the migrations changed: (table.column, blue's type, green's type)
    type_changes: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def only_widened(self) -> bool:
        """Every changed column type holds all values of the old one (varchar(50) -> (200))."""
        return all(widens(old, new) for _, old, new in self.type_changes)

    @property
    def breaking(self) -> list[Statement]:
        return [s for s in self.statements if s.result == "breaks"]


def prove(
    schema_sql: str,
    statements: list[str],
    migrations: list[Migration],
    samples: dict[str, tuple[list[str], bytes]] | None = None,
) -> Proof:
    """Blue's schema (SQL, as pg_dump writes it), blue's statements, green's migrations, and
    optionally rows of blue's tables (table -> (columns, COPY text)): the proof."""
    with LocalPostgres() as pg:
        pg.create_database("blue")
        try:
            pg.psql("blue", input=schema_sql)
        except subprocess.CalledProcessError as error:
            raise SchemaError(f"blue's schema could not be loaded: {_psql_error(error)}") from None
        rows = _load_samples(pg, samples or {})
        pg.psql("blue", input=SEQUENCES_PAST_ROWS)
        pg.create_database("green", template="blue")
        for migration in migrations:
            args = [] if migration.concurrent else ["-1"]  # CONCURRENTLY: no transaction block
            try:
                pg.psql("green", *args, input=migration.sql)
            except subprocess.CalledProcessError as error:
                message = f"{migration.name} fails on blue's schema: {_psql_error(error)}"
                if rows:
                    message = (
                        f"{migration.name} fails on blue's schema and rows: {_psql_error(error)}"
                    )
                return Proof(message, [], rows)
        changes = _type_changes(pg)
        return Proof("", _run_statements(pg, statements), rows, changes)


def _run_statements(pg: LocalPostgres, statements: list[str]) -> list[Statement]:
    import psycopg

    results = []
    with (
        psycopg.connect(pg.conninfo("blue"), autocommit=True) as blue,
        psycopg.connect(pg.conninfo("green"), autocommit=True) as green,
    ):
        for conn in (blue, green):
            conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        labels = {row[0] for row in blue.execute("SELECT enumlabel FROM pg_enum").fetchall()}
        for number, sql in enumerate(statements):
            results.append(_one(blue, green, f"bgkit_{number}", sql, labels))
    return results


def _one(blue: Any, green: Any, name: str, sql: str, labels: set[str]) -> Statement:
    error = _prepare(blue, name, sql)
    if error:
        return Statement(sql, "not blue's", error)
    error = _prepare(green, name, sql)
    if error:
        return Statement(sql, "breaks", error)
    executed, refused_on_blue = 0, ""
    for values in _value_sets(blue, name, sql):
        refused_on_blue = _hide(_execute(blue, name, values), values, labels)
        if refused_on_blue:
            continue  # values blue's own schema refuses say nothing of green
        error = _execute(green, name, values)
        if error:
            return Statement(sql, "breaks", _hide(error, values, labels), executed)
        executed += 1
    if not executed:
        return Statement(sql, "prepares", refused_on_blue)
    return Statement(sql, "runs", "", executed)


def _hide(message: str, values: list[str | None], labels: set[str]) -> str:
    """PostgreSQL's message without the values it was run with (blue's rows: maybe personal),
    except the labels of blue's enums, which are schema."""
    for value in sorted((v for v in values if v and v not in labels), key=len, reverse=True):
        message = message.replace(value, "…")
    return message


def _prepare(conn: Any, name: str, sql: str) -> str:
    result = conn.pgconn.prepare(name.encode(), sql.encode())
    return _error(result)


def _execute(conn: Any, name: str, values: list[str | None]) -> str:
    """Execute in a transaction that is rolled back; PostgreSQL's primary message, or ""."""
    conn.execute("BEGIN")
    try:
        params = [v.encode() if v is not None else None for v in values]
        return _error(conn.pgconn.exec_prepared(name.encode(), params))
    finally:
        conn.execute("ROLLBACK")


def _error(result: Any) -> str:
    from psycopg import pq

    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return ""
    message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
    return (message or b"failed").decode(errors="replace")


def _value_sets(conn: Any, name: str, sql: str) -> list[list[str | None]]:
    """Up to VALUE_SETS sets of parameter values: blue's own values where the statement names
    the parameter's column, else a plain value of its type."""
    described = conn.pgconn.describe_prepared(name.encode())
    types = [described.param_type(i) for i in range(described.nparams)]
    if not types:
        return [[]]
    columns = _parameter_columns(sql)
    choices: list[list[str | None]] = []
    for number, oid in enumerate(types, start=1):
        found = _column_values(conn, *columns[number]) if number in columns else []
        choices.append(found or [_type_value(conn, oid)])
    count = min(VALUE_SETS, max(len(c) for c in choices))
    return [[c[k % len(c)] for c in choices] for k in range(count)]


def _parameter_columns(sql: str) -> dict[int, tuple[str, str]]:
    """$n -> (table, column) where the statement says which column a parameter is."""
    found: dict[int, tuple[str, str]] = {}
    insert = _INSERT.search(sql)
    if insert:
        table = insert.group(1)
        columns = [c.strip() for c in insert.group(2).split(",")]
        for column, value in zip(columns, insert.group(3).split(","), strict=False):
            if value.strip().startswith("$") and value.strip()[1:].isdigit():
                found[int(value.strip()[1:])] = (table, column)
    first = _TABLE.search(sql)
    if first:
        for column, number in _COMPARED.findall(sql):
            found.setdefault(int(number), (first.group(1), column.split(".")[-1]))
    return found


def _column_values(conn: Any, table: str, column: str) -> list[str | None]:
    from psycopg import sql as q

    query = q.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT {n}").format(
        c=q.Identifier(column.strip('"')),
        t=q.Identifier(*[p.strip('"') for p in table.split(".")]),
        n=q.Literal(VALUE_SETS),
    )
    import psycopg

    conn.execute("BEGIN")
    try:
        return [row[0] for row in conn.execute(query).fetchall()]
    except psycopg.Error:  # a wrong guess at the column: plain values of its type instead
        return []
    finally:
        conn.execute("ROLLBACK")


def _type_value(conn: Any, oid: int) -> str | None:
    row = conn.execute(
        "SELECT format_type(t.oid, NULL), t.typtype, t.typcategory,"
        " (SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder"
        "  LIMIT 1) FROM pg_type t WHERE t.oid = %s",
        (oid,),
    ).fetchone()
    if row is None:
        return None
    type_name, kind, category, first_label = row
    if kind == "e":
        return first_label
    if category == "A":
        return "{}"
    return TYPE_VALUES.get(type_name)


def _load_samples(pg: LocalPostgres, samples: dict[str, tuple[list[str], bytes]]) -> int:
    """Blue's sampled rows into `blue` (foreign keys and triggers off: a sample is partial)."""
    import psycopg
    from psycopg import sql as q

    loaded = 0
    with psycopg.connect(pg.conninfo("blue"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for table, (columns, data) in samples.items():
            statement = q.SQL("COPY {} ({}) FROM STDIN").format(
                q.Identifier(*table.split(".", 1)), q.SQL(", ").join(map(q.Identifier, columns))
            )
            with conn.cursor().copy(statement) as copy:
                copy.write(data)
            loaded += data.count(b"\n")
    return loaded


def _type_changes(pg: LocalPostgres) -> list[tuple[str, str, str]]:
    import psycopg

    query = (
        "SELECT c.relnamespace::regnamespace || '.' || c.relname || '.' || a.attname,"
        " format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"
        " AND c.relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')"
    )
    types = []
    for database in ("blue", "green"):
        with psycopg.connect(pg.conninfo(database)) as conn:
            types.append(dict(conn.execute(query).fetchall()))
    blue, green = types
    return [(c, blue[c], green[c]) for c in sorted(blue) if c in green and green[c] != blue[c]]


_LADDER = ["smallint", "integer", "bigint", "numeric"]


def widens(old: str, new: str) -> bool:
    """Whether type `new` holds every value of type `old` (as format_type spells them)."""
    if old == new or (new == "text" and old.startswith(("character varying", "character("))):
        return True
    if old in _LADDER and new in _LADDER:
        return _LADDER.index(new) >= _LADDER.index(old)
    if (old, new) == ("real", "double precision"):
        return True
    sized = re.compile(r"(character varying|numeric)(?:\((\d+)(?:,(\d+))?\))?")
    a, b = sized.fullmatch(old), sized.fullmatch(new)
    if not a or not b or a.group(1) != b.group(1):
        return False
    if b.group(2) is None:  # unbounded
        return True
    if a.group(2) is None:
        return False
    if a.group(1) == "character varying":
        return int(b.group(2)) >= int(a.group(2))
    scale_a, scale_b = int(a.group(3) or 0), int(b.group(3) or 0)
    return scale_b >= scale_a and int(b.group(2)) - scale_b >= int(a.group(2)) - scale_a


def _psql_error(error: subprocess.CalledProcessError) -> str:
    """psql's first ERROR line, as "line N: message" (its DETAIL, which can quote rows, left out)."""
    for line in (error.stderr or "").splitlines():
        found = re.match(r"psql:[^:]*:(\d+): ERROR:\s*(.*)", line)
        if found:
            return f"line {found.group(1)}: {found.group(2)}"[:500]
    return (error.stderr or "").strip()[:500]


__all__ = ["PARAMETER", "Proof", "Statement", "prove"]
