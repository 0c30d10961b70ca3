"""A wave release's own record: how every target's release ended, wave by wave.

`bgkit waves` (bgkit.waves.runner) writes it when the waves end or stop, from the results it
measured; CI's summary job writes it from the target records it downloaded
(`results_from_records`). It is a record like a release's: `metadata["bgkit"]` holds it (kind
"waves", with a release record's top-level fields where they apply, so `bgkit audit` lists it),
`audit.link` chains it in its folder or prefix as `waves:<name>` (the chain of that name's wave
releases), and its reviewer's HTML page is written beside it.

The notebook is built in this process with nbformat: no kernel runs. Its code cell's source is
the call that makes its outputs, `show(record, ...)` (`record` being the notebook's
metadata["bgkit"]); run in a kernel it displays the same outputs: the targets wave by wave, a
timeline of their measured times, and the machine-readable record.

Times are measured, never made up: a target's start and finish are its record's (where it has
none, its process's as the runner measured it, else papermill's of its notebook); a target that
never started is listed with no bar.
"""

from __future__ import annotations

import base64
import html
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import audit
from ..params import environment_secrets, redact, scrub
from ..record import OUTCOME_TEXT, RECORD_MIME, from_notebook, to_json
from .manifest import Manifest, Target

if TYPE_CHECKING:  # imported on use: nbformat's and matplotlib's imports take a second
    import nbformat
    from matplotlib.figure import Figure

KIND = "waves"
NOT_STARTED = "not started"
ENDED = ("promoted", "rolled_back", "failed")  # a target release's outcomes (a plan is none)
SHOWN = {**OUTCOME_TEXT, NOT_STARTED: "not started"}
# the banner's colours on the reviewer's page (bgkit.html) and the plots' promote/rollback
COLOURS = {"promoted": "#2a9d3c", "rolled_back": "#d49b00", "failed": "#c0392b"}
BAKE_COLOUR = "#9e9e9e"
PROCESS_COLOUR = "#606060"


@dataclass
class TargetResult:
    """How one target's release ended, as the wave release's record keeps it."""

    name: str
    wave: int
    runbook: str
    region: str
    release: str  # <manifest release>.<target name>
    outcome: str  # promoted | rolled_back | failed | not started
    reason: str
    started_at: datetime | None = None  # measured: its record's, else its process's
    finished_at: datetime | None = None
    record: str = ""  # its record's path or s3:// URL; "" if none
    record_hash: str = ""  # its record's audit chain hash; "" if none
    exit_code: int | None = None  # its `bgkit run` process's; None where none was seen
    # its `bgkit run` process, as the runner measured it: the release plus starting a kernel
    # (and, in an embedded sandbox, the sandbox) before it and writing the record after it
    process_started_at: datetime | None = None
    process_finished_at: datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "wave": self.wave,
            "runbook": self.runbook,
            "region": self.region,
            "release": self.release,
            "outcome": self.outcome,
            "reason": self.reason,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "record": self.record,
            "record_hash": self.record_hash,
            "exit_code": self.exit_code,
            "process_started_at": _iso(self.process_started_at),
            "process_finished_at": _iso(self.process_finished_at),
        }


def not_started(target: Target, manifest: Manifest, reason: str) -> TargetResult:
    """A target whose release never started (the waves stopped first, or no record of it)."""
    return TargetResult(target.name, target.wave, target.runbook, target.region,
                        manifest.release_of(target), NOT_STARTED, reason)  # fmt: skip


def result_of_record(
    target: Target,
    manifest: Manifest,
    path: str,
    nb: nbformat.NotebookNode,
    *,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    exit_code: int | None = None,
) -> TargetResult:
    """One target's result from its record notebook (`bgkit run`'s, read from `path`).

    Its outcome, reason and times are its record's (metadata["bgkit"]), its hash its chain's
    (metadata["bgkit_chain"]). A notebook without an outcome (the run stopped before recording
    it) is a failure, with the error it stopped on; its times are then `started_at` and
    `finished_at`, the runner's measure of the process, else papermill's of the notebook.
    Raises ValueError for a record of another release, or a plan.
    """
    release = manifest.release_of(target)
    entry = audit.row(path, nb)
    if entry.release and entry.release != release:
        raise ValueError(f"{path}: a record of release {entry.release}, not {release}")
    if entry.outcome == "planned":
        raise ValueError(f"{path}: a plan of release {release}, not the release")
    record = from_notebook(nb) or {}
    outcome = record.get("outcome")
    reason = str(record.get("reason") or "")
    if outcome not in ENDED:
        outcome, reason = "failed", _stopped_before_its_outcome(nb, bool(record))
    papermill = nb.metadata.get("papermill", {})
    chain = audit.chain_of(nb)
    return TargetResult(
        name=target.name,
        wave=target.wave,
        runbook=target.runbook,
        region=target.region or str((record.get("parameters") or {}).get("region") or ""),
        release=release,
        outcome=outcome,
        reason=reason,
        started_at=_time(record.get("started_at"))
        or started_at
        or _time(papermill.get("start_time")),
        finished_at=_time(record.get("finished_at"))
        or finished_at
        or _time(papermill.get("end_time")),
        record=path,
        record_hash=chain["hash"] if chain else "",
        exit_code=exit_code,
    )


