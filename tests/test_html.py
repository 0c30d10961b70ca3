"""The reviewer's page (bgkit.html) of real records: a promoted release, a failed run, a plan.

The runs start together: the promoted one (an embedded sandbox, ~30-60 s), one refused at its
first step (a bad parameter: exit 4 in seconds, no record, papermill's failing cell marked),
and a plan (`bgkit plan`: read-only, ~10 s).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from bgkit.html import render

BGKIT = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "bgkit"
RUNS = {  # name: (command and parameters, expected exit code)
    "promoted": (["run", "-p", "plan", "all_at_once"], 0),
    "failed": (["run", "-p", "step_percent", "500"], 4),
    "planned": (["plan", "-p", "plan", "canary"], 0),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("records")
    started = {}
    for name, (parameters, _) in RUNS.items():
        out = folder / f"{name}.ipynb"
        command, *parameters = parameters
        command = [
            str(BGKIT),
            command,
            "alb_weighted",
            *parameters,
            "--quiet",
            "--output",
            str(out),
        ]
        started[name] = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, text=True)
    for name, process in started.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == RUNS[name][1], output
    return {name: folder / f"{name}.ipynb" for name in RUNS}


@pytest.fixture(scope="module")
def pages(records) -> dict[str, str]:
    return {name: render(path).read_text(encoding="utf-8") for name, path in records.items()}


def release_of(path: Path) -> str:
    return nbformat.read(str(path), as_version=4).metadata.papermill.parameters["release"]


def test_the_summary_and_plots_come_before_the_steps(pages):
    page = pages["promoted"]
    first_code = page.index('<details class="bgkit-code">')
    assert page.index("Release summary") < first_code
    assert page.index('src="data:image/png;base64,') < first_code
    assert first_code < page.index("1. Validate parameters")


def test_the_plots_are_embedded(pages):
    assert re.search(
        r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', pages["promoted"]
    )


def test_every_code_cell_is_folded(pages, records):
    page = pages["promoted"]
    code_cells = [
        c for c in nbformat.read(str(records["promoted"]), 4).cells if c.cell_type == "code"
    ]
    assert page.count('<details class="bgkit-code"><summary>code</summary>') == len(code_cells)
    body = page.split("</head>", 1)[1]  # the inlined CSS names every class
    unfolded = re.sub(r"<details.*?</details>", "", body, flags=re.S)
    assert "jp-InputArea-editor" not in unfolded
    assert 'class="highlight' not in unfolded


def test_the_page_fetches_nothing(pages):
    for page in pages.values():
        assert "<script" not in page  # no require.js, MathJax, Mermaid or widget loaders
        assert not re.search(r"<link[^>]*href=", page)
        assert not re.search(r'src="(https?:)?//', page)
        assert "@import" not in page


def test_the_record_json_is_not_dumped(pages):
    assert "application/vnd.bgkit.record+json" not in pages["promoted"]
    assert '"duration_seconds"' not in pages["promoted"]


def test_the_title_names_runbook_release_and_outcome(pages, records):
    release = release_of(records["promoted"])
    assert f"<title>alb_weighted release {release}: promoted</title>" in pages["promoted"]
    assert "bgkit-banner" not in pages["promoted"].split("</head>", 1)[1]


def test_a_failed_run_without_record_shows_a_banner(pages, records):
    page = pages["failed"]
    release = release_of(records["failed"])
    assert f"<title>alb_weighted release {release}: no record</title>" in page
    banner = re.search(r'<div class="bgkit-banner bgkit-failed">(.*?)</div>', page, re.S)
    assert banner and "No release record" in banner.group(1)
    assert "ParameterError: step_percent" in banner.group(1)
    assert 'href="#papermill-error-cell"' in banner.group(1)
    assert "Release summary" not in page


def test_render_takes_a_notebook_node_and_leaves_it_unchanged(records, tmp_path):
    nb = nbformat.read(str(records["promoted"]), as_version=4)
    before = nbformat.writes(nb)
    page = render(nb, tmp_path / "page.html")
    assert page == tmp_path / "page.html" and "Release summary" in page.read_text()
    assert nbformat.writes(nb) == before


def test_a_plan_reads_as_a_change_ticket(pages, records):
    page, release = pages["planned"], release_of(records["planned"])
    assert f"<title>plan: alb_weighted release {release}</title>" in page
    front = page.split("The run, step by step", 1)[0]  # before the notebook's own cells
    # the calls as a table: operation, IAM action, what it sets
    for shown in (
        "Elastic Load Balancing v2 ModifyListener",
        "elasticloadbalancing:ModifyListener",
        "forward weights blue 90 / green 10",
        "forward weights blue 0 / green 100",
    ):
        assert re.search(rf"<td [^>]*>{re.escape(shown)}</td>", front), shown
    assert "<strong>Rollback</strong> from each point" in front
    assert front.count("forward weights blue 100 / green 0") == 2  # from the step, from promote
    assert "<strong>Duration</strong>" in front and "step 1: green 10%" in front
    assert "Not known until the release runs" in front
    assert "bgkit-banner" not in page.split("</head>", 1)[1]


def test_no_symbol_on_a_page_needs_an_emoji_font(pages):
    """An emoji (a checked box, a cross mark) is an empty box where no emoji font is installed."""
    for name, page in pages.items():
        emoji = [
            c for c in page if ord(c) >= 0x1F000 or (0x2600 <= ord(c) <= 0x27BF and c not in "✓✗")
        ]
        assert not emoji and "\ufe0f" not in page, (name, emoji[:5])
    assert "✓ promoted" in pages["promoted"]
