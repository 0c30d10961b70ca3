"""A person's release in JupyterLab, in a real browser: `bgkit lab`, Run All, the gate, a click.

What is checked is what the person saw (the live progress during the bake, the buttons at the
gate with the cells after it still waiting) and what the release left: the notebook the kernel
sealed (metadata["bgkit"], its chain, `bgkit audit`), and the listener read back through boto3.
Screenshots go to outputs/browser-check/.
"""

from __future__ import annotations

import re

from conftest import SHOTS

from bgkit import audit

BAKE = ["-p", "plan", "50", "-p", "slow_margin_ms", "25", "-p", "sandbox_request_rate", "30"]


def open_and_run_all(page, lab) -> None:
    page.goto(lab.url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    lab.wait_for_kernel()  # JupyterLab starts the notebook's kernel once it has loaded
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


def progress_during_the_bake(page, name: str) -> str:
    """The shift's live progress display while its step bakes: its text, and a screenshot."""
    live = page.locator(".bgkit-progress", has_text=re.compile(r"step 1 of 1.* \d+ s left")).first
    live.wait_for(timeout=120_000)
    live.scroll_into_view_if_needed()
    text = live.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-bake.png"))
    return text


def at_the_gate(page, name: str):
    approve = page.locator("button:has-text('Approve')")
    approve.wait_for(timeout=120_000)
    approve.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"{name}-gate.png"))
    return approve


def weights(sandbox, record: dict) -> dict[str, int]:
    """Where the listener sends traffic, read back through boto3 by the pattern's own read."""
    from bgkit import patterns

    pattern = patterns.get("alb_weighted")
    resources = {name: record["parameters"][name] for name in pattern.parameters}
    return pattern(sandbox.session(), resources).read_split()


def test_run_all_waits_at_the_gate_and_approve_promotes_into_a_chained_record(lab, page, sandbox):
    started = lab(*BAKE, "-p", "release", "rel-approved")
    open_and_run_all(page, started)
    during = progress_during_the_bake(page, "approve")
    assert "step 1 of 1: green 50%" in during
    assert re.search(r"judged window \(UTC\)\s+\d\d:\d\d:\d\d–\d\d:\d\d:\d\d, \d+ s left", during)
    assert "traffic (as last read back)" in during and "blue 50%, green 50%" in during
    assert "evidence that green is worse" in during and "(rolls back at 125)" in during

    approve = at_the_gate(page, "approve")
    status = page.locator(".widget-label", has_text="left, then it rolls back by itself")
    assert status.count() == 1
    last_cell = page.locator(".jp-Notebook .jp-CodeCell").last
    assert "[*]" in last_cell.locator(".jp-InputPrompt").inner_text()  # queued behind the gate
    approve.click()

    page.locator("text=this release's record is sealed").wait_for(timeout=120_000)
    page.screenshot(path=str(SHOTS / "approve-sealed.png"))
    record = started.record(timeout=30)
    assert (record["outcome"], record["mode"]) == ("promoted", "interactive")
    gate = [e for e in record["events"] if e["kind"] == "gate" and e.get("decision")]
    assert [(e["decision"], e["by"].split("@")[0]) for e in gate] == [("approve", "alice")]
    outputs = str(started.folder / "outputs")
    assert audit.verify(outputs) == (1, [])
    (row,) = audit.index(outputs)
    assert (row.mode, row.decided_by, row.outcome) == ("interactive", gate[0]["by"], "promoted")
    assert weights(sandbox, record) == {"blue": 0, "green": 100}


def test_roll_back_at_the_gate_puts_blue_back_and_records_who(lab, page, sandbox):
    started = lab(*BAKE, "-p", "release", "rel-refused")
    open_and_run_all(page, started)
    at_the_gate(page, "rollback")
    page.locator("button:has-text('Roll back')").click()
    record = started.record(timeout=120)
    assert record["outcome"] == "rolled_back"
    assert record["reason"].startswith("rolled back at the gate by alice@")
    assert audit.verify(str(started.folder / "outputs")) == (1, [])
    assert weights(sandbox, record) == {"blue": 100, "green": 0}


def test_a_closed_tab_and_no_click_roll_back_at_the_gate_timeout_and_are_recorded(
    lab, page, sandbox
):
    """The person closes the tab during the bake: the kernel carries on, the gate waits its
    gate_timeout_seconds, rolls back, and the kernel seals the record by itself."""
    started = lab(*BAKE, "-p", "release", "rel-unattended", "-p", "gate_timeout_seconds", "5")
    open_and_run_all(page, started)
    progress_during_the_bake(page, "closed")
    page.close()
    record = started.record(timeout=120)
    assert record["outcome"] == "rolled_back"
    assert "gate_timeout_seconds (5 s)" in record["reason"]
    (timed_out,) = [e for e in record["events"] if e.get("timed_out")]
    assert timed_out["decision"] == "rollback" and timed_out["mode"] == "interactive"
    (row,) = audit.index(str(started.folder / "outputs"))
    assert (row.mode, row.decided_by) == ("interactive", "")  # nobody clicked
    assert weights(sandbox, record) == {"blue": 100, "green": 0}
