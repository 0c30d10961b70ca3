"""The reviewer's page of a record: one HTML file that reads offline.

`ReviewerLayout` rearranges a copy of the executed notebook before nbconvert's HTMLExporter
renders it: a title naming runbook, release and outcome (a plan's: "plan: ...", its calls,
rollbacks and duration first, as a change ticket; a wave release's summary: "waves: <name>
release ...", its targets' table and timeline first); a banner unless the release was promoted
(rolled back, failed, or no record at all); the release summary and the plots (outputs of the
record cell); then the whole run, step by step, each cell's code folded in a <details>.
The machine-readable record output is left out: it is in the notebook's metadata["bgkit"].

TEMPLATE extends JupyterLab's and empties the blocks that fetch scripts from a CDN (require.js,
MathJax, Mermaid, widgets); its CSS is inlined and plots are data: URIs, so the page loads nothing.
"""

from __future__ import annotations

import copy
from html import escape
from pathlib import Path
from typing import Any

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor

from .record import RECORD_MIME, from_notebook

ERROR_TAG = "papermill-error-cell-tag"  # papermill's marker cells, one with #papermill-error-cell

TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block extra_css %}<style>
main { max-width: 1100px; margin: 0 auto; padding: 1em; }
.bgkit-banner { padding: 0.8em 1.2em; margin: 1em 0; border-radius: 6px; font-size: 1.15em; }
.bgkit-failed { background: #fdecea; border: 2px solid #c62828; color: #7f0000; }
.bgkit-rolled_back { background: #fff6db; border: 2px solid #d49b00; color: #5c4300; }
details.bgkit-code > summary { cursor: pointer; color: #757575; font-size: 0.85em; }
</style>{% endblock extra_css %}
{% block input_group %}{% if cell.source %}<details class="bgkit-code"><summary>code</summary>
{{ super() }}</details>{% endif %}{% endblock input_group %}
"""


class ReviewerLayout(Preprocessor):
    """Title, banner, summary and plots first; then every cell of the run, code folded."""

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        record = from_notebook(nb)
        run = nb.metadata.get("papermill", {})
        runbook = (record or {}).get("runbook") or Path(run.get("input_path") or "notebook").stem
        release = (record or {}).get("release") or run.get("parameters", {}).get("release", "")
        outcome = (record or {}).get("outcome") or "no record"
        waves = (record or {}).get("kind") == "waves"  # a wave release's summary (bgkit.waves)
        nb.metadata["title"] = (
            f"plan: {runbook} release {release}"  # a change ticket, for approval
            if outcome == "planned"
            else f"waves: {(record or {}).get('name')} release {release}: {outcome}"
            if waves
            else f"{runbook} release {release}: {outcome}"
        )
        head = f"<h1>{escape(nb.metadata['title'])}</h1>\n{_banner(nb, record)}"
        front = [nbformat.v4.new_markdown_cell(head)]
        record_cell = next((c for c in reversed(nb.cells) if _record_outputs(c)), None)
        if record_cell is not None:
            shown, kept = _split(record_cell.outputs, whole=outcome == "planned" or waves)
            record_cell.outputs = kept
            front.append(nbformat.v4.new_code_cell(outputs=shown))
        rest = "The summary notebook" if waves else "The run, step by step"
        front.append(nbformat.v4.new_markdown_cell(f"---\n\n# {rest}"))
        nb.cells = front + nb.cells
        return nb, resources


def _record_outputs(cell: Any) -> bool:
    return any(RECORD_MIME in out.get("data", {}) for out in cell.get("outputs", []))


def _split(outputs: list[Any], *, whole: bool = False) -> tuple[list[Any], list[Any]]:
    """(summary, and each plot with the heading just before it; the rest but the record JSON).
    `whole`: a plan's, all of it first (summary, calls, rollbacks, duration, judge)."""
    shown, kept = [], []
    for i, out in enumerate(outputs):
        data = out.get("data", {})
        following = outputs[i + 1].get("data", {}) if i + 1 < len(outputs) else {}
        if RECORD_MIME in data:
            continue
        if whole:
            shown.append(out)
            continue
        summary = str(data.get("text/markdown", "")).startswith("## Release summary")
        heading = "text/markdown" in data and any(k.startswith("image/") for k in following)
        image = any(k.startswith("image/") for k in data)
        (shown if summary or heading or image else kept).append(out)
    return shown, kept


def _banner(nb: Any, record: dict[str, Any] | None) -> str:
    errors = [
        f"{out.ename}: {out.evalue}"
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    marked = any(ERROR_TAG in c.metadata.get("tags", []) for c in nb.cells)
    where = ' (<a href="#papermill-error-cell">the failing cell</a>)' if marked else ""
    error = f"<br>Error{where}: <code>{escape(errors[0])}</code>" if errors else ""
    if record is None:
        text = "<b>No release record</b>: the run stopped before recording its outcome."
    elif record.get("outcome") in ("failed", "rolled_back") or errors:
        outcome = record.get("outcome") or "unfinished"
        text = f"<b>{escape(outcome.replace('_', ' ').capitalize())}</b>: "
        text += escape(str(record.get("reason") or ""))
    else:
        return ""
    kind = "rolled_back" if record and record.get("outcome") == "rolled_back" else "failed"
    return f'<div class="bgkit-banner bgkit-{kind}">{text}{error}</div>'


def exporter() -> HTMLExporter:
    html = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"bgkit.html.j2": TEMPLATE})],
        template_file="bgkit.html.j2",
        exclude_input_prompt=True,  # In [n] / Out[n]: noise for a reviewer, and they misalign
        exclude_output_prompt=True,
    )
    html.register_preprocessor(ReviewerLayout(), enabled=True)
    return html


def render_html(notebook: Any) -> str:
    """The reviewer's page of an executed runbook (a NotebookNode, left unchanged), as HTML."""
    body, _ = exporter().from_notebook_node(copy.deepcopy(notebook))
    return body


def render(notebook: Any, out: Path | str | None = None) -> Path:
    """Write the page of `notebook` (a path or NotebookNode) to `out`, by default beside it."""
    if isinstance(notebook, str | Path):
        if out is None:
            out = Path(notebook).with_suffix(".html")
        notebook = nbformat.read(str(notebook), as_version=4)
    if out is None:
        raise ValueError("render: `out` is needed when the notebook is not a file")
    path = Path(out)
    path.write_text(render_html(notebook), encoding="utf-8")
    return path
