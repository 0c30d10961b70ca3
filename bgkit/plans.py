"""Traffic plans as data: the green percentages to step through, and how long to bake each.

A plan's steps stop short of 100 %: after the last step is judged healthy, the release
promotes (moves the remaining traffic to green). ``all_at_once`` has no steps: it promotes
straight after the smoke test, with no canary analysis, and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError

PLAN_NAMES = ("linear", "canary", "all_at_once")
MAX_BAKE_SECONDS = 3600.0
MIN_BAKE_SECONDS = 1.0


@dataclass(frozen=True)
class Step:
    green_percent: int
    bake_seconds: float


@dataclass(frozen=True)
class Plan:
    name: str
    steps: tuple[Step, ...]

    @property
    def percentages(self) -> list[int]:
        return [step.green_percent for step in self.steps]

    @property
    def bake_total_seconds(self) -> float:
        return sum(step.bake_seconds for step in self.steps)

    def describe(self) -> str:
        if not self.steps:
            return f"{self.name}: 100 % at once after the smoke test (no canary analysis)"
        shifts = " → ".join(f"{p}%" for p in self.percentages)
        bake = self.steps[0].bake_seconds
        return f"{self.name}: {shifts} → promote, baking {bake:g} s at each step"


def linear(step_percent: int, bake_seconds: float) -> Plan:
    """Green at step, 2·step, ... below 100 (e.g. 25 → 25, 50, 75), then promote."""
    _check_percent("step_percent", step_percent)
    _check_bake(bake_seconds)
    percents = list(range(step_percent, 100, step_percent))
    return Plan("linear", tuple(Step(p, bake_seconds) for p in percents))


def canary(canary_percent: int, bake_seconds: float) -> Plan:
    """One canary step at `canary_percent`, then promote."""
    _check_percent("canary_percent", canary_percent)
    _check_bake(bake_seconds)
    return Plan("canary", (Step(canary_percent, bake_seconds),))


def all_at_once() -> Plan:
    return Plan("all_at_once", ())


def explicit(percentages: str, bake_seconds: float) -> Plan:
    """Steps given as text, e.g. "5,25,50": strictly increasing, each from 1 to 99."""
    _check_bake(bake_seconds)
    allowed = (
        'linear, canary, all_at_once, or increasing green percentages from 1 to 99 like "5,25,50"'
    )
    try:
        percents = [int(part) for part in percentages.split(",")]
    except ValueError:
        raise ParameterError("plan", f"must be {allowed}", percentages) from None
    if not percents or any(not 1 <= p <= 99 for p in percents) or percents != sorted(set(percents)):
        raise ParameterError("plan", f"must be {allowed}", percentages)
    return Plan("explicit", tuple(Step(p, bake_seconds) for p in percents))


def from_parameters(
    plan: str, *, step_percent: int, canary_percent: int, bake_seconds: float
) -> Plan:
    if plan == "linear":
        return linear(step_percent, bake_seconds)
    if plan == "canary":
        return canary(canary_percent, bake_seconds)
    if plan == "all_at_once":
        return all_at_once()
    if plan and plan[0].isdigit():
        return explicit(plan, bake_seconds)
    raise ParameterError(
        "plan", 'must be linear, canary, all_at_once, or green percentages like "5,25,50"', plan
    )


def _check_percent(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
        raise ParameterError(
            name, "must be an integer from 1 to 99 (percent of traffic on green)", value
        )


def _check_bake(value: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not MIN_BAKE_SECONDS <= value <= MAX_BAKE_SECONDS:
        raise ParameterError(
            "bake_seconds",
            f"must be a number of seconds from {MIN_BAKE_SECONDS:g} to {MAX_BAKE_SECONDS:g}",
            value,
        )
