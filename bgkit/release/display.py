"""Where a release shows itself: the notebook's cells (IPython's display), or, at the
interpreter's exit, the process's own stderr. Tests pass their own object with these methods."""

from __future__ import annotations

import sys
from typing import Any

from ..jupyter import is_interactive
from ..record import RECORD_MIME


class IPythonDisplay:
    """Shows the record in the notebook. Tests pass their own object with the same methods."""

    def markdown(self, text: str) -> None:
        from IPython.display import Markdown, display

        display(Markdown(text))

    def text(self, text: str) -> None:
        print(text, flush=True)

    def table(self, frame: Any) -> None:
        from IPython.display import display

        # escaped: a reason such as "evidence 34 < 125" is text, not the start of an HTML tag
        display(frame.style.hide(axis="index").format(escape="html") if len(frame) else frame)

    def live(self, view: dict[str, Any]) -> Any:
        """A display of a release's progress that later views replace; None when no person
        watches (headless: papermill, CI), whose record has the events instead."""
        if not is_interactive():
            return None
        from ..progress import Live

        return Live(view)

    def widget(self, widget: Any) -> Any:
        """Show a widget; returns its display, for `replace`."""
        from IPython.display import display

        return display(widget, display_id=True)

    def replace(self, handle: Any, text: str) -> None:
        """Replace what a display shows (a widget no longer to be clicked) by Markdown text."""
        from IPython.display import Markdown

        handle.update(Markdown(text))

    def figure(self, figure: Any) -> None:
        from IPython.display import Image, display

        from ..plots import png

        display(Image(data=png(figure), format="png"))

    def record(self, record: dict[str, Any], to_json: Any) -> None:
        import json

        from IPython.display import display

        summary = f"bgkit record: release {record['release']} {record['outcome']}"
        display({RECORD_MIME: json.loads(to_json(record)), "text/plain": summary}, raw=True)


ipython_display = IPythonDisplay()  # a release's default; tests replace it


class AtExitDisplay:
    """What a release shows at its interpreter's exit: the kernel's channel to the notebook may
    be closed by then (a print to it would raise), so its lines go to the process's own stderr
    (the terminal of `bgkit run`, a Jupyter server's log) and the rest nowhere."""

    def text(self, text: str) -> None:
        print(text, file=sys.__stderr__, flush=True)

    def __getattr__(self, name: str) -> Any:  # markdown, table, figure, record: not shown
        return lambda *args, **kwargs: None
