"""Publishing: the record as the release ends. The final state read back from AWS, the
figure of traffic, latency and errors (measured, from CloudWatch) with the judge's evidence,
and the record shown in the notebook's cells: summary, timeline, verdicts, figure, and the
machine-readable record (bgkit.record) that `bgkit run` and the audit trail read back.

A mixin of `Release`; it uses the release's record, pattern, judge, traffic and display.
"""

from __future__ import annotations

import importlib
import threading
from datetime import datetime, timedelta
from typing import Any

from .. import metrics as _metrics
from ..clock import floor_to
from ..judge import slow_metric
from ..lab_record import published
from ..record import Record
from .states import TERMINAL
from .traffic import checks_ratio


class Publishing:
    def _load_plots_meanwhile(self) -> None:
        """Import the plotting library (bgkit.plots: matplotlib) on a thread while the release
        waits for CloudWatch: a second of the record's making otherwise, at the very end."""
        threading.Thread(
            target=importlib.import_module, args=("bgkit.plots",), name="bgkit-plots", daemon=True
        ).start()

    def _publish(self, *, plot: bool) -> dict[str, Any]:
        """Read the final state back, plot, show and return the record; an ended release
        unlocks its target first."""
        record = self.record
        if self.state in TERMINAL:
            self._unlock()
            self._held_to_plan()
        for field, read in (
            ("final_split", self.pattern.read_split),
            ("final_state", self.pattern.describe),
        ):
            try:
                setattr(record, field, read())
            except Exception as error:  # recorded: the record says what it could not read back
                self._event(
                    "error", f"could not read the {field} back: {type(error).__name__}: {error}"
                )
        figure = None
        if plot and record.events and record.outcome != "planned":  # a plan measured nothing
            try:
                figure = self._figure()
            except Exception as error:  # recorded: a missing plot must never lose the record
                self._event("error", f"no plot: {type(error).__name__}: {error}")
        # A person's notebook: its kernel seals the record once the cell has shown it, or at its
        # exit, when the displays below may no longer reach anyone (bgkit.lab_record).
        published(record.to_dict())
        self._show(record, figure)
        return record.to_dict()

    def _figure(self):
        from .. import plots

        first = datetime.fromisoformat(self.record.events[0]["at"])
        if self.baseline is not None:  # show the window green was judged against
            first = min(first, self.baseline.start)
        # up to the last whole metric period: the one still running has no datapoint yet, and
        # waiting for it to end and be published would hold every release up to a period
        end = floor_to(self.clock.now(), self.params.metric_period_seconds)
        self._await_metrics(self.pattern.metric_source(), end)
        series = _metrics.read_series(
            self.session,
            self.pattern.metric_source(),
            first - timedelta(seconds=5),
            end,
            self.params.metric_period_seconds,
        )
        series = self.traffic.as_served(series, self.record.events)
        title = f"{self.params.runbook} · {self.params.release} · {self.record.outcome}"
        judge = self.judge
        return plots.release_figure(
            series,
            self.record.events,
            title,
            evidence=judge.evidence if judge else None,
            boundaries={m: t.boundary for m, t in judge.worse.items()} if judge else None,
            share=checks_ratio(self.pattern),
        )

    def _show(self, record: Record, figure: Any) -> None:
        import pandas as pd

        from ..record import to_json

        self._display.markdown(record.summary_markdown())
        if record.planned:
            self._show_plan(record.planned)
        timeline = pd.DataFrame(
            [
                {"at (UTC)": e["at"][11:23], "kind": e["kind"], "what": e["message"]}
                for e in record.events
            ]
        )
        self._display.markdown("### Timeline")
        self._display.table(timeline)
        if record.schema and "statements" in record.schema:
            self._display.markdown(schema_markdown(record.schema))
            rows = [{"result": st["result"], "blue's statement": st["sql"], "error": st["error"]}
                    for st in record.schema["statements"]]  # fmt: skip
            self._display.table(pd.DataFrame(rows))
        if record.verdicts:
            self._display.markdown("### Verdicts (CloudWatch, per bake window)")
            self._display.table(pd.DataFrame([verdict_row(v) for v in record.verdicts]))
        if figure is not None:
            self._display.markdown("### Traffic, latency and errors (measured, from CloudWatch)")
            self._display.figure(figure)
        self._display.record(record.to_dict(), to_json)

    def _show_plan(self, plan: dict[str, Any]) -> None:
        """A plan as a change ticket: what is there now, the calls, the rollbacks, how long."""
        import pandas as pd

        state = plan["state"]
        split = " / ".join(f"{c} {p}%" for c, p in state["split"].items())
        versions = "; ".join(f"{c}: {v}" for c, v in state["versions"].items()) or "not read"
        self._display.markdown(
            "## Plan: every change this release would make\n\n"
            f"**Now** (read from AWS): target `{state['target_id']}`; traffic {split}; "
            f"versions: {versions}.\n\n"
            "**The calls**, in order, per point of the release (a wait or the service's own "
            "move between them). None has been made: the plan's session only reads."
        )
        self._display.table(
            pd.DataFrame(
                [{"point": p["point"], **_shown(row)} for p in plan["points"] for row in p["calls"]]
            )
        )
        self._display.markdown(
            "**Rollback** from each point: the calls that put all traffic back on blue."
        )
        self._display.table(
            pd.DataFrame(
                [
                    {"from": p["point"], **_shown(row)}
                    for p in plan["points"]
                    for row in (p["rollback"] or [_none(p["note"])])
                ]
            )
        )
        duration = plan["duration"]
        self._display.markdown(
            f"**Duration**: about {duration['expected_seconds']:.0f} s, at most "
            f"{duration['longest_seconds']:.0f} s with every hold (plus deploying green and "
            "the smoke test)."
        )
        self._display.table(pd.DataFrame(duration["rows"]))
        judge = plan["judge"]
        settings = ", ".join(f"{k} {v}" for k, v in judge.items() if k != "boundaries")
        bounds = "; ".join(f"{m}: {b:.4g}" if isinstance(b, float) else f"{m}: {b}"
                           for m, b in judge["boundaries"].items())  # fmt: skip
        lines = [
            f"**The judge**: {settings}. Rolls back at evidence: {bounds}.",
            "",
            "**Not known until the release runs:**",
            *(f"* {u}" for u in plan["unknown"]),
        ]
        if plan["bookkeeping"]:
            lines += ["", "**bgkit's own bookkeeping** (not in the tables):"]
            lines += [f"* {b}" for b in plan["bookkeeping"]]
        self._display.markdown("\n".join(lines))


