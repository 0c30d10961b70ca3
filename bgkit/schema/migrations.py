"""Green's migrations: a `.sql` file, or a folder of them applied in name order; a local path
or s3://bucket/key (a key ending in / is a folder). Each keeps its text and its SHA-256, which
the record shows, so a reviewer can tell which migrations a release checked and applied."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SchemaError

PARAMETER = "migrations"


@dataclass(frozen=True)
class Migration:
    name: str  # the file's name, which orders it
    sql: str
    sha256: str

    @property
    def concurrent(self) -> bool:
        """CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction block."""
        return "concurrently" in self.sql.lower()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "lines": self.sql.count("\n") + 1}


def load(location: str, session: Any = None) -> list[Migration]:
    """The migrations at `location`, in name order; SchemaError names what is wrong."""
    if not location:
        raise SchemaError("give a .sql file or a folder of them", parameter=PARAMETER)
    if location.startswith("s3://"):
        found = _from_s3(location, session)
    else:
        found = _from_path(Path(location).expanduser())
    if not found:
        raise SchemaError(f"{location} holds no .sql file", parameter=PARAMETER)
    return [_migration(name, text) for name, text in sorted(found)]


def _migration(name: str, raw: bytes) -> Migration:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SchemaError(f"{name} is not UTF-8 text ({error})", parameter=PARAMETER) from None
    if not text.strip():
        raise SchemaError(f"{name} is empty", parameter=PARAMETER)
    return Migration(name, text, hashlib.sha256(raw).hexdigest())


def _from_path(path: Path) -> list[tuple[str, bytes]]:
    if path.is_dir():
        return [(p.name, p.read_bytes()) for p in path.iterdir() if p.suffix == ".sql"]
    if path.is_file():
        if path.suffix != ".sql":
            raise SchemaError(f"{path} is not a .sql file", parameter=PARAMETER)
        return [(path.name, path.read_bytes())]
    raise SchemaError(f"{path} does not exist", parameter=PARAMETER)


def _from_s3(location: str, session: Any) -> list[tuple[str, bytes]]:
    if session is None:
        raise SchemaError(f"{location}: reading S3 needs an AWS session", parameter=PARAMETER)
    bucket, _, key = location[len("s3://") :].partition("/")
    s3 = session.client("s3")
    if key.endswith(".sql"):
        keys = [key]
    else:
        prefix = key.rstrip("/") + "/" if key else ""
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [
            o["Key"]
            for page in pages
            for o in page.get("Contents", [])
            if o["Key"].endswith(".sql") and "/" not in o["Key"][len(prefix) :]
        ]
    return [
        (k.rsplit("/", 1)[-1], s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys
    ]
