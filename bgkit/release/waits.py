"""How a release waits: for a time, for AWS to apply a change, for CloudWatch's next period,
with a live view of where it is for a person in Jupyter (bgkit.progress; none headless, where
each wait is one sleep on the release's clock).

A mixin of `Release`; it uses the release's clock, pattern, split, record, judge and display.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from ..errors import TrafficError
from .states import MANAGED_WAIT_SECONDS


def shows_progress(step: str) -> Any:
    """A step of the release during which a person in Jupyter sees its live progress."""

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with self._live_progress(step):
                return method(self, *args, **kwargs)

        return run

    return wrap


class Waits:
    # Live progress (bgkit.progress): what the release waits for now, the judged window, and the
    # display: None while the step has not shown one yet, False when there is none (outside
    # the steps, and headless).
    _activity = ""
    _window: tuple[datetime, datetime] | None = None
    _live: Any = False
    _live_at: datetime | None = None

    def _sleep_until(self, when: datetime) -> None:
        """Sleep until `when`: at once, or a second at a time while a person watches."""
        while (remaining := (when - self.clock.now()).total_seconds()) > 0:
            self.clock.sleep(min(remaining, 1.0) if self._show_progress() else remaining)

    def _pause(self, seconds: float) -> None:
        """A short wait in a loop that waits for AWS or CloudWatch; the live display follows."""
        self._show_progress()
        self.clock.sleep(seconds)

    def _await_applied(self) -> None:
        """Wait until the service says the change is live everywhere (e.g. Route 53 INSYNC)."""
        applied = getattr(self.pattern, "change_applied", None)
        if applied is None:
            return
        deadline = self.clock.now() + timedelta(seconds=MANAGED_WAIT_SECONDS)
        while not applied():
            if self.clock.now() > deadline:
                raise TrafficError("the traffic change was not applied in time", split=self.split)
            self._pause(1.0)

    @contextlib.contextmanager
    def _live_progress(self, step: str) -> Iterator[None]:
        """While `step` runs, a person in Jupyter sees one display of where it is, updated in
        place once a second (none headless); it ends saying how the step ended."""
        self._activity, self._live, self._window = step, None, None
        try:
            yield
        finally:
            if self._live:
                self._activity, self._window = f"{step} ended; the release is {self.state}", None
                self._show_progress(force=True)
            self._live = False

    def _show_progress(self, force: bool = False) -> bool:
        """Show or update the live display; False when there is none (headless, tests)."""
        if self._live is False:
            return False
        now = self.clock.now()
        try:
            if self._live is None:
                self._live = self._display.live(self._progress_view(now)) or False
            elif force or self._live_at is None or (now - self._live_at).total_seconds() >= 1:
                self._live.update(self._progress_view(now))
            else:
                return True
        except Exception as error:  # recorded; a display never stops a release
            self._live = False
            self._event("error", f"no live progress: {type(error).__name__}: {error}")
            return False
        self._live_at = now
        return bool(self._live)

    def _progress_view(self, now: datetime) -> dict[str, Any]:
        rows: list[tuple[str, str]] = []
        if self.split:
            traffic = ", ".join(f"{colour} {percent}%" for colour, percent in self.split.items())
            rows.append(("traffic (as last read back)", traffic))
        if self._window is not None:
            start, end = self._window
            left = math.ceil((end - now).total_seconds())
            rows.append((
                "judged window (UTC)",
                f"{start:%H:%M:%S}–{end:%H:%M:%S}, "
                + (f"{left} s left" if left > 0 else "waiting for its last CloudWatch datapoints"),
            ))  # fmt: skip
        if self.record.verdicts:
            last = self.record.verdicts[-1]
            where = f"step {last['step']}" if "step" in last else f"{last['green_percent']}% green"
            rows.append(("last verdict", f"{where}: {last['decision']}: {last['reason']}"))
        if self.judge is not None:
            rows.append((
                "evidence that green is worse",
                " · ".join(
                    f"{self.judge.metrics[m]} {t.e_value:.3g} (rolls back at {t.boundary:.4g})"
                    for m, t in self.judge.worse.items()
                ),
            ))  # fmt: skip
        headline = f"{self.params.runbook} · {self.params.release} · {self._activity}"
        return {"headline": headline, "rows": rows}