def _shown(row: dict[str, str]) -> dict[str, str]:
    """A call as the plan's tables show it: its parameters' hash is for machines."""
    return {k: v for k, v in row.items() if k != "digest"}


def _none(note: str) -> dict[str, str]:
    return {"call": "none", "IAM action": "", "resource": "", "what": note or "nothing to undo"}


def verdict_row(v: dict[str, Any]) -> dict[str, Any]:
    """A verdict as one row of the notebook's table (the record's verdicts, the gate's)."""
    window, blue_is = v["window"], v["blue_is"]
    thresholds = v["slow_thresholds_ms"]  # blue's quantiles (+ margin) that a slow request is above
    g, b = v["window_counts"]["green"], v["window_counts"]["blue"]
    if blue_is == "baseline":  # blue measured before an all-at-once switch
        b = v["total"]["blue"]

    def share(counts: dict[str, Any], what: str) -> str:
        n = counts["requests"]
        k = counts["errors"] if what == "errors" else (counts["slow"] or {}).get(what)
        return "" if not n or k is None else f"{100 * k / n:.2f}% ({k})"

    def ms(x: float | None) -> str:
        return "" if x is None else f"{x:.1f}"

    def evidence(metric: str) -> str:
        return f"{v['e_values'][metric]:.3g} / {v['boundaries'][metric]:.4g}"

    return {
        "step": v.get("step", ""),
        "green %": v["green_percent"],
        "window (UTC)": f"{window['start'][11:19]}–{window['end'][11:19]}"
        + (
            f" (blue {v['blue_window']['start'][11:19]}–{v['blue_window']['end'][11:19]})"
            if "blue_window" in v
            else ""
        ),
        "decision": v["decision"],
        "blue" + (" (before)" if blue_is == "baseline" else "") + " req": b["requests"],
        "blue 5xx": share(b, "errors"),
        **{f"blue slow {q}": share(b, q) for q in thresholds},
        "green req": g["requests"],
        "green 5xx": share(g, "errors"),
        **{f"green slow {q}": share(g, q) for q in thresholds},
        "green p99 ms": ms(v["p99_ms"]["green"]),
        "5xx evidence": evidence("errors"),
        **{f"slow {q} evidence": evidence(slow_metric(q)) for q in thresholds},
        **(
            {"green share (set / measured)": _ratio(v["sample_ratio"])}
            if "sample_ratio" in v
            else {}
        ),
        "reason": v["reason"],
    }


def _ratio(ratio: dict[str, Any]) -> str:
    """Green's share as configured and as measured (a flag's `on`), and whether they disagree."""
    measured = ratio["measured_percent"]
    shown = f"{ratio['configured_percent']:g}% / " + (
        "–" if measured is None else f"{measured:.1f}%"
    )
    return shown + (" MISMATCH" if ratio["mismatch"] else "")


def schema_markdown(schema: dict[str, Any]) -> str:
    """The record's schema section: verdict, migrations with their hashes, squawk's findings."""
    verdict = "compatible: blue keeps working" if schema["compatible"] else "**would break blue**"
    lines = [
        f"### Schema: green's migrations against blue ({schema['mode']}): {verdict}",
        "",
        f"Blue: {schema['blue']}, {schema['sampled_rows']} sampled row(s); checked in "
        f"{schema['seconds']:g} s; applied to the database: {'yes' if schema['applied'] else 'no'}.",
        "",
    ]
    lines += [f"* `{m['name']}` sha256 `{m['sha256'][:16]}…`" for m in schema["migrations"]]
    for reason in schema["reasons"]:
        lines.append(f"* refused: {reason}")
    for f in schema["findings"]:
        kind = "blocks" if f["blocks"] else "warning"
        lines.append(f"* {kind}: `{f['file']}` line {f['line']} [{f['rule']}] {f['message']}")
    return "\n".join(lines)