def _stopped_before_its_outcome(nb: nbformat.NotebookNode, has_record: bool) -> str:
    errors = [
        f"{out.get('ename')}: {out.get('evalue')}"
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    said = (
        "its record has no outcome: the release did not end"
        if has_record
        else "no release record: the run stopped before recording its outcome"
    )
    return said + (f" ({errors[0]})"[:300] if errors else "")


def results_from_records(manifest: Manifest, location: str) -> list[TargetResult]:
    """Every target's result from the records in a folder or under an S3 prefix (CI's summary
    job downloads them all into one folder). A target's record is the newest (by its start)
    whose release is the target's and whose runbook is its runbook; a plan is no release."""
    found, unreadable = audit.read_all(location)
    targets = {(manifest.release_of(t), t.runbook): t for t in manifest.targets}
    newest: dict[str, tuple[datetime, str, nbformat.NotebookNode]] = {}
    for path, nb in found:  # sorted by path: of two started together, the later path wins
        entry = audit.row(path, nb)
        target = targets.get((entry.release, entry.runbook))
        if target is None or entry.outcome in ("planned", "not run"):
            continue
        started = _time(entry.started_at) or datetime.min.replace(tzinfo=UTC)
        if target.name not in newest or started >= newest[target.name][0]:
            newest[target.name] = (started, path, nb)
    unread = f" ({len(unreadable)} notebooks there could not be read)" if unreadable else ""
    return [
        result_of_record(t, manifest, *newest[t.name][1:])
        if t.name in newest
        else not_started(
            t,
            manifest,
            f"no record was found for release {manifest.release_of(t)} under {location}{unread}",
        )
        for t in manifest.targets
    ]


# -- the record ------------------------------------------------------------------------------


def summary_record(
    manifest: Manifest,
    results: Iterable[TargetResult],
    *,
    started_at: datetime | None,
    finished_at: datetime | None,
    started_by: str,
    stopped_by: str | None = None,
    bakes: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The wave release's machine-readable record (its notebook's metadata["bgkit"]).

    `results`: one per target; a target without one was not started. `started_at` and
    `finished_at`: the waves' own, as the runner measured them; None (CI's summary job, which did
    not see them run): its targets' earliest start and latest finish. `started_by`: who started
    the waves (the operator). `stopped_by`: why the runner stopped of its own accord, if it did
    (interrupted, a timeout); a target not promoted says so itself. `bakes`: the waits between
    waves that the runner measured, each {"after_wave", "started_at", "finished_at"}.

    Outcome: promoted when every target was; else the first target not promoted (in wave order,
    by finish time) decides: rolled_back if it was rolled back, else failed.
    """
    results = _complete(manifest, list(results))
    first = _first_not_promoted(results)
    outcome = _outcome(results)
    starts = [r.started_at for r in results if r.started_at]
    finishes = [r.finished_at for r in results if r.finished_at]
    started_at = started_at or min(starts, default=None)
    finished_at = finished_at or max(finishes, default=None)
    duration = (
        round((finished_at - started_at).total_seconds(), 3) if started_at and finished_at else None
    )
    return {
        "kind": KIND,
        "runbook": KIND,
        "release": manifest.release,
        "target": KIND,
        "target_id": f"{KIND}:{manifest.name}",
        "outcome": outcome,
        "reason": _reason(results, first, stopped_by),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "duration_seconds": duration,
        "operator": started_by,
        "mode": "headless",
        "parameters": redact(manifest.parameters),
        "name": manifest.name,
        "manifest": manifest.path,
        "max_parallel": manifest.max_parallel,
        "bake_between_waves_seconds": manifest.bake_between_waves_seconds,
        "secrets": list(manifest.secrets),  # their names: the values never leave the environment
        "targets": [r.to_dict() for r in results],
        "waves": [
            _wave(n, [r for r in results if r.wave == n]) for n in range(1, len(manifest.waves) + 1)
        ],
        "bakes": [
            {
                "after_wave": int(bake["after_wave"]),
                "started_at": _iso(_time(bake.get("started_at"))),
                "finished_at": _iso(_time(bake.get("finished_at"))),
            }
            for bake in bakes
        ],
        "stopped_by": None if first is None else _stopper(first),
        "runner_stopped": stopped_by,
    }


def _stopper(first: TargetResult) -> dict[str, Any]:
    return {"name": first.name, "wave": first.wave, "outcome": first.outcome,
            "reason": first.reason}  # fmt: skip


def _complete(manifest: Manifest, results: list[TargetResult]) -> list[TargetResult]:
    """One result per target, in the manifest's (wave) order; one not given was not started."""
    given = {r.name: r for r in results}
    if unknown := [name for name in given if name not in {t.name for t in manifest.targets}]:
        raise ValueError(f"results of targets not in {manifest.path}: {', '.join(unknown)}")
    return [
        given.get(t.name) or not_started(t, manifest, "the wave release stopped before it started")
        for t in manifest.targets
    ]


