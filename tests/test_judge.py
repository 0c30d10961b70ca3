"""The judge's statistics against values computed independently, and its error guarantee."""

from __future__ import annotations

import bisect
import math
import random
from itertools import product

import pytest

from bgkit import judge as judge_module
from bgkit.judge import (
    DEFAULT_THETAS,
    BaselineTest,
    Counts,
    Decision,
    Judge,
    NotWorseTest,
    StepTests,
    WorseTest,
    binomial_cdf,
    clopper_pearson_lower,
    clopper_pearson_upper,
    noncentral_hypergeometric_log_pmf,
)


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


# -- independent references: exact sums over math.comb ------------------------------------


def binomial_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def binomial_cdf_by_comb(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), term by term."""
    return sum(binomial_pmf(i, n, p) for i in range(0, min(k, n) + 1))


def binomial_upper_tail_by_comb(k: int, n: int, p: float) -> float:
    """P(X >= k), summed over the upper terms themselves (no 1 - cdf cancellation)."""
    return sum(binomial_pmf(i, n, p) for i in range(max(k, 0), n + 1))


def fisher_pmf(n_green: int, n_blue: int, events: int, theta: float) -> dict[int, float]:
    """Fisher's noncentral hypergeometric distribution of green's events, by its definition:
    P(x) proportional to C(n_green, x) C(n_blue, events - x) theta^x."""
    weights = {
        x: math.comb(n_green, x) * math.comb(n_blue, events - x) * theta**x
        for x in range(max(0, events - n_blue), min(events, n_green) + 1)
    }
    total = sum(weights.values())
    return {x: w / total for x, w in weights.items()}


def one_period_expectation(make_test, n_green: int, n_blue: int, events: int, theta: float):
    """E_theta of a fresh test's e-value after one period: its factor's expectation."""
    expectation = 0.0
    for x, probability in fisher_pmf(n_green, n_blue, events, theta).items():
        test = make_test()
        test.update(x, n_green, events - x, n_blue)
        expectation += probability * test.e_value
    return expectation


def binomial_sampler(n: int, p: float):
    """Draws from Binomial(n, p) by inverting its cdf, one uniform per draw (Python 3.11 has no
    binomialvariate); the pmf comes from its recurrence, so any n will do."""
    cdf, pmf = [], (1 - p) ** n
    for k in range(n + 1):
        cdf.append(pmf if not cdf else cdf[-1] + pmf)
        pmf *= (n - k) / (k + 1) * p / (1 - p)
    cdf[-1] = 1.0
    return lambda rng: bisect.bisect_right(cdf, rng.random())


def ever_rejected_share(runs: int, passes) -> float:
    return sum(passes(run) for run in range(runs)) / runs


def three_standard_errors(alpha: float, runs: int) -> float:
    return 3 * math.sqrt(alpha * (1 - alpha) / runs)


# -- binomial cdf and Clopper–Pearson bounds ----------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 1, 0.3),
        (3, 10, 0.25),
        (7, 10, 0.9),
        (0, 50, 0.01),
        (2, 300, 0.2),  # a deep tail, about 1e-26
        (12, 200, 0.05),
        (150, 400, 0.4),
        (498, 500, 0.999),
    ],
)
def test_the_binomial_cdf_is_the_sum_of_its_terms(k, n, p):
    assert binomial_cdf(k, n, p) == pytest.approx(binomial_cdf_by_comb(k, n, p), rel=1e-9)


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (-1, 10, 0.3, 0.0),  # no count is negative
        (-5, 0, 0.5, 0.0),
        (10, 10, 0.3, 1.0),  # k >= n: certain
        (12, 10, 0.3, 1.0),
        (0, 0, 0.5, 1.0),
        (0, 10, 0.0, 1.0),  # p = 0: never an event
        (3, 10, 0.0, 1.0),
        (9, 10, 1.0, 0.0),  # p = 1: always n events
        (0, 10, 1.0, 0.0),
        (10, 10, 1.0, 1.0),
    ],
)
def test_the_binomial_cdf_at_its_edges(k, n, p, expected):
    assert binomial_cdf(k, n, p) == expected
    if k >= 0 and n > 0:
        assert binomial_cdf_by_comb(k, n, p) == pytest.approx(expected)


CLOPPER_PEARSON_CASES = [
    (0, 10, 0.05),
    (0, 1000, 0.005),
    (1, 20, 0.025),
    (3, 7, 0.1),
    (5, 100, 0.005),
    (10, 1000, 0.005),
    (50, 100, 0.05),
    (99, 100, 0.025),
    (100, 100, 0.005),
]


@pytest.mark.parametrize(("events", "trials", "level"), CLOPPER_PEARSON_CASES)
def test_the_clopper_pearson_bounds_solve_their_defining_equations(events, trials, level):
    if events < trials:
        upper = clopper_pearson_upper(events, trials, level)
        assert events / trials < upper < 1
        assert binomial_cdf_by_comb(events, trials, upper) == pytest.approx(level, abs=1e-9)
    else:
        assert clopper_pearson_upper(events, trials, level) == 1.0
    if events > 0:
        lower = clopper_pearson_lower(events, trials, level)
        assert 0 < lower < events / trials
        assert binomial_upper_tail_by_comb(events, trials, lower) == pytest.approx(level, abs=1e-9)
    else:
        assert clopper_pearson_lower(events, trials, level) == 0.0


@pytest.mark.parametrize(("trials", "level"), [(1, 0.05), (10, 0.05), (300, 0.005), (5000, 0.1)])
def test_the_clopper_pearson_bounds_at_zero_and_all_events_have_closed_forms(trials, level):
    """(1 - u)^n = level when nothing happened; l^n = level when everything did."""
    assert clopper_pearson_upper(0, trials, level) == pytest.approx(
        1 - level ** (1 / trials), rel=1e-9
    )
    assert clopper_pearson_lower(trials, trials, level) == pytest.approx(
        level ** (1 / trials), rel=1e-9
    )


# -- the odds-ratio tests: composite nulls, exactly ---------------------------------------

GRID = [
    (n_green, n_blue, events)
    for n_green, n_blue, events in product((1, 7, 40), (5, 60), (1, 3, 9))
    if events <= n_green + n_blue
]


@pytest.mark.parametrize("margin", [1.5, 2.0, 3.0])
def test_not_worse_factors_have_expectation_at_most_one_in_its_whole_null(margin):
    """Null: green's odds ratio is margin or more. At margin the expectation is one; above it,
    at most one; at odds ratio 1 (green as good as blue) the bet pays on average."""

    def make():
        return NotWorseTest(alpha=0.01, margin=margin)

    for n_green, n_blue, events in GRID:
        at_null = one_period_expectation(make, n_green, n_blue, events, margin)
        assert at_null == pytest.approx(1.0, rel=1e-12)
        for theta in (1.2 * margin, 2 * margin, 5 * margin, 50 * margin):
            assert one_period_expectation(make, n_green, n_blue, events, theta) <= 1 + 1e-12
        assert one_period_expectation(make, n_green, n_blue, events, 1.0) > 1


@pytest.mark.parametrize("margin", [1.0, 1.5, 3.0])
def test_worse_factors_have_expectation_at_most_one_in_its_whole_null(margin):
    """WorseTest(margin=m)'s null is "odds ratio m or less", not only "exactly m"."""

    def make():
        return WorseTest(alpha=0.01, margin=margin)

    for n_green, n_blue, events in GRID:
        at_null = one_period_expectation(make, n_green, n_blue, events, margin)
        assert at_null == pytest.approx(1.0, rel=1e-12)
        for theta in (margin / 1.2, margin / 2, margin / 10, 0.05):
            assert one_period_expectation(make, n_green, n_blue, events, theta) <= 1 + 1e-12
        assert one_period_expectation(make, n_green, n_blue, events, 4 * margin) > 1


