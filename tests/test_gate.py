"""The gate between shift and promote, with the fake pattern and clock of test_release.py: a
release is driven to "shifted", then the gate decides (headless), or it waits, on the fake
clock, while its buttons are clicked as a frontend's messages would click them."""

from __future__ import annotations

import asyncio

import pytest
from test_release import FakePattern, healthy, make_release

from bgkit import jupyter
from bgkit.gate import PromotionGate, promotion_gate
from bgkit.jupyter import default_who, is_interactive

WHO = "alice@laptop"


class Shown:
    """A display that keeps what the gate and the release showed."""

    def __init__(self) -> None:
        self.markdowns: list[str] = []
        self.texts: list[str] = []
        self.tables: list = []
        self.widgets: list = []

    def markdown(self, text: str) -> None:
        self.markdowns.append(text)

    def text(self, text: str) -> None:
        self.texts.append(text)

    def table(self, frame) -> None:
        self.tables.append(frame)

    def widget(self, widget):
        self.widgets.append(widget)
        return len(self.widgets) - 1  # a handle: the widget's place

    def replace(self, handle, text) -> None:
        self.widgets[handle] = text

    def __getattr__(self, name):  # figure, record
        return lambda *args, **kwargs: None


def shifted(pattern: FakePattern | None = None, **values):
    """A release whose every step passed (one step, 50 %), showing into a Shown."""
    release, pattern, clock = make_release(healthy, pattern=pattern, plan="50", **values)
    shown = Shown()
    release._display = shown
    release._figure = lambda: None  # a failed promotion publishes the record: no plot here
    release.preflight()
    release.smoke_test()
    release.shift()
    assert release.state == "shifted"
    return release, pattern, clock, shown


def gate_events(release) -> list[dict]:
    return [e for e in release.record.events if e["kind"] == "gate"]


def interactive_gate(release, clock, *, clicks=(), timeout=3600.0) -> PromotionGate:
    """A gate shown as in Jupyter. `clicks`: (seconds after the gate opened, button name) that
    the frontend sends while the cell waits; the wait sleeps on the release's fake clock."""
    pending = sorted(clicks)

    async def sleep(seconds):
        clock.sleep(seconds)
        while pending and clock.now().timestamp() >= gate.opened_at.timestamp() + pending[0][0]:
            getattr(gate, pending.pop(0)[1]).click()

    gate = promotion_gate(
        release, auto_promote=False, interactive=True, who=WHO, timeout_seconds=timeout, sleep=sleep
    )
    assert isinstance(gate, PromotionGate)
    return gate


def wait(gate) -> str:
    return asyncio.run(gate.wait())


def test_headless_with_auto_promote_promotes_and_records_it():
    release, pattern, clock, _ = shifted()
    gate = promotion_gate(release, auto_promote=True, interactive=False, who=WHO)
    assert release.state == "promoted" and gate.decision == "approve"
    assert wait(gate) == "promoted"  # awaiting a decided gate returns the state
    assert pattern.read_split() == {"blue": 0, "green": 100}
    (event,) = gate_events(release)
    assert event["mode"] == "headless" and event["decision"] == "approve"
    assert event["auto_promote"] is True and event["by"] == WHO
    assert event["at"] == clock.now().isoformat()
    assert (
        "headless run, auto_promote=true: promoting without a person's approval"
        in (event["message"])
    )


def test_headless_without_auto_promote_rolls_back_to_blue_with_the_reason():
    release, pattern, _, _ = shifted()
    promotion_gate(release, auto_promote=False, interactive=False, who=WHO)
    assert release.state == "rolled_back"
    assert pattern.read_split() == {"blue": 100, "green": 0}
    assert pattern.writes == [50, 0]
    assert "auto_promote is false" in release.record.reason
    assert "no one was there to approve" in release.record.reason
    (event,) = gate_events(release)
    assert (event["mode"], event["decision"], event["auto_promote"]) == (
        "headless",
        "rollback",
        False,
    )


def test_the_evidence_is_shown_before_the_decision():
    release, _, _, shown = shifted()
    promotion_gate(release, auto_promote=True, interactive=False, who=WHO)
    assert any("Gate" in m for m in shown.markdowns)
    (table,) = shown.tables
    assert list(table["green %"]) == [50]
    assert list(table["decision"]) == ["CONTINUE"]
    assert {"green 5xx", "blue 5xx", "5xx evidence", "slow p90 evidence"} <= set(table.columns)
    assert "traffic now: blue 50%, green 50% (read back)" in shown.texts


