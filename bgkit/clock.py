"""Injectable time, so that a five-minute bake is tested in milliseconds."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def sleep(self, seconds: float) -> None:
        """Wait for `seconds`."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when slept on. For tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._now += timedelta(seconds=max(0.0, seconds))


def floor_to(when: datetime, period: int) -> datetime:
    """`when` rounded down to a multiple of `period` seconds since the epoch (a metric period's start)."""
    return datetime.fromtimestamp(math.floor(when.timestamp() / period) * period, tz=when.tzinfo)


def ceil_to(when: datetime, period: int) -> datetime:
    """`when` rounded up to a multiple of `period` seconds since the epoch (a metric period's end)."""
    return datetime.fromtimestamp(math.ceil(when.timestamp() / period) * period, tz=when.tzinfo)


def cloudwatch_alignment(period: int) -> int:
    """The seconds to which CloudWatch rounds down the start of a query with this period
    (GetMetricData, recent data): whole minutes for 60 s and more, 5-, 10-, 20- or 30-second
    divisions of a minute for those periods, else the second. A window of one `period` is
    returned as asked only when it starts on such a multiple."""
    if period >= 60:
        return 60
    return period if period in (5, 10, 20, 30) else 1
