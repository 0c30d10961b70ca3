"""A private PostgreSQL server, started and removed by bgkit: the schema check's scratch
databases (green's migrations run there, never on the production database) and the sandbox's
shared database of blue and green.

It is the machine's own PostgreSQL (Debian's `postgresql` package): its contrib modules carry
pg_stat_statements, which the sandbox's database needs so that blue's statements can be read,
and its pg_dump and psql match its server. (The `pgserver` wheel bundles a server, but without
the contrib modules.) The server programs are found in BGKIT_PG_BINDIR, by `pg_config --bindir`,
or in /usr/lib/postgresql/<version>/bin.

The data folder is a new temporary folder, removed at `stop`. Connections come through a Unix
socket in that folder (trusted: only its owner can reach it), and, with `tcp=True`, on
127.0.0.1 at a free port with a random password. PostgreSQL refuses to run as root: as root, the
server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import BgkitError

START_SECONDS = 30.0
USER = "bgkit"


class PostgresMissing(BgkitError):
    """The machine has no PostgreSQL server programs."""


def bindir() -> Path:
    """Where initdb, postgres, pg_dump and psql are; PostgresMissing says how to get them."""
    candidates = []
    if os.environ.get("BGKIT_PG_BINDIR"):
        candidates.append(Path(os.environ["BGKIT_PG_BINDIR"]))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "postgres", "pg_dump", "psql")):
            return folder
    raise PostgresMissing(
        "PostgreSQL's server programs (initdb, postgres, pg_dump, psql) were not found: install "
        "Debian's postgresql (apt-get install postgresql postgresql-contrib), or set "
        "BGKIT_PG_BINDIR to the folder that has them"
    )


class LocalPostgres:
    """One private server; `with LocalPostgres() as pg:` starts it and removes it after."""

    def __init__(self, *, tcp: bool = False, statements: bool = False) -> None:
        self.tcp = tcp
        self.statements = statements  # load pg_stat_statements (the sandbox's database)
        self.bin = bindir()
        self.port = _free_port()
        self.password = secrets.token_urlsafe(18) if tcp else ""
        self.folder: Path | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._owner: dict[str, Any] = {}

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def socket_dir(self) -> str:
        assert self.folder is not None, "start the server first"
        return str(self.folder)

    def conninfo(self, database: str = "postgres") -> str:
        """A libpq connection string through the private socket (no password)."""
        return f"host={self.socket_dir} port={self.port} user={USER} dbname={database}"

    def url(self, database: str = "postgres") -> str:
        """postgresql:// URL on 127.0.0.1, with the password (a secret: never print it)."""
        assert self.tcp, "a server started with tcp=True has a URL"
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> LocalPostgres:
        self.folder = Path(tempfile.mkdtemp(prefix="bgkit-pg-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        assert self.folder is not None
        data, log = self.folder / "data", self.folder / "server.log"
        if os.geteuid() == 0:  # PostgreSQL refuses root: the folder is the postgres user's
            account = pwd.getpwnam("postgres")
            self._owner = {"user": account.pw_uid, "group": account.pw_gid}
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.folder.chmod(0o700)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password or secrets.token_urlsafe(18))
        if self._owner:
            os.chown(pwfile, self._owner["user"], self._owner["group"])
        self._run(
            self.bin / "initdb", "-D", data, "-U", USER, "--pwfile", pwfile, "-A", "trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        settings = {
            "listen_addresses": "127.0.0.1" if self.tcp else "",
            "port": str(self.port),
            "unix_socket_directories": str(self.folder),
            "fsync": "off",  # a scratch server: nothing in it outlives it
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        if self.statements:
            settings["shared_preload_libraries"] = "pg_stat_statements"
        args = [str(self.bin / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with open(log, "ab") as out:
            self._server = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **self._owner,
            )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while not (self.folder / f".s.PGSQL.{self.port}").exists():
            if self._server.poll() is not None or time.monotonic() > deadline:
                raise PostgresMissing(
                    f"PostgreSQL did not start (exit {self._server.poll()}): "
                    + log.read_text(errors="replace")[-800:]
                )
            time.sleep(0.05)
        self.wait_ready(deadline)

    def wait_ready(self, deadline: float) -> None:
        import psycopg

        while True:
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create_database(self, name: str, template: str | None = None) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(query)

    def psql(self, database: str, *args: str, input: str | None = None) -> str:
        """Run psql on a database of this server (ON_ERROR_STOP), with `input` as its script
        (errors then name its line); its output, or CalledProcessError with psql's stderr."""
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
             self.conninfo(database), *args, *(["-f", "-"] if input is not None else [])],
            input=input, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        return out.stdout

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.send_signal(signal.SIGINT)  # fast shutdown: roll back, disconnect, exit
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _run(self, *args: Any) -> None:
        result = subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=120, **self._owner
        )
        if result.returncode != 0:
            raise PostgresMissing(
                f"{Path(str(args[0])).name} failed: {result.stderr.strip()[-800:]}"
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


INSTALL = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql",
           "postgresql-contrib"]  # fmt: skip


def ensure() -> int:
    """`python -m bgkit.postgres --ensure` (make): the server programs, apt-installed when
    missing and running as root; 0 when present, 2 with how to install them otherwise."""
    import sys

    try:
        print(f"PostgreSQL: {bindir()}")
        return 0
    except PostgresMissing as missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            print(f"bgkit: {missing}", file=sys.stderr)
            return 2
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(INSTALL, check=True, env=env)
    print(f"PostgreSQL: installed in {bindir()}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(ensure() if sys.argv[1:] == ["--ensure"] else 2)