def test_worse_with_a_margin_bets_on_odds_ratios_above_it():
    test = WorseTest(alpha=0.01, margin=2.0)
    assert test.null == 2.0
    assert test.alternatives == tuple(2.0 * t for t in DEFAULT_THETAS)
    with pytest.raises(ValueError):
        WorseTest(margin=0.5)
    with pytest.raises(ValueError):
        NotWorseTest(margin=1.0)


def test_not_worse_rejects_on_long_identical_streams_with_enough_events():
    """20 % events on both colours (10 green, 90 blue requests a period): evidence that green
    is not worse by 2x comes within a few dozen periods, and WorseTest finds nothing."""
    rng = random.Random(11)
    green, blue = binomial_sampler(10, 0.2), binomial_sampler(90, 0.2)
    needed = []
    for _ in range(20):
        not_worse, worse = NotWorseTest(alpha=0.01, margin=2.0), WorseTest(alpha=0.01)
        for period in range(1, 1001):
            g, b = green(rng), blue(rng)
            not_worse.update(g, 10, b, 90)
            worse.update(g, 10, b, 90)
            if not_worse.rejected:
                needed.append(period)
                break
        assert not worse.rejected
    assert len(needed) == 20
    assert max(needed) <= 200


def test_not_worse_does_not_reject_a_green_exactly_at_the_margin():
    """Green's odds exactly twice blue's, looked at every period: rejections stay rare."""
    alpha, runs = 0.05, 200
    rng = random.Random(5)
    p_blue = 0.1
    p_green = 2 * (p_blue / (1 - p_blue)) / (1 + 2 * p_blue / (1 - p_blue))  # odds ratio 2
    green, blue = binomial_sampler(10, p_green), binomial_sampler(90, p_blue)

    def rejected(_run: int) -> bool:
        test = NotWorseTest(alpha=alpha, margin=2.0)
        for _ in range(200):
            test.update(green(rng), 10, blue(rng), 90)
            if test.rejected:
                return True
        return False

    share = ever_rejected_share(runs, rejected)
    assert share <= alpha + three_standard_errors(alpha, runs), share


