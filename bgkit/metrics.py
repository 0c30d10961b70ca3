"""Reading blue and green evidence back from CloudWatch, exactly as from AWS.

A pattern says where its metrics live (`MetricSource`); this module asks CloudWatch for
request counts, 5xx counts and latency percentiles per colour. Nothing here computes a
number CloudWatch did not return: a period with no datapoint is reported as no requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from .aws import AwsSession
from .judge import Counts

PERCENTILES = ("p50", "p90", "p99")
# read for blue's baseline too: the judge's slowest threshold (bgkit.judge.QUANTILES)
WINDOW_PERCENTILES = (*PERCENTILES, "p99.9")


@dataclass(frozen=True)
class MetricSource:
    """Where a pattern's per-colour metrics are, in CloudWatch terms."""

    namespace: str
    requests: str  # count of requests (statistic Sum)
    errors: str  # count of 5xx responses (statistic Sum); AWS omits zero datapoints
    latency: str  # response time (percentile statistics)
    latency_to_ms: float  # factor from the metric's unit to milliseconds
    dimensions: Mapping[str, Mapping[str, str]]  # colour -> {dimension name: value}
    healthy_hosts: str | None = None  # count of healthy targets (plotted, never judged)


def alb_source(load_balancer_arn: str, target_groups: Mapping[str, str]) -> MetricSource:
    """An Application Load Balancer's per-target-group metrics ("CloudWatch metrics for your
    Application Load Balancer"): colour -> target group ARN."""
    return albs_source({c: (load_balancer_arn, tg) for c, tg in target_groups.items()})


def albs_source(targets: Mapping[str, tuple[str, str]]) -> MetricSource:
    """Per-target-group ALB metrics where each colour may sit behind its own load balancer:
    colour -> (load balancer ARN, target group ARN)."""
    return MetricSource(
        namespace="AWS/ApplicationELB",
        requests="RequestCount",
        errors="HTTPCode_Target_5XX_Count",
        latency="TargetResponseTime",
        latency_to_ms=1000.0,
        healthy_hosts="HealthyHostCount",
        dimensions={
            colour: {
                "LoadBalancer": lb.split(":loadbalancer/", 1)[1],
                "TargetGroup": tg.split(":", 5)[5],
            }
            for colour, (lb, tg) in targets.items()
        },
    )


@dataclass(frozen=True)
class WindowStats:
    colour: str
    start: datetime
    end: datetime
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    p90_ms: float | None = None
    p999_ms: float | None = None

    @property
    def quantiles_ms(self) -> dict[str, float | None]:
        """The latency percentiles by CloudWatch's names ("p90", "p99", "p99.9")."""
        return {"p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms, "p99.9": self.p999_ms}

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "colour": self.colour,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p99.9_ms": self.p999_ms,
        }


def _queries(
    source: MetricSource,
    period: int,
    hosts: bool = False,
    percentiles: tuple[str, ...] = PERCENTILES,
) -> list[dict[str, Any]]:
    queries = []
    for colour, dims in source.dimensions.items():
        dimensions = [{"Name": k, "Value": v} for k, v in dims.items()]

        def stat(qid: str, name: str, statistic: str, dims=dimensions) -> dict[str, Any]:
            return _stat(qid, source, name, statistic, dims, period)

        queries.append(stat(f"{colour}_requests", source.requests, "Sum"))
        queries.append(stat(f"{colour}_errors", source.errors, "Sum"))
        for p in percentiles:  # a query's id has no dot: p99.9 is p99_9
            queries.append(stat(f"{colour}_{p.replace('.', '_')}", source.latency, p))
        if hosts and source.healthy_hosts:  # the fewest healthy targets in the period
            queries.append(stat(f"{colour}_hosts", source.healthy_hosts, "Minimum"))
    return queries


def _fetch(
    session: AwsSession, queries: list[dict], start: datetime, end: datetime
) -> dict[str, dict]:
    cloudwatch = session.client("cloudwatch")
    results: dict[str, dict[datetime, float]] = {q["Id"]: {} for q in queries}
    for page in cloudwatch.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending"
    ):
        for result in page["MetricDataResults"]:
            for ts, value in zip(result["Timestamps"], result["Values"], strict=True):
                results[result["Id"]][ts.astimezone(start.tzinfo)] = value
    return results


def has_datapoint(
    session: AwsSession, source: MetricSource, start: datetime, end: datetime, period: int
) -> bool:
    """True once CloudWatch holds a request-count datapoint (either colour) in [start, end)."""
    queries = [q for q in _queries(source, period) if q["Id"].endswith("_requests")]
    results = _fetch(session, queries, start, end)
    return any(results[q["Id"]] for q in queries)


def read_window(
    session: AwsSession, source: MetricSource, start: datetime, end: datetime
) -> dict[str, WindowStats]:
    """Counts and percentiles per colour over [start, end), one CloudWatch period wide."""
    period = int((end - start).total_seconds())
    results = _fetch(session, _queries(source, period, percentiles=WINDOW_PERCENTILES), start, end)
    stats = {}
    for colour in source.dimensions:

        def value(qid: str, colour=colour) -> float | None:
            return results[f"{colour}_{qid}"].get(start)

        p50, p90, p99, p999 = (value(p) for p in ("p50", "p90", "p99", "p99_9"))
        stats[colour] = WindowStats(
            colour=colour,
            start=start,
            end=end,
            requests=int(value("requests") or 0),
            errors=int(value("errors") or 0),
            p50_ms=None if p50 is None else p50 * source.latency_to_ms,
            p99_ms=None if p99 is None else p99 * source.latency_to_ms,
            p90_ms=None if p90 is None else p90 * source.latency_to_ms,
            p999_ms=None if p999 is None else p999 * source.latency_to_ms,
        )
    return stats


