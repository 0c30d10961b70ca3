"""The gate between shift and promote, with the fake pattern and clock of test_release.py: a
release is driven to "shifted", then the gate decides (headless) or its buttons are clicked."""

from __future__ import annotations

import pytest
from test_release import FakePattern, healthy, make_release

from bgkit import gate as gate_module
from bgkit.gate import PromotionGate, default_who, is_interactive, promotion_gate

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

    def widget(self, widget) -> None:
        self.widgets.append(widget)

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


def interactive_gate(release) -> PromotionGate:
    gate = promotion_gate(release, auto_promote=False, interactive=True, who=WHO)
    assert isinstance(gate, PromotionGate)
    return gate


def test_headless_with_auto_promote_promotes_and_records_it():
    release, pattern, clock, _ = shifted()
    state = promotion_gate(release, auto_promote=True, interactive=False, who=WHO)
    assert state == release.state == "promoted"
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
    state = promotion_gate(release, auto_promote=False, interactive=False, who=WHO)
    assert state == release.state == "rolled_back"
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
    assert {"green 5xx", "blue 5xx", "5xx evidence", "slow evidence"} <= set(table.columns)
    assert "traffic now: blue 50%, green 50% (read back)" in shown.texts


def test_approve_click_promotes_once_and_records_who_and_when(monkeypatch):
    release, pattern, clock, shown = shifted()
    promotions = []
    promote = release.promote
    monkeypatch.setattr(release, "promote", lambda: promotions.append(1) or promote())
    gate = interactive_gate(release)
    assert shown.widgets == [gate.widget]
    assert release.pending_gate is gate and release.state == "shifted"  # the cell returned
    assert pattern.writes == [50]

    gate.approve_button.click()
    assert release.state == "promoted" and promotions == [1]
    assert pattern.read_split() == {"blue": 0, "green": 100}
    (event,) = gate_events(release)
    assert (event["decision"], event["by"], event["mode"]) == ("approve", WHO, "interactive")
    assert event["at"] == clock.now().isoformat()
    assert gate.approve_button.disabled and gate.rollback_button.disabled
    assert release.pending_gate is None
    assert f"approved by {WHO}" in gate.status.value
    assert "promoted" in gate.status.value

    gate.approve_button.click()  # a second (or double) click does nothing
    gate.rollback_button.click()
    assert promotions == [1] and pattern.writes == [50, 100]
    assert len(gate_events(release)) == 1


def test_roll_back_click_rolls_back_naming_who():
    release, pattern, _, _ = shifted()
    gate = interactive_gate(release)
    gate.rollback_button.click()
    assert release.state == "rolled_back"
    assert pattern.read_split() == {"blue": 100, "green": 0}
    assert release.record.reason == f"rolled back at the gate by {WHO}"
    (event,) = gate_events(release)
    assert (event["decision"], event["by"]) == ("rollback", WHO)
    assert gate.approve_button.disabled and gate.rollback_button.disabled
    assert "rolled_back" in gate.status.value


def test_a_failing_promotion_in_the_click_is_shown_recorded_and_rolled_back():
    release, pattern, _, _ = shifted(FakePattern(fail_at=100))
    gate = interactive_gate(release)
    gate.approve_button.click()  # the handler must not raise into ipywidgets (it logs only)
    assert pattern.read_split() == {"blue": 100, "green": 0}  # promote() rolled back itself
    assert release.state == "failed"
    assert isinstance(gate.error, RuntimeError)
    assert "the promotion failed: RuntimeError: AWS said no" in gate.status.value
    assert "failed" in gate.status.value and "blue 100%" in gate.status.value
    assert any("AWS said no" in o.get("text", "") for o in gate.output.outputs)
    decided, failed = gate_events(release)
    assert decided["decision"] == "approve"
    assert failed["error"] == "RuntimeError: AWS said no"
    assert gate.approve_button.disabled and gate.rollback_button.disabled


def test_approve_from_a_cell_raises_what_the_promotion_raised():
    """No widget frontend: gate.approve() in a cell fails that cell, as promote() would."""
    release, _, _, _ = shifted(FakePattern(fail_at=100))
    gate = interactive_gate(release)
    with pytest.raises(RuntimeError, match="AWS said no"):
        gate.approve()
    assert release.state == "failed"


@pytest.mark.parametrize("state_from", ["new", "promoted"])
def test_the_gate_does_nothing_in_any_other_state(state_from):
    release, pattern, _, shown = shifted()
    if state_from == "promoted":
        release.promote()
    else:
        release.state = "new"
    writes, events = list(pattern.writes), len(release.record.events)
    result = promotion_gate(release, auto_promote=True, interactive=False, who=WHO)
    assert result == release.state == state_from
    assert pattern.writes == writes and len(release.record.events) == events
    assert f"gate not run (state: {state_from})" in shown.texts
    assert not shown.tables and not shown.widgets


def test_a_click_after_the_release_ended_otherwise_does_nothing():
    release, pattern, _, _ = shifted()
    gate = interactive_gate(release)
    release.rollback("by hand")
    gate.approve_button.click()
    assert release.state == "rolled_back" and pattern.writes == [50, 0]
    assert "already rolled_back" in gate.status.value and gate.approve_button.disabled


def test_running_the_gate_again_supersedes_the_waiting_one():
    release, pattern, _, _ = shifted()
    first = interactive_gate(release)
    second = interactive_gate(release)
    assert release.pending_gate is second
    first.approve_button.click()
    assert release.state == "shifted" and first.approve_button.disabled
    second.approve_button.click()
    assert release.state == "promoted" and pattern.writes == [50, 100]


def test_who_is_the_jupyterhub_user_or_the_os_user_at_the_host(monkeypatch):
    monkeypatch.setattr(gate_module.socket, "gethostname", lambda: "laptop")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    assert default_who() == "alice@laptop"
    monkeypatch.delenv("JUPYTERHUB_USER")
    monkeypatch.setattr(gate_module.getpass, "getuser", lambda: "bob")
    assert default_who() == "bob@laptop"


def test_interactive_only_in_a_kernel_the_environment_does_not_call_headless(monkeypatch):
    assert not is_interactive({})  # pytest: no kernel runs this process
    monkeypatch.setattr(gate_module, "_kernel_running", lambda: True)
    assert is_interactive({})
    assert is_interactive({"BGKIT_HEADLESS": "0", "CI": "false"})
    assert not is_interactive({"BGKIT_HEADLESS": "1"})
    assert not is_interactive({"CI": "true"})
    assert not is_interactive({"CI": "TRUE"})


def test_undecided_gate_uses_the_environment(monkeypatch):
    monkeypatch.setenv("BGKIT_HEADLESS", "1")
    monkeypatch.setattr(gate_module, "_kernel_running", lambda: True)
    release, _, _, _ = shifted()
    assert promotion_gate(release, auto_promote=True, who=WHO) == "promoted"
    assert gate_events(release)[0]["mode"] == "headless"


def test_promote_and_finish_wait_while_the_gate_waits():
    """Run All in Jupyter: the cells after the gate run before anyone can click."""
    release, pattern, _, shown = shifted()
    gate = interactive_gate(release)
    assert release.promote() == "shifted"
    release.finish(plot=False)
    assert release.state == "shifted" and pattern.writes == [50]
    assert any("waiting at the gate" in t for t in shown.texts)
    gate.approve_button.click()
    assert release.state == "promoted"
    assert release.finish(plot=False)["outcome"] == "promoted"


def test_the_engine_and_the_gate_name_the_same_environment_variable():
    from bgkit import engine, gate

    assert engine.HEADLESS_ENV == gate.HEADLESS_ENV
