"""How fast release-judging methods catch a bad canary, and how often they roll back a good one.

Every run simulates one canary release request by request with numpy and aggregates it the
way CloudWatch reports it: per colour and 1 s metric period, the number of requests, of 5xx
answers, and of requests slower than a threshold T (the percentile-rank statistic). All the
methods below judge the same streams: run k of a scenario draws everything from
`numpy.random.default_rng([BASE_SEED, scenario number, k])`, once, and each method reads it.

Traffic and latency model
-------------------------
* 100 requests/s in total (10/s in `low_traffic`), the canary (green) gets 10 %: each colour's
  requests in a period are Poisson, with means 90 (blue) and 10 (green), i.e. Poisson arrivals
  of the total, each request routed to green with probability 0.1.
* Latency is lognormal, median 50 ms, sigma 0.5 (log scale): p90 ≈ 95 ms, p99 ≈ 160 ms,
  p99.9 ≈ 234 ms. A slower green multiplies every latency by a factor (1.3: its p90 and p99
  are +30 %). A tail regression stretches only green's latencies above one of blue's true
  quantiles (p90 or p99), linearly, so that a higher quantile (p99 or p99.9) is a factor of
  blue's: below the first, green's distribution is blue's.
* 5xx answers are independent of latency: each request fails with its colour's error rate.
* Before the canary starts, 300 s of blue alone at the scenario's total rate (AWS's default
  bake window, 5 periods of 60 s: about 30,000 requests; 3,000 in `low_traffic`) is the
  baseline. The judge's slow thresholds are its measured p90, p99 and p99.9, each where the
  baseline can estimate it (`bgkit.judge.slow_thresholds`, slow_margin_ms 0: at 30,000
  requests all three, at 3,000 p90 and p99); the z-test's T is its measured p90; Flagger's
  latency limit is 1.2 × its measured p99 (estimates, not the true quantiles). At e58012e the
  baseline was 60 s and the judge had one threshold, p90.
* Each run lasts up to 1 hour of canary (3,600 periods), or until the method rolls back.

Scenarios
---------
* errors_4x: blue 0.5 % 5xx, green 2 %, latency equal.
* errors_2x: blue 0.5 %, green 1 %, latency equal.
* healthy: both 0.5 %, latency equal; every rollback is a false rollback.
* latency_p90_30pct: errors equal (0.5 %), green latency × 1.3 (p90 +30 %).
* low_traffic: 10 requests/s in total, so about 1 canary request/s; green 2 % 5xx, blue 0.5 %.
* tail_p99_2x, tail_p99_1.5x: green's latencies above blue's p90 stretched so that its p99 is
  2 (1.5) times blue's, its p90 unchanged; errors equal.
* tail_p99.9_2x: green's latencies above blue's p99 stretched so that its p99.9 is twice
  blue's, its p90 and p99 unchanged; errors equal.

Methods
-------
* bgkit_judge: `bgkit.judge.Judge(alpha=0.01, min_requests=20, slow_thresholds_ms=...)` with
  the thresholds above, fed every 1 s period's counts (requests, 5xx, slow at each threshold)
  per colour; rolls back at the first period after which `judge.rejected` is non-empty
  (anytime-valid tests on 5xx and on slow requests at each threshold, alpha shared).
* cloudwatch_alarm: the usual CodeDeploy auto-rollback alarm: green's 5xx rate above 1 % in a
  60 s period, one datapoint to alarm, checked at the end of each 60 s period. Errors only.
* flagger_threshold: Flagger's (and Argo Rollouts') per-interval check: every 60 s, a failed
  check when green's success rate in the interval is below 99 % or green's p99 latency in the
  interval (numpy's interpolated quantile of its requests; Flagger reads a Prometheus
  histogram) exceeds 1.2 × blue's baseline p99; rollback at the 5th failed check (Flagger's
  `threshold`), failed checks counted cumulatively over the analysis as Flagger does.
* ztest_fixed_horizon: one-sided pooled two-proportion z-tests (green worse than blue) on the
  cumulative counts since the canary started, one on 5xx and one on slow requests (share above
  T), each at 0.005 (Bonferroni for 0.01), as if planned for a fixed horizon but re-checked
  every 10 s ("peeking"); rollback on the first significant check. No minimum-count guard: the
  normal approximation is used however few the errors, as a team applying the textbook test
  would.
* mann_whitney_kayenta: Kayenta-like judgement per 60 s interval: a one-sided Mann-Whitney U
  test (normal approximation, continuity and tie corrections, in numpy) of green's against
  blue's per-request latencies in the interval at 0.01, and a one-sided pooled two-proportion
  z-test of the interval's 5xx counts at 0.01; the interval fails if either is significant,
  and the first failed interval rolls back. Simplifications: Kayenta compares metric time
  series (e.g. per-minute datapoints), not per-request samples, and scores several metrics
  against a pass threshold with effect-size tolerances; here every request is a sample (which
  gives the test more power than Kayenta has) and either metric failing fails the interval.

What each number means (per scenario and method)
-------------------------------------------------
* detection_rate: share of runs that rolled back within the hour (for `healthy`, the false
  rollback rate within 1 h).
* mean_requests_to_detect: canary (green) requests served up to and including the period of
  the rollback, averaged over the runs that rolled back (null if none did).
* p90_requests_to_detect: the 90th percentile of that count over all runs, a run that never
  rolled back counting as infinite; null when more than 10 % never rolled back.
* mean_seconds_to_detect: the same as the mean, in seconds of canary.
* detected_within_5000: share of runs rolled back within 5,000 canary requests (null for
  `healthy`; in `low_traffic` the hour holds only about 3,600 canary requests).
* detected_within_10min: share of runs rolled back within 600 s of canary (null for `healthy`).
* false_rollback_10min, false_rollback_1h: for `healthy` only, the share of runs rolled back
  within 10 minutes and within the hour (null for the other scenarios).

The "targets" at the end compare bgkit_judge with the release judge's goals (the `healthy`
false-rollback rate with its 95 % Wilson interval; the tail; the existing scenarios' mean
requests to detect against e58012e's table, at most 10 % more); a miss is reported, not raised.

    .venv/bin/python benchmarks/judge.py [--seeds N] [--healthy-seeds N] [--quick] [--workers N]

--seeds: runs per scenario (default 400; `healthy` 1,000, or --healthy-seeds); --quick: 24
runs of each, to check that it works. Runs are spread over --workers processes (default: one
per core). Writes benchmarks/results/judge.json: the summaries above, the targets, runs,
seeds, parameters, elapsed_s (wall time, which depends on what else the machine runs), cpu_s
(the runs' CPU time summed over workers, which does not), and the git commit, with
git_uncommitted_changes saying whether bgkit/ differed from it.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from bgkit.judge import Counts, Judge, slow_thresholds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "judge.json"

BASE_SEED = 20250505
HORIZON_S = 3600  # one hour of canary, in 1 s metric periods
CANARY_SHARE = 0.10
LATENCY_MEDIAN_MS = 50.0
LATENCY_SIGMA = 0.5
# blue alone before the canary, the thresholds and Flagger's limit come from it: AWS's default
# bake window (5 periods of 60 s); at 100 requests/s, 30,000 requests, enough for p99.9
BASELINE_S = 300
QUANTILES = {"p90": 0.90, "p99": 0.99, "p99.9": 0.999}  # the judge's (bgkit.judge.QUANTILES)

JUDGE_ALPHA = 0.01
JUDGE_MIN_REQUESTS = 20
ALARM_PERIOD_S = 60
ALARM_ERROR_RATE = 0.01
FLAGGER_INTERVAL_S = 60
FLAGGER_MIN_SUCCESS_RATE = 0.99
FLAGGER_P99_FACTOR = 1.2  # × blue's baseline p99
FLAGGER_THRESHOLD = 5  # failed checks before rollback
ZTEST_CHECK_EVERY_S = 10
ZTEST_ALPHA_PER_METRIC = 0.005
KAYENTA_INTERVAL_S = 60
KAYENTA_ALPHA = 0.01

REQUEST_BUDGET = 5000  # detected_within_5000
TIME_BUDGET_S = 600  # detected_within_10min
FALSE_ROLLBACK_EARLY_S = 600  # false_rollback_10min

DEFAULT_SEEDS = 400
DEFAULT_HEALTHY_SEEDS = 1000
QUICK_SEEDS = 24


@dataclass(frozen=True)
class Scenario:
    name: str
    total_rps: float
    blue_error_rate: float
    green_error_rate: float
    green_latency_factor: float = 1.0
    # a tail regression: green's latency above blue's true `tail_from` quantile is stretched so
    # that its true `tail_quantile` is `tail_factor` times blue's (below `tail_from`, unchanged)
    tail_from: float = 0.0
    tail_quantile: float = 0.0
    tail_factor: float = 1.0
    healthy: bool = False  # green is as good as blue: every rollback is false


SCENARIOS = (
    Scenario("errors_4x", 100, 0.005, 0.02),
    Scenario("errors_2x", 100, 0.005, 0.01),
    Scenario("healthy", 100, 0.005, 0.005, healthy=True),
    Scenario("latency_p90_30pct", 100, 0.005, 0.005, green_latency_factor=1.3),
    Scenario("low_traffic", 10, 0.005, 0.02),
    Scenario("tail_p99_2x", 100, 0.005, 0.005, tail_from=0.90, tail_quantile=0.99, tail_factor=2.0),
    Scenario(
        "tail_p99_1.5x", 100, 0.005, 0.005, tail_from=0.90, tail_quantile=0.99, tail_factor=1.5
    ),
    Scenario(
        "tail_p99.9_2x", 100, 0.005, 0.005, tail_from=0.99, tail_quantile=0.999, tail_factor=2.0
    ),
)
# bgkit_judge's mean canary requests to detect at e58012e (the table before the tail tests,
# with a 60 s baseline): the existing scenarios may not get more than 10 % slower
REFERENCE_E58012E = {
    "errors_4x": 552.5,
    "errors_2x": 3448.3,
    "latency_p90_30pct": 140.8,
    "low_traffic": 593.0,
}


# -- simulation ------------------------------------------------------------------------------


@dataclass
class Colour:
    """One colour's hour of traffic: per-period counts, and every request's latency."""

    requests: np.ndarray  # per period
    errors: np.ndarray  # 5xx answers per period
    slow: dict[str, np.ndarray]  # requests slower than each threshold, per period
    latency_ms: np.ndarray  # per request, in arrival order
    offsets: np.ndarray  # latency_ms[offsets[p]:offsets[p + 1]] are period p's requests

    def counts(self) -> list[Counts]:
        """Each period's counts as CloudWatch gives them to the judge (Python ints)."""
        slow = {q: counts.tolist() for q, counts in self.slow.items()}
        return [
            Counts(requests, errors, {q: slow[q][p] for q in slow})
            for p, (requests, errors) in enumerate(
                zip(self.requests.tolist(), self.errors.tolist(), strict=True)
            )
        ]

    def latencies(self, start: int, end: int) -> np.ndarray:
        """The latencies of the requests in periods start..end-1."""
        return self.latency_ms[self.offsets[start] : self.offsets[end]]


