"""The release judge: an anytime-valid comparison of green with blue, on 5xx errors and on
slow requests, whose probability of rolling back a healthy green stays at most alpha.

The question, for errors (and the same for slow requests): does a green request fail more
often than a blue one? In each metric period CloudWatch gives, per colour, the number of
requests and of 5xx answers. Conditional on the period's total of 5xx answers `m`, the number
of green 5xx answers follows Fisher's noncentral hypergeometric distribution with the odds
ratio `theta` of a green versus a blue failure: theta = 1 when green is as good as blue. Its
probabilities are exact for any counts (no normal approximation, however few the errors), and
they do not depend on the unknown error rate, only on `theta`.

For a fixed theta, the product over periods of P_theta(x) / P_1(x) has expectation one under
theta = 1 whatever the split of traffic in each period (it may change at every step), so it
is a test martingale; so is an average of such products over several theta (a mixture). By
Ville's inequality, the probability that it ever reaches 1 / alpha is at most alpha: rolling
back when it does keeps the false-rollback probability at most alpha however often the judge
looks and however long the canary runs (anytime-valid inference; Wald's SPRT is the one-theta
case).

`Judge` runs one such test per metric: 5xx answers, and slow requests at each of several
thresholds (blue's p90, p99 and p99.9 before the release, each plus a margin), so that a green
whose slowest requests alone got slower is seen too. It gives verdicts (ROLLBACK, CONTINUE,
PASS, NO_DATA) with the numbers behind them, and checks optional absolute guard rails (SLO
limits), labelled as such.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Odds ratios the mixture bets on (green's failure odds over blue's), with equal weights.
DEFAULT_THETAS = (1.5, 2.0, 3.0, 4.0, 6.0, 10.0)


def _log_binomial(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


# A pure function of small counts that recur period after period (a canary's periods look
# alike): memoised, it costs a lookup.
@functools.lru_cache(maxsize=1 << 16)
def noncentral_hypergeometric_log_pmf(
    x: int, green_trials: int, blue_trials: int, events: int, theta: float
) -> float:
    """log P(X = x) of Fisher's noncentral hypergeometric distribution: `events` events among
    `green_trials` + `blue_trials` trials, green's odds of an event `theta` times blue's."""
    low, high = max(0, events - blue_trials), min(events, green_trials)
    if not low <= x <= high:
        return -math.inf
    log_theta = math.log(theta)

    def weight(k: int) -> float:
        return (
            _log_binomial(green_trials, k) + _log_binomial(blue_trials, events - k) + k * log_theta
        )

    return weight(x) - _logsumexp([weight(k) for k in range(low, high + 1)])


class _EValue:
    """What every test here shares: its e-value (from `log_e_value`) and the decision at its
    `boundary`."""

    log_e_value: float
    boundary: float

    @property
    def e_value(self) -> float:
        return math.exp(min(self.log_e_value, 700.0))

    @property
    def rejected(self) -> bool:
        return self.log_e_value >= math.log(self.boundary)


class _OddsRatioTest(_EValue):
    """Mixture martingale for one side of Fisher's noncentral hypergeometric odds ratio.

    Null: the odds ratio is on the far side of `null` from every alternative (at least `null`
    when the alternatives are below it, at most `null` when above). For a one-parameter
    exponential family the likelihood ratio P_a(x) / P_null(x) is monotone in x, so each
    factor has expectation at most one anywhere in that composite null, not only at `null`.
    """

    def __init__(self, alpha: float, null: float, alternatives: tuple[float, ...]) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        if not alternatives or null <= 0 or any(a <= 0 or a == null for a in alternatives):
            raise ValueError("alternatives must be positive odds ratios other than the null")
        if len({a > null for a in alternatives}) != 1:
            raise ValueError("every alternative must lie on the same side of the null")
        self.alpha, self.null, self.alternatives = alpha, null, tuple(alternatives)
        self._log_products = [0.0] * len(self.alternatives)
        self.periods = self.green_events = self.blue_events = 0
        self.green_trials = self.blue_trials = 0

    def update(
        self, green_events: int, green_trials: int, blue_events: int, blue_trials: int
    ) -> None:
        _check_counts(green_events, green_trials, blue_events, blue_trials)
        self.periods += 1
        self.green_events += green_events
        self.blue_events += blue_events
        self.green_trials += green_trials
        self.blue_trials += blue_trials
        events = green_events + blue_events
        if events == 0 or green_trials == 0 or blue_trials == 0:
            return  # the period says nothing about the odds ratio: every factor is 1
        null = noncentral_hypergeometric_log_pmf(
            green_events, green_trials, blue_trials, events, self.null
        )
        for i, theta in enumerate(self.alternatives):
            alternative = noncentral_hypergeometric_log_pmf(
                green_events, green_trials, blue_trials, events, theta
            )
            self._log_products[i] += alternative - null

    @property
    def log_e_value(self) -> float:
        return _logsumexp(self._log_products) - math.log(len(self.alternatives))

    @property
    def boundary(self) -> float:
        return 1 / self.alpha


class WorseTest(_OddsRatioTest):
    """An anytime-valid test of "green's events (5xx, slow requests) are likelier than blue's".

    `update` takes one period's counts per colour; `e_value` is the mixture martingale, and
    `rejected` says it has reached 1 / alpha: enough evidence that green's odds of an event
    exceed `margin` times blue's (margin 1: green is worse at all).
    """

    def __init__(
        self, alpha: float = 0.01, thetas: tuple[float, ...] = DEFAULT_THETAS, margin: float = 1.0
    ) -> None:
        if not thetas or min(thetas) <= 1:
            raise ValueError("thetas must be odds ratios above 1")
        if margin < 1:
            raise ValueError(f"margin must be at least 1, got {margin}")
        super().__init__(alpha, margin, tuple(margin * t for t in thetas))


class NotWorseTest(_OddsRatioTest):
    """An anytime-valid test of "green's odds of an event are below `margin` times blue's":
    the non-inferiority evidence behind PASS. The null is "green is worse by `margin` or more";
    the mixture bets on green being as good as blue, or somewhat better or worse."""

    def __init__(self, alpha: float = 0.01, margin: float = 2.0) -> None:
        if margin <= 1:
            raise ValueError(f"margin must be above 1, got {margin}")
        super().__init__(alpha, margin, tuple(margin / k for k in (1.25, 1.5, 2.0, 3.0)))


class BaselineTest(_EValue):
    """Green against blue measured earlier (a service that switches all at once): anytime-valid.

    Blue's rate is known only from its baseline sample, so the null bound is Clopper–Pearson's
    exact one-sided bound on it at level alpha / 2 (upper for "worse", lower for "not worse"),
    and green's stream is tested against that bound at alpha / 2 with a mixture of binomial
    likelihood ratios (rates r · bound). P(bound wrong) + P(test wrong | bound right) ≤ alpha.
    Rate ratios here, since blue's odds are not observed beside green's.
    """

    def __init__(
        self,
        baseline_events: int,
        baseline_trials: int,
        alpha: float = 0.01,
        *,
        worse: bool = True,
        margin: float = 1.0,
    ) -> None:
        if baseline_trials <= 0 or not 0 <= baseline_events <= baseline_trials:
            raise ValueError("a baseline needs trials, and no more events than trials")
        self.alpha, self.worse = alpha, worse
        if worse:
            bound = clopper_pearson_upper(baseline_events, baseline_trials, alpha / 2)
            self.null = min(margin * bound, 1.0)
            rates = [self.null * r for r in DEFAULT_THETAS]
        else:
            bound = clopper_pearson_lower(baseline_events, baseline_trials, alpha / 2)
            self.null = margin * bound
            rates = [self.null / k for k in (1.25, 1.5, 2.0, 3.0)]
        self.rates = tuple(r for r in rates if 0 < r < 1)
        self._log_products = [0.0] * len(self.rates)
        self.periods = self.green_events = self.green_trials = 0

    def update(self, green_events: int, green_trials: int) -> None:
        _check_counts(green_events, green_trials, 0, 0)
        self.periods += 1
        self.green_events += green_events
        self.green_trials += green_trials
        if not self.rates or not 0 < self.null < 1:
            return  # a bound of 0 or 1 cannot be beaten in this direction: no evidence
        misses = green_trials - green_events
        for i, rate in enumerate(self.rates):
            self._log_products[i] += green_events * math.log(rate / self.null) + misses * math.log(
                (1 - rate) / (1 - self.null)
            )

    @property
    def log_e_value(self) -> float:
        if not self.rates:
            return 0.0
        return _logsumexp(self._log_products) - math.log(len(self.rates))

    @property
    def boundary(self) -> float:
        return 2 / self.alpha  # the test's half of alpha; the bound on blue spends the other


def _check_counts(green_events: int, green_trials: int, blue_events: int, blue_trials: int) -> None:
    for name, value in (
        ("green_events", green_events), ("green_trials", green_trials),
        ("blue_events", blue_events), ("blue_trials", blue_trials),
    ):  # fmt: skip
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if green_events > green_trials or blue_events > blue_trials:
        raise ValueError("events cannot outnumber trials")


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    terms = [_log_binomial(n, i) + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(k + 1)]
    return min(1.0, math.exp(_logsumexp(terms)))


def clopper_pearson_upper(events: int, trials: int, level: float) -> float:
    """The exact one-sided upper bound u with P(X <= events | u) = level."""
    if events >= trials:
        return 1.0
    return _bisect(lambda p: binomial_cdf(events, trials, p) - level, decreasing=True)


def clopper_pearson_lower(events: int, trials: int, level: float) -> float:
    """The exact one-sided lower bound l with P(X >= events | l) = level."""
    if events <= 0:
        return 0.0
    return _bisect(lambda p: (1 - binomial_cdf(events - 1, trials, p)) - level, decreasing=False)


def _bisect(f, *, decreasing: bool) -> float:  # type: ignore[no-untyped-def]
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if (f(mid) > 0) == decreasing:
            low = mid
        else:
            high = mid
    return (low + high) / 2


# -- the judge: both metrics, verdicts, guard rails ---------------------------------------


class Decision(StrEnum):
    ROLLBACK = "ROLLBACK"  # enough evidence that green is worse (or a guard rail is breached)
    CONTINUE = "CONTINUE"  # no evidence of harm yet: the release may go on
    PASS = "PASS"  # enough evidence that green is not worse by more than pass_margin
    NO_DATA = "NO_DATA"  # too little traffic in the window to judge: hold; never a pass


@dataclass(frozen=True)
class Counts:
    """One colour in one metric period, as CloudWatch reports it."""

    requests: int
    errors: int  # 5xx answers
    # requests slower than each of the judge's thresholds, by name ("p90", "p99", "p99.9");
    # None: latency not measured
    slow: Mapping[str, int] | None = None

    def __add__(self, other: Counts) -> Counts:
        """Sums; the slow counts stay None (not measured) until a period has them."""
        slow = self.slow
        if other.slow is not None:
            slow = {q: (self.slow or {}).get(q, 0) + n for q, n in other.slow.items()}
        return Counts(self.requests + other.requests, self.errors + other.errors, slow)


class StepTests(_EValue):
    """One test per planned release step, each started when its step starts, averaged with
    equal weights (a step not started yet counts as 1).

    An average of test martingales is a test martingale, so alpha holds for the average. What it
    buys: under a healthy green a test's e-value drifts below 1, and a regression that appears
    only at a late step (say, under 75 % of the load) would first have to climb back; the test
    started at that step has no such debt. The cost: ln(steps) more evidence for a regression
    present from the first step. One step (a canary plan): exactly the single test.
    """

    def __init__(self, make: Any, steps: int = 1) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self._make, self.steps = make, steps
        self.tests = [make()]

    def start(self) -> None:
        """The next step begins: its own test starts (no-op once every planned step has one)."""
        if len(self.tests) < self.steps:
            self.tests.append(self._make())

    def update(self, *counts: int) -> None:
        for test in self.tests:
            test.update(*counts)

    @property
    def log_e_value(self) -> float:
        waiting = [0.0] * (self.steps - len(self.tests))
        return _logsumexp([t.log_e_value for t in self.tests] + waiting) - math.log(self.steps)

    @property
    def boundary(self) -> float:
        return self.tests[0].boundary


# The slow-request thresholds: quantiles of blue's latency measured before green gets traffic.
# Three of them, so that a green whose slowest requests alone got slower (its p90 unchanged)
# moves a count too: above p90 that is a small shift among many events, above p99 or p99.9 a
# large one among few.
QUANTILES = {"p90": 0.90, "p99": 0.99, "p99.9": 0.999}
# A tail quantile q is estimated from blue's baseline when at least this many of its requests
# are expected above it, n (1 - q) >= 10: p99 needs 1,000 requests, p99.9 10,000. p90 is judged
# whenever the baseline is (it has min_requests).
MIN_REQUESTS_ABOVE = 10
# How alpha is split between the metrics (Bonferroni): most to 5xx, whose events are rare
# (0.5 % of requests), so that a rare-event regression needs little more evidence than with
# alpha whole; slow requests share the rest, weighted among the thresholds judged (renormalised
# when one is left out). Above blue's p90 about 10 % of requests count, so that test affords a
# higher boundary at little cost in time; a tail regression moves the odds above p99 or p99.9
# several-fold, so their tests reach even their higher boundaries quickly.
ALPHA_SHARE = {"errors": 0.8, "slow": 0.2}
SLOW_WEIGHTS = {"p90": 0.5, "p99": 0.3, "p99.9": 0.2}


def metric_label(metric: str) -> str:
    """What a metric is called where only its name is known (a record's verdicts)."""
    return "5xx" if metric == "errors" else f"slower than blue's {metric.removeprefix('slow_')}"


def slow_metric(quantile: str) -> str:
    """The metric name of the slow-request test at blue's `quantile` ("p99" -> "slow_p99")."""
    return f"slow_{quantile}"


def slow_thresholds(
    quantiles_ms: Mapping[str, float | None], requests: int, margin_ms: float
) -> tuple[dict[str, float], dict[str, str]]:
    """The judge's slow thresholds from blue's baseline: each quantile (`QUANTILES`) plus
    `margin_ms`, where the baseline's `requests` estimate it; and, for each one left out, why."""
    thresholds, left_out = {}, {}
    for name, q in QUANTILES.items():
        value = quantiles_ms.get(name)
        needed = 0 if name == "p90" else round(MIN_REQUESTS_ABOVE / (1 - q))  # 1,000; 10,000
        if value is None:
            left_out[name] = f"CloudWatch gave no {name} for blue's baseline"
        elif requests < needed:
            left_out[name] = (
                f"blue's baseline has {requests:,} requests; estimating its {name} needs "
                f"{needed:,} ({MIN_REQUESTS_ABOVE} expected above it)"
            )
        else:
            thresholds[name] = round(value + margin_ms, 3)
    return thresholds, left_out


def alpha_shares(alpha: float, quantiles: list[str]) -> dict[str, float]:
    """Each metric's share of `alpha`: 5xx's, and slow requests' split among `quantiles`."""
    weights = {q: SLOW_WEIGHTS[q] for q in quantiles}
    total = sum(weights.values())
    return {
        "errors": alpha * ALPHA_SHARE["errors"],
        **{slow_metric(q): alpha * ALPHA_SHARE["slow"] * w / total for q, w in weights.items()},
    }


@dataclass
class Judge:
    """Compares green with blue on 5xx errors and slow requests, one metric period at a time.

    Each metric has its own anytime-valid test at its share of alpha (`alpha_shares`), so the
    probability of any false rollback of a healthy green stays at most alpha over the whole
    release, however often the judge looks. A request is slow at a threshold of
    `slow_thresholds_ms` (by quantile name: "p90", "p99", "p99.9"), which the release sets from
    blue's latency before green got traffic (`slow_thresholds`); CloudWatch counts them with the
    percentile-rank statistic, per colour, threshold and period.

    With `steps` > 1 (a plan's steps), each metric's test is a `StepTests`: the release calls
    `start_step` at each step. With `baseline` (blue measured before an all-at-once switch),
    green is tested against blue's baseline counts instead of blue's concurrent ones (see
    `BaselineTest`). PASS (with `pass_margin`) needs non-inferiority on 5xx and above p90: the
    tail tests, whose events are rare, only ever roll back.
    """

    alpha: float = 0.01
    min_requests: int = 20
    slow_thresholds_ms: Mapping[str, float] = field(default_factory=dict)
    pass_margin: float = 0.0  # 0: PASS not configured; else an odds ratio above 1
    error_rate_slo: float = 0.0  # guard rails (absolute, not comparisons); 0: off
    p99_slo_ms: float = 0.0
    baseline: Counts | None = None
    steps: int = 1
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if unknown := set(self.slow_thresholds_ms) - set(QUANTILES):
            raise ValueError(f"slow thresholds must be among {list(QUANTILES)}, got {unknown}")
        quantiles = [q for q in QUANTILES if q in self.slow_thresholds_ms]
        self.slow_thresholds_ms = {q: self.slow_thresholds_ms[q] for q in quantiles}
        # each metric's name and what verdicts call it
        self.metrics = {"errors": "5xx"} | {
            slow_metric(q): f"slower than {self.slow_thresholds_ms[q]:g} ms (blue's {q})"
            for q in quantiles
        }
        share = alpha_shares(self.alpha, quantiles)
        passing = [m for m in ("errors", slow_metric("p90")) if m in self.metrics]
        self.worse: dict[str, Any]
        self.not_worse: dict[str, Any] = {}
        if self.baseline is None:
            self.worse = {
                m: StepTests(lambda a=share[m]: WorseTest(alpha=a), self.steps)
                for m in self.metrics
            }
            if self.pass_margin:
                self.not_worse = {m: NotWorseTest(share[m], self.pass_margin) for m in passing}
        else:
            # a baseline without slow counts gives the slow tests nothing: they stay at 1
            self.worse = {
                m: BaselineTest(
                    self._events(self.baseline, m) or 0, self.baseline.requests, share[m]
                )
                for m in self.metrics
            }
            if self.pass_margin:
                self.not_worse = {
                    m: BaselineTest(
                        self._events(self.baseline, m) or 0,
                        self.baseline.requests,
                        share[m],
                        worse=False,
                        margin=self.pass_margin,
                    )
                    for m in passing
                }
        self.window, self.step, self.total = _zero(), _zero(), _zero()
        self.step_compared = _zero()  # the step's periods in which green was compared
        self._steps_started = 0

    @staticmethod
    def _events(counts: Counts, metric: str) -> int | None:
        """The counts' events for `metric`: 5xx, or the requests above one threshold (None:
        latency not measured)."""
        if metric == "errors":
            return counts.errors
        return None if counts.slow is None else counts.slow.get(metric.removeprefix("slow_"))

    def start_window(self) -> None:
        """A new bake window: the guard rails look at the window's own traffic."""
        self.window = _zero()

    def start_step(self) -> None:
        """A release step begins: NO_DATA looks at the traffic since then (holds add up), and
        with `steps` > 1 the step's own tests start."""
        self._steps_started += 1
        self.step, self.step_compared = _zero(), _zero()
        if self._steps_started > 1:
            for test in self.worse.values():
                if isinstance(test, StepTests):
                    test.start()

    def observe(self, at: Any, blue: Counts | None, green: Counts) -> None:
        """Add one metric period. `blue` is None when blue is judged from its baseline."""
        # green is compared in a period where blue served too (or with blue's baseline): only
        # those periods count towards min_requests, so that a window in which blue served
        # nothing (a service's jump to 100 %) is no verdict on green, never a pass
        compared = self.baseline is not None or bool(blue and blue.requests and green.requests)
        for colour, counts in (("blue", blue), ("green", green)):
            if counts is not None:
                for kept in (self.window, self.step, self.total):
                    kept[colour] = kept[colour] + counts
                if compared:
                    self.step_compared[colour] = self.step_compared[colour] + counts
        for tests in (self.worse, self.not_worse):
            for metric, test in tests.items():
                green_events = self._events(green, metric)
                if green_events is None:
                    continue  # latency not measured: no evidence either way
                if self.baseline is not None:
                    if self._events(self.baseline, metric) is not None:
                        test.update(green_events, green.requests)
                    continue
                blue_events = None if blue is None else self._events(blue, metric)
                if blue is None or blue_events is None:
                    continue
                test.update(green_events, green.requests, blue_events, blue.requests)
        self.evidence.append(
            {
                "at": at,
                **{f"{m}_e_value": t.e_value for m, t in self.worse.items()},
                **{f"{m}_pass_e_value": t.e_value for m, t in self.not_worse.items()},
            }
        )

    @property
    def rejected(self) -> list[str]:
        """The metrics on which green is worse than blue, with evidence enough to roll back."""
        return [m for m, test in self.worse.items() if test.rejected]

    def verdict(self, green_p99_ms: float | None = None) -> Verdict:
        """The verdict on everything seen so far, for the window that just ended."""
        numbers = self.numbers()
        if worse := self.rejected:
            return Verdict(Decision.ROLLBACK, self._worse_reason(worse), numbers)
        green, blue = self.window["green"], self.window["blue"]
        if green.requests >= self.min_requests:
            rate = green.errors / green.requests
            if self.error_rate_slo and rate > self.error_rate_slo:
                return Verdict(
                    Decision.ROLLBACK,
                    f"guard rail (SLO, absolute): green 5xx rate {rate:.2%} ({green.errors}/"
                    f"{green.requests}) in this window exceeds error_rate_slo {self.error_rate_slo:.2%}",
                    numbers,
                )
            if self.p99_slo_ms and green_p99_ms is not None and green_p99_ms > self.p99_slo_ms:
                return Verdict(
                    Decision.ROLLBACK,
                    f"guard rail (SLO, absolute): green p99 {green_p99_ms:.1f} ms in this window "
                    f"exceeds p99_slo_ms {self.p99_slo_ms:g} ms",
                    numbers,
                )
        green, blue = self.step_compared["green"], self.step_compared["blue"]  # holds add up
        short = [
            f"{colour} served {counts.requests}"
            for colour, counts in (("green", green), ("blue", blue))
            if counts.requests < self.min_requests and (colour == "green" or self.baseline is None)
        ]
        if short:
            side_by_side = "" if self.baseline is not None else " while both colours served"
            return Verdict(
                Decision.NO_DATA,
                f"{' and '.join(short)} requests in this step{side_by_side}, fewer than "
                f"min_requests ({self.min_requests}): too little traffic to judge, holding",
                numbers,
            )
        green = self.step["green"]
        if green.slow is None and self.slow_thresholds_ms:
            return Verdict(
                Decision.NO_DATA,
                f"green served {green.requests} requests in this step but CloudWatch gave no "
                "latency for them (no percentile-rank datapoint): latency not judged, holding",
                numbers,
            )
        evidence = self._evidence_text()
        if self.not_worse and all(t.rejected for t in self.not_worse.values()):
            return Verdict(
                Decision.PASS,
                f"green is not worse than blue by {self.pass_margin:g}x or more on "
                f"{' and '.join(self.metrics[m] for m in self.not_worse)} ({evidence})",
                numbers,
            )
        return Verdict(Decision.CONTINUE, f"no evidence that green is worse ({evidence})", numbers)

    @property
    def _blue_total(self) -> Counts:
        """What green is compared with: blue's counts so far, or its baseline."""
        return self.baseline if self.baseline is not None else self.total["blue"]

    def numbers(self) -> dict[str, Any]:
        """What a verdict was computed from: the counts per colour, window and total, and each
        test's e-value against its boundary."""
        base = "baseline" if self.baseline is not None else "blue"
        blue_total = self._blue_total
        return {
            "alpha": self.alpha,
            "boundaries": {m: t.boundary for m, t in self.worse.items()},
            "slow_thresholds_ms": dict(self.slow_thresholds_ms),
            "blue_is": base,
            "window_counts": {c: _counts_dict(v) for c, v in self.window.items()},
            "step_counts": {c: _counts_dict(v) for c, v in self.step.items()},
            "total": {"blue": _counts_dict(blue_total), "green": _counts_dict(self.total["green"])},
            "e_values": {m: t.e_value for m, t in self.worse.items()},
            "pass_e_values": {m: t.e_value for m, t in self.not_worse.items()},
            "guard_rails": {"error_rate_slo": self.error_rate_slo, "p99_slo_ms": self.p99_slo_ms},
        }

    def _worse_reason(self, metrics: list[str]) -> str:
        parts = []
        green, blue = self.total["green"], self._blue_total
        for metric in metrics:
            test = self.worse[metric]
            g, b = self._events(green, metric) or 0, self._events(blue, metric) or 0
            parts.append(
                f"green {self.metrics[metric]} {_rate(g, green.requests)} against blue"
                f"{' before the deployment' if self.baseline is not None else ''} "
                f"{_rate(b, blue.requests)}: evidence {test.e_value:.3g} ≥ {test.boundary:.4g}"
            )
        return "green is worse than blue: " + "; ".join(parts)

    def pass_blockers(self) -> list[str]:
        """Why PASS cannot come yet, where the reason is plain: a metric with no events."""
        green, blue = self.total["green"], self._blue_total
        return [
            f"no requests {self.metrics[m]} on either colour: nothing to compare"
            if m != "errors"
            else "no 5xx on either colour: nothing to compare"
            for m, test in self.not_worse.items()
            if not test.rejected
            and not (
                (self._events(green, m) or 0) + (0 if self.baseline else self._events(blue, m) or 0)
            )
        ]

    def _evidence_text(self) -> str:
        return ", ".join(
            f"{self.metrics[m]}: evidence {t.e_value:.2g} < {t.boundary:.4g}"
            for m, t in self.worse.items()
        )


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    numbers: dict[str, Any]


def _zero() -> dict[str, Counts]:
    return {"blue": Counts(0, 0, None), "green": Counts(0, 0, None)}


def _counts_dict(c: Counts) -> dict[str, Any]:
    return {
        "requests": c.requests,
        "errors": c.errors,
        "slow": None if c.slow is None else dict(c.slow),
    }


def _rate(events: int, trials: int) -> str:
    return f"{events / trials:.1%} ({events}/{trials})" if trials else f"n/a (0/{trials})"
