"""Records as an audit trail: where they are kept, an index of them, and a hash chain.

Records live in a folder (`outputs/`) or under an S3 prefix; both are read and written through
papermill's I/O (its S3 handler for `s3://`), so a record written by `bgkit run --output s3://…`
is read back the same way.

**The hash chain.** `bgkit run` adds to each record, in `metadata["bgkit_chain"]`:

- `target`: what the chain is of (the record's `target_id`, such as a listener ARN);
- `sequence`: 1 for the first record of that target in the folder or prefix, then +1;
- `previous`: the `hash` of the record before it for that target (None for the first);
- `hash`: SHA-256 of the whole notebook (cells, outputs, metadata, the three fields above)
  without `hash` itself, as canonical JSON.

`verify()` recomputes every hash and walks each target's chain. An edited record no longer
matches its hash; a removed one leaves a gap in the sequence and a `previous` that nothing has;
records moved into another order disagree with their start times. What it cannot see: the
removal of the newest record of a target (nothing points to it yet), or someone who rewrites a
record *and* every later one of that target (the hashes are not signed). Write-once storage
closes both: see the README's "Tamper evidence" (S3 Object Lock).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .record import from_notebook

if TYPE_CHECKING:  # imported on use: a kernel that imports bgkit need not pay for nbformat
    import nbformat

CHAIN_KEY = "bgkit_chain"
FORMATS = ("table", "csv", "json")
OUTCOMES = ("promoted", "rolled_back", "failed", "planned", "no record", "not run")
# a target's release (whatever its outcome, or none), a plan of one, or a wave release's
# summary (bgkit.waves.summary: how each of its targets' releases ended)
KINDS = ("release", "plan", "waves")
LAB_KEY = "bgkit_lab"  # a record notebook that `bgkit lab` prepared (bgkit.lab, bgkit.lab_record)


# -- where records are kept -----------------------------------------------------------------


def is_s3(location: str) -> bool:
    return str(location).startswith("s3://")


def use_s3_endpoint(endpoint_url: str, region: str, access_key_id: str, secret: str) -> None:
    """Point papermill's S3 handler at an S3 endpoint other than AWS's (the sandbox's).

    papermill keeps one boto3 session for S3 in `papermill.s3.S3.s3_session`; by default it
    makes one from the standard credential chain (and `BOTO3_ENDPOINT_URL`).
    """
    import boto3
    from papermill.s3 import S3

    session = boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret, region_name=region
    )
    S3.s3_session = (
        session,
        session.client("s3", endpoint_url=endpoint_url),
        session.resource("s3", endpoint_url=endpoint_url),
    )


def use_s3(location: str, target: str) -> None:
    """Records under an s3:// location: AWS's S3 (the standard credential chain), or a shared
    sandbox's for `target sandbox`. Raises ValueError, saying why, unless its bucket can be
    reached."""
    from .connect import sandbox_endpoint

    if target == "sandbox":
        endpoint = sandbox_endpoint()
        if endpoint is None:
            raise ValueError(
                "s3://…: with target sandbox, records go to the S3 of a shared sandbox (an "
                "embedded one ends with the run); start it with `bgkit sandbox up`"
            )
        from .sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY

        use_s3_endpoint(
            endpoint["endpoint_url"], endpoint["region"], SANDBOX_ACCESS_KEY_ID,
            SANDBOX_SECRET_ACCESS_KEY,
        )  # fmt: skip
    from botocore.exceptions import BotoCoreError, ClientError
    from papermill.s3 import S3

    bucket = location[len("s3://") :].split("/", 1)[0]
    try:
        S3().client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as error:
        raise ValueError(f"bucket {bucket!r} cannot be reached: {error}") from None


def record_paths(location: str) -> list[str]:
    """Every record (`*.ipynb`) in a folder, recursively, or under an S3 prefix; sorted."""
    if is_s3(location):
        from papermill.s3 import S3

        prefix = location if location.endswith("/") else location + "/"
        return sorted(str(url) for url in S3().list(prefix) if str(url).endswith(".ipynb"))
    folder = Path(location)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    return sorted(  # not in hidden folders: .ipynb_checkpoints, or a .venv's own notebooks
        str(p)
        for p in folder.rglob("*.ipynb")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_all(location: str) -> tuple[list[tuple[str, nbformat.NotebookNode]], list[Problem]]:
    """Every notebook in the folder or prefix that can be read; one Problem for each that cannot
    (an empty or half-written file is not a record: reported, and the others still count)."""
    found, unreadable = [], []
    for path in record_paths(location):
        try:
            found.append((path, read(path)))
        except Exception as error:  # nbformat's, JSON's, the file system's or S3's
            unreadable.append(Problem(path, f"unreadable: {type(error).__name__}: {error}"[:300]))
    return found, unreadable


def chain_of(nb: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The record's chain if it is well-formed (else None: no chain, or not one bgkit wrote)."""
    chain = nb.metadata.get(CHAIN_KEY)
    if not isinstance(chain, dict):
        return None
    sequence, previous = chain.get("sequence"), chain.get("previous")
    well_formed = (
        isinstance(chain.get("target"), str)
        and isinstance(chain.get("hash"), str)
        and isinstance(sequence, int)
        and not isinstance(sequence, bool)
        and sequence >= 1
        and (previous is None or isinstance(previous, str))
    )
    return dict(chain) if well_formed else None


def read(path: str) -> nbformat.NotebookNode:
    """A record as written (papermill's load_notebook_node would add metadata to it)."""
    import nbformat
    from papermill.iorw import papermill_io

    return nbformat.reads(papermill_io.read(path), as_version=4)


def write(nb: nbformat.NotebookNode, path: str) -> None:
    from papermill.iorw import write_ipynb

    write_ipynb(nb, path)


def write_text(text: str, path: str) -> None:
    """A file beside a record (its HTML page), in the folder or under the prefix."""
    if is_s3(path):
        from papermill.s3 import S3

        S3().cp_string(text, path)
    else:
        Path(path).write_text(text, encoding="utf-8")


# -- the index -------------------------------------------------------------------------------


@dataclass
class Row:
    started_at: str
    runbook: str
    release: str
    target: str
    operator: str
    outcome: str
    kind: str  # release, plan or waves (KINDS)
    mode: str  # headless (bgkit run, papermill, CI) or interactive (a person in Jupyter)
    decided_by: str  # interactive: who clicked Approve or Roll back at the gate
    duration_seconds: float | None
    reason: str
    path: str


def row(path: str, nb: nbformat.NotebookNode) -> Row:
    record = from_notebook(nb) or {}
    papermill = nb.metadata.get("papermill", {})
    runbook = record.get("runbook") or Path(str(papermill.get("input_path") or path)).stem
    return Row(
        started_at=record.get("started_at") or str(papermill.get("start_time") or ""),
        runbook=runbook,
        release=record.get("release") or str(papermill.get("parameters", {}).get("release", "")),
        target=record.get("target_id") or record.get("target") or "",
        operator=record.get("operator") or "",
        outcome=record.get("outcome") or ("not run" if not_run(path, nb) else "no record"),
        kind=kind_of(record),
        mode=record.get("mode") or ("headless" if record else ""),  # older records: bgkit run's
        decided_by=_decided_by(record),
        duration_seconds=record.get("duration_seconds"),
        reason=record.get("reason") or "",
        path=path,
    )


def kind_of(record: dict[str, Any]) -> str:
    if record.get("kind") == "waves":
        return "waves"
    return "plan" if record.get("outcome") == "planned" else "release"


def not_run(path: str, nb: nbformat.NotebookNode) -> bool:
    """A record notebook that `bgkit lab` prepared and no kernel ever ran: not a record (yet).
    A kernel that ran its step 1 left a marker beside it (bgkit.lab_record), whatever the
    browser saved since."""
    return (
        LAB_KEY in nb.metadata
        and CHAIN_KEY not in nb.metadata
        and from_notebook(nb) is None
        and not any(cell.get("outputs") for cell in nb.cells)
        and (is_s3(path) or not started_marker(path).exists())
    )


def started_marker(path: str) -> Path:
    """Beside a record notebook run in Jupyter, until its kernel seals it: `.bgkit/<name>.started`
    (a hidden folder: not a record, and not scanned for records)."""
    notebook = Path(path)
    return notebook.parent / ".bgkit" / f"{notebook.name}.started"


def _decided_by(record: dict[str, Any]) -> str:
    """Who clicked at an interactive gate (not a timeout, nor a headless auto_promote)."""
    clicks = [
        e
        for e in record.get("events") or []
        if e.get("kind") == "gate"
        and e.get("mode") == "interactive"
        and e.get("decision")
        and not e.get("timed_out")
    ]
    return str(clicks[-1].get("by") or "") if clicks else ""


def since_time(text: str, now: datetime | None = None) -> datetime:
    """`--since`: an ISO date or time (UTC unless it says otherwise), or an age: 12h, 7d, 2w."""
    age = re.fullmatch(r"(\d{1,5})([hdw])", text.strip())
    if age:
        hours = int(age.group(1)) * {"h": 1, "d": 24, "w": 168}[age.group(2)]
        return (now or datetime.now(UTC)) - timedelta(hours=hours)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since: expected an ISO date or time (2026-11-01, 2026-11-01T14:00) or an age "
            f"(12h, 7d, 2w), got {text[:40]!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def index(
    location: str,
    *,
    runbook: str | None = None,
    outcome: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
) -> list[Row]:
    """The runs in a folder or prefix, oldest first, filtered."""
    rows = []
    for path, nb in read_all(location)[0]:
        entry = row(path, nb)
        if runbook and entry.runbook != runbook:
            continue
        if outcome and entry.outcome != outcome:
            continue
        if kind and entry.kind != kind:
            continue
        if since and (not entry.started_at or _time(entry.started_at) < since):
            continue
        rows.append(entry)
    return sorted(rows, key=lambda r: (r.started_at, r.path))


