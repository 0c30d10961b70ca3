"""The health gate: is green worse than blue over the last bake window?

A first, deliberately simple rule (issue 5 replaces it with a sequential test):

* NO_DATA  when either colour has fewer than `min_requests` in the window, or no latency
           datapoint. The release holds; NO_DATA never counts as a pass.
* ROLLBACK when green's 5xx rate exceeds blue's by more than `max_error_rate_increase`
           (absolute), or green's p99 exceeds blue's p99 · (1 + `max_p99_increase`) plus
           `p99_floor_ms` (the floor keeps millisecond jitter from deciding anything).
* PASS     otherwise.

Every verdict carries the numbers it was computed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .metrics import WindowStats


class Decision(StrEnum):
    PASS = "PASS"
    ROLLBACK = "ROLLBACK"
    NO_DATA = "NO_DATA"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    blue: WindowStats
    green: WindowStats
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": str(self.decision),
            "reason": self.reason,
            "blue": self.blue.as_dict(),
            "green": self.green.as_dict(),
            "thresholds": dict(self.thresholds),
        }


@dataclass(frozen=True)
class HealthGate:
    min_requests: int = 20
    max_error_rate_increase: float = 0.02
    max_p99_increase: float = 0.5
    p99_floor_ms: float = 25.0

    def evaluate(self, blue: WindowStats, green: WindowStats) -> Verdict:
        thresholds = {
            "min_requests": self.min_requests,
            "max_error_rate_increase": self.max_error_rate_increase,
            "max_p99_increase": self.max_p99_increase,
            "p99_floor_ms": self.p99_floor_ms,
        }

        def verdict(decision: Decision, reason: str) -> Verdict:
            return Verdict(decision, reason, blue, green, thresholds)

        for stats in (green, blue):
            if stats.requests < self.min_requests:
                return verdict(
                    Decision.NO_DATA,
                    f"{stats.colour} served {stats.requests} requests, fewer than min_requests "
                    f"({self.min_requests}): not enough evidence",
                )
        green_rate, blue_rate = green.error_rate or 0.0, blue.error_rate or 0.0
        if green_rate - blue_rate > self.max_error_rate_increase:
            return verdict(
                Decision.ROLLBACK,
                f"green error rate {green_rate:.1%} ({green.errors}/{green.requests}) exceeds blue "
                f"{blue_rate:.1%} ({blue.errors}/{blue.requests}) by more than "
                f"{self.max_error_rate_increase:.1%}",
            )
        for stats in (green, blue):
            if stats.p99_ms is None:
                return verdict(
                    Decision.NO_DATA,
                    f"{stats.colour} has requests but no latency datapoint: latency not measured",
                )
        limit = blue.p99_ms * (1 + self.max_p99_increase) + self.p99_floor_ms
        if green.p99_ms > limit:
            return verdict(
                Decision.ROLLBACK,
                f"green p99 {green.p99_ms:.1f} ms exceeds the limit {limit:.1f} ms "
                f"(blue p99 {blue.p99_ms:.1f} ms × {1 + self.max_p99_increase:g} "
                f"+ {self.p99_floor_ms:g} ms)",
            )
        return verdict(
            Decision.PASS,
            f"green errors {green_rate:.1%} vs blue {blue_rate:.1%}; green p99 "
            f"{_ms(green.p99_ms)} vs blue {_ms(blue.p99_ms)}: within limits",
        )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
