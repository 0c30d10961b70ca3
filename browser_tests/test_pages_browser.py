"""The reviewer's pages (bgkit.html) as a person sees them: headless Chromium, no emoji font.

Two records of alb_weighted in one sandbox: a promoted release and a plan (`bgkit plan`).
Chromium draws each page; what it drew is read back from the page itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bgkit.connect import SANDBOX_URL_ENV
from bgkit.html import render

ROOT = Path(__file__).resolve().parent.parent
BGKIT = ROOT / ".venv" / "bin" / "bgkit"
SHOTS = ROOT / "outputs" / "browser-check"

# Draws a text in the font an element is shown in, and returns its pixels: a character no font
# has (a private-use one) draws as the font's "missing glyph" box, the empty box of an emoji
# shown without an emoji font.
DRAW = """([selector, texts]) => {
  const font = getComputedStyle(document.querySelector(selector)).font;
  return texts.map((text) => {
    const canvas = document.createElement("canvas");
    canvas.width = 120; canvas.height = 60;
    const context = canvas.getContext("2d");
    context.font = font;
    context.fillText(text, 10, 40);
    return Array.from(context.getImageData(0, 0, 120, 60).data).join(",");
  });
}"""
MISSING = "\ue000"


@pytest.fixture(scope="module")
def pages(sandbox, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pages")
    env = {**os.environ, SANDBOX_URL_ENV: sandbox.admin_url}
    runs = {
        "promoted": ["run", "alb_weighted", "-p", "plan", "all_at_once"],
        "planned": ["plan", "alb_weighted", "-p", "plan", "canary"],
    }
    started = {
        name: subprocess.Popen(
            [str(BGKIT), *command, "--quiet", "--output", str(folder / f"{name}.ipynb")],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, command in runs.items()
    }
    for name, process in started.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, (name, output)
    return {name: render(folder / f"{name}.ipynb") for name in runs}


def test_the_outcome_symbol_is_drawn_without_an_emoji_font(page, pages):
    page.goto(pages["promoted"].as_uri())
    cell = page.locator("td", has_text="promoted").first
    symbol = cell.inner_text().split()[0]
    assert symbol == "✓"
    selector = "main td" if page.locator("main td").count() else "td"
    drawn, missing, letter, blank = page.evaluate(DRAW, [selector, [symbol, MISSING, "A", ""]])
    assert missing not in (letter, blank)  # the check tells a missing glyph from a drawn one
    assert drawn not in (missing, blank)  # the symbol has a glyph: not an empty box, not nothing
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "promoted-page.png"))


def test_a_plan_page_opens_on_its_calls_and_rollbacks(page, pages):
    page.goto(pages["planned"].as_uri())
    assert page.title().startswith("plan: alb_weighted release ")
    tables = page.locator("table")
    calls, rollbacks = tables.nth(1), tables.nth(2)  # after the summary's table
    assert calls.is_visible() and rollbacks.is_visible()
    assert "elasticloadbalancing:ModifyListener" in calls.inner_text()
    assert "forward weights blue 90 / green 10" in calls.inner_text()
    assert "forward weights blue 100 / green 0" in rollbacks.inner_text()
    # the ticket comes first: the calls are above the notebook's own steps
    steps = page.get_by_text("The run, step by step")
    assert calls.bounding_box()["y"] < steps.bounding_box()["y"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "plan-page.png"), full_page=True)


WAVES = """name: shop
release: rel-b
runbook: alb_weighted
bake_between_waves_seconds: 1
parameters: {plan: all_at_once, bake_seconds: 1, metric_period_seconds: 1, smoke_requests: 3}
targets:
  - name: pilot
  - name: cell-a
    parameters: {green_error_rate: 1.0}
  - name: cell-b
waves: [[pilot], [cell-a], [cell-b]]
"""


@pytest.fixture(scope="module")
def waves_page(sandbox, tmp_path_factory) -> Path:
    """A wave release whose wave-2 target is rolled back: its summary's page."""
    folder = tmp_path_factory.mktemp("waves")
    (folder / "shop.yaml").write_text(WAVES)
    env = {**os.environ, SANDBOX_URL_ENV: sandbox.admin_url}
    done = subprocess.run(
        [str(BGKIT), "waves", "shop.yaml", "--output", "records/"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    (page,) = (folder / "records").glob("*/waves-shop-rel-b-*.html")
    return page


def test_a_wave_release_page_shows_its_targets_and_timeline_first(page, waves_page):
    page.goto(waves_page.as_uri())
    assert page.title() == "waves: shop release rel-b: rolled_back"
    table = page.locator("table").filter(has_text="cell-a").first
    rows = table.locator("tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).inner_text().split("\t")[:5] == ["1", "pilot", "us-east-1",
                                                       "alb_weighted", "✓ promoted"]  # fmt: skip
    assert "↩ rolled back" in rows.nth(1).inner_text()
    assert "not started" in rows.nth(2).inner_text()
    # the outcome symbols are drawn (not a missing-glyph box) in the table's font
    drawn = page.evaluate(DRAW, ["main td", ["✓", "↩", MISSING, ""]])
    assert drawn[2] != drawn[3]
    assert drawn[0] not in (drawn[2], drawn[3]) and drawn[1] not in (drawn[2], drawn[3])
    # each target that ran links its record's page, which opens
    links = rows.nth(0).locator("a", has_text="page")
    href = links.first.get_attribute("href")
    assert (waves_page.parent / href).is_file()
    # the timeline is an image the browser decoded, above the notebook's own cells
    image = page.locator("img").first
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 300
    notebook = page.get_by_text("The summary notebook")
    assert image.bounding_box()["y"] < notebook.bounding_box()["y"]
    assert table.bounding_box()["y"] < image.bounding_box()["y"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "waves-page.png"), full_page=True)
