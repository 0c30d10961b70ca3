"""The gate between shift and promote: a person approves or rolls back; a headless run decides
by `auto_promote`.

    shifted ─► evidence (every verdict with its numbers, where traffic is now)
            ─► headless:    auto_promote true ─► promote;  false ─► roll back
            ─► interactive: [Approve] [Roll back], the cell waits for the click
                            ─► the click promotes or rolls back; no click in timeout ─► roll back

The runbook's cell is ``await bgkit.promotion_gate(release, auto_promote=...)``. Headless (see
bgkit.jupyter), the gate decides while it is made and awaiting it returns the release's state.
Interactive, awaiting it waits for the click: ipykernel (7.4 and newer) dispatches widget
messages while a cell awaits, and keeps the cells queued after it (Run All) until it ends, so
Run All stops at the gate and goes on by itself after the click. The click only records the
decision; the waiting cell promotes or rolls back, so its output and any failure belong to that
cell, as in a headless run. No decision within `timeout_seconds` (the runbook's
`gate_timeout_seconds`) rolls back. An interrupted wait (the kernel's stop button) rolls back
too. A gate made and never awaited stays pending: `release.promote()` refuses to promote, and
`release.finish()` rolls the release back (and the buttons say there is nothing to decide).

The record has an event of kind "gate" when an interactive gate opens (who it waits for, and its
timeout), and one for the decision, with its data for machines: decision ("approve" |
"rollback"), by (who), mode ("interactive" | "headless"), auto_promote; interactive, also
clicked_at (the click, on the release's clock; the event's own `at` is when the waiting cell acted
on it) or timed_out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .jupyter import default_who, is_interactive
from .release.publishing import verdict_row

APPROVE, ROLLBACK = "approve", "rollback"
_VERBS = {APPROVE: "approved", ROLLBACK: "rolled back"}
_LEFT_OUT = ("window (UTC)", "reason")  # the record's own verdict table has them
POLL_SECONDS = 0.2  # how often the waiting cell looks for a click (widget messages come between)


def promotion_gate(
    release: Any,
    *,
    auto_promote: bool,
    interactive: bool | None = None,
    who: str | None = None,
    display: Any = None,
    timeout_seconds: float | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> PromotionGate:
    """Show the judge's evidence, then promote or roll back `release` (in state "shifted").

    Returns the gate; awaiting it returns the release's state. Headless: decided here, by
    `auto_promote`. Interactive: shows Approve and Roll back; awaiting it waits for the click, or
    for `timeout_seconds` (default: the release's gate_timeout_seconds). In any other state than
    "shifted" it does nothing. `sleep` is how the wait sleeps (tests pass a fake clock's).
    """
    display = display or release._display
    gate = PromotionGate(
        release,
        auto_promote=auto_promote,
        who=who or default_who(),
        display=display,
        interactive=is_interactive() if interactive is None else interactive,
        timeout_seconds=(
            release.params.gate_timeout_seconds if timeout_seconds is None else timeout_seconds
        ),
        sleep=sleep or asyncio.sleep,
    )
    if release.state != "shifted":
        display.text(f"gate not run (state: {release.state})")
        return gate
    earlier = getattr(release, "pending_gate", None)
    if earlier is not None:  # a gate made again before the earlier one was awaited
        earlier.supersede()
    gate.show_evidence()
    if gate.interactive:
        gate.open()
    else:
        gate.decide_headless()
    return gate


class PromotionGate:
    def __init__(
        self,
        release: Any,
        *,
        auto_promote: bool,
        who: str,
        display: Any,
        interactive: bool,
        timeout_seconds: float,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self.release = release
        self.auto_promote = auto_promote
        self.who = who
        self.interactive = interactive
        self.mode = "interactive" if interactive else "headless"
        self.timeout_seconds = timeout_seconds
        self.decision: str | None = None  # approve | rollback | superseded
        self.timed_out = False  # no one decided within timeout_seconds: rolled back
        self.decided_at: Any = None  # the click, on the release's clock
        self.opened_at: Any = None
        self._display = display
        self._sleep = sleep
        self._clicked: str | None = None
        self._shown_left: int | None = None
        self.approve_button: Any = None
        self.rollback_button: Any = None
        self.status: Any = None  # a Label: what the gate waits for, then what was decided
        self.widget: Any = None
        self._handle: Any = None  # the widget's display, replaced by the decision once made

    def __repr__(self) -> str:
        if self.decision is None and self.release.pending_gate is self:
            return f"<PromotionGate waiting for {self.mode} approval; release {self.release.state}>"
        if self.decision is None:
            return f"<PromotionGate not run; release {self.release.state}>"
        return f"<PromotionGate {self.decision} by {self.who}; release {self.release.state}>"

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait().__await__()

    # -- evidence -----------------------------------------------------------------------

    def show_evidence(self) -> None:
        import pandas as pd

        release, show = self.release, self._display
        verdicts = release.record.verdicts
        show.markdown("### Gate: approve the promotion, or roll back")
        if verdicts:
            rows = [
                {k: v for k, v in verdict_row(verdict).items() if k not in _LEFT_OUT}
                for verdict in verdicts
            ]
            show.table(pd.DataFrame(rows))
            last = verdicts[-1]
            show.text(f"last verdict: {last['decision']}: {last['reason']}")
        else:
            show.text("no verdicts: this plan moves traffic at once, after the smoke test only")
        show.text(f"traffic now: {self._traffic()}")

    def _traffic(self) -> str:
        release = self.release
        try:
            split = release.pattern.read_split()
            how = "read back"
        except Exception as error:  # shown: the gate still lets a person decide
            split, how = release.split, f"last known; reading it back failed: {error}"
        if not split:
            return f"unknown ({how})"
        return ", ".join(f"{colour} {percent}%" for colour, percent in split.items()) + f" ({how})"

    # -- headless -----------------------------------------------------------------------

    def decide_headless(self) -> str:
        """No one to ask: promote if auto_promote, else roll back. Failures propagate (the cell
        fails, and the release has put blue back and recorded why)."""
        release = self.release
        flag = "true" if self.auto_promote else "false"
        if self.auto_promote:
            self._decided(
                APPROVE,
                f"gate: headless run, auto_promote={flag}: promoting without a person's approval",
            )
            return release.promote()
        self._decided(
            ROLLBACK,
            f"gate: headless run, auto_promote={flag}: rolling back; no one was there to approve",
        )
        with release._guard("gate"):
            return release.rollback(
                "auto_promote is false and no one was there to approve the promotion (a "
                "headless run cannot wait, and never leaves traffic half-shifted)"
            )

    # -- interactive --------------------------------------------------------------------

    def open(self) -> None:
        """Show the buttons; the release waits at this gate until it is awaited and decided."""
        import ipywidgets as widgets

        release = self.release
        self.approve_button = widgets.Button(
            description="Approve",
            button_style="success",
            icon="check",
            tooltip="promote: all traffic to green",
        )
        self.rollback_button = widgets.Button(
            description="Roll back",
            button_style="danger",
            icon="undo",
            tooltip="all traffic to blue",
        )
        self.approve_button.on_click(lambda _: self._click(APPROVE))
        self.rollback_button.on_click(lambda _: self._click(ROLLBACK))
        self.status = widgets.Label(self._waiting_text(self.timeout_seconds))
        self.widget = widgets.VBox(
            [widgets.HBox([self.approve_button, self.rollback_button]), self.status]
        )
        self.opened_at = release.clock.now()
        release.pending_gate = self
        release._event(
            "gate",
            f"gate: waiting for {self.who} to approve or roll back (interactive); no decision "
            f"within {self.timeout_seconds:g} s (gate_timeout_seconds) rolls back",
        )
        self._handle = self._display.widget(self.widget)

    async def wait(self) -> str:
        """Wait for the click (or the timeout), then promote or roll back. Returns the state."""
        release = self.release
        if release.pending_gate is not self:  # headless, not run, decided, or superseded
            return release.state
        with release._guard("gate"):  # stopped while waiting (Ctrl-C, a cancelled cell)
            deadline = self.opened_at.timestamp() + self.timeout_seconds
            while self._clicked is None:
                left = deadline - release.clock.now().timestamp()
                if left <= 0:
                    break
                self._count_down(left)
                await self._sleep(min(POLL_SECONDS, left))
        if self._clicked is None:
            return self._time_out()
        return self._decide(self._clicked)

    def supersede(self) -> None:
        """A newer gate of the same release decides: this one's buttons no longer do anything."""
        if self.decision is None:
            self.decision = "superseded"
            self._close("superseded by a newer gate (the gate's cell was run again)")

    def release_ended(self) -> None:
        """The release ended while this gate was never awaited (`Release._end`)."""
        if self.decision is None:
            self._close(f"nothing to decide: the release ended {self.release.state}")

    def _click(self, decision: str) -> None:
        """A button's handler: only records the choice (the waiting cell acts on it). The first
        click counts; the buttons are disabled at once, so a double click does nothing."""
        if self._clicked is not None or self.release.pending_gate is not self:
            return  # a second click, or the gate is closed (decided, superseded, release ended)
        self._clicked = decision
        self.decided_at = self.release.clock.now()
        for button in (self.approve_button, self.rollback_button):
            button.disabled = True
        self.status.value = (
            f"{_VERBS[decision]} by {self.who} at {self.decided_at:%H:%M:%S} UTC: working…"
        )

    def _decide(self, decision: str) -> str:
        release, verb = self.release, _VERBS[decision]
        if release.state != "shifted":  # e.g. rolled back by hand meanwhile
            self._decided(
                decision,
                f"gate: {verb} by {self.who}, but the release was already {release.state}: "
                "nothing done",
            )
            self._close(
                f"{verb} by {self.who}: nothing done, the release was already {release.state}"
            )
            return release.state
        self._decided(
            decision,
            f"gate: {verb} by {self.who} ({self.mode})",
            clicked_at=self.decided_at.isoformat(),
        )
        self._close(f"**{verb.capitalize()}** by {self.who} at {self.decided_at:%H:%M:%S} UTC")
        if decision == APPROVE:
            return release.promote()  # on failure, promote() itself rolls back and records
        with release._guard("gate"):  # on failure: recorded and published, then raised
            return release.rollback(f"rolled back at the gate by {self.who}")

    def _time_out(self) -> str:
        release = self.release
        self.decided_at = release.clock.now()
        reason = (
            f"no one approved or rolled back within gate_timeout_seconds ({self.timeout_seconds:g}"
            " s) of the gate opening"
        )
        self.timed_out = True
        self._decided(ROLLBACK, f"gate: {reason}; rolling back", timed_out=True)
        self._close(f"**Rolled back**: {reason}")
        if release.state != "shifted":
            return release.state
        with release._guard("gate"):
            return release.rollback(reason)

    def _count_down(self, left: float) -> None:
        whole = int(left)
        if whole != self._shown_left:  # the label changes once a second, not every poll
            self._shown_left = whole
            self.status.value = self._waiting_text(left)

    def _waiting_text(self, left: float) -> str:
        minutes, seconds = divmod(int(left), 60)
        return (
            f"waiting for {self.who}: Approve promotes, Roll back puts all traffic on blue · "
            f"{minutes}:{seconds:02d} left, then it rolls back by itself"
        )

    def _close(self, text: str) -> None:
        """Nothing more to click: the gate's output becomes what was decided."""
        if self.release.pending_gate is self:
            self.release.pending_gate = None
        for button in (self.approve_button, self.rollback_button):
            if button is not None:
                button.disabled = True
        if self.status is not None:
            self.status.value = text.replace("**", "")
        if self._handle is not None:
            self._display.replace(self._handle, text)

    def _decided(self, decision: str, message: str, **data: Any) -> None:
        self.decision = self.decision or decision
        self.release._event(
            "gate",
            message,
            decision=decision,
            by=self.who,
            mode=self.mode,
            auto_promote=self.auto_promote,
            **data,
        )
