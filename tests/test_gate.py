from datetime import UTC, datetime

from bgkit import Decision, HealthGate
from bgkit.metrics import WindowStats

T0, T1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)


def stats(colour, requests, errors=0, p99=10.0):
    return WindowStats(colour, T0, T1, requests, errors, p99 / 2, p99)


GATE = HealthGate(
    min_requests=20, max_error_rate_increase=0.02, max_p99_increase=0.5, p99_floor_ms=25
)


def test_healthy_green_passes_with_its_numbers():
    verdict = GATE.evaluate(stats("blue", 200, 1), stats("green", 100, 1))
    assert verdict.decision is Decision.PASS
    assert verdict.as_dict()["green"]["requests"] == 100
    assert verdict.as_dict()["thresholds"]["min_requests"] == 20


def test_error_regression_rolls_back_and_says_by_how_much():
    verdict = GATE.evaluate(stats("blue", 200, 0), stats("green", 100, 20))
    assert verdict.decision is Decision.ROLLBACK
    assert "20.0%" in verdict.reason and "(20/100)" in verdict.reason


def test_small_error_difference_within_tolerance_passes():
    assert GATE.evaluate(stats("blue", 1000, 10), stats("green", 100, 2)).decision is Decision.PASS


def test_latency_regression_rolls_back():
    verdict = GATE.evaluate(stats("blue", 200, p99=20), stats("green", 100, p99=80))
    assert verdict.decision is Decision.ROLLBACK
    assert "p99" in verdict.reason


def test_latency_jitter_under_the_floor_passes():
    assert (
        GATE.evaluate(stats("blue", 200, p99=4), stats("green", 100, p99=20)).decision
        is Decision.PASS
    )


def test_too_few_requests_is_no_data_never_a_pass():
    verdict = GATE.evaluate(stats("blue", 200), stats("green", 19, errors=0))
    assert verdict.decision is Decision.NO_DATA
    assert "green served 19 requests" in verdict.reason
    assert GATE.evaluate(stats("blue", 0), stats("green", 100)).decision is Decision.NO_DATA


def test_no_latency_datapoint_is_no_data_not_a_pass():
    blue = WindowStats("blue", T0, T1, 100, 0, None, None)
    assert GATE.evaluate(blue, stats("green", 100)).decision is Decision.NO_DATA
    assert (
        GATE.evaluate(
            WindowStats("blue", T0, T1, 100, 0, None, None), stats("green", 100, 50)
        ).decision
        is Decision.ROLLBACK
    )
