"""Blue, as the production database shows it, read with read-only calls: its schema
(pg_dump --schema-only), the statements it runs (pg_stat_statements: normalized texts with $1
placeholders), and a sample of its rows (COPY of a few rows per table). Or blue given as files:
a schema (SQL) and its statements (SQL, each ending with ;).

The password in `database_url` goes to pg_dump in its environment, never on a command line, and
is scrubbed from every message.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from ..postgres import bindir

PARAMETER = "database_url"
SAMPLE_ROWS = 100  # rows per table copied to the scratch database
# bgkit's own reads are left out of blue's statements by this tag, pg_dump's and other tools'
# by the system catalogs they read (pg_*, information_schema)
TAG = "/* bgkit schema check */"
STATEMENTS = f"""
SELECT s.query FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query ~* '^\\s*(select|insert|update|delete|with|merge|values|table)\\M'
  AND s.query !~* '(\\mpg_|information_schema|bgkit schema check)'
ORDER BY s.calls DESC LIMIT 500 {TAG}"""
TABLES = f"""
SELECT n.nspname, c.relname,
       array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
GROUP BY n.nspname, c.relname ORDER BY 1, 2 {TAG}"""


@dataclass
class Blue:
    schema_sql: str
    statements: list[str]
    samples: dict[str, tuple[list[str], bytes]] = field(default_factory=dict)
    source: str = ""  # where blue was read from, for the record


def from_database(database_url: str) -> Blue:
    """Blue's schema, statements and rows from the production database, read only."""
    import psycopg
    from psycopg import sql as q

    params = _conninfo(database_url)
    with connect(database_url) as conn:
        try:
            statements = [row[0] for row in conn.execute(STATEMENTS).fetchall()]
        except psycopg.Error as error:
            raise SchemaError(
                "blue's statements are read from pg_stat_statements, which this database does "
                f"not give ({scrub(error, database_url)}): install the extension, or give blue's "
                "statements as a file",
                parameter=PARAMETER,
            ) from None
        samples = {}
        for schema, table, columns in conn.execute(TABLES).fetchall():
            query = q.SQL("COPY (SELECT {} FROM {} LIMIT {}) TO STDOUT").format(
                q.SQL(", ").join(map(q.Identifier, columns)),
                q.Identifier(schema, table),
                q.Literal(SAMPLE_ROWS),
            )
            with conn.cursor().copy(query) as copy:
                samples[f"{schema}.{table}"] = (list(columns), b"".join(bytes(b) for b in copy))
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname')}"
    return Blue(_dump_schema(params), statements, samples, f"database {where}")


def ping(database_url: str) -> None:
    """The database answers (a read-only connection); SchemaError without the password."""
    connect(database_url).close()


def connect(database_url: str, *, read_only: bool = True) -> Any:
    """A connection in autocommit mode (read only unless asked); SchemaError, without the
    password, when the database does not answer."""
    import psycopg

    options = "-c default_transaction_read_only=on -c statement_timeout=30s" if read_only else ""
    try:
        return psycopg.connect(database_url, connect_timeout=10, autocommit=True, options=options)
    except psycopg.Error as error:
        raise SchemaError(
            f"cannot connect: {scrub(error, database_url)}", parameter=PARAMETER
        ) from None


def from_files(schema_file: str, statements_file: str) -> Blue:
    texts = {}
    for name, path in (("schema", schema_file), ("statements", statements_file)):
        try:
            texts[name] = Path(path).read_text()
        except OSError as error:
            raise SchemaError(f"{path}: {error.strerror}", parameter=name) from None
    statements = split_statements(texts["statements"])
    if not statements:
        raise SchemaError(f"{statements_file} holds no statement", parameter="statements")
    return Blue(texts["schema"], statements, {}, f"files {schema_file}, {statements_file}")


def split_statements(text: str) -> list[str]:
    """Statements from SQL text: each ends with ; at the end of a line; -- comments dropped."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return [" ".join(p.split()) for p in parts if p.strip()]


def _dump_schema(params: dict[str, Any]) -> str:
    from psycopg.conninfo import make_conninfo

    password = params.pop("password", None) or ""
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    out = subprocess.run(
        [str(bindir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
         "--dbname", make_conninfo(**params)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if out.returncode != 0:
        raise SchemaError(
            f"pg_dump --schema-only failed: {_hidden(out.stderr.strip()[-500:], password)}",
            parameter=PARAMETER,
        )
    return out.stdout


def _conninfo(database_url: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    if not database_url.startswith(("postgresql://", "postgres://")):
        raise SchemaError("a postgresql:// URL", parameter=PARAMETER)
    try:
        return conninfo_to_dict(database_url)
    except Exception as error:  # psycopg's ProgrammingError quotes the URL: not shown
        raise SchemaError(
            f"not a valid postgresql:// URL ({type(error).__name__})", parameter=PARAMETER
        ) from None


def scrub(message: object, database_url: str) -> str:
    """`message` without the URL's password."""
    return _hidden(str(message).strip(), _conninfo(database_url).get("password") or "")


def _hidden(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text