# -- green against blue's baseline ---------------------------------------------------------


def test_baseline_false_rejections_stay_below_alpha_when_green_is_as_good():
    """Each run draws blue's baseline (500 requests) and green's stream (20 requests a period,
    300 periods, looked at every period) from the same 2 % rate: the bound on blue may be wrong
    and the test may be wrong, together at most alpha."""
    alpha, runs, rate = 0.05, 300, 0.02
    rng = random.Random(3)
    baseline, green = binomial_sampler(500, rate), binomial_sampler(20, rate)

    def rejected(_run: int) -> bool:
        test = BaselineTest(baseline(rng), 500, alpha=alpha)
        for _ in range(300):
            test.update(green(rng), 20)
            if test.rejected:
                return True
        return False

    share = ever_rejected_share(runs, rejected)
    assert share <= alpha + three_standard_errors(alpha, runs), share


def test_baseline_catches_a_clearly_worse_green_within_a_few_hundred_requests():
    """Green at 20 % against a baseline of 1 % (10 of 1000): caught in every run."""
    rng = random.Random(17)
    green = binomial_sampler(10, 0.2)
    needed = []
    for _ in range(30):
        test = BaselineTest(10, 1000, alpha=0.01)
        for period in range(1, 31):
            test.update(green(rng), 10)
            if test.rejected:
                needed.append(10 * period)
                break
    assert len(needed) == 30
    assert max(needed) <= 300
    assert test.boundary == 2 / 0.01  # the other half of alpha is spent on blue's bound


def test_baseline_bound_is_clopper_pearson_at_half_alpha():
    worse = BaselineTest(10, 1000, alpha=0.01)
    assert worse.null == pytest.approx(clopper_pearson_upper(10, 1000, 0.005))
    not_worse = BaselineTest(10, 1000, alpha=0.01, worse=False, margin=2.0)
    assert not_worse.null == pytest.approx(2 * clopper_pearson_lower(10, 1000, 0.005))
    assert all(r < not_worse.null for r in not_worse.rates)


def test_baseline_not_worse_rejects_a_green_as_good_as_its_baseline():
    rng = random.Random(23)
    green = binomial_sampler(100, 0.05)
    test = BaselineTest(500, 10_000, alpha=0.01, worse=False, margin=2.0)
    for _ in range(100):
        test.update(green(rng), 100)
        if test.rejected:
            break
    assert test.rejected
    assert test.green_trials <= 5000


# -- the judge: verdicts, guard rails, numbers ---------------------------------------------

HEALTHY = Counts(100, 20, {"p90": 20})  # 20 % events on both colours: quick not-worse evidence


def assert_numbers_are_the_judges(verdict: judge_module.Verdict, judge: Judge) -> None:
    """Every verdict carries its counts (window and total) and each test's e-value."""
    numbers = verdict.numbers
    for colour in ("blue", "green"):
        window = judge.window[colour]
        assert numbers["window_counts"][colour] == {
            "requests": window.requests,
            "errors": window.errors,
            "slow": window.slow,
        }
    green = judge.total["green"]
    assert numbers["total"]["green"] == {
        "requests": green.requests,
        "errors": green.errors,
        "slow": green.slow,
    }
    blue = judge.baseline if judge.baseline is not None else judge.total["blue"]
    assert numbers["total"]["blue"]["requests"] == blue.requests
    assert numbers["e_values"] == {m: t.e_value for m, t in judge.worse.items()}
    assert set(numbers["e_values"]) == {"errors", *(f"slow_{q}" for q in judge.slow_thresholds_ms)}
    assert numbers["pass_e_values"] == {m: t.e_value for m, t in judge.not_worse.items()}
    assert numbers["boundaries"] == {m: t.boundary for m, t in judge.worse.items()}


