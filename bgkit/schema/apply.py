"""Applying green's migrations to the production database, once both checks have passed and
only when asked (`apply_migrations`): with a lock_timeout, so a migration that waits for a lock
gives up instead of queueing blue's queries behind it, and a statement_timeout. All files in one
transaction; a file that builds an index CONCURRENTLY cannot be in one, so then each file is its
own transaction, in name order, and that one runs outside any."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from ..errors import SchemaError
from .migrations import Migration
from .source import PARAMETER, connect, scrub

LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "5min"


def apply(migrations: list[Migration], database_url: str) -> dict[str, Any]:
    """Apply `migrations` to the database; what was done, for the record."""
    import psycopg

    started = time.monotonic()
    one_transaction = not any(m.concurrent for m in migrations)
    try:
        with connect(database_url, read_only=False) as conn:
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
            if one_transaction:
                with conn.transaction():
                    for migration in migrations:
                        _run(conn, migration)
            else:
                for migration in migrations:
                    if migration.concurrent:
                        _run(conn, migration)
                    else:
                        with conn.transaction():
                            _run(conn, migration)
    except psycopg.Error as error:
        primary = getattr(getattr(error, "diag", None), "message_primary", None) or str(error)
        raise SchemaError(
            f"applying green's migrations failed, nothing of the failed transaction stays: "
            f"{scrub(primary, database_url)}",
            parameter=PARAMETER,
        ) from None
    return {
        "at": datetime.now(UTC).isoformat(),
        "files": [m.name for m in migrations],
        "one_transaction": one_transaction,
        "lock_timeout": LOCK_TIMEOUT,
        "statement_timeout": STATEMENT_TIMEOUT,
        "seconds": round(time.monotonic() - started, 3),
    }


def _run(conn: Any, migration: Migration) -> None:
    conn.execute(migration.sql.encode())  # no parameters: the text may hold several statements