@dataclass
class Stream:
    """One run: blue and green side by side, and the thresholds measured before the canary."""

    blue: Colour
    green: Colour
    slow_thresholds_ms: dict[str, float]  # blue's baseline p90, p99, p99.9 (where estimated)
    flagger_p99_limit_ms: float  # 1.2 × blue's baseline p99


def lognormal_latencies(rng: np.random.Generator, size: int, factor: float = 1.0) -> np.ndarray:
    return factor * LATENCY_MEDIAN_MS * np.exp(LATENCY_SIGMA * rng.standard_normal(size))


def true_quantile(q: float) -> float:
    """Blue's latency distribution's exact q quantile (ms)."""
    return LATENCY_MEDIAN_MS * math.exp(LATENCY_SIGMA * NormalDist().inv_cdf(q))


def stretch_tail(latency: np.ndarray, scenario: Scenario) -> np.ndarray:
    """Green's tail regression: latencies above the true `tail_from` quantile stretched
    linearly so that the true `tail_quantile` becomes `tail_factor` times blue's; the
    distribution below `tail_from` (so its p90, or its p99) is unchanged."""
    if scenario.tail_factor == 1.0:
        return latency
    start, target = true_quantile(scenario.tail_from), true_quantile(scenario.tail_quantile)
    stretch = (scenario.tail_factor * target - start) / (target - start)
    return np.where(latency > start, start + (latency - start) * stretch, latency)


