"""The windows a release reads are the intended ones, on the sandbox's CloudWatch, which rounds
the start of a query as AWS does (bgkit.sandbox.control.round_start_time).

A release with a fake pattern and a fake clock reads metrics put into the sandbox's CloudWatch
beforehand, each second's latency telling which second it is. Every GetMetricData query the
release makes starts where CloudWatch leaves it (nothing is rounded away), every metric period
from the first shift on is judged once, each bake lasts at least `bake_seconds` at its split,
and each verdict's whole-window p99 is the one of the window the record names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_release import FakePattern, Quiet

import bgkit
from bgkit import FakeClock, Release, metrics
from bgkit.clock import cloudwatch_alignment, floor_to
from bgkit.metrics import MetricSource

NAMESPACE = "bgkit/test-windows"
BAKE = 5
# + 0.05 ms a second: each second has its own latency, all well under blue's p90 + slow_margin_ms
LATENCY_MS = {"blue": 100.0, "green": 100.02}


class Pattern(FakePattern):
    """test_release's fake listener, its metrics where this test puts them."""

    def metric_source(self) -> MetricSource:
        dims = {"blue": {"TargetGroup": "tg/blue"}, "green": {"TargetGroup": "tg/green"}}
        return MetricSource(NAMESPACE, "RequestCount", "Errors", "Latency", 1000.0, dims)


class WatchedSession:
    """The sandbox's session, keeping every GetMetricData query's start and periods."""

    def __init__(self, session) -> None:
        self._session = session
        self.queries: list[tuple[datetime, list[int]]] = []

    def client(self, name: str):
        client = self._session.client(name)
        if name == "cloudwatch":
            client.meta.events.register(
                "provide-client-params.cloudwatch.GetMetricData",
                self._seen,
                unique_id="bgkit-test-windows",
            )
        return client

    def _seen(self, params, **_):
        periods = [q["MetricStat"]["Period"] for q in params["MetricDataQueries"]]
        self.queries.append((params["StartTime"], periods))

    def __getattr__(self, name):
        return getattr(self._session, name)


def latency_ms(colour: str, second: datetime, first: datetime) -> float:
    return LATENCY_MS[colour] + 0.05 * (second - first).total_seconds()


def test_a_release_reads_the_windows_it_means_on_cloudwatch_that_rounds_as_aws_does(sandbox):
    session = WatchedSession(sandbox.session())
    # Metrics for two minutes, 50 requests a second per colour, all of one second equally slow.
    first = floor_to(datetime.now(UTC) - timedelta(minutes=30), 60)
    cloudwatch = sandbox.session().client("cloudwatch")
    data = []
    for n in range(120):
        at = first + timedelta(seconds=n)
        for colour in ("blue", "green"):
            base = {
                "Dimensions": [{"Name": "TargetGroup", "Value": f"tg/{colour}"}],
                "Timestamp": at,
                "StorageResolution": 1,
            }
            data.append({**base, "MetricName": "RequestCount", "Value": 50, "Unit": "Count"})
            seconds = latency_ms(colour, at, first) / 1000
            data.append({**base, "MetricName": "Latency", "Values": [seconds], "Counts": [50]})
    for chunk in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[chunk : chunk + 500])

    params = bgkit.validate_parameters(
        "alb_weighted",
        {"bake_seconds": BAKE, "plan": "linear", "smoke_url": "", "lock_table": ""},
    )
    # starting between two periods, and between two bake-long windows
    clock = FakeClock(first + timedelta(seconds=12.3))
    release = Release(params, session, clock=clock, pattern=Pattern(), display=Quiet())
    release.preflight()
    release.smoke_test()
    release.shift()
    release.promote()
    record = release.finish(plot=False)
    assert record["outcome"] == "promoted", record["reason"]

    # No query is rounded by CloudWatch: each starts on its period's alignment.
    assert session.queries
    for start, periods in session.queries:
        alignment = cloudwatch_alignment(min(periods))
        assert start.timestamp() % alignment == 0, (start, periods)

    # Blue's baseline: a whole bake-long window, before green's first request.
    shifts = [e for e in record["events"] if e["kind"] == "shift"]
    first_shift = datetime.fromisoformat(shifts[0]["at"])
    baseline = next(e for e in record["events"] if "blue measured" in e["message"])
    assert (
        f"{first + timedelta(seconds=5):%H:%M:%S}–{first + timedelta(seconds=10):%H:%M:%S}"
        in (baseline["message"])
    )
    assert first + timedelta(seconds=10) <= first_shift

    # Every metric period from the first shift to the last verdict's window, judged once.
    stamps = [datetime.fromisoformat(e["at"]) for e in release.judge.evidence]
    last_end = datetime.fromisoformat(record["verdicts"][-1]["window"]["end"])
    start = first_shift.replace(microsecond=0) + timedelta(seconds=1)
    assert stamps == [start + timedelta(seconds=n) for n in range(int((last_end - start).seconds))]

    for verdict, shift in zip(record["verdicts"], shifts, strict=True):
        window = {k: datetime.fromisoformat(v) for k, v in verdict["window"].items()}
        # the bake: at least bake_seconds at this step's split, ending on a period's end
        assert window["end"] - datetime.fromisoformat(shift["at"]) >= timedelta(seconds=BAKE)
        assert window["end"].microsecond == 0 and window["start"].microsecond == 0
        # the whole window's p99: a bake-long window CloudWatch returns as asked, within the
        # judged window, and its numbers are that window's (its last second's latency)
        p99 = {k: datetime.fromisoformat(v) for k, v in verdict["p99_window"].items()}
        assert p99["end"] - p99["start"] == timedelta(seconds=BAKE)
        assert p99["start"].timestamp() % cloudwatch_alignment(BAKE) == 0
        assert window["end"] - timedelta(seconds=BAKE) <= p99["end"] <= window["end"]
        last_second = p99["end"] - timedelta(seconds=1)
        for colour in ("blue", "green"):
            assert verdict["p99_ms"][colour] == pytest.approx(
                latency_ms(colour, last_second, first)
            )


