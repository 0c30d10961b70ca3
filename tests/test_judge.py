"""The judge's statistics against values computed independently, and its error guarantee."""

from __future__ import annotations

import math
import random
from itertools import product

import pytest

from bgkit.judge import WorseTest, noncentral_hypergeometric_log_pmf


def brute_force_conditional(x: int, n_green: int, n_blue: int, events: int, p_green, p_blue):
    """P(green events = x | all events = events) by enumerating two binomials."""

    def binomial(n, k, p):
        return math.comb(n, k) * p**k * (1 - p) ** (n - k)

    joint = {
        g: binomial(n_green, g, p_green) * binomial(n_blue, events - g, p_blue)
        for g in range(0, min(events, n_green) + 1)
        if events - g <= n_blue
    }
    return joint.get(x, 0.0) / sum(joint.values())


@pytest.mark.parametrize(
    ("n_green", "n_blue", "events", "p_green", "p_blue"),
    [
        (10, 90, 3, 0.01, 0.01),
        (25, 75, 5, 0.04, 0.01),
        (3, 3, 4, 0.5, 0.2),
        (1, 200, 1, 0.02, 0.005),
    ],
)
def test_the_pmf_is_two_binomials_conditioned_on_their_sum(
    n_green, n_blue, events, p_green, p_blue
):
    # the odds ratio of a green event against a blue one
    theta = (p_green / (1 - p_green)) / (p_blue / (1 - p_blue))
    for x in range(0, events + 1):
        expected = brute_force_conditional(x, n_green, n_blue, events, p_green, p_blue)
        got = math.exp(noncentral_hypergeometric_log_pmf(x, n_green, n_blue, events, theta))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_under_the_null_each_factor_has_expectation_one():
    """The property that makes the product a martingale: E_1[P_theta(X) / P_1(X)] = 1."""
    for n_green, n_blue, events, theta in product((1, 7, 40), (5, 60), (1, 3, 9), (1.5, 4.0)):
        if events > n_green + n_blue:
            continue
        total = 0.0
        for x in range(0, events + 1):
            null = noncentral_hypergeometric_log_pmf(x, n_green, n_blue, events, 1.0)
            alternative = noncentral_hypergeometric_log_pmf(x, n_green, n_blue, events, theta)
            if null > -math.inf:
                total += math.exp(alternative)
        assert total == pytest.approx(1.0, rel=1e-12)


def test_one_theta_is_walds_sprt_with_its_known_boundary():
    """With one theta and Poisson-rare errors, each green error multiplies the e-value by about
    theta / (theta q + 1 - q) and each blue one by 1 / (theta q + 1 - q) (q: green's share)."""
    test = WorseTest(alpha=0.01, thetas=(4.0,))
    q = 0.1
    for _ in range(12):  # one error a period among many requests, on green
        test.update(1, 100_000, 0, 900_000)
    step = math.log(4.0 / (4.0 * q + 1 - q))
    assert test.log_e_value == pytest.approx(12 * step, rel=1e-4)
    # Wald's boundary log(1/alpha) = 4.605 is crossed after ceil(4.605 / step) green errors
    needed = math.ceil(math.log(100) / step)
    fresh = WorseTest(alpha=0.01, thetas=(4.0,))
    for n in range(1, needed + 1):
        fresh.update(1, 100_000, 0, 900_000)
        assert fresh.rejected == (n == needed)


def test_periods_without_events_or_without_a_colour_change_nothing():
    test = WorseTest()
    test.update(0, 50, 0, 450)
    test.update(3, 0 + 3, 0, 0)  # no blue requests: nothing to compare with
    assert test.log_e_value == pytest.approx(0.0)
    assert not test.rejected


@pytest.mark.parametrize(
    "bad",
    [dict(green_events=-1, green_trials=1, blue_events=0, blue_trials=1),
     dict(green_events=2, green_trials=1, blue_events=0, blue_trials=1)],
)  # fmt: skip
def test_impossible_counts_are_refused(bad):
    with pytest.raises(ValueError):
        WorseTest().update(**bad)


def test_on_identical_streams_false_rollbacks_stay_below_alpha():
    """300 canaries of 600 one-second periods each (10 % of 100 requests/s, 0.5 % errors on
    both colours), looked at every period: the share ever rejected stays below alpha."""
    alpha, runs = 0.05, 300
    rng = random.Random(20261127)
    rejected = 0
    for _ in range(runs):
        test = WorseTest(alpha=alpha)
        for _ in range(600):
            green = sum(rng.random() < 0.005 for _ in range(10))
            blue = sum(rng.random() < 0.005 for _ in range(90))
            test.update(green, 10, blue, 90)
            if test.rejected:
                rejected += 1
                break
    # Ville: at most alpha; allow three standard errors of a 300-run estimate
    assert rejected / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_a_four_times_worse_green_is_caught():
    rng = random.Random(7)
    caught = []
    for _ in range(20):
        test = WorseTest(alpha=0.01)
        for second in range(1, 600):
            green = sum(rng.random() < 0.02 for _ in range(10))
            blue = sum(rng.random() < 0.005 for _ in range(90))
            test.update(green, 10, blue, 90)
            if test.rejected:
                caught.append(10 * second)  # canary requests until the rollback
                break
    assert len(caught) == 20
    assert sum(caught) / len(caught) < 1500