def test_the_cell_waits_for_approve_then_promotes_once_recording_who_and_when(monkeypatch):
    release, pattern, clock, shown = shifted()
    promotions = []
    promote = release.promote
    monkeypatch.setattr(release, "promote", lambda: promotions.append(1) or promote())
    double_click = [(90, "approve_button"), (90, "approve_button")]  # both before the cell acts
    gate = interactive_gate(release, clock, clicks=double_click)
    assert shown.widgets == [gate.widget]
    assert release.pending_gate is gate and release.state == "shifted"
    assert release.promote() == "shifted" and promotions == [1]  # refused while the gate waits
    assert "the gate waits for a decision" in shown.texts[-1]
    opened = clock.now()

    assert wait(gate) == "promoted"
    assert promotions == [1, 1]  # the double click promoted once
    assert 90 <= (clock.now() - opened).total_seconds() < 91
    assert pattern.writes == [50, 100] and pattern.read_split() == {"blue": 0, "green": 100}
    opened_event, decided = gate_events(release)
    assert "waiting for alice@laptop" in opened_event["message"]
    assert "3600 s" in opened_event["message"]
    assert (decided["decision"], decided["by"], decided["mode"]) == (
        "approve",
        WHO,
        "interactive",
    )
    assert (gate.decided_at - opened).total_seconds() == pytest.approx(90, abs=0.2)
    assert decided["clicked_at"] == gate.decided_at.isoformat()
    assert gate.approve_button.disabled and gate.rollback_button.disabled
    assert release.pending_gate is None
    assert shown.widgets == [f"**Approved** by {WHO} at {gate.decided_at:%H:%M:%S} UTC"]
    gate.rollback_button.click()  # after the decision: nothing
    assert pattern.writes == [50, 100] and len(gate_events(release)) == 2


def test_roll_back_click_rolls_back_naming_who():
    release, pattern, clock, _ = shifted()
    gate = interactive_gate(release, clock, clicks=[(3, "rollback_button")])
    assert wait(gate) == "rolled_back"
    assert pattern.read_split() == {"blue": 100, "green": 0}
    assert release.record.reason == f"rolled back at the gate by {WHO}"
    decided = gate_events(release)[-1]
    assert (decided["decision"], decided["by"]) == ("rollback", WHO)
    assert gate.approve_button.disabled and gate.rollback_button.disabled


def test_no_click_within_the_timeout_rolls_back_and_says_so():
    release, pattern, clock, shown = shifted()
    gate = interactive_gate(release, clock, timeout=600)
    opened = clock.now()
    assert wait(gate) == "rolled_back"
    assert (clock.now() - opened).total_seconds() == pytest.approx(600)
    assert pattern.read_split() == {"blue": 100, "green": 0}
    assert "gate_timeout_seconds (600 s)" in release.record.reason
    decided = gate_events(release)[-1]
    assert decided["decision"] == "rollback" and decided["timed_out"] is True
    assert gate.timed_out and gate.decision == "rollback"
    assert shown.widgets[0].startswith("**Rolled back**: no one approved or rolled back")


def test_the_countdown_shows_the_time_left_once_a_second():
    release, _, clock, _ = shifted()
    shown_values = []
    gate = interactive_gate(release, clock, clicks=[(2.5, "approve_button")], timeout=125)
    shown_values.append(gate.status.value)
    gate.status.observe(lambda change: shown_values.append(change["new"]), "value")
    wait(gate)
    left = [v.split("· ")[1].split(" left")[0] for v in shown_values if " left" in v]
    assert left == ["2:05", "2:04", "2:03", "2:02"]  # the click came 2.5 s after the opening


def test_a_failing_promotion_after_approve_fails_the_cell_with_blue_back():
    release, pattern, clock, _ = shifted(FakePattern(fail_at=100))
    gate = interactive_gate(release, clock, clicks=[(1, "approve_button")])
    with pytest.raises(RuntimeError, match="AWS said no"):
        wait(gate)
    assert pattern.read_split() == {"blue": 100, "green": 0}  # promote() rolled back itself
    assert release.state == "failed"


