"""Live progress of a release for the person watching it in Jupyter: one display, updated in
place while a step waits (a bake, the metric lag, a managed service's shift), instead of a line
a second. Headless runs show none of it: their record has the events and verdicts.

A view is plain data made by the release (bgkit.release.waits, `_progress_view`):
``{"headline": "step 2 of 3: green 50%", "rows": [(label, value), ...]}``.
"""

from __future__ import annotations

import html
from typing import Any

View = dict[str, Any]


def text(view: View) -> str:
    width = max((len(label) for label, _ in view["rows"]), default=0)
    lines = [view["headline"]] + [
        f"  {label.ljust(width)}  {value}" for label, value in view["rows"]
    ]
    return "\n".join(lines)


def page(view: View) -> str:
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
        f"<td style='text-align:left'>{html.escape(str(value))}</td></tr>"
        for label, value in view["rows"]
    )
    return (
        f"<div class='bgkit-progress'><b>{html.escape(view['headline'])}</b>"
        f"<table>{rows}</table></div>"
    )


class Shown:
    """What IPython displays for a view: HTML in a notebook, text elsewhere."""

    def __init__(self, view: View) -> None:
        self.view = view

    def _repr_html_(self) -> str:
        return page(self.view)

    def __repr__(self) -> str:
        return text(self.view)


class Live:
    """A display of a view that later views replace (IPython's display handle)."""

    def __init__(self, view: View) -> None:
        from IPython.display import display

        self._handle = display(Shown(view), display_id=True)

    def update(self, view: View) -> None:
        self._handle.update(Shown(view))