def per_period_sums(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many requests of each period are flagged (periods delimited by `offsets`)."""
    cumulative = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def simulate_colour(
    rng: np.random.Generator,
    requests_per_s: float,
    error_rate: float,
    slow_thresholds_ms: dict[str, float],
    scenario: Scenario | None = None,  # green's: its latency factor and tail regression
) -> Colour:
    requests = rng.poisson(requests_per_s, HORIZON_S)
    offsets = np.concatenate(([0], np.cumsum(requests)))
    latency = lognormal_latencies(rng, int(offsets[-1]))
    if scenario is not None:
        latency = stretch_tail(latency * scenario.green_latency_factor, scenario)
    failed = rng.random(latency.size) < error_rate
    return Colour(
        requests=requests,
        errors=per_period_sums(failed, offsets),
        slow={q: per_period_sums(latency > t, offsets) for q, t in slow_thresholds_ms.items()},
        latency_ms=latency,
        offsets=offsets,
    )


def simulate(scenario: Scenario, rng: np.random.Generator) -> Stream:
    baseline = lognormal_latencies(rng, rng.poisson(scenario.total_rps * BASELINE_S))
    measured = {q: float(np.quantile(baseline, level)) for q, level in QUANTILES.items()}
    # as the release does (slow_margin_ms 0 here): quantiles the baseline cannot estimate are left out
    thresholds, _ = slow_thresholds(measured, baseline.size, 0.0)
    p99_limit = FLAGGER_P99_FACTOR * measured["p99"]
    blue_rps = scenario.total_rps * (1 - CANARY_SHARE)
    green_rps = scenario.total_rps * CANARY_SHARE
    blue = simulate_colour(rng, blue_rps, scenario.blue_error_rate, thresholds)
    green = simulate_colour(rng, green_rps, scenario.green_error_rate, thresholds, scenario)
    return Stream(blue, green, thresholds, p99_limit)


# -- statistics ------------------------------------------------------------------------------


def critical_z(alpha: float) -> float:
    """The one-sided standard normal critical value for level alpha."""
    return NormalDist().inv_cdf(1 - alpha)


def two_proportion_z(
    green_events: np.ndarray | int,
    green_trials: np.ndarray | int,
    blue_events: np.ndarray | int,
    blue_trials: np.ndarray | int,
) -> np.ndarray:
    """Pooled two-proportion z statistic, positive when green's share is higher; 0 where it is
    undefined (no trials on a side, or no events / only events in both together)."""
    g_events, g_trials = np.asarray(green_events, float), np.asarray(green_trials, float)
    b_events, b_trials = np.asarray(blue_events, float), np.asarray(blue_trials, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (g_events + b_events) / (g_trials + b_trials)
        se = np.sqrt(pooled * (1 - pooled) * (1 / g_trials + 1 / b_trials))
        z = (g_events / g_trials - b_events / b_trials) / se
    return np.where(np.isfinite(z), z, 0.0)


def mann_whitney_z(green: np.ndarray, blue: np.ndarray) -> float:
    """Mann-Whitney U's normal approximation, with tie and continuity corrections; positive
    when green's values tend to be larger than blue's (the one-sided alternative)."""
    n_green, n_blue = green.size, blue.size
    if n_green == 0 or n_blue == 0:
        return 0.0
    values = np.concatenate((green, blue))
    n = values.size
    _, inverse, ties = np.unique(values, return_inverse=True, return_counts=True)
    # average rank of each distinct value: the ranks it spans are (end - ties + 1) .. end
    average_rank = np.cumsum(ties) - (ties - 1) / 2
    rank_sum_green = average_rank[inverse[:n_green]].sum()
    u_green = rank_sum_green - n_green * (n_green + 1) / 2
    mean = n_green * n_blue / 2
    tie_term = (ties**3 - ties).sum() / (n * (n - 1)) if n > 1 else 0.0
    variance = n_green * n_blue / 12 * ((n + 1) - tie_term)
    if variance <= 0:
        return 0.0
    return float((u_green - mean - 0.5) / math.sqrt(variance))


# -- methods: each returns the index of the period at whose end it rolls back, or None -------


def bgkit_judge(stream: Stream) -> int | None:
    judge = Judge(
        alpha=JUDGE_ALPHA,
        min_requests=JUDGE_MIN_REQUESTS,
        slow_thresholds_ms=stream.slow_thresholds_ms,
    )
    blue, green = stream.blue.counts(), stream.green.counts()
    for period in range(HORIZON_S):
        judge.observe(period, blue[period], green[period])
        if judge.rejected:
            return period
    return None


def intervals(length_s: int) -> Iterator[tuple[int, int]]:
    """The (first, end) periods of consecutive intervals of `length_s` periods in the hour."""
    for start in range(0, HORIZON_S - length_s + 1, length_s):
        yield start, start + length_s


def cloudwatch_alarm(stream: Stream) -> int | None:
    green = stream.green
    for start, end in intervals(ALARM_PERIOD_S):
        requests = int(green.requests[start:end].sum())
        if requests and int(green.errors[start:end].sum()) / requests > ALARM_ERROR_RATE:
            return end - 1
    return None


def flagger_threshold(stream: Stream) -> int | None:
    green = stream.green
    failed_checks = 0
    for start, end in intervals(FLAGGER_INTERVAL_S):
        requests = int(green.requests[start:end].sum())
        latency = green.latencies(start, end)
        success_rate = 1 - int(green.errors[start:end].sum()) / requests if requests else 1.0
        p99 = float(np.quantile(latency, 0.99)) if latency.size else 0.0
        if success_rate < FLAGGER_MIN_SUCCESS_RATE or p99 > stream.flagger_p99_limit_ms:
            failed_checks += 1
            if failed_checks >= FLAGGER_THRESHOLD:
                return end - 1
    return None


def ztest_fixed_horizon(stream: Stream) -> int | None:
    # All the peeks at once: the first significant one is where a run that stops at its
    # rollback would stop, so computing the later ones changes nothing but the time spent.
    checks = np.arange(ZTEST_CHECK_EVERY_S, HORIZON_S + 1, ZTEST_CHECK_EVERY_S)
    blue, green = stream.blue, stream.green

    def cumulative(counts: np.ndarray) -> np.ndarray:
        return np.cumsum(counts)[checks - 1]

    significant = np.zeros(checks.size, bool)
    for green_events, blue_events in (
        (green.errors, blue.errors),
        (green.slow["p90"], blue.slow["p90"]),
    ):
        z = two_proportion_z(
            cumulative(green_events),
            cumulative(green.requests),
            cumulative(blue_events),
            cumulative(blue.requests),
        )
        significant |= z > critical_z(ZTEST_ALPHA_PER_METRIC)
    if not significant.any():
        return None
    return int(checks[np.argmax(significant)] - 1)


def mann_whitney_kayenta(stream: Stream) -> int | None:
    blue, green = stream.blue, stream.green
    z_critical = critical_z(KAYENTA_ALPHA)
    for start, end in intervals(KAYENTA_INTERVAL_S):
        latency_z = mann_whitney_z(
            green.latencies(start, end),
            blue.latencies(start, end),
        )
        errors_z = two_proportion_z(
            int(green.errors[start:end].sum()),
            int(green.requests[start:end].sum()),
            int(blue.errors[start:end].sum()),
            int(blue.requests[start:end].sum()),
        )
        if latency_z > z_critical or errors_z > z_critical:
            return end - 1
    return None


METHODS: dict[str, Callable[[Stream], int | None]] = {
    "bgkit_judge": bgkit_judge,
    "cloudwatch_alarm": cloudwatch_alarm,
    "flagger_threshold": flagger_threshold,
    "ztest_fixed_horizon": ztest_fixed_horizon,
    "mann_whitney_kayenta": mann_whitney_kayenta,
}


# -- runs and summaries ------------------------------------------------------------------------


Outcome = dict[str, tuple[int, int] | None]  # per method: (seconds, canary requests) or None


def one_run(task: tuple[int, int]) -> tuple[int, int, Outcome, float]:
    """Simulate run `run` of scenario number `index` and judge it with every method.

    Returns, per method, (seconds of canary, canary requests) at the rollback, or None; and
    the CPU seconds the run took."""
    cpu_started = time.process_time()
    index, run = task
    stream = simulate(SCENARIOS[index], np.random.default_rng([BASE_SEED, index, run]))
    green_requests_by = np.cumsum(stream.green.requests)
    outcome: Outcome = {}
    for name, method in METHODS.items():
        period = method(stream)
        outcome[name] = None if period is None else (period + 1, int(green_requests_by[period]))
    return index, run, outcome, time.process_time() - cpu_started


def summarize(scenario: Scenario, outcomes: list[tuple[int, int] | None]) -> dict:
    runs = len(outcomes)
    seconds = np.array([math.inf if o is None else o[0] for o in outcomes])
    requests = np.array([math.inf if o is None else o[1] for o in outcomes])
    detected = np.isfinite(requests)
    p90 = float(np.quantile(requests, 0.9, method="inverted_cdf"))
    return {
        "runs": runs,
        "rollbacks": int(detected.sum()),
        "detection_rate": float(detected.mean()),
        "mean_requests_to_detect": float(requests[detected].mean()) if detected.any() else None,
        "p90_requests_to_detect": p90 if math.isfinite(p90) else None,
        "mean_seconds_to_detect": float(seconds[detected].mean()) if detected.any() else None,
        "detected_within_5000": (
            None if scenario.healthy else float((requests <= REQUEST_BUDGET).mean())
        ),
        "detected_within_10min": (
            None if scenario.healthy else float((seconds <= TIME_BUDGET_S).mean())
        ),
        "false_rollback_10min": (
            float((seconds <= FALSE_ROLLBACK_EARLY_S).mean()) if scenario.healthy else None
        ),
        "false_rollback_1h": float(detected.mean()) if scenario.healthy else None,
    }


def run_all(runs: dict[str, int], workers: int) -> tuple[dict[str, dict[str, dict]], float]:
    """Every run of every scenario on `workers` processes: the summaries per scenario and
    method, and the CPU seconds spent in the runs."""
    # Longest runs (healthy: the judge sees all 3,600 periods) first, for even load.
    tasks = [
        (index, run)
        for index, scenario in sorted(enumerate(SCENARIOS), key=lambda item: not item[1].healthy)
        for run in range(runs[scenario.name])
    ]
    outcomes: dict[int, dict[int, Outcome]] = {i: {} for i in range(len(SCENARIOS))}
    cpu_s = 0.0
    with multiprocessing.Pool(workers) as pool:
        for index, run, outcome, run_cpu_s in pool.imap_unordered(one_run, tasks, chunksize=4):
            outcomes[index][run] = outcome
            cpu_s += run_cpu_s
    results: dict[str, dict[str, dict]] = {}
    for index, scenario in enumerate(SCENARIOS):
        by_run = [outcomes[index][run] for run in sorted(outcomes[index])]
        results[scenario.name] = {
            method: summarize(scenario, [o[method] for o in by_run]) for method in METHODS
        }
    return results, cpu_s


# -- report ------------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_table(results: dict[str, dict[str, dict]]) -> None:
    header = (
        f"{'scenario':<18} {'method':<21} {'runs':>5} {'rolled back':>11} {'mean req':>9} "
        f"{'p90 req':>8} {'≤5000 req':>9} {'≤10 min':>8} {'mean s':>7} {'false 10m':>9} "
        f"{'false 1h':>8}"
    )
    print(header)
    print("-" * len(header))
    for scenario, by_method in results.items():
        for method, r in by_method.items():
            print(
                f"{scenario:<18} {method:<21} {r['runs']:>5} {_percent(r['detection_rate']):>11} "
                f"{_number(r['mean_requests_to_detect']):>9} "
                f"{_number(r['p90_requests_to_detect']):>8} "
                f"{_percent(r['detected_within_5000']):>9} "
                f"{_percent(r['detected_within_10min']):>8} "
                f"{_number(r['mean_seconds_to_detect']):>7} "
                f"{_percent(r['false_rollback_10min']):>9} {_percent(r['false_rollback_1h']):>8}"
            )
        print()


def check_targets(results: dict[str, dict[str, dict]]) -> list[dict]:
    """bgkit_judge against the release judge's goals, with the measured numbers."""
    judge = {scenario: by_method["bgkit_judge"] for scenario, by_method in results.items()}
    healthy = judge["healthy"]
    false_low, false_high = wilson_interval(healthy["rollbacks"], healthy["runs"])
    false_ok = healthy["false_rollback_1h"] <= 0.01
    false_text = (
        f"{healthy['false_rollback_1h']:.2%} ({healthy['rollbacks']}/{healthy['runs']} runs, "
        f"95 % interval {false_low:.2%}-{false_high:.2%})"
    )
    mean_4x = judge["errors_4x"]["mean_requests_to_detect"]
    within_2x = judge["errors_2x"]["detected_within_5000"]
    within_latency = judge["latency_p90_30pct"]["detected_within_5000"]
    tail_2x = judge["tail_p99_2x"]["detected_within_10min"]
    return [
        {
            "target": "healthy: false rollback ≤ 1 % in 1 h",
            "met": false_ok,
            "measured": false_text,
        },
        {
            "target": "errors_4x: mean ≤ 450 canary requests to detect",
            "met": mean_4x is not None and mean_4x <= 450,
            "measured": f"{_number(mean_4x)} requests "
            f"(detected in {judge['errors_4x']['detection_rate']:.1%} of runs)",
        },
        {
            "target": "errors_2x: detected ≥ 99 % within 5,000 canary requests",
            "met": within_2x >= 0.99,
            "measured": f"{within_2x:.1%}",
        },
        {
            "target": "latency_p90_30pct: detected ≥ 95 % within 5,000, false rollback ≤ 1 %",
            "met": within_latency >= 0.95 and false_ok,
            "measured": f"{within_latency:.1%} within 5,000; false rollback {false_text}",
        },
        {
            "target": "tail_p99_2x (10 canary requests/s): detected ≥ 95 % within 10 minutes",
            "met": tail_2x >= 0.95,
            "measured": f"{tail_2x:.1%} within 10 minutes "
            f"(mean {_number(judge['tail_p99_2x']['mean_seconds_to_detect'])} s)",
        },
        *(
            {
                "target": f"{name}: mean requests to detect ≤ 110 % of e58012e's {before:,.0f}",
                "met": after is not None and after <= 1.1 * before,
                "measured": f"{_number(after)} ({(after or math.inf) / before - 1:+.1%})",
            }
            for name, before in REFERENCE_E58012E.items()
            for after in [judge[name]["mean_requests_to_detect"]]
        ),
    ]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def parameters() -> dict:
    return {
        "horizon_s": HORIZON_S,
        "period_s": 1,
        "canary_share": CANARY_SHARE,
        "arrivals": "Poisson per colour and 1 s period (means total_rps × share)",
        "latency": {
            "distribution": "lognormal",
            "median_ms": LATENCY_MEDIAN_MS,
            "sigma": LATENCY_SIGMA,
        },
        "baseline": {
            "seconds": BASELINE_S,
            "slow_thresholds": "blue's baseline p90, p99, p99.9 as measured (slow_margin_ms 0), "
            "each where the baseline estimates it (bgkit.judge.slow_thresholds)",
        },
        "scenarios": {s.name: asdict(s) for s in SCENARIOS},
        "methods": {
            "bgkit_judge": {"alpha": JUDGE_ALPHA, "min_requests": JUDGE_MIN_REQUESTS},
            "cloudwatch_alarm": {"period_s": ALARM_PERIOD_S, "error_rate_above": ALARM_ERROR_RATE},
            "flagger_threshold": {
                "interval_s": FLAGGER_INTERVAL_S,
                "min_success_rate": FLAGGER_MIN_SUCCESS_RATE,
                "max_p99": f"{FLAGGER_P99_FACTOR} × blue's baseline p99",
                "threshold": FLAGGER_THRESHOLD,
            },
            "ztest_fixed_horizon": {
                "check_every_s": ZTEST_CHECK_EVERY_S,
                "alpha_per_metric": ZTEST_ALPHA_PER_METRIC,
                "metrics": ["errors", "slow"],
            },
            "mann_whitney_kayenta": {"interval_s": KAYENTA_INTERVAL_S, "alpha": KAYENTA_ALPHA},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=None, help=f"runs per scenario (default {DEFAULT_SEEDS})"
    )
    parser.add_argument(
        "--healthy-seeds",
        type=int,
        default=None,
        help=f"runs of `healthy` (default {DEFAULT_HEALTHY_SEEDS}, or --seeds if given)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SEEDS} runs per scenario, to check it works"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    seeds = args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    healthy_seeds = args.healthy_seeds or (
        seeds if args.quick or args.seeds else DEFAULT_HEALTHY_SEEDS
    )
    runs = {s.name: healthy_seeds if s.healthy else seeds for s in SCENARIOS}

    print(
        f"simulating {sum(runs.values())} runs ({runs}) on {args.workers} processes...",
        file=sys.stderr,
    )
    started = time.perf_counter()
    results, cpu_s = run_all(runs, args.workers)
    elapsed = time.perf_counter() - started
    targets = check_targets(results)

    report = {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_uncommitted_changes": git("status", "--porcelain", "--", "bgkit") != "",
        "quick": args.quick,
        "elapsed_s": round(elapsed, 1),
        "cpu_s": round(cpu_s, 1),  # CPU time of the runs, summed over workers
        "workers": args.workers,
        "runs": runs,
        "seeds": {
            s.name: f"numpy.random.default_rng([{BASE_SEED}, {i}, k]) for k in 0..{runs[s.name] - 1}"
            for i, s in enumerate(SCENARIOS)
        },
        "parameters": parameters(),
        "results": results,
        "targets": targets,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    print_table(results)
    print("targets (bgkit_judge):")
    for target in targets:
        print(
            f"  [{'met' if target['met'] else 'MISSED'}] {target['target']}: {target['measured']}"
        )
    print(
        f"\n{sum(runs.values())} runs in {elapsed:.1f} s on {args.workers} processes "
        f"({cpu_s:.1f} CPU s in the runs)"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