@pytest.mark.parametrize("stop", [KeyboardInterrupt, asyncio.CancelledError])
def test_a_wait_interrupted_rolls_back_without_waiting_to_plot(stop):
    """The kernel's stop button while the gate waits (ipykernel cancels an awaiting cell; Ctrl-C
    in a terminal): nothing is left half-shifted, and no plot waits for CloudWatch first."""
    release, pattern, _, _ = shifted()
    plotted = []
    release._figure = lambda: plotted.append(1)

    async def interrupted(seconds):
        raise stop

    gate = promotion_gate(release, auto_promote=False, interactive=True, who=WHO, sleep=interrupted)
    with pytest.raises(stop):
        wait(gate)
    assert pattern.read_split() == {"blue": 100, "green": 0}
    assert release.state == "failed"
    assert release.record.reason == f"gate interrupted: {stop.__name__}"
    assert not plotted


@pytest.mark.parametrize("state_from", ["new", "promoted"])
def test_the_gate_does_nothing_in_any_other_state(state_from):
    release, pattern, _, shown = shifted()
    if state_from == "promoted":
        release.promote()
    else:
        release.state = "new"
    writes, events = list(pattern.writes), len(release.record.events)
    gate = promotion_gate(release, auto_promote=True, interactive=False, who=WHO)
    assert wait(gate) == release.state == state_from
    assert pattern.writes == writes and len(release.record.events) == events
    assert f"gate not run (state: {state_from})" in shown.texts
    assert not shown.tables and not shown.widgets


def test_a_release_that_ends_otherwise_closes_the_gate():
    release, pattern, clock, _ = shifted()
    gate = interactive_gate(release, clock, clicks=[(1, "approve_button")])
    release.rollback("by hand")
    assert gate.status.value == "nothing to decide: the release ended rolled_back"
    assert gate.approve_button.disabled and release.pending_gate is None
    assert wait(gate) == "rolled_back" and pattern.writes == [50, 0]
    gate.approve_button.click()  # a click that was on its way: nothing
    assert pattern.writes == [50, 0] and release.state == "rolled_back"
    assert gate.status.value == "nothing to decide: the release ended rolled_back"


def test_a_gate_never_awaited_blocks_promote_and_finish_rolls_back():
    """A runbook copied from before the gate waited: the gate's cell does not await it."""
    release, pattern, clock, _ = shifted()
    gate = interactive_gate(release, clock)
    assert release.promote() == "shifted" and pattern.writes == [50]
    release.finish(plot=False)
    assert release.state == "rolled_back" and pattern.writes == [50, 0]
    assert "without a promotion" in release.record.reason
    assert gate.approve_button.disabled and release.pending_gate is None
    assert gate.status.value == "nothing to decide: the release ended rolled_back"


def test_making_the_gate_again_supersedes_the_waiting_one():
    release, pattern, clock, _ = shifted()
    first = interactive_gate(release, clock)
    second = interactive_gate(release, clock, clicks=[(1, "approve_button")])
    assert release.pending_gate is second and first.decision == "superseded"
    assert first.approve_button.disabled
    assert wait(first) == "shifted"  # nothing to wait for
    assert wait(second) == "promoted" and pattern.writes == [50, 100]


def test_who_is_the_jupyterhub_user_or_the_os_user_at_the_host(monkeypatch):
    monkeypatch.setattr(jupyter.socket, "gethostname", lambda: "laptop")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    assert default_who() == "alice@laptop"
    monkeypatch.delenv("JUPYTERHUB_USER")
    monkeypatch.setattr(jupyter.getpass, "getuser", lambda: "bob")
    assert default_who() == "bob@laptop"


def test_interactive_only_in_a_kernel_the_environment_does_not_call_headless(monkeypatch):
    assert not is_interactive({})  # pytest: no kernel runs this process
    monkeypatch.setattr(jupyter, "_kernel_running", lambda: True)
    assert is_interactive({})
    assert is_interactive({"BGKIT_HEADLESS": "0", "CI": "false"})
    assert not is_interactive({"BGKIT_HEADLESS": "1"})
    assert not is_interactive({"CI": "true"})
    assert not is_interactive({"CI": "TRUE"})
    assert is_interactive({"BGKIT_HEADLESS": "0", "CI": "true"})  # bgkit lab says a person is there


def test_undecided_gate_uses_the_environment(monkeypatch):
    monkeypatch.setenv("BGKIT_HEADLESS", "1")
    monkeypatch.setattr(jupyter, "_kernel_running", lambda: True)
    release, _, _, _ = shifted()
    promotion_gate(release, auto_promote=True, who=WHO)
    assert release.state == "promoted"
    assert gate_events(release)[0]["mode"] == "headless"
