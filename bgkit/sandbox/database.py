"""The sandbox's database: a real PostgreSQL on 127.0.0.1 (bgkit.postgres, with
pg_stat_statements), one database per scenario that asks for one (a release with migrations),
holding a shop (data/shop.sql). Blue and green read it for every request they serve and write
it for one in ten, through a few pooled connections, so the statements the schema step reads
from pg_stat_statements are blue's real ones. A query that fails is the request's 500: a
migration that breaks blue makes blue fail, as it would in production.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..postgres import LocalPostgres

SHOP = Path(__file__).resolve().parent / "data" / "shop.sql"
POOL = 4  # connections per service
READ = "SELECT id, qty, total, status, note FROM orders WHERE customer_id = %s"
WRITE = "INSERT INTO orders (customer_id, total, status) VALUES (%s, %s, %s)"
WRITE_SHARE = 0.1


class Databases:
    """The sandbox's PostgreSQL server, started with the first scenario that needs it."""

    def __init__(self) -> None:
        self._server: LocalPostgres | None = None
        self._lock = threading.Lock()

    def create(self, name: str) -> str:
        """A new database with the shop in it; its postgresql:// URL (it has the password)."""
        with self._lock:
            if self._server is None:
                self._server = LocalPostgres(tcp=True, statements=True).start()
            server = self._server
        server.create_database(name)
        # blue's statements start now: the seed's are not blue's
        reset = "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0);"
        server.psql(name, input=SHOP.read_text() + "\n" + reset)
        return server.url(name)

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()


class Shop:
    """What a colour does with the database for each request it serves."""

    def __init__(self, url: str) -> None:
        self.url = url
        # POOL slots, each a connection or None (not connected yet, or dropped after an error)
        self._slots: queue.Queue[Any] = queue.Queue()
        for _ in range(POOL):
            self._slots.put(None)
        self._random = random.Random()

    def serve(self) -> None:
        """One request's queries: read a customer's orders; one request in ten places one."""
        customer = self._random.randint(1, 3)
        with self._connection() as conn:
            conn.execute(READ, (customer,)).fetchall()
            if self._random.random() < WRITE_SHARE:
                conn.execute(WRITE, (customer, "12.50", "new"))

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg

        conn = self._slots.get(timeout=10)
        try:
            if conn is None:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            yield conn
        except psycopg.Error:
            if conn is not None:
                conn.close()  # not reused; the request answers 500
            conn = None
            raise
        finally:
            self._slots.put(conn)

    def close(self) -> None:
        for _ in range(POOL):
            conn = self._slots.get(timeout=10)
            if conn is not None:
                conn.close()
