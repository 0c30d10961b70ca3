"""Evidence: what the judge sees. Blue's baseline before green gets traffic (what a slow
request is), the bake windows read period by period from CloudWatch as they are published, and
each verdict kept in the record with its numbers (bgkit.judge decides; this feeds it).

A mixin of `Release`; it uses the release's session, params, pattern, record and clock, its
waits (bgkit.release.waits), and its traffic's `wait_until` between periods.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .. import metrics as _metrics
from .. import sample_ratio
from ..clock import ceil_to, cloudwatch_alignment, floor_to
from ..errors import PreflightError
from ..judge import Counts, Decision, Judge, Verdict, metric_label, slow_thresholds


class Evidence:
    def _measure_baseline(self, use: str = "") -> Any:
        """Blue's numbers over the last full bake window before green gets traffic (holding
        for the next window while blue served fewer than min_requests); `use` says what for."""
        source, window = self.pattern.metric_source(), int(self.params.bake_seconds)
        end = floor_to(self.clock.now(), window)
        # Only blue: a window that began before the service's last change may hold another version.
        since = getattr(self.pattern, "serving_since", lambda: None)()
        while since is not None and end - timedelta(seconds=window) < since:
            end += timedelta(seconds=window)
        self._activity = "measuring blue before green gets traffic"
        for _ in range(self.params.max_holds + 1):
            self._window = (end - timedelta(seconds=window), end)
            self._await_metrics(source, end)
            blue = _metrics.read_window(self.session, source, end - timedelta(seconds=window), end)[
                "blue"
            ]
            if blue.requests >= self.params.min_requests and blue.p90_ms is not None:
                self._event(
                    "judge",
                    f"blue measured before green gets traffic, {blue.start:%H:%M:%S}–"
                    f"{blue.end:%H:%M:%S}: {blue.requests} requests, {blue.errors} 5xx, p90 "
                    f"{blue.p90_ms:.1f} ms, p99 {_ms(blue.p99_ms)}" + (f"; {use}" if use else ""),
                )
                return blue
            end += timedelta(seconds=window)
        raise PreflightError(
            f"blue served fewer than {self.params.min_requests} requests (or none with a latency) in each of "
            f"{self.params.max_holds + 1} bake windows: nothing to judge green against "
            "(lower min_requests or raise bake_seconds)"
        )

    def _start_judge(self) -> None:
        """Blue's latency before green gets traffic sets what a slow request is, at each
        threshold its baseline can estimate; then the judge is made. An all-at-once service's
        green is judged against that same blue window."""
        if self.judge is not None:
            return
        self._load_plots_meanwhile()
        blue = self.baseline if self.baseline is not None else self._measure_baseline()
        margin = self.params.slow_margin_ms
        thresholds, left_out = slow_thresholds(blue.quantiles_ms, blue.requests, margin)
        baseline = None
        if self.baseline is not None:  # green is judged against blue before an all-at-once switch
            period = self.params.metric_period_seconds
            source = self.pattern.metric_source()
            periods = _metrics.read_periods(
                self.session, source, blue.start, blue.end, period, thresholds
            )
            baseline = sum((p["blue"] for _, p in periods), start=Counts(0, 0, None))
            if any(p["blue"].slow is None and p["blue"].requests for _, p in periods):
                baseline = Counts(baseline.requests, baseline.errors, None)
        self.judge = Judge(
            steps=self.traffic.judged_steps(),
            alpha=self.params.judge_alpha,
            min_requests=self.params.min_requests,
            slow_thresholds_ms=thresholds,
            pass_margin=self.params.pass_margin,
            error_rate_slo=self.params.error_rate_slo,
            p99_slo_ms=self.params.p99_slo_ms,
            baseline=baseline,
        )
        rails = [
            f"{name} {value:g}"
            for name, value in (
                ("error_rate_slo", self.params.error_rate_slo),
                ("p99_slo_ms", self.params.p99_slo_ms),
            )
            if value
        ]
        tests = "; ".join(
            f"{label}: rolls back at evidence {self.judge.worse[m].boundary:.4g}"
            for m, label in self.judge.metrics.items()
        )
        quantiles = blue.quantiles_ms
        self._event(
            "judge",
            f"the judge compares green with blue every {self.params.metric_period_seconds} s "
            f"period on 5xx and on slow requests at {len(thresholds)} threshold(s), blue's "
            + ", ".join(f"{q} {quantiles[q]:.1f} ms" for q in thresholds)
            + f" + slow_margin_ms {margin:g}; {tests}; so a healthy green is rolled back with "
            f"probability at most {self.params.judge_alpha:g} (judge_alpha)"
            + "".join(f"; {q} not judged: {why}" for q, why in left_out.items())
            + (f"; guard rails (absolute SLO limits): {', '.join(rails)}" if rails else ""),
            slow_thresholds_ms=thresholds,
            thresholds_left_out=left_out,
        )

    def _judge(
        self,
        source,
        end: datetime,
        window: int,
        since: datetime | None = None,
        expected_percent: float | None = None,
        **where: Any,
    ):
        """Feed the judge each metric period of the bake window [end - window, end) as it is
        published (from `since`, when the step's traffic change came earlier than the window's
        aligned start); stop early when the evidence says green is worse. Then the verdict.
        With `expected_percent` (green's configured share all through the window, where the
        pattern checks it), a sample ratio mismatch turns a verdict that is not a rollback
        into a hold (bgkit.sample_ratio)."""
        judge = self.judge
        assert judge is not None, "the judge starts before green gets traffic (_start_judge)"
        judge.start_window()
        period = self.params.metric_period_seconds
        lag = timedelta(seconds=self.params.metric_lag_seconds)
        start = end - timedelta(seconds=window)
        if since is not None:
            start = min(start, ceil_to(since, period))
        self._window = (start, end)
        seen: dict[datetime, dict[str, Counts]] = {}  # each period judged, once

        def take(upto: datetime) -> None:
            for at, counts in _metrics.read_periods(
                self.session, source, start, upto, period, judge.slow_thresholds_ms
            ):
                if at not in seen:
                    seen[at] = counts
                    blue = None if self.baseline is not None else counts["blue"]
                    judge.observe(at.isoformat(), blue, counts["green"])

        cursor = start
        while cursor < end and not judge.rejected:
            cursor = min(cursor + timedelta(seconds=period), end)
            self.traffic.wait_until(cursor + lag)
            take(cursor)
        green_p99 = blue_p99 = p99_window = None
        if not judge.rejected:  # the whole window: late periods, and p99 for the guard rail
            self._await_metrics(source, end)
            take(end)
            # The window's p99 over the last bake-long window CloudWatch returns whole (where
            # it rounds the start to; `end` is aligned to the metric period only), and the
            # requests per colour over the bake itself: its judged periods, summed.
            p99_end = floor_to(end, cloudwatch_alignment(window))
            p99_window = (p99_end - timedelta(seconds=window), p99_end)
            stats = _metrics.read_window(self.session, source, *p99_window)
            bake = [c for at, c in seen.items() if at >= end - timedelta(seconds=window)]
            served = {c: sum(p[c].requests for p in bake) for c in ("blue", "green")}
            green_p99, blue_p99 = stats["green"].p99_ms, stats["blue"].p99_ms
            if self.baseline is not None:
                blue_p99 = self.baseline.p99_ms
        verdict = judge.verdict(green_p99_ms=green_p99)
        ratio = None
        if expected_percent is not None and not judge.rejected:
            ratio = sample_ratio.check(served["blue"], served["green"], expected_percent)
            if ratio.mismatch and verdict.decision is not Decision.ROLLBACK:
                verdict = Verdict(
                    Decision.NO_DATA,
                    f"sample ratio mismatch, held: {ratio.describe()}; green is not getting "
                    "the share it was configured to get, so the comparison is not the intended one",
                    verdict.numbers,
                )
        numbers = verdict.numbers
        self.record.verdicts.append(
            {
                **where,
                "at": self.clock.now().isoformat(),
                "decision": str(verdict.decision),
                "reason": verdict.reason,
                "window": {"start": start.isoformat(), "end": min(cursor, end).isoformat()},
                **(
                    {
                        "blue_window": {
                            "start": self.baseline.start.isoformat(),
                            "end": self.baseline.end.isoformat(),
                        }
                    }
                    if self.baseline is not None
                    else {}
                ),
                "p99_ms": {"blue": blue_p99, "green": green_p99},
                **(
                    {
                        "p99_window": {
                            "start": p99_window[0].isoformat(),
                            "end": p99_window[1].isoformat(),
                        }
                    }
                    if p99_window is not None
                    else {}
                ),
                **({"sample_ratio": ratio.as_dict()} if ratio is not None else {}),
                **numbers,
            }
        )
        label = (
            f"step {where['step']} ({where['green_percent']}%)"
            if "step" in where
            else "after the switch (blue: before the deployment)"
            if self.baseline is not None
            else f"at {where['green_percent']}%"
        )
        self._event(
            "verdict",
            f"{label}: {verdict.decision}: {verdict.reason}",
            decision=str(verdict.decision),
        )
        return verdict

    def _await_metrics(self, source: _metrics.MetricSource, end: datetime) -> None:
        """Wait until CloudWatch has the last period before `end`, or metric_lag_seconds after it."""
        self._sleep_until(end)
        period = timedelta(seconds=self.params.metric_period_seconds)
        deadline = end + timedelta(seconds=self.params.metric_lag_seconds)
        while self.clock.now() < deadline:
            if _metrics.has_datapoint(self.session, source, end - period, end, period.seconds):
                return
            # a twentieth of a period between polls: 0.05 s in the sandbox, 0.25 s from 5 s on
            poll = min(0.25, period.total_seconds() / 20)
            self._pause(min(poll, (deadline - self.clock.now()).total_seconds()))

    def _may_go_on(self, decision: Decision, last: bool) -> bool:
        """CONTINUE lets a step end after its bake; NO_DATA holds; with pass_margin the last
        step holds until the judge says PASS (evidence that green is not worse)."""
        if decision is Decision.NO_DATA:
            return False
        return decision is Decision.PASS or not (last and self.params.pass_margin)

    def _held_too_long(self, decision: Decision) -> str:
        last = self.record.verdicts[-1] if self.record.verdicts else {}
        if decision is Decision.NO_DATA and last.get("sample_ratio", {}).get("mismatch"):
            ratio = last["sample_ratio"]
            return (
                f"sample ratio mismatch for {self.params.max_holds + 1} windows: configured "
                f"{ratio['configured_percent']:g}% on, measured {ratio['measured_percent']:.1f}% "
                f"of {ratio['requests']} requests (a broken split or a stale cache)"
            )
        if decision is Decision.NO_DATA:
            return f"no verdict after {self.params.max_holds} holds (too little traffic to judge)"
        blockers = self.judge.pass_blockers() if self.judge is not None else []
        return (
            f"no PASS after {self.params.max_holds} holds: not enough evidence that green is not "
            f"worse than blue by {self.params.pass_margin:g}x (pass_margin)"
            + (f"; {'; '.join(blockers)}" if blockers else "")
        )

    def _promotion_reason(self) -> str:
        judged = [v for v in self.record.verdicts if v["decision"] in ("CONTINUE", "PASS")]
        if judged:
            last = judged[-1]
            passed = " (PASS)" if last["decision"] == "PASS" else ""
            evidence = ", ".join(
                f"{metric_label(m)} {e:.2g} / {last['boundaries'][m]:.4g}"
                for m, e in last["e_values"].items()
            )
            return (
                f"{len(judged)} verdict(s) without evidence that green is worse{passed}; final "
                f"evidence against boundaries: {evidence}"
            )
        return "smoke test passed (all at once: no canary analysis)"

    def _baseline_again(self, window: list[str] | None) -> str:
        """A service that moved all traffic at once is judged against blue as measured before
        the switch: read that window again from CloudWatch (into `baseline`), or say why not."""
        if not window:
            return "blue's numbers measured before the switch were not kept"
        start, end = (datetime.fromisoformat(t) for t in window)
        try:
            source = self.pattern.metric_source()
            blue = _metrics.read_window(self.session, source, start, end)["blue"]
        except Exception as error:  # the reason not to resume: the rollback still runs
            return (
                f"blue's window before the switch could not be read again ({type(error).__name__}"
                f": {error})"
            )
        if blue.requests < self.params.min_requests or blue.p90_ms is None:
            return (
                f"blue's window before the switch ({start:%H:%M:%S}–{end:%H:%M:%S}) now reads "
                f"{blue.requests} requests in CloudWatch, fewer than min_requests "
                f"({self.params.min_requests})"
            )
        self.baseline = blue
        return ""


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
