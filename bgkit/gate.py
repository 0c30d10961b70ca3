"""The gate between shift and promote: a person approves or rolls back; a headless run decides
by `auto_promote`.

    shifted ─► evidence (every verdict with its numbers, where traffic is now)
            ─► headless:    auto_promote true ─► promote;  false ─► roll back
            ─► interactive: [Approve] [Roll back] ─► the click promotes or rolls back

Headless or interactive (when `interactive` is not given): interactive only if an IPython
*kernel* runs this code (a notebook, not a script or terminal IPython) and the environment does
not say headless: BGKIT_HEADLESS set to anything but "" or "0" (bgkit's papermill engine and
the test suite set it for the kernels they start), or CI="true" (GitHub Actions, GitLab CI and
most CI services set it). A headless run never waits: nobody would click, and traffic must not
stay half-shifted, so without auto_promote it rolls back.

Interactive: the cell returns at once, because a running cell holds back the widgets' messages;
the click's handler does the work. While the gate waits, `release.pending_gate` is the gate, so
that the runbook's next cell, `release.promote()`, does not promote on its own. The first click
decides; the buttons are then disabled, and a second click does nothing. A failure in the
handler (promote failed, and the release rolled back) is shown under the buttons and recorded:
a widget's callback has no cell to fail.

The decision is an event of kind "gate" in the record, with its data for machines:
decision ("approve" | "rollback"), by (who), mode ("interactive" | "headless"), auto_promote;
the event's own `at` is when it was decided, on the release's clock.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import sys
import traceback
from typing import Any

from .release import _verdict_row

HEADLESS_ENV = "BGKIT_HEADLESS"
APPROVE, ROLLBACK = "approve", "rollback"
_VERBS = {APPROVE: "approved", ROLLBACK: "rolled back"}
_LEFT_OUT = ("window (UTC)", "reason")  # the record's own verdict table has them


def promotion_gate(
    release: Any,
    *,
    auto_promote: bool,
    interactive: bool | None = None,
    who: str | None = None,
    display: Any = None,
) -> PromotionGate | str:
    """Show the judge's evidence, then promote or roll back `release` (in state "shifted").

    Headless: decides at once by `auto_promote` and returns the release's state. Interactive:
    shows Approve and Roll back buttons and returns the waiting `PromotionGate`. In any other
    state than "shifted" it does nothing and returns the state.
    """
    display = display or release._display
    if release.state != "shifted":
        display.text(f"gate not run (state: {release.state})")
        return release.state
    earlier = getattr(release, "pending_gate", None)
    if earlier is not None:  # the gate's cell run again: one gate decides, the newest
        earlier.supersede()
    gate = PromotionGate(
        release,
        auto_promote=auto_promote,
        who=who or default_who(),
        display=display,
        interactive=is_interactive() if interactive is None else interactive,
    )
    gate.show_evidence()
    if not gate.interactive:
        return gate.decide_headless()
    gate.wait_for_click()
    return gate


class PromotionGate:
    def __init__(
        self, release: Any, *, auto_promote: bool, who: str, display: Any, interactive: bool
    ) -> None:
        self.release = release
        self.auto_promote = auto_promote
        self.who = who
        self.interactive = interactive
        self.mode = "interactive" if interactive else "headless"
        self.decision: str | None = None
        self.error: Exception | None = None
        self.decided_at: Any = None  # on the release's clock
        self._display = display
        self.approve_button: Any = None
        self.rollback_button: Any = None
        self.status: Any = None  # a Label: what the gate waits for, then what was decided
        self.output: Any = None  # the release's lines printed while it promotes or rolls back
        self.widget: Any = None

    def __repr__(self) -> str:
        if self.decision is None:
            return f"<PromotionGate waiting for {self.mode} approval; release {self.release.state}>"
        if self.decision == "superseded":
            return "<PromotionGate superseded by a newer gate>"
        return f"<PromotionGate {self.decision} by {self.who}; release {self.release.state}>"

    # -- evidence -----------------------------------------------------------------------

    def show_evidence(self) -> None:
        import pandas as pd

        release, show = self.release, self._display
        verdicts = release.record.verdicts
        show.markdown("### Gate: approve the promotion, or roll back")
        if verdicts:
            rows = [
                {k: v for k, v in _verdict_row(verdict).items() if k not in _LEFT_OUT}
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
            self._record(
                APPROVE,
                f"gate: headless run, auto_promote={flag}: promoting without a person's approval",
            )
            return release.promote()
        self._record(
            ROLLBACK,
            f"gate: headless run, auto_promote={flag}: rolling back; no one was there to approve",
        )
        with release._guard("gate"):
            return release.rollback(
                "auto_promote is false and no one was there to approve the promotion (a "
                "headless run cannot wait, and never leaves traffic half-shifted)"
            )

    # -- interactive --------------------------------------------------------------------

    def wait_for_click(self) -> None:
        import ipywidgets as widgets

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
        self.approve_button.on_click(lambda _: self._clicked(APPROVE))
        self.rollback_button.on_click(lambda _: self._clicked(ROLLBACK))
        self.status = widgets.Label(
            f"waiting for {self.who}: Approve promotes, Roll back puts all traffic on blue "
            "(no buttons? run gate.approve() or gate.roll_back() in a cell)"
        )
        self.output = widgets.Output()
        self.widget = widgets.VBox(
            [widgets.HBox([self.approve_button, self.rollback_button]), self.status, self.output]
        )
        self.release.pending_gate = self
        show = getattr(self._display, "widget", None)
        if show is None:
            from IPython.display import display

            show = display
        show(self.widget)

    def approve(self) -> str:
        """Promote, as the Approve button does. Raises what promote raised (also recorded)."""
        return self._decide(APPROVE, under_buttons=False)

    def roll_back(self) -> str:
        """Roll back, as the Roll back button does. Raises what the rollback raised."""
        return self._decide(ROLLBACK, under_buttons=False)

    def supersede(self) -> None:
        """A newer gate of the same release decides: this one's buttons no longer do anything."""
        if self.decision is None:
            self.decision = "superseded"
            self._disable("superseded by a newer gate (the gate's cell was run again)")

    def _clicked(self, decision: str) -> None:
        # A callback has no cell to fail (raised further, ipywidgets would only log it): _decide
        # shows the error in the label and the output, and records it, instead of raising it.
        self._decide(decision, under_buttons=True)

    def _decide(self, decision: str, *, under_buttons: bool) -> str:
        if self.decision is not None:  # a second click, or a double click: the first decided
            return self.release.state
        self.decision = decision
        error: Exception | None = None
        # A click's handler has no cell: in a kernel, what it prints goes under the buttons.
        with self.output if under_buttons else contextlib.nullcontext():
            try:  # inside: in a kernel, the Output widget would show an exception and swallow it
                state = self._act(decision)
            except Exception as failure:
                error = failure
                if under_buttons:  # a cell shows its own traceback
                    self.output.append_stderr(traceback.format_exc())
                self._failed(decision, failure)
        if error is not None and not under_buttons:
            raise error
        return self.release.state if error is not None else state

    def _act(self, decision: str) -> str:
        release = self.release
        verb = _VERBS[decision]
        if release.state != "shifted":  # e.g. rolled back by hand, or finish() ran meanwhile
            self._record(
                decision,
                f"gate: {verb} by {self.who}, but the release was already {release.state}: "
                "nothing done",
            )
            self._disable(f"nothing done: the release was already {release.state}")
            return release.state
        self.decided_at = release.clock.now()
        self._disable(f"{verb} by {self.who} at {self.decided_at:%H:%M:%S} UTC: working…")
        self._record(decision, f"gate: {verb} by {self.who} ({self.mode})")
        if decision == APPROVE:
            state = release.promote()  # on failure, promote() itself rolls back and records
        else:
            with release._guard("gate"):  # on failure: recorded and published, then raised
                state = release.rollback(f"rolled back at the gate by {self.who}")
        self.status.value = (
            f"{verb} by {self.who} at {self.decided_at:%H:%M:%S} UTC: the release is {state}; "
            f"traffic {self._traffic()}. Run the next cells (the Record cell shows the record)."
        )
        return state

    def _failed(self, decision: str, error: Exception) -> None:
        """Recorded and shown: promote() and the rollback have already put blue back if they
        could, and ended the release; this says what the gate saw."""
        release, self.error = self.release, error
        what = "promotion" if decision == APPROVE else "rollback"
        verb, at = _VERBS[decision], self.decided_at or release.clock.now()
        failure = f"{type(error).__name__}: {error}"
        traffic = self._traffic()
        release._event(
            "gate",
            f"gate: the {what} {verb} by {self.who} failed: {failure}; the release is "
            f"{release.state}, traffic {traffic}",
            decision=decision,
            by=self.who,
            mode=self.mode,
            error=failure,
        )
        self.status.value = (
            f"{verb} by {self.who} at {at:%H:%M:%S} UTC, but the {what} failed: {failure}. "
            f"The release is {release.state}; traffic {traffic}. The Record cell shows the record."
        )

    def _disable(self, status: str) -> None:
        if getattr(self.release, "pending_gate", None) is self:
            self.release.pending_gate = None
        for button in (self.approve_button, self.rollback_button):
            if button is not None:
                button.disabled = True
        if self.status is not None:
            self.status.value = status

    def _record(self, decision: str, message: str) -> None:
        self.release._event(
            "gate",
            message,
            decision=decision,
            by=self.who,
            mode=self.mode,
            auto_promote=self.auto_promote,
        )


def default_who() -> str:
    """The person at the notebook: JupyterHub's user, else the OS user; @ the host."""
    user = os.environ.get("JUPYTERHUB_USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no login name (a container's numeric user): still say where
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def is_interactive(environ: Any = None) -> bool:
    """True in a notebook kernel that no one said is headless (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(HEADLESS_ENV, "") not in ("", "0"):
        return False
    if environ.get("CI", "").lower() == "true":
        return False
    return _kernel_running()


def _kernel_running() -> bool:
    if "ipykernel" not in sys.modules:  # never imported: no kernel runs this process
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