def _first_not_promoted(results: list[TargetResult]) -> TargetResult | None:
    """In wave order, the earliest finish first; those that never finished after."""
    return min(
        (r for r in results if r.outcome != "promoted"),
        key=lambda r: (r.wave, r.finished_at is None, r.finished_at.timestamp() if r.finished_at else 0),
        default=None,
    )  # fmt: skip


def _outcome(results: list[TargetResult]) -> str:
    first = _first_not_promoted(results)
    if first is None:
        return "promoted"
    return "rolled_back" if first.outcome == "rolled_back" else "failed"


def _wave(n: int, results: list[TargetResult]) -> dict[str, Any]:
    starts = [r.started_at for r in results if r.started_at]
    finishes = [r.finished_at for r in results if r.finished_at]
    return {
        "wave": n,
        "targets": [r.name for r in results],
        "started_at": _iso(min(starts, default=None)),
        "finished_at": _iso(max(finishes, default=None)),
        "outcome": NOT_STARTED
        if all(r.outcome == NOT_STARTED for r in results)
        else _outcome(results),
    }


def _reason(results: list[TargetResult], first: TargetResult | None, stopped: str | None) -> str:
    """Such as: wave 2: target eu-west-1 rolled back (<why>); wave 3 (ap-southeast-2) not
    started; promoted and left promoted: us-east-1, eu-central-1."""
    promoted = [r.name for r in results if r.outcome == "promoted"]
    if first is None:
        waves = len({r.wave for r in results})
        return f"every target promoted: {len(results)} in {waves} wave{'s' * (waves > 1)}"
    parts = [f"stopped: {stopped}"] if stopped else []
    ended_badly = sorted(
        (r for r in results if r.outcome in ("rolled_back", "failed")),
        key=lambda r: (r is not first, r.wave, r.finished_at.timestamp() if r.finished_at else 0),
    )
    for r in ended_badly:
        why = f" ({r.reason})" if r.reason else ""
        parts.append(f"wave {r.wave}: target {r.name} {r.outcome.replace('_', ' ')}{why}")
    for n in sorted({r.wave for r in results if r.outcome == NOT_STARTED}):
        names = [r.name for r in results if r.wave == n and r.outcome == NOT_STARTED]
        parts.append(f"wave {n} ({', '.join(names)}) not started")
    parts.append(
        f"promoted and left promoted: {', '.join(promoted)}" if promoted else "none promoted"
    )
    return "; ".join(parts)


# -- the notebook ----------------------------------------------------------------------------


def show(record: Mapping[str, Any], *, at: str | None = None, root: str | None = None) -> None:
    """Display the wave release's outputs in a notebook (IPython's display): its targets wave by
    wave, their timeline, and the record. `at`: where the summary notebook is, and `root`: the
    folder or prefix it is chained in; a target's record under `root` is linked relative to it."""
    from IPython.display import display

    for bundle in outputs(record, at=at, root=root):
        display(bundle, raw=True)


def outputs(
    record: Mapping[str, Any], *, at: str | None = None, root: str | None = None
) -> list[dict[str, Any]]:
    """The MIME bundles `show` displays, in order."""
    from ..plots import png

    figure = timeline_figure(record)
    targets_md = "### Targets, wave by wave\n\n" + targets_table(record, at=at, root=root)
    timeline_md = "### Timeline (measured: each target's release from its start to its finish)"
    summary = f"bgkit record: wave release {record['release']} {record['outcome']}"
    return [
        {"text/markdown": targets_md, "text/plain": targets_md},
        {"text/markdown": timeline_md, "text/plain": timeline_md},
        {
            "image/png": base64.b64encode(png(figure)).decode("ascii"),
            "text/plain": f"<timeline of {len(record['targets'])} targets>",
        },
        {RECORD_MIME: json.loads(to_json(dict(record))), "text/plain": summary},
    ]


