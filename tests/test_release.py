"""The release loop with a fake pattern, a fake CloudWatch and a fake clock: bakes take no time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import Capture

import bgkit
from bgkit import FakeClock, Release
from bgkit.metrics import MetricSource


class FakePattern:
    name = "alb_weighted"
    title = "fake"
    parameters: dict = {}

    def __init__(self, fail_at: int | None = None, start_green: int = 0) -> None:
        self.green = start_green
        self.writes: list[int] = []
        self.fail_at = fail_at
        self.fail_read_back_at: int | None = None

    def target_id(self) -> str:
        return "fake-listener"

    def preflight(self):
        return self.read_split()

    def read_split(self):
        return {"blue": 100 - self.green, "green": self.green}

    def set_split(self, green_percent: int):
        if self.fail_at is not None and green_percent == self.fail_at:
            raise RuntimeError("AWS said no")
        self.writes.append(green_percent)
        self.green = green_percent
        if self.fail_read_back_at is not None and green_percent == self.fail_read_back_at:
            raise RuntimeError("throttled while reading the listener back")
        return self.read_split()

    def metric_source(self) -> MetricSource:
        dims = {"blue": {"TargetGroup": "b"}, "green": {"TargetGroup": "g"}}
        return MetricSource("NS", "Requests", "Errors", "Latency", 1000.0, dims)

    def describe(self) -> dict[str, Any]:
        return {"split": self.read_split()}


class FakeCloudWatch:
    """Answers GetMetricData from a function (colour, green_percent) -> (requests, errors,
    latency in seconds) per second: every request has that latency."""

    def __init__(self, pattern: FakePattern, traffic) -> None:
        self.pattern = pattern
        self.traffic = traffic
        self.calls = 0

    def get_paginator(self, name):
        assert name == "get_metric_data"
        return self

    def paginate(self, MetricDataQueries, StartTime, EndTime, ScanBy):
        self.calls += 1
        results = []
        for query in MetricDataQueries:
            colour, what = query["Id"].split("_", 1)
            stat, period = query["MetricStat"]["Stat"], query["MetricStat"]["Period"]
            requests, errors, latency = self.traffic(colour, self.pattern.green)
            if what.startswith("fast"):  # PR(:threshold): the share at or under the threshold
                value = 100.0 if latency <= float(stat[4:-1]) else 0.0
            else:
                counts = {"requests": requests, "errors": errors, "samples": requests}
                value = counts[what] * period if what in counts else latency
            present = not (what == "errors" and value == 0) and not (
                what != "requests" and requests == 0
            )
            stamps = []
            at = StartTime
            while at < EndTime and present:
                stamps.append(at)
                at += timedelta(seconds=period)
            results.append(
                {"Id": query["Id"], "Timestamps": stamps, "Values": [value] * len(stamps)}
            )
        return [{"MetricDataResults": results}]


class FakeSession:
    region = "us-east-1"

    def __init__(self, cloudwatch) -> None:
        self._cloudwatch = cloudwatch

    def client(self, name):
        assert name == "cloudwatch"
        return self._cloudwatch

    def caller_arn(self):
        return "arn:aws:sts::123456789012:assumed-role/release/alice"


class Quiet:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def make_release(traffic, pattern=None, **values) -> tuple[Release, FakePattern, FakeClock]:
    pattern = pattern or FakePattern()
    params = bgkit.validate_parameters(
        "alb_weighted", {"bake_seconds": 60, "smoke_url": "", "lock_table": "", **values}
    )
    clock = FakeClock()
    release = Release(
        params,
        FakeSession(FakeCloudWatch(pattern, traffic)),
        clock=clock,
        pattern=pattern,
        display=Quiet(),
    )
    return release, pattern, clock


def healthy(colour, green_percent):
    share = green_percent if colour == "green" else 100 - green_percent
    return (share * 10, 0, 0.010)


def bad_green(colour, green_percent):
    """A fifth of green's requests fail; none of blue's."""
    requests = green_percent * 10 if colour == "green" else (100 - green_percent) * 10
    return (requests, requests // 5 if colour == "green" else 0, 0.010)


def run(release: Release) -> dict:
    release.preflight()
    release.smoke_test()
    release.shift()
    release.promote()
    return release.finish(plot=False)


def test_healthy_release_promotes_through_every_step():
    release, pattern, clock = make_release(healthy)
    record = run(release)
    assert record["outcome"] == "promoted"
    assert pattern.writes == [25, 50, 75, 100]
    assert record["final_split"] == {"blue": 0, "green": 100}
    assert [v["decision"] for v in record["verdicts"]] == ["CONTINUE"] * 3
    assert record["operator"].endswith("/alice")
    # three bakes of 60 s, measured on the injected clock: no real time passed
    assert sum(clock.slept) >= 180


def test_error_regression_rolls_back_to_blue_with_the_evidence():
    release, pattern, _ = make_release(bad_green)
    record = run(release)
    assert record["outcome"] == "rolled_back"
    assert pattern.writes == [25, 0]
    assert record["final_split"] == {"blue": 100, "green": 0}
    verdict = record["verdicts"][0]
    assert verdict["decision"] == "ROLLBACK"
    # rolled back on the first one-second period: 50 of green's 250 requests failed, none of blue's
    thresholds = verdict["slow_thresholds_ms"]  # blue's 60 s baseline: 45,000 requests
    assert list(thresholds) == ["p90", "p99", "p99.9"]
    assert verdict["window_counts"]["green"] == {
        "requests": 250,
        "errors": 50,
        "slow": dict.fromkeys(thresholds, 0),
    }
    assert verdict["window_counts"]["blue"]["errors"] == 0
    assert verdict["e_values"]["errors"] >= verdict["boundaries"]["errors"]
    assert "step 1 at 25%" in record["reason"]


def test_no_data_holds_then_rolls_back_never_promotes():
    def no_green(colour, green_percent):  # green never receives a request
        return (0 if colour == "green" else 5, 0, 0.01)

    release, pattern, _ = make_release(no_green, max_holds=2)
    record = run(release)
    assert record["outcome"] == "rolled_back"
    assert [v["decision"] for v in record["verdicts"]] == ["NO_DATA"] * 3
    assert "no verdict after 2 holds" in record["reason"]
    assert pattern.green == 0


def test_a_regression_is_rolled_back_within_the_bake_not_at_its_end():
    """The judge looks at every one-second period: no waiting for the 60 s bake to end."""
    release, _, _ = make_release(bad_green)
    record = run(release)
    shift = next(e for e in record["events"] if e["kind"] == "shift")
    rollback = next(e for e in record["events"] if e["kind"] == "rollback")
    waited = datetime.fromisoformat(rollback["at"]) - datetime.fromisoformat(shift["at"])
    assert waited < timedelta(seconds=5)  # one period and the metric lag, not 60 s


def test_a_slow_green_is_rolled_back_on_slow_requests():
    def slow_green(colour, green_percent):
        share = green_percent if colour == "green" else 100 - green_percent
        return (share * 10, 0, 0.200 if colour == "green" else 0.010)

    release, pattern, _ = make_release(slow_green)
    record = run(release)
    assert record["outcome"] == "rolled_back" and pattern.green == 0
    verdict = record["verdicts"][0]
    # blue's p90 before the release was 10 ms: slow means above 10 + slow_margin_ms (10) ms
    assert verdict["slow_thresholds_ms"]["p90"] == 20.0
    assert verdict["total"]["green"]["slow"]["p90"] == verdict["total"]["green"]["requests"] > 0
    assert verdict["total"]["blue"]["slow"]["p90"] == 0
    assert "slower than 20 ms (blue's p90)" in record["reason"]


def test_a_guard_rail_rolls_back_what_the_comparison_cannot_see():
    """Blue and green equally bad: no evidence that green is worse, but green breaks the SLO."""

    def both_failing(colour, green_percent):
        share = green_percent if colour == "green" else 100 - green_percent
        return (share * 10, share // 5, 0.010)  # 2 % 5xx on both colours

    release, pattern, _ = make_release(both_failing, error_rate_slo=0.01)
    record = run(release)
    assert record["outcome"] == "rolled_back" and pattern.green == 0
    verdict = record["verdicts"][0]
    assert verdict["decision"] == "ROLLBACK"
    assert verdict["e_values"]["errors"] < verdict["boundaries"]["errors"]
    assert "guard rail (SLO, absolute)" in record["reason"] and "error_rate_slo" in record["reason"]
    # without the guard rail the same release is promoted
    release, _, _ = make_release(both_failing)
    assert run(release)["outcome"] == "promoted"


def test_with_pass_margin_the_last_step_waits_for_evidence_and_rolls_back_without_it():
    """No 5xx on either colour: nothing shows green is not worse, so no PASS, never a promotion."""
    release, pattern, _ = make_release(healthy, pass_margin=2.0, max_holds=2)
    record = run(release)
    assert record["outcome"] == "rolled_back" and pattern.green == 0
    assert [v["decision"] for v in record["verdicts"]] == ["CONTINUE"] * 5
    assert [v["step"] for v in record["verdicts"]] == [1, 2, 3, 3, 3]
    assert "no PASS after 2 holds" in record["reason"] and "pass_margin" in record["reason"]


def test_the_judge_records_its_evidence_for_the_plot():
    release, _, _ = make_release(healthy)
    run(release)
    evidence = release.judge.evidence
    # every one-second period from each shift to the end of its (aligned) bake, once
    stamps = [e["at"] for e in evidence]
    assert len(stamps) == len(set(stamps)) >= 180
    assert all(e["errors_e_value"] == 1.0 for e in evidence)  # no 5xx on either colour


def test_exception_after_first_mutation_returns_traffic_to_blue_and_records_it():
    pattern = FakePattern(fail_at=50)
    release, _, _ = make_release(healthy, pattern=pattern)
    release.preflight()
    release.smoke_test()
    with pytest.raises(RuntimeError, match="AWS said no"):
        release.shift()
    assert pattern.green == 0
    assert release.record.outcome == "failed"
    assert "shift failed: RuntimeError: AWS said no" in release.record.reason
    assert [e["kind"] for e in release.record.events][-1] == "rollback"


def test_preflight_refuses_a_half_shifted_target_without_writing():
    pattern = FakePattern(start_green=30)
    release, _, _ = make_release(healthy, pattern=pattern)
    with pytest.raises(bgkit.PreflightError, match="not 100% blue"):
        release.preflight()
    assert pattern.writes == []


def test_steps_are_safe_to_rerun_and_finish_never_leaves_traffic_between():
    release, pattern, _ = make_release(healthy)
    release.preflight()
    release.preflight()  # a re-run cell reads state and does nothing
    release.smoke_test()
    release.shift()
    assert pattern.green == 75
    record = release.finish(plot=False)  # promote was skipped
    assert record["outcome"] == "rolled_back"
    assert pattern.green == 0
    assert release.promote() == "rolled_back"  # nothing happens after the end
    assert pattern.writes == [25, 50, 75, 0]


def test_all_at_once_promotes_after_the_smoke_test_and_records_no_analysis():
    release, pattern, _ = make_release(healthy, plan="all_at_once")
    record = run(release)
    assert record["outcome"] == "promoted"
    assert pattern.writes == [100]
    assert record["verdicts"] == []
    assert "no canary analysis" in record["reason"]


def test_bake_windows_start_after_the_shift():
    release, _, clock = make_release(healthy, bake_seconds=5, step_percent=50)
    record = run(release)
    shift_at = next(e["at"] for e in record["events"] if e["kind"] == "shift")
    window_start = record["verdicts"][0]["window"]["start"]
    assert window_start >= shift_at
    assert record["verdicts"][0]["window"]["end"] <= (clock.now()).isoformat()
    assert timedelta(seconds=5) <= clock.now() - release.record.started_at


def test_a_write_whose_read_back_fails_is_still_rolled_back():
    pattern = FakePattern()
    pattern.fail_read_back_at = 25  # AWS applied the weights, then the read-back failed
    release, _, _ = make_release(healthy, pattern=pattern)
    release.preflight()
    release.smoke_test()
    with pytest.raises(RuntimeError, match="throttled"):
        release.shift()
    assert pattern.green == 0
    assert pattern.writes == [25, 0]
    assert release.record.outcome == "failed"


def test_all_at_once_record_is_published_with_its_plot_attempt():
    display = Capture()
    shown = display.records
    pattern = FakePattern()
    params = bgkit.validate_parameters(
        "alb_weighted", {"plan": "all_at_once", "smoke_url": "", "lock_table": ""}
    )
    release = Release(
        params,
        FakeSession(FakeCloudWatch(pattern, healthy)),
        clock=FakeClock(),
        pattern=pattern,
        display=display,
    )
    release.preflight()
    release.smoke_test()
    release.shift()
    release.promote()
    record = release.finish(plot=True)
    assert record["outcome"] == "promoted"
    assert shown and shown[-1]["outcome"] == "promoted"
    assert not [e for e in record["events"] if e["kind"] == "error"], record["events"]


def test_a_failure_before_any_change_is_recorded_as_failed_without_rollback():
    display = Capture()
    shown = display.records
    pattern = FakePattern(start_green=40)
    params = bgkit.validate_parameters("alb_weighted", {"smoke_url": "", "lock_table": ""})
    release = Release(
        params,
        FakeSession(FakeCloudWatch(pattern, healthy)),
        clock=FakeClock(),
        pattern=pattern,
        display=display,
    )
    with pytest.raises(bgkit.PreflightError):
        release.preflight()
    assert shown[-1]["outcome"] == "failed" and "preflight failed" in shown[-1]["reason"]
    assert pattern.writes == []


def test_a_split_reads_zero_only_when_a_colour_has_no_weight_at_all():
    from bgkit.patterns.base import split_of

    assert split_of(999, 1) == {"blue": 99, "green": 1}  # a 0.1 % canary is not "no canary"
    assert split_of(1, 999) == {"blue": 1, "green": 99}
    assert split_of(100, 0) == {"blue": 100, "green": 0}
    assert split_of(0, 5) == {"blue": 0, "green": 100}
    assert split_of(3, 1) == {"blue": 75, "green": 25}


class DeployingPattern(FakePattern):
    """A pattern that creates green itself (deploy_green) and takes blue out after promoting."""

    def __init__(
        self, deploy_error: Exception | None = None, retire_error: Exception | None = None
    ):
        super().__init__()
        self.deploy_error, self.retire_error = deploy_error, retire_error
        self.deployed = self.retired = False

    def deploy_green(self, release, note):
        note("creating green")
        self.deployed = True
        if self.deploy_error is not None:
            raise self.deploy_error
        return "green is deployed"

    def retire_blue(self, note):
        if self.retire_error is not None:
            raise self.retire_error
        self.retired = True
        return "blue retired"


def test_a_failed_deploy_green_is_rolled_back_through_the_pattern():
    pattern = DeployingPattern(deploy_error=RuntimeError("capacity"))
    release, _, _ = make_release(healthy, pattern=pattern)
    release.preflight()
    with pytest.raises(RuntimeError, match="capacity"):
        release.deploy()
    assert pattern.writes == [0]  # set_split(0) undoes what deploy_green did
    assert release.record.outcome == "failed"
    assert [e["message"] for e in release.record.events if e["kind"] == "deploy"] == [
        "creating green"
    ]


def test_a_deployment_the_service_stopped_itself_ends_rolled_back():
    from bgkit.errors import DeploymentStopped

    pattern = DeployingPattern(deploy_error=DeploymentStopped("the service rolled it back"))
    release, _, _ = make_release(healthy, pattern=pattern)
    release.preflight()
    assert release.deploy() == "rolled_back"
    assert release.record.reason == "the service rolled it back"
    assert release.smoke_test() == "rolled_back"  # nothing runs after the end


def test_green_deployed_by_the_pattern_is_smoke_tested_only_after_deploy():
    release, _, _ = make_release(healthy, pattern=DeployingPattern())
    release.preflight()
    assert release.smoke_test() == "ready"  # refused: green does not exist yet
    assert release.record.smoke is None
    release.deploy()
    release.smoke_test()
    assert release.state == "smoked"


def test_blue_not_retired_after_the_promotion_is_recorded_without_a_rollback():
    pattern = DeployingPattern(retire_error=RuntimeError("drain timed out"))
    release, _, _ = make_release(healthy, pattern=pattern)
    release.preflight()
    release.deploy()
    record = run_rest(release)
    assert record["outcome"] == "promoted"
    assert pattern.green == 100 and pattern.writes[-1] == 100
    errors = [e["message"] for e in record["events"] if e["kind"] == "error"]
    assert len(errors) == 1 and "taking blue out of service did not finish" in errors[0]


def test_an_interrupted_rollback_still_publishes_the_record_with_where_traffic_is():
    class Interrupted(FakePattern):
        def set_split(self, green_percent):
            if green_percent == 0:
                raise KeyboardInterrupt
            return super().set_split(green_percent)

    pattern = Interrupted(fail_at=50)
    release, _, _ = make_release(healthy, pattern=pattern)
    shown = Capture()
    release._display = shown
    release.preflight()
    release.smoke_test()
    with pytest.raises(RuntimeError, match="AWS said no"):
        release.shift()
    [record] = shown.records
    assert record["outcome"] == "failed"
    [interrupted] = [e for e in record["events"] if "rollback did not finish" in e["message"]]
    assert "traffic now: {'blue': 75, 'green': 25}" in interrupted["message"]


def test_an_interrupt_after_the_promotion_never_rolls_back():
    pattern = DeployingPattern(retire_error=KeyboardInterrupt())
    release, _, _ = make_release(healthy, pattern=pattern)
    shown = Capture()
    release._display = shown
    release.preflight()
    release.deploy()
    release.smoke_test()
    release.shift()
    with pytest.raises(KeyboardInterrupt):
        release.promote()
    assert pattern.green == 100 and 0 not in pattern.writes[1:]
    [record] = shown.records
    assert record["outcome"] == "promoted"
    assert "stopped after the release ended promoted" in record["events"][-1]["message"]


def test_a_service_that_switches_at_once_is_plotted_as_the_colour_that_served():
    import pandas as pd

    from bgkit.release.traffic import serving_only as _serving_only

    index = pd.date_range("2026-01-01T00:00:00Z", periods=4, freq="10s")
    frame = pd.DataFrame({"rps": [1.0, 2.0, 3.0, 4.0]}, index=index)
    series = pd.concat({"blue": frame, "green": frame}, axis=1)
    events = [
        {"at": "2026-01-01T00:00:15+00:00", "kind": "shift", "green_percent": 100},
        {"at": "2026-01-01T00:00:25+00:00", "kind": "rollback", "green_percent": 0},
    ]
    shown = _serving_only(series, events)
    assert shown["blue"]["rps"].tolist()[:2] == [1.0, 2.0]
    assert shown["blue"]["rps"].isna().tolist() == [False, False, True, False]
    assert shown["green"]["rps"].isna().tolist() == [True, True, False, True]


def run_rest(release: Release) -> dict:
    release.smoke_test()
    release.shift()
    release.promote()
    return release.finish(plot=False)


def test_the_plot_has_a_healthy_targets_panel_only_where_the_source_reports_them():
    import pandas as pd

    from bgkit.plots import release_figure

    index = pd.date_range("2026-01-01T00:00:00Z", periods=3, freq="1s")
    base = {"rps": 1.0, "error_rate": 0.0, "p50_ms": 5.0, "p99_ms": 9.0}
    frame = pd.DataFrame(dict(base), index=index)
    without = release_figure(pd.concat({"blue": frame, "green": frame}, axis=1), [], "t")
    assert len(without.axes) == 3
    counted = frame.assign(healthy_hosts=[0.0, 2.0, 3.0])
    with_hosts = release_figure(pd.concat({"blue": counted, "green": counted}, axis=1), [], "t")
    assert [ax.get_ylabel() for ax in with_hosts.axes][-1] == "healthy targets"


def test_the_evidence_panel_plots_even_a_catastrophic_green():
    """1000 of 1000 green requests failing gives evidence near 1e304: still a plot, clipped."""
    import pandas as pd

    from bgkit.plots import png, release_figure

    index = pd.date_range("2026-01-01T00:00:00Z", periods=3, freq="1s")
    base = {"rps": 1.0, "error_rate": 0.0, "p50_ms": 5.0, "p99_ms": 9.0}
    frame = pd.DataFrame(dict(base), index=index)
    evidence = [
        {"at": at.isoformat(), "errors_e_value": value, "slow_p90_e_value": 0.5}
        for at, value in zip(index, (1.0, 1e150, 1e304), strict=True)
    ]
    figure = release_figure(
        pd.concat({"blue": frame, "green": frame}, axis=1),
        [],
        "t",
        evidence=evidence,
        boundaries={"errors": 125.0, "slow_p90": 500.0},
    )
    assert figure.axes[-1].get_ylabel().startswith("evidence")
    assert figure.axes[-1].get_ylim()[1] <= 1e6 * 500 * 10
    assert png(figure).startswith(b"\x89PNG")


def test_a_release_rolled_back_at_its_first_verdict_shows_that_verdicts_evidence():
    """One verdict is one point: no step line can draw it, so it is drawn as a marker."""
    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from bgkit.plots import EVIDENCE_COLOURS, release_figure

    index = pd.date_range("2026-01-01T00:00:00Z", periods=3, freq="1s")
    frame = pd.DataFrame({"rps": 1.0, "error_rate": 0.0, "p50_ms": 5.0, "p99_ms": 9.0}, index=index)
    decided = [{"at": index[1].isoformat(), "errors_e_value": 300.0, "slow_p90_e_value": 1.0}]
    figure = release_figure(
        pd.concat({"blue": frame, "green": frame}, axis=1),
        [],
        "t",
        evidence=decided,
        boundaries={"errors": 125.0, "slow_p90": 500.0},
    )
    evidence = [line for line in figure.axes[-1].get_lines() if "5xx" in str(line.get_label())]
    assert len(evidence) == 1 and list(evidence[0].get_ydata()) == [300.0]
    assert evidence[0].get_marker() == "o"
    # and it is drawn: the 5xx colour's pixels above its dashed boundary line, at 300
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    ax = figure.axes[-1]
    x, y = ax.transData.transform(evidence[0].get_xydata()[0])
    row, column = pixels.shape[0] - round(y), round(x)
    colour = np.array([int(EVIDENCE_COLOURS["errors"][i : i + 2], 16) for i in (1, 3, 5)])
    near = pixels[row - 3 : row + 4, column - 3 : column + 4]
    assert (np.abs(near - colour).sum(axis=-1) < 40).any()


class PartsCloudWatch:
    """One period whose 5xx count is published before its request count."""

    def get_paginator(self, name):
        return self

    def paginate(self, MetricDataQueries, StartTime, EndTime, ScanBy):
        first, second = StartTime, StartTime + timedelta(seconds=1)
        values = {
            "blue_requests": {first: 90, second: 90},
            "blue_samples": {first: 90, second: 90},
            "blue_fast0": {first: 100.0, second: 100.0},
            "green_requests": {second: 10},  # the first period's count is not in yet
            "green_errors": {first: 3, second: 1},
            "green_samples": {first: 10, second: 10},
            "green_fast0": {first: 100.0, second: 90.0},
        }
        results = []
        for query in MetricDataQueries:
            got = values.get(query["Id"], {})
            results.append(
                {"Id": query["Id"], "Timestamps": list(got), "Values": list(got.values())}
            )
        return [{"MetricDataResults": results}]


def test_a_period_published_in_parts_is_left_for_later_not_judged_half():
    from bgkit.metrics import read_periods

    start = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    source = FakePattern().metric_source()
    periods = read_periods(
        FakeSession(PartsCloudWatch()),
        source,
        start,
        start + timedelta(seconds=2),
        1,
        {"p90": 20.0},
    )
    assert [at for at, _ in periods] == [start + timedelta(seconds=1)]
    counts = periods[0][1]
    assert counts["green"] == bgkit.Counts(requests=10, errors=1, slow={"p90": 1})
    assert counts["blue"] == bgkit.Counts(requests=90, errors=0, slow={"p90": 0})
