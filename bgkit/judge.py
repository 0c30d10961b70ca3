"""The release judge's statistics: an anytime-valid test that green is worse than blue.

Work in progress (issue 5): this module holds the exact sequential test for counts; the
release loop does not use it yet (it still uses `bgkit.gate`).

The question, for errors (and, later, for slow requests): does a green request fail more
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Odds ratios the mixture bets on (green's failure odds over blue's), with equal weights.
DEFAULT_THETAS = (1.5, 2.0, 3.0, 4.0, 6.0, 10.0)


def _log_binomial(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


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


@dataclass
class WorseTest:
    """An anytime-valid test of "green's events (5xx) are more likely than blue's".

    `update` takes one period's counts per colour; `e_value` is the mixture martingale, and
    `rejected` says it has reached 1 / alpha: enough evidence that green is worse.
    """

    alpha: float = 0.01
    thetas: tuple[float, ...] = DEFAULT_THETAS
    _log_products: list[float] = field(default_factory=list)
    periods: int = 0
    green_events: int = 0
    blue_events: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        if not self.thetas or min(self.thetas) <= 1:
            raise ValueError("thetas must be odds ratios above 1")
        self._log_products = [0.0] * len(self.thetas)

    def update(
        self, green_events: int, green_trials: int, blue_events: int, blue_trials: int
    ) -> None:
        for name, value in (
            ("green_events", green_events), ("green_trials", green_trials),
            ("blue_events", blue_events), ("blue_trials", blue_trials),
        ):  # fmt: skip
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if green_events > green_trials or blue_events > blue_trials:
            raise ValueError("events cannot outnumber trials")
        self.periods += 1
        self.green_events += green_events
        self.blue_events += blue_events
        events = green_events + blue_events
        if events == 0 or green_trials == 0 or blue_trials == 0:
            return  # the period says nothing about the odds ratio: every factor is 1
        null = noncentral_hypergeometric_log_pmf(
            green_events, green_trials, blue_trials, events, 1.0
        )
        for i, theta in enumerate(self.thetas):
            alternative = noncentral_hypergeometric_log_pmf(
                green_events, green_trials, blue_trials, events, theta
            )
            self._log_products[i] += alternative - null

    @property
    def log_e_value(self) -> float:
        return _logsumexp(self._log_products) - math.log(len(self.thetas))

    @property
    def e_value(self) -> float:
        return math.exp(min(self.log_e_value, 700.0))

    @property
    def rejected(self) -> bool:
        return self.log_e_value >= math.log(1 / self.alpha)