def passing_judge(**options) -> Judge:
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, pass_margin=2.0, **options)
    for period in range(10):
        judge.observe(period, HEALTHY, HEALTHY)
    assert all(t.rejected for t in judge.not_worse.values())
    return judge


def test_no_data_is_never_a_pass_even_with_the_evidence_for_one():
    judge = passing_judge()
    verdict = judge.verdict()
    assert verdict.decision is Decision.PASS
    assert_numbers_are_the_judges(verdict, judge)

    judge.start_step()  # nothing at all in the new step
    judge.start_window()
    assert judge.verdict().decision is Decision.NO_DATA

    judge.observe(10, HEALTHY, Counts(5, 1, {"p90": 1}))  # too few green requests
    verdict = judge.verdict()
    assert verdict.decision is Decision.NO_DATA
    assert "green served 5" in verdict.reason and "min_requests" in verdict.reason
    assert all(t.rejected for t in judge.not_worse.values())  # the evidence is still there
    assert_numbers_are_the_judges(verdict, judge)
    assert verdict.numbers["window_counts"]["green"] == {
        "requests": 5,
        "errors": 1,
        "slow": {"p90": 1},
    }
    assert verdict.numbers["total"]["green"]["requests"] == 10 * 100 + 5

    judge.start_step()
    judge.start_window()
    judge.observe(11, Counts(5, 1, {"p90": 1}), HEALTHY)  # too few blue requests, side by side
    verdict = judge.verdict()
    assert verdict.decision is Decision.NO_DATA
    assert "blue served 5" in verdict.reason


def test_no_data_holds_add_up_within_a_step():
    """Thin traffic: each window has too few green requests, but the step's windows together
    have enough, so the hold ends (a new step starts counting afresh)."""
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, min_requests=20)
    judge.start_step()
    decisions = []
    for window in range(4):
        judge.start_window()
        judge.observe(window, Counts(50, 0, {"p90": 5}), Counts(7, 0, {"p90": 1}))
        decisions.append(judge.verdict().decision)
    assert decisions == [Decision.NO_DATA, Decision.NO_DATA, Decision.CONTINUE, Decision.CONTINUE]
    judge.start_step()
    judge.start_window()
    judge.observe(4, Counts(50, 0, {"p90": 5}), Counts(7, 0, {"p90": 1}))
    assert judge.verdict().decision is Decision.NO_DATA


def test_requests_without_a_latency_are_no_data_not_a_pass_of_latency():
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0})
    for period in range(3):
        judge.observe(period, Counts(90, 0, None), Counts(10, 0, None))
    verdict = judge.verdict()
    assert verdict.decision is Decision.NO_DATA and "no latency" in verdict.reason
    assert verdict.numbers["step_counts"]["green"] == {"requests": 30, "errors": 0, "slow": None}


def test_a_test_per_step_catches_a_late_regression_without_the_healthy_steps_debt():
    """Healthy for 600 periods, then green 3x worse: a test started at the late step needs far
    fewer periods than one that has been drifting below 1 since the start."""
    rng = random.Random(3)
    waits = {1: [], 3: []}
    for steps in waits:
        for _ in range(10):
            judge = Judge(alpha=0.01, steps=steps)
            judge.start_step()
            for period in range(600):
                green = sum(rng.random() < 0.005 for _ in range(10))
                blue = sum(rng.random() < 0.005 for _ in range(90))
                judge.observe(period, Counts(90, blue, {"p90": 9}), Counts(10, green, {"p90": 1}))
            judge.start_step()
            judge.start_step()  # the regression appears at the third step
            for period in range(1, 3000):
                green = sum(rng.random() < 0.015 for _ in range(10))
                blue = sum(rng.random() < 0.005 for _ in range(90))
                judge.observe(period, Counts(90, blue, {"p90": 9}), Counts(10, green, {"p90": 1}))
                if judge.rejected:
                    waits[steps].append(period)
                    break
    assert len(waits[3]) == 10
    assert sorted(waits[3])[5] < sorted(waits[1] + [3000] * (10 - len(waits[1])))[5]