def render_rows(rows: list[Row], form: str) -> str:
    if form == "json":
        return json.dumps([asdict(r) for r in rows], indent=1)
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(Row.__dataclass_fields__), lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        return out.getvalue()
    table = [
        [
            r.started_at[:19].replace("T", " "),
            r.kind,
            r.runbook,
            r.release,
            r.outcome,
            "" if r.duration_seconds is None else f"{r.duration_seconds:.0f} s",
            r.mode,
            r.operator,
        ]
        for r in rows
    ]
    header = [
        "started (UTC)",
        "kind",
        "runbook",
        "release",
        "outcome",
        "duration",
        "mode",
        "operator",
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *table, strict=False)]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *table]
    ]
    # the target, the reason and the path are long: two lines each, under the table
    details = [
        f"{r.release}: target {r.target or '-'}"
        + (f"; gate decided by {r.decided_by}" if r.decided_by else "")
        + (f"; {r.reason}" if r.reason else "")
        + f"\n    {r.path}"
        for r in rows
    ]
    return "\n".join(lines) + ("\n\n" + "\n".join(details) if details else "") + "\n"


def _time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- the hash chain --------------------------------------------------------------------------


def content_hash(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the notebook as canonical JSON, without its chain's own `hash`."""
    data = json.loads(json.dumps(nb))  # a plain copy
    chain = data.get("metadata", {}).get(CHAIN_KEY)
    if isinstance(chain, dict):
        chain.pop("hash", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_target(nb: nbformat.NotebookNode, path: str) -> str:
    entry = row(path, nb)
    return entry.target or f"{entry.runbook} (no target: stopped before preflight)"


def last_link(location: str, target: str, *, skip: str) -> dict[str, Any] | None:
    """The chain of the newest record of `target` in the folder or prefix (not `skip`)."""
    newest = None
    for path, nb in read_all(location)[0]:
        chain = chain_of(nb)
        if path == skip or chain is None or chain["target"] != target:
            continue
        if newest is None or chain["sequence"] > newest["sequence"]:
            newest = chain
    return newest


def link(path: str, location: str) -> dict[str, Any]:
    """Add the record at `path` to its target's chain in `location`; returns its chain."""
    nb = read(path)
    target = chain_target(nb, path)
    previous = last_link(location, target, skip=path)
    chain = {
        "target": target,
        "sequence": (previous["sequence"] + 1) if previous else 1,
        "previous": previous["hash"] if previous else None,
    }
    nb.metadata[CHAIN_KEY] = chain  # (NotebookNode keeps a copy of the dict)
    chain["hash"] = nb.metadata[CHAIN_KEY]["hash"] = content_hash(nb)
    write(nb, path)
    written = read(path)  # what a verifier will read
    if content_hash(written) != chain["hash"]:
        raise RuntimeError(
            f"{path}: the record changed as it was written; its hash will not verify"
        )
    return dict(chain)


@dataclass
class Problem:
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def verify(location: str) -> tuple[int, list[Problem]]:
    """Check every record's hash and each target's chain. Returns (records checked, problems).

    A notebook that `bgkit lab` prepared and nobody ran is not a record: it is left out. One that
    a kernel ran but never sealed (the kernel died, or was stopped, before its release ended) is
    a problem: its release's record is missing.
    """
    records, unreadable = read_all(location)
    records = [(path, nb) for path, nb in records if not not_run(path, nb)]
    problems = list(unreadable)
    chains: dict[str, list[tuple[dict[str, Any], str, str]]] = {}
    for path, nb in records:
        chain = chain_of(nb)
        if chain is None:
            problems.append(
                Problem(
                    path,
                    "run in Jupyter but never sealed: its release did not end in its kernel (it "
                    "died or was stopped; the next release of the target recovers the traffic)"
                    if LAB_KEY in nb.metadata
                    else "no hash chain (not written by `bgkit run`, or stripped)",
                )
            )
            continue
        if content_hash(nb) != chain["hash"]:
            problems.append(Problem(path, "edited: its content no longer matches its hash"))
        started = row(path, nb).started_at
        chains.setdefault(str(chain.get("target")), []).append((chain, path, started))
    for target, links in chains.items():
        by_sequence: dict[int, tuple[dict[str, Any], str, str]] = {}
        for chain, path, started in links:
            sequence = chain.get("sequence")
            if sequence in by_sequence:
                problems.append(Problem(
                    path, f"record {sequence} of {target} twice (also {by_sequence[sequence][1]})"
                ))  # fmt: skip
                continue
            by_sequence[sequence] = (chain, path, started)
        for sequence in sorted(by_sequence):
            chain, path, started = by_sequence[sequence]
            if sequence == 1:
                if chain.get("previous") is not None:
                    problems.append(
                        Problem(path, "the first record of its target names a previous one")
                    )
                continue
            before = by_sequence.get(sequence - 1)
            if before is None:
                problems.append(Problem(
                    path, f"removed: record {sequence - 1} of {target}, which came before this "
                    f"one (hash {str(chain.get('previous'))[:12]}…), is missing"
                ))  # fmt: skip
                continue
            if chain.get("previous") != before[0].get("hash"):
                problems.append(Problem(
                    path, f"the record before it ({before[1]}) is not the one it was chained to"
                ))  # fmt: skip
            if started and before[2] and _time(started) < _time(before[2]):
                problems.append(Problem(
                    path, f"reordered: record {sequence} of {target} started before record "
                    f"{sequence - 1} ({before[1]})"
                ))  # fmt: skip
    return len(records) + len(unreadable), problems