def targets_table(
    record: Mapping[str, Any], *, at: str | None = None, root: str | None = None
) -> str:
    """The targets as a Markdown table, in wave order."""
    header = "| wave | target | region | runbook | outcome | duration | why | record | sha256 |"
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    for t in record["targets"]:
        duration = "" if t["duration_seconds"] is None else f"{t['duration_seconds']:.1f} s"
        why = "" if t["outcome"] == "promoted" else t["reason"]
        digest = f"`{t['record_hash'][:16]}`" if t["record_hash"] else ""
        cells = [str(t["wave"]), t["name"], t["region"], t["runbook"],
                 SHOWN.get(t["outcome"], t["outcome"]), duration, why,
                 _link(t["record"], at, root), digest]  # fmt: skip
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def heading_markdown(record: Mapping[str, Any]) -> str:
    """The notebook's first cell: what was released, how it ended, who started it, from what."""
    outcome = SHOWN.get(record["outcome"], record["outcome"])
    duration = record["duration_seconds"]
    stopper = record["stopped_by"]
    waves = record["waves"]
    rows = [
        ("Outcome", outcome),
        ("Why", record["reason"]),
        ("Started by", f"`{record['operator']}`"),
        ("Manifest", f"`{record['manifest']}`"),
        ("Started (UTC)", (record["started_at"] or "")[:19]),
        ("Duration", "" if duration is None else f"{duration:.1f} s"),
        (
            "Targets",
            f"{len(record['targets'])} in {len(waves)} waves (at most {record['max_parallel']} "
            f"at once; {record['bake_between_waves_seconds']:g} s bake between waves)",
        ),
        (
            "Stopped by",
            ""
            if stopper is None
            else f"{stopper['name']} (wave {stopper['wave']}, {SHOWN.get(stopper['outcome'])})",
        ),
    ]
    table = "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows)
    return (
        f"# Wave release {record['release']} of {record['name']}: {outcome}\n\n"
        f"| | |\n|---|---|\n{table}\n"
    )


def notebook(
    record: Mapping[str, Any], *, at: str | None = None, root: str | None = None
) -> nbformat.NotebookNode:
    """The summary notebook, built here (no kernel): heading, then `show`'s call and outputs."""
    import nbformat

    source = (
        '# record: this notebook\'s metadata["bgkit"]; the outputs were made by this call\n'
        "# as the notebook was written (no kernel ran)\n"
        "from bgkit.waves.summary import show\n\n"
        f"show(record, at={at!r}, root={root!r})"
    )
    code = nbformat.v4.new_code_cell(source, execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("display_data", data=bundle, metadata={})
        for bundle in outputs(record, at=at, root=root)
    ]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(heading_markdown(record)), code]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["bgkit"] = json.loads(to_json(dict(record)))
    return nb


def write(
    manifest: Manifest, record: Mapping[str, Any], output: str | None
) -> tuple[str, dict[str, Any]]:
    """Write the summary notebook where `bgkit run` would put a record (no `output`:
    outputs/<date>/waves-<name>-<release>-<time>.ipynb; a folder or s3:// prefix: the same
    layout under it; a .ipynb: there), chain it (audit.link), and write its HTML page beside it.
    Returns (its path or URL, its chain). The values of this process's BGKIT_SECRET_* variables
    are scrubbed from it, as `bgkit run`'s engine does. cli.UsageError: `output` exists."""
    from ..cli import record_location
    from ..html import render_html

    out, root = record_location(output, f"{KIND}-{manifest.name}", manifest.release)
    nb = scrub(notebook(record, at=out, root=root), environment_secrets())
    audit.write(nb, out)
    chain = audit.link(out, root)
    audit.write_text(render_html(audit.read(out)), out.removesuffix(".ipynb") + ".html")
    return out, chain


# -- the timeline ----------------------------------------------------------------------------