def test_step_tests_average_fresh_tests_and_count_steps_not_started_as_one():
    tests = StepTests(lambda: WorseTest(alpha=0.01, thetas=(4.0,)), steps=3)
    tests.update(1, 100_000, 0, 900_000)
    first = tests.tests[0].e_value
    assert tests.e_value == pytest.approx((first + 1 + 1) / 3)
    tests.start()
    tests.update(1, 100_000, 0, 900_000)
    assert tests.e_value == pytest.approx((tests.tests[0].e_value + tests.tests[1].e_value + 1) / 3)
    tests.start()
    tests.start()  # a fourth step of a three-step plan adds nothing
    assert len(tests.tests) == 3


def test_rollback_beats_no_data():
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, pass_margin=2.0)
    for period in range(10):
        judge.observe(period, Counts(900, 1, {"p90": 90}), Counts(100, 10, {"p90": 10}))
    assert judge.rejected == ["errors"]
    judge.start_window()
    judge.observe(10, Counts(9, 0, {"p90": 1}), Counts(1, 0, {"p90": 0}))
    verdict = judge.verdict()
    assert verdict.decision is Decision.ROLLBACK
    assert "green is worse than blue" in verdict.reason and "5xx" in verdict.reason
    assert_numbers_are_the_judges(verdict, judge)


def test_rollback_beats_pass_when_both_tests_have_rejected():
    """Odds ratio 1.5: not worse by 2x, yet worse: both tests reject, and the judge rolls back."""
    judge = Judge(
        alpha=0.01, slow_thresholds_ms={"p90": 250.0}, pass_margin=2.0, error_rate_slo=0.9
    )
    for period in range(5):
        judge.observe(period, Counts(1000, 200, {"p90": 200}), Counts(1000, 273, {"p90": 273}))
    assert all(t.rejected for t in judge.not_worse.values())
    assert judge.rejected == ["errors", "slow_p90"]
    verdict = judge.verdict(green_p99_ms=10.0)
    assert verdict.decision is Decision.ROLLBACK
    assert "slower than 250 ms (blue's p90)" in verdict.reason
    assert_numbers_are_the_judges(verdict, judge)


def test_rollback_beats_a_guard_rail():
    judge = Judge(
        alpha=0.01, slow_thresholds_ms={"p90": 250.0}, error_rate_slo=0.02, p99_slo_ms=500
    )
    for period in range(10):
        judge.observe(period, Counts(900, 1, {"p90": 90}), Counts(100, 10, {"p90": 10}))
    verdict = judge.verdict(green_p99_ms=900.0)
    assert verdict.decision is Decision.ROLLBACK
    assert "green is worse than blue" in verdict.reason and "guard rail" not in verdict.reason


def test_the_error_rate_guard_rail_rolls_back_without_comparative_evidence():
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, error_rate_slo=0.02)
    judge.observe(
        0, Counts(900, 45, {"p90": 90}), Counts(100, 5, {"p90": 10})
    )  # 5 % on both colours
    assert judge.rejected == []
    verdict = judge.verdict()
    assert verdict.decision is Decision.ROLLBACK
    assert "guard rail" in verdict.reason and "error_rate_slo" in verdict.reason
    assert_numbers_are_the_judges(verdict, judge)
    assert verdict.numbers["guard_rails"]["error_rate_slo"] == 0.02

    judge.start_window()  # the guard rail looks at the window's own traffic
    judge.observe(1, Counts(900, 0, {"p90": 90}), Counts(100, 1, {"p90": 10}))
    assert judge.verdict().decision is Decision.CONTINUE


def test_the_p99_guard_rail_rolls_back_above_its_slo():
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, p99_slo_ms=500)
    judge.observe(0, Counts(900, 4, {"p90": 90}), Counts(100, 0, {"p90": 10}))
    verdict = judge.verdict(green_p99_ms=800.0)
    assert verdict.decision is Decision.ROLLBACK
    assert "guard rail" in verdict.reason and "p99_slo_ms" in verdict.reason
    assert_numbers_are_the_judges(verdict, judge)
    assert judge.verdict(green_p99_ms=450.0).decision is Decision.CONTINUE
    assert judge.verdict().decision is Decision.CONTINUE  # p99 not measured


def test_healthy_data_without_pass_margin_continues():
    rng = random.Random(29)
    errors = {"blue": binomial_sampler(900, 0.005), "green": binomial_sampler(100, 0.005)}
    slow = {"blue": binomial_sampler(900, 0.1), "green": binomial_sampler(100, 0.1)}
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0})
    for period in range(30):
        judge.observe(
            period,
            Counts(900, errors["blue"](rng), {"p90": slow["blue"](rng)}),
            Counts(100, errors["green"](rng), {"p90": slow["green"](rng)}),
        )
        verdict = judge.verdict()
        assert verdict.decision is Decision.CONTINUE
        assert "no evidence that green is worse" in verdict.reason
    assert judge.not_worse == {}
    assert verdict.numbers["pass_e_values"] == {}
    assert_numbers_are_the_judges(verdict, judge)


