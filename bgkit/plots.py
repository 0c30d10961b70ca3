"""Plots of measured blue/green traffic, latency and errors, with shifts and the decision marked."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .judge import metric_label

COLOURS = {"blue": "#1f5fbf", "green": "#2a9d3c"}


# each judged metric's colour in the evidence panel (bgkit.judge: 5xx, slow at each threshold)
EVIDENCE_COLOURS = {
    "errors": "#c0392b",
    "slow_p90": "#8e44ad",
    "slow_p99": "#d35400",
    "slow_p99.9": "#7f6000",
}


def release_figure(
    series: pd.DataFrame,
    events: list[dict[str, Any]],
    title: str,
    evidence: list[dict[str, Any]] | None = None,
    boundaries: dict[str, float] | None = None,
    share: bool = False,
) -> Figure:
    """Panels from CloudWatch datapoints: requests/s, p50/p99 latency, 5xx rate, and healthy
    targets per colour where the source reports them (boots, health checks and drains); with
    `share` (a service that splits requests itself, a flag), green's share of requests as
    measured against the share configured; then the judge's evidence that green is worse, per
    metric, against its decision boundary.

    Uses matplotlib's object API only: no pyplot state, no backend switch in the user's kernel.
    """
    colours = [c for c in ("blue", "green") if c in series.columns.get_level_values(0)]
    hosts = any(
        "healthy_hosts" in series[c].columns and series[c]["healthy_hosts"].notna().any()
        for c in colours
    )
    judged = bool(evidence) and bool(boundaries)
    share = share and set(colours) == {"blue", "green"}
    panels = 3 + hosts + share + judged
    fig = Figure(figsize=(9, 2.5 * panels), dpi=72)
    axes = fig.subplots(panels, 1, sharex=True)
    rps_ax, lat_ax, err_ax = axes[:3]
    for colour in colours:
        data = series[colour]
        c = COLOURS[colour]
        rps_ax.plot(data.index, data["rps"], color=c, label=colour, drawstyle="steps-post")
        lat_ax.plot(data.index, data["p50_ms"], color=c, linestyle="--", label=f"{colour} p50")
        lat_ax.plot(data.index, data["p99_ms"], color=c, label=f"{colour} p99")
        err_ax.plot(
            data.index, 100 * data["error_rate"], color=c, marker=".", linestyle="-", label=colour
        )
        if hosts and "healthy_hosts" in data.columns:
            axes[3].plot(
                data.index, data["healthy_hosts"], color=c, label=colour, drawstyle="steps-post"
            )
    if hosts:
        axes[3].set_ylabel("healthy targets")
        axes[3].legend(loc="upper left", fontsize=8)
    if share:
        _plot_share(axes[3 + hosts], series, events)
    if judged:
        _plot_evidence(axes[-1], evidence or [], boundaries or {})
    rps_ax.set_ylabel("requests / s")
    lat_ax.set_ylabel("latency (ms)")
    err_ax.set_ylabel("error rate (%)")
    axes[-1].set_xlabel("time (UTC)")
    for ax in axes:
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _mark_events(ax, events)
    rps_ax.legend(loc="upper left", fontsize=8)
    lat_ax.legend(loc="upper left", fontsize=8, ncol=2)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    rps_ax.set_title(title, fontsize=10)
    # fixed margins in inches (the y labels, the title, the time axis): tight_layout measured
    # every label of every panel first, 0.4 s of each release's record
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.1, right=0.98, top=1 - 0.35 / height, bottom=0.5 / height, hspace=0.18
    )
    return fig


def _plot_evidence(ax: Axes, evidence: list[dict[str, Any]], boundaries: dict[str, float]) -> None:
    """The judge's e-values (how many times likelier the data are if green is worse), log
    scale, one line per test (5xx, and slow requests at each of blue's thresholds) with its
    boundary: crossing it is a rollback. A series of one verdict is drawn as a marker."""
    at = [pd.Timestamp(datetime.fromisoformat(e["at"])) for e in evidence]
    ax.set_yscale("log")
    # shown between 1e-3 and a million times the boundary: a catastrophic green's evidence
    # (1e300) would otherwise overflow the log axis, and the decision is the crossing anyway
    ceiling = 1e6 * max(boundaries.values(), default=1.0)
    metrics = [m for m in boundaries if all(f"{m}_e_value" in e for e in evidence)]
    for metric in metrics:
        colour, boundary = EVIDENCE_COLOURS.get(metric, "#555555"), boundaries[metric]
        values = [min(max(e[f"{metric}_e_value"], 1e-3), ceiling) for e in evidence]
        # a step line needs two points: a release rolled back at its first verdict has one,
        # the number that decided, so a short series is also drawn as markers
        ax.plot(at, values, color=colour, drawstyle="steps-post", marker="o" if len(at) < 4 else None,
                markersize=5, label=f"{metric_label(metric)} (rolls back at {boundary:.4g}, dashed)")  # fmt: skip
        ax.axhline(boundary, color=colour, linestyle="--", linewidth=1)
    top = max([*boundaries.values(), *(e[f"{m}_e_value"] for e in evidence for m in metrics)])
    ax.set_ylim(1e-3, min(top, ceiling) * 10)
    ax.set_ylabel("evidence green\nis worse (e-value)")
    ax.legend(loc="best", fontsize=8)  # a few lines: wherever they are not


def _plot_share(ax: Axes, series: pd.DataFrame, events: list[dict[str, Any]]) -> None:
    """Green's share of the requests measured per period, and the share configured (each
    shift, promotion or rollback event's percentage, from when it was made)."""
    total = series["blue"]["rps"].fillna(0) + series["green"]["rps"].fillna(0)
    measured = 100 * series["green"]["rps"].fillna(0) / total.where(total > 0)
    ax.plot(measured.index, measured, color=COLOURS["green"], marker=".", linestyle="-",
            linewidth=0.8, label="green's share, measured")  # fmt: skip
    changes = [
        (pd.Timestamp(datetime.fromisoformat(e["at"])), e["green_percent"])
        for e in events
        if "green_percent" in e and e["kind"] in ("shift", "promote", "rollback")
    ]
    if changes:
        start = [(series.index[0], 0)] if len(series.index) else []
        at, percent = zip(*[*start, *changes, (series.index[-1], changes[-1][1])], strict=True)
        ax.plot(at, percent, color="black", drawstyle="steps-post", linewidth=1,
                label="configured")  # fmt: skip
    ax.set_ylim(0, 105)
    ax.set_ylabel("green's share (%)")
    ax.legend(loc="upper left", fontsize=8)


def _mark_events(ax: Axes, events: list[dict[str, Any]]) -> None:
    top = ax.get_ylim()[1]
    for event in events:
        at = pd.Timestamp(datetime.fromisoformat(event["at"]))
        if event["kind"] == "shift" and "green_percent" in event:
            ax.axvline(at, color="grey", linestyle=":", linewidth=1)
            ax.text(at, top, f" {event['green_percent']}%", fontsize=7, va="top", color="grey")
        elif event["kind"] in ("promote", "rollback") and "green_percent" in event:  # decisions
            colour = "#2a9d3c" if event["kind"] == "promote" else "#c0392b"
            ax.axvline(at, color=colour, linewidth=1.5)
            ax.text(at, top, f" {event['kind']}", fontsize=8, va="top", color=colour)


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