def timeline_figure(record: Mapping[str, Any]) -> Figure:
    """One bar per target from its measured start to its measured finish, coloured by outcome,
    wave by wave from the top, over a line for its `bgkit run` process where the runner
    measured it; the bakes between waves as shaded spans. A target that did not
    start (or whose finish was not measured) has no bar: only its label and a note."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    targets = record["targets"]
    fig = Figure(figsize=(9, 1.4 + 0.4 * len(targets)), dpi=72)
    ax = fig.subplots()
    note = ax.get_yaxis_transform()  # x in the axes (0 to 1), y in the data: a row's label
    shown: dict[str, Any] = {}
    for y, t in enumerate(targets):
        start, finish = _time(t["started_at"]), _time(t["finished_at"])
        began, ended = _time(t.get("process_started_at")), _time(t.get("process_finished_at"))
        if began and ended:  # its process, behind its release: a kernel starts, a record is written
            ax.plot(mdates.date2num([began, ended]), [y, y], color=PROCESS_COLOUR, linewidth=2)
            shown["its bgkit run process"] = PROCESS_COLOUR
        if start and finish:
            colour = COLOURS.get(t["outcome"], "#555555")
            left = mdates.date2num(start)
            ax.barh(y, mdates.date2num(finish) - left, left=left, height=0.6, color=colour)
            shown[t["outcome"]] = colour
        elif start:  # the start was measured, the finish not: the start only
            ax.plot([mdates.date2num(start)], [y], marker="|", markersize=14, color="black")
            ax.text(0.01, y, "  finish not measured", transform=note, va="center", fontsize=8)
        else:
            ax.text(0.01, y, f"{t['outcome']}", transform=note, va="center", fontsize=8,
                    color="#555555", style="italic")  # fmt: skip
    for bake in record.get("bakes") or []:
        start, finish = _time(bake["started_at"]), _time(bake["finished_at"])
        if start and finish:
            ax.axvspan(mdates.date2num(start), mdates.date2num(finish), color=BAKE_COLOUR,
                       alpha=0.3, linewidth=0)  # fmt: skip
            shown["bake between waves"] = BAKE_COLOUR
    waves = [t["wave"] for t in targets]
    for y in range(1, len(targets)):
        if waves[y] != waves[y - 1]:
            ax.axhline(y - 0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(targets)))
    ax.set_yticklabels([f"wave {t['wave']} · {t['name']}" for t in targets], fontsize=9)
    ax.set_ylim(len(targets) - 0.5, -0.5)  # wave 1 at the top
    if any(_time(t["started_at"]) for t in targets):
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.set_xlabel("time (UTC)")
    else:
        ax.set_xticks([])
        ax.set_xlabel("no target started: nothing was measured")
    ax.use_sticky_edges = False  # a margin before the first bar, as after the last
    ax.margins(x=0.02)
    ax.grid(axis="x", alpha=0.3)
    if shown:
        handles = [Patch(color=c, alpha=0.3 if n == "bake between waves" else 1,
                         label=SHOWN.get(n, n)) for n, c in shown.items()]  # fmt: skip
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(f"waves · {record['name']} · {record['release']} · {record['outcome']}",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


# -- helpers ---------------------------------------------------------------------------------


def _link(path: str, at: str | None, root: str | None) -> str:
    if not path:
        return ""
    relative = _relative(path, at, root)
    if relative is None:
        return f"`{path}`"
    link = f"[{posixpath.basename(relative)}]({quote(relative)})"
    page = path.removesuffix(".ipynb") + ".html"  # its reviewer's page (bgkit run --html)
    if not audit.is_s3(path) and Path(page).is_file():
        link += f" · [page]({quote(relative.removesuffix('.ipynb') + '.html')})"
    return link


def _relative(path: str, at: str | None, root: str | None) -> str | None:
    """`path` from the folder of `at`, when both are under `root`; else None."""
    if not at or not root or audit.is_s3(path) != audit.is_s3(at):
        return None
    if audit.is_s3(path):
        prefix = root.rstrip("/") + "/"
        if not (path.startswith(prefix) and at.startswith(prefix)):
            return None
        here = posixpath.dirname(at[len(prefix) :]) or "."
        return posixpath.relpath(path[len(prefix) :], here)
    base, target = Path(root).resolve(), Path(path).resolve()
    here = Path(at).resolve().parent
    if not (target.is_relative_to(base) and here.is_relative_to(base)):
        return None
    return Path(os.path.relpath(target, here)).as_posix()


def _cell(value: Any) -> str:
    """Text in a Markdown table's cell: one line, its pipes escaped, and no HTML (a reason or a
    target's last line of output is shown as text, never rendered as markup)."""
    return html.escape(" ".join(str(value).split()), quote=False).replace("|", "\\|")


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _time(value: Any) -> datetime | None:
    """A datetime from a record's ISO text (or a datetime); None if there is none. UTC unless
    it says otherwise."""
    if not value:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)