def test_pass_is_never_returned_without_a_pass_margin():
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0})
    for period in range(50):
        judge.observe(period, HEALTHY, HEALTHY)
        assert judge.verdict().decision is Decision.CONTINUE


def test_the_numbers_are_the_counts_and_the_exact_e_values():
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, pass_margin=2.0)
    judge.observe(0, Counts(90, 1, {"p90": 9}), Counts(10, 2, {"p90": 3}))
    judge.observe(
        1, Counts(80, 0, {"p90": 7}), Counts(20, 0, {"p90": 1})
    )  # no errors: no error evidence
    judge.start_window()
    judge.observe(2, Counts(70, 0, {"p90": 0}), Counts(30, 0, {"p90": 0}))
    numbers = judge.verdict().numbers
    assert numbers["window_counts"] == {
        "blue": {"requests": 70, "errors": 0, "slow": {"p90": 0}},
        "green": {"requests": 30, "errors": 0, "slow": {"p90": 0}},
    }
    assert numbers["total"] == {
        "blue": {"requests": 240, "errors": 1, "slow": {"p90": 16}},
        "green": {"requests": 60, "errors": 2, "slow": {"p90": 4}},
    }
    assert numbers["blue_is"] == "blue"
    null = fisher_pmf(10, 90, 3, 1.0)[2]
    errors = sum(fisher_pmf(10, 90, 3, t)[2] / null for t in DEFAULT_THETAS) / len(DEFAULT_THETAS)
    assert numbers["e_values"]["errors"] == pytest.approx(errors, rel=1e-9)
    slow = math.prod(
        fisher_pmf(g, b, events, 1.0)[x] for g, b, events, x in ((10, 90, 12, 3), (20, 80, 8, 1))
    )
    mixture = [
        math.prod(
            fisher_pmf(g, b, events, t)[x] for g, b, events, x in ((10, 90, 12, 3), (20, 80, 8, 1))
        )
        / slow
        for t in DEFAULT_THETAS
    ]
    assert numbers["e_values"]["slow_p90"] == pytest.approx(sum(mixture) / len(mixture), rel=1e-9)
    # ALPHA_SHARE: the slow share all to p90, the only threshold
    assert numbers["boundaries"] == {"errors": 1 / 0.008, "slow_p90": 1 / 0.002}
    assert set(numbers["pass_e_values"]) == {"errors", "slow_p90"}
    assert len(judge.evidence) == 3 and judge.evidence[-1]["at"] == 2


def test_baseline_mode_needs_no_blue_per_period_and_continues_on_a_healthy_green():
    judge = Judge(
        alpha=0.01, slow_thresholds_ms={"p90": 250.0}, baseline=Counts(10_000, 50, {"p90": 1000})
    )
    rng = random.Random(31)
    errors, slow = binomial_sampler(100, 0.005), binomial_sampler(100, 0.1)
    for period in range(20):
        judge.observe(period, None, Counts(100, errors(rng), {"p90": slow(rng)}))
        verdict = judge.verdict()
        assert verdict.decision is Decision.CONTINUE
    assert verdict.numbers["blue_is"] == "baseline"
    assert verdict.numbers["total"]["blue"] == {
        "requests": 10_000,
        "errors": 50,
        "slow": {"p90": 1000},
    }
    assert_numbers_are_the_judges(verdict, judge)


def test_baseline_mode_rolls_back_a_clearly_worse_green():
    judge = Judge(
        alpha=0.01, slow_thresholds_ms={"p90": 250.0}, baseline=Counts(10_000, 50, {"p90": 1000})
    )
    for period in range(1, 4):
        judge.observe(period, None, Counts(100, 20, {"p90": 10}))  # 20 % 5xx against 0.5 %
        if judge.rejected:
            break
    verdict = judge.verdict()
    assert verdict.decision is Decision.ROLLBACK
    assert judge.rejected == ["errors"]
    assert "before the deployment" in verdict.reason and "5xx" in verdict.reason
    assert_numbers_are_the_judges(verdict, judge)