def read_periods(
    session: AwsSession,
    source: MetricSource,
    start: datetime,
    end: datetime,
    period: int,
    slow_thresholds_ms: Mapping[str, float],
) -> list[tuple[datetime, dict[str, Counts]]]:
    """The judge's inputs per metric period in [start, end): per colour, requests, 5xx and the
    requests slower than each of `slow_thresholds_ms` (by name). A slow count is CloudWatch's
    percentile rank (`PR(:threshold)`, the share at or under it) applied to the latency's
    SampleCount; a period with requests but no latency datapoint has no slow counts (None),
    never a guess. A period whose numbers do not fit together yet (a 5xx count but no request
    count, more 5xx than requests) is left out: CloudWatch has not published all of it."""
    queries = []
    for colour, dims in source.dimensions.items():
        metric_dims = [{"Name": k, "Value": v} for k, v in dims.items()]
        for qid, name, statistic in (
            ("requests", source.requests, "Sum"),
            ("errors", source.errors, "Sum"),
            ("samples", source.latency, "SampleCount"),
        ):
            queries.append(_stat(f"{colour}_{qid}", source, name, statistic, metric_dims, period))
        for n, threshold_ms in enumerate(slow_thresholds_ms.values()):
            threshold = f"{threshold_ms / source.latency_to_ms:.9f}".rstrip("0").rstrip(".")
            rank = f"PR(:{threshold})"
            queries.append(
                _stat(f"{colour}_fast{n}", source, source.latency, rank, metric_dims, period)
            )
    results = _fetch(session, queries, start, end)
    stamps = sorted({ts for r in results.values() for ts in r if start <= ts < end})
    periods = []
    for ts in stamps:
        counts = {}
        for colour in source.dimensions:
            fast_ids = [f"{colour}_fast{n}" for n in range(len(slow_thresholds_ms))]
            if ts not in results[f"{colour}_requests"] and any(
                ts in results[q] for q in (f"{colour}_errors", f"{colour}_samples", *fast_ids)
            ):
                break  # the period's request count is not published yet: incomplete
            requests = int(results[f"{colour}_requests"].get(ts) or 0)
            samples = results[f"{colour}_samples"].get(ts)
            fast = [results[q].get(ts) for q in fast_ids]
            slow: dict[str, int] | None = None
            if samples and fast and None not in fast:
                slow = {
                    name: int(samples) - round(share / 100 * samples)
                    for name, share in zip(slow_thresholds_ms, fast, strict=True)
                }
            elif requests == 0 and slow_thresholds_ms:
                slow = dict.fromkeys(slow_thresholds_ms, 0)
            errors = int(results[f"{colour}_errors"].get(ts) or 0)
            if errors > requests or max((slow or {}).values(), default=0) > requests:
                break  # metrics of one period published at different times: incomplete
            counts[colour] = Counts(requests=requests, errors=errors, slow=slow)
        else:
            periods.append((ts, counts))
    return periods


def _stat(qid: str, source: MetricSource, name: str, statistic: str, dims, period: int) -> dict:
    metric = {"Namespace": source.namespace, "MetricName": name, "Dimensions": dims}
    return {"Id": qid, "MetricStat": {"Metric": metric, "Period": period, "Stat": statistic}}


def read_series(
    session: AwsSession, source: MetricSource, start: datetime, end: datetime, period: int
) -> pd.DataFrame:
    """Per-period measurements per colour: requests/s, 5xx rate, p50 and p99 latency (ms), and
    the fewest healthy targets where the source has that metric."""
    # On the period's boundaries, where CloudWatch puts its datapoints: an unaligned index
    # would find none of them (and show no traffic where there was some).
    epoch = int(start.timestamp()) // period * period
    start = datetime.fromtimestamp(epoch, tz=start.tzinfo)
    end = end.replace(microsecond=0) + timedelta(seconds=1)
    results = _fetch(session, _queries(source, period, hosts=True), start, end)
    index = pd.date_range(start, end, freq=f"{period}s", inclusive="left")
    frames = {}
    for colour in source.dimensions:
        requests = pd.Series(results[f"{colour}_requests"], dtype=float).reindex(index).fillna(0.0)
        errors = pd.Series(results[f"{colour}_errors"], dtype=float).reindex(index).fillna(0.0)
        frame = pd.DataFrame(
            {
                "requests": requests,
                "rps": requests / period,
                "errors": errors,
                "error_rate": (errors / requests.where(requests > 0)),
            },
            index=index,
        )
        for p in PERCENTILES:
            series = pd.Series(results[f"{colour}_{p}"], dtype=float).reindex(index)
            frame[f"{p}_ms"] = series * source.latency_to_ms
        if f"{colour}_hosts" in results:
            frame["healthy_hosts"] = pd.Series(results[f"{colour}_hosts"], dtype=float).reindex(
                index
            )
        frames[colour] = frame
    return pd.concat(frames, axis=1)