def test_slow_counts_at_each_threshold_are_cloudwatch_percentile_ranks(sandbox):
    """One second of known latencies per colour in the sandbox's CloudWatch: read_periods counts
    the requests above each of the judge's thresholds with one PR(:threshold) query each, and
    read_window gives the p90, p99 and p99.9 the thresholds come from."""
    namespace, first = (
        "bgkit/test-thresholds",
        floor_to(datetime.now(UTC) - timedelta(minutes=20), 60),
    )
    cloudwatch = sandbox.session().client("cloudwatch")
    latencies = {
        "blue": [n / 1000 for n in range(1, 1001)],
        "green": [n / 500 for n in range(1, 1001)],
    }
    data = []
    for colour, values in latencies.items():
        base = {
            "Dimensions": [{"Name": "TargetGroup", "Value": f"tg/{colour}"}],
            "Timestamp": first,
        }
        data.append({**base, "MetricName": "RequestCount", "Value": 1000, "Unit": "Count"})
        for chunk in range(0, 1000, 150):  # at most 150 distinct values a datum
            part = values[chunk : chunk + 150]
            data.append(
                {**base, "MetricName": "Latency", "Values": part, "Counts": [1] * len(part)}
            )
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    dims = {"blue": {"TargetGroup": "tg/blue"}, "green": {"TargetGroup": "tg/green"}}
    source = MetricSource(namespace, "RequestCount", "Errors", "Latency", 1000.0, dims)
    session, end = sandbox.session(), first + timedelta(seconds=1)

    blue = metrics.read_window(session, source, first, end)["blue"]
    assert (blue.p90_ms, blue.p99_ms, blue.p999_ms) == pytest.approx((900.0, 990.0, 999.0))

    thresholds = {"p90": 900.5, "p99": 990.5, "p99.9": 999.5}  # blue's, + 0.5 ms
    ((at, counts),) = metrics.read_periods(session, source, first, end, 1, thresholds)
    assert at == first
    assert counts["blue"] == bgkit.Counts(1000, 0, {"p90": 100, "p99": 10, "p99.9": 1})
    # green is twice as slow: above 900.5 ms from its 451st request on
    assert counts["green"] == bgkit.Counts(1000, 0, {"p90": 550, "p99": 505, "p99.9": 501})