def test_baseline_mode_passes_a_green_as_good_as_its_baseline():
    judge = Judge(
        alpha=0.01,
        slow_thresholds_ms={"p90": 250.0},
        pass_margin=2.0,
        baseline=Counts(10_000, 500, {"p90": 1000}),
    )
    for period in range(200):
        judge.observe(period, None, Counts(100, 5, {"p90": 10}))
        if judge.verdict().decision is Decision.PASS:
            break
    assert judge.verdict().decision is Decision.PASS


def test_the_judges_false_rollbacks_on_identical_streams_stay_below_alpha():
    """200 canaries of 300 periods (10 green and 90 blue requests a period, 0.5 % errors and
    10 % slow on both colours), looked at every period: the share ever rolled back on either
    metric stays below alpha, the two tests sharing it."""
    alpha, runs = 0.05, 200
    rng = random.Random(20261128)
    errors = {"blue": binomial_sampler(90, 0.005), "green": binomial_sampler(10, 0.005)}
    slow = {"blue": binomial_sampler(90, 0.1), "green": binomial_sampler(10, 0.1)}

    def rolled_back(_run: int) -> bool:
        judge = Judge(alpha=alpha, slow_thresholds_ms={"p90": 250.0}, min_requests=5)
        for period in range(300):
            judge.observe(
                period,
                Counts(90, errors["blue"](rng), {"p90": slow["blue"](rng)}),
                Counts(10, errors["green"](rng), {"p90": slow["green"](rng)}),
            )
            if judge.rejected:
                return True
        return False

    share = ever_rejected_share(runs, rolled_back)
    assert share <= alpha + three_standard_errors(alpha, runs), share


# -- bugs found in bgkit/judge.py (these fail until it is fixed) ---------------------------


def test_a_baseline_without_slow_counts_gives_no_slow_request_evidence():
    """Counts.slow None means "not measured"; the judge reads it as zero slow requests in the
    baseline, and rolls back any green with a slow request."""
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, baseline=Counts(10_000, 50))
    for period in range(5):
        judge.observe(period, None, Counts(100, 0, {"p90": 10}))
    assert judge.rejected == []
    assert judge.verdict().decision is Decision.CONTINUE


def test_a_judge_without_slow_thresholds_judges_5xx_only():
    """No threshold (a baseline with no latency): no slow test, and slow counts are ignored."""
    judge = Judge(alpha=0.01)
    for period in range(20):
        judge.observe(period, Counts(100, 0, {"p90": 5}), Counts(100, 0, {"p90": 60}))
    assert judge.rejected == [] and set(judge.worse) == {"errors"}
    assert judge.verdict().decision is Decision.CONTINUE


# -- the tail: slow requests at blue's p90, p99 and p99.9 ----------------------------------


def nested_counts(rng: random.Random, requests: int, shares: dict[str, float]) -> dict[str, int]:
    """Requests above each threshold, nested as real latencies are (above p99.9 is above p99):
    one uniform per request against the shares above each threshold."""
    draws = [rng.random() for _ in range(requests)]
    return {q: sum(u < share for u in draws) for q, share in shares.items()}


BLUE_TAIL = {"p90": 0.10, "p99": 0.01, "p99.9": 0.001}
THREE = {"p90": 105.0, "p99": 170.0, "p99.9": 244.0}


def test_alpha_is_shared_among_the_thresholds_judged_and_sums_to_alpha():
    three = judge_module.alpha_shares(0.01, ["p90", "p99", "p99.9"])
    assert three == pytest.approx(
        {"errors": 0.008, "slow_p90": 0.001, "slow_p99": 0.0006, "slow_p99.9": 0.0004}
    )
    two = judge_module.alpha_shares(0.01, ["p90", "p99"])  # p99.9 left out: renormalised
    assert two == pytest.approx({"errors": 0.008, "slow_p90": 0.00125, "slow_p99": 0.00075})
    for shares in (three, two):
        assert sum(shares.values()) == pytest.approx(0.01)
    judge = Judge(alpha=0.01, slow_thresholds_ms=THREE)
    assert {m: t.boundary for m, t in judge.worse.items()} == pytest.approx(
        {m: 1 / a for m, a in three.items()}
    )


def test_thresholds_are_blue_quantiles_plus_the_margin_where_the_baseline_estimates_them():
    quantiles = {"p90": 95.0, "p99": 160.0, "p99.9": 234.0}
    thresholds, left_out = judge_module.slow_thresholds(quantiles, 12_000, 10.0)
    assert thresholds == {"p90": 105.0, "p99": 170.0, "p99.9": 244.0} and left_out == {}
    thresholds, left_out = judge_module.slow_thresholds(quantiles, 9_999, 10.0)
    assert thresholds == {"p90": 105.0, "p99": 170.0}
    assert "9,999 requests" in left_out["p99.9"] and "needs 10,000" in left_out["p99.9"]
    thresholds, left_out = judge_module.slow_thresholds(quantiles, 999, 10.0)
    assert list(thresholds) == ["p90"] and "needs 1,000" in left_out["p99"]
    thresholds, left_out = judge_module.slow_thresholds({**quantiles, "p99": None}, 20_000, 0)
    assert thresholds == {"p90": 95.0, "p99.9": 234.0}
    assert "no p99" in left_out["p99"]


def test_a_tail_regression_is_caught_above_p99_while_the_p90_count_does_not_move():
    """Green's share above p90 is blue's (10 %), above p99 five times blue's: only the p99
    test rolls back, and the reason names blue's p99."""
    rng = random.Random(20261207)
    judge = Judge(alpha=0.01, slow_thresholds_ms=THREE)
    green_tail = {"p90": 0.10, "p99": 0.05, "p99.9": 0.001}
    for period in range(600):
        judge.observe(
            period,
            Counts(90, 0, nested_counts(rng, 90, BLUE_TAIL)),
            Counts(10, 0, nested_counts(rng, 10, green_tail)),
        )
        if judge.rejected:
            break
    assert judge.rejected == ["slow_p99"], judge.numbers()["e_values"]
    assert judge.worse["slow_p90"].e_value < 10
    verdict = judge.verdict()
    assert verdict.decision is Decision.ROLLBACK
    assert "slower than 170 ms (blue's p99)" in verdict.reason


def test_false_rollbacks_with_all_three_thresholds_stay_below_alpha():
    """200 healthy canaries of 300 periods judged at p90, p99 and p99.9 at once (nested
    counts, the same shares on both colours): the share ever rolled back stays below alpha."""
    alpha, runs = 0.05, 200
    rng = random.Random(20261207)

    def rolled_back(_run: int) -> bool:
        judge = Judge(alpha=alpha, slow_thresholds_ms=THREE, min_requests=5)
        for period in range(300):
            judge.observe(
                period,
                Counts(90, 0, nested_counts(rng, 90, BLUE_TAIL)),
                Counts(10, 0, nested_counts(rng, 10, BLUE_TAIL)),
            )
            if judge.rejected:
                return True
        return False

    share = ever_rejected_share(runs, rolled_back)
    assert share <= alpha + three_standard_errors(alpha, runs), share


def test_pass_needs_5xx_and_p90_only_the_tail_tests_only_roll_back():
    judge = Judge(alpha=0.01, slow_thresholds_ms=THREE, pass_margin=2.0)
    assert set(judge.not_worse) == {"errors", "slow_p90"}
    assert set(judge.worse) == {"errors", "slow_p90", "slow_p99", "slow_p99.9"}


def test_counts_add_per_threshold_and_stay_unmeasured_until_a_period_has_latency():
    total = Counts(0, 0, None) + Counts(10, 1, None)
    assert total == Counts(10, 1, None)
    total = total + Counts(5, 0, {"p90": 2, "p99": 1}) + Counts(5, 0, {"p90": 1, "p99": 0})
    assert total == Counts(20, 1, {"p90": 3, "p99": 1})


def test_periods_in_which_blue_served_nothing_are_no_verdict_on_green_never_a_pass():
    """A managed service's jump to 100 % inside a window: green served, blue did not, so nothing
    was compared. That is NO_DATA (a hold), however many requests green served; periods with
    both colours count towards min_requests."""
    judge = Judge(alpha=0.01, slow_thresholds_ms={"p90": 250.0}, min_requests=20)
    for period in range(5):
        judge.observe(period, Counts(0, 0, {"p90": 0}), Counts(100, 20, {"p90": 10}))
    verdict = judge.verdict()
    assert judge.rejected == []  # no evidence either way: green's 20 % of 5xx was not compared
    assert verdict.decision is Decision.NO_DATA
    assert "green served 0 and blue served 0 requests in this step while both colours served" in (
        verdict.reason
    )
    assert verdict.numbers["step_counts"]["green"]["requests"] == 500  # served, not compared
    for period in range(5, 10):
        judge.observe(period, Counts(50, 0, {"p90": 5}), Counts(50, 0, {"p90": 5}))
    assert judge.verdict().decision is Decision.CONTINUE
