"""Live progress: one display per step, updated in place once a second while a person watches
(a display whose `live` returns a handle, as IPython's does in a notebook); nothing for a
headless run, whose bakes stay one sleep each. The fake pattern and clock of test_release.py."""

from __future__ import annotations

import re

from test_release import Quiet, bad_green, healthy, make_release, run

from bgkit import progress


class Watched(Quiet):
    """A display as a person's notebook has it: each live display keeps every view it showed."""

    def __init__(self) -> None:
        self.lives: list[list[dict]] = []

    def live(self, view):
        views = [view]
        self.lives.append(views)

        class Handle:
            def update(self, later):
                views.append(later)

        return Handle()


def left(view) -> int | None:
    for label, value in view["rows"]:
        if label == "judged window (UTC)" and "s left" in value:
            return int(re.search(r"(\d+) s left", value).group(1))
    return None


def test_a_watched_bake_updates_one_display_a_second_with_step_time_left_and_evidence():
    release, _, _ = make_release(healthy, plan="25,50")
    watched = release._display = Watched()
    record = run(release)
    assert record["outcome"] == "promoted"
    (shift,) = watched.lives  # one display per step that waited: here the shift
    assert shift[0]["headline"].startswith(f"alb_weighted · {release.params.release} · step 1")
    headlines = [v["headline"] for v in shift]
    assert any("step 1 of 2: green 25%" in h for h in headlines)
    assert any("step 2 of 2: green 50%" in h for h in headlines)
    assert headlines[-1].endswith("shift ended; the release is shifted")
    # a 60 s bake counts down a second at a time
    countdown = [left(v) for v in shift if "step 1 of 2" in v["headline"] and left(v)]
    assert countdown == list(range(60, 0, -1))
    # during step 2: where traffic is, step 1's verdict, each metric against its boundary
    during = next(v for v in shift if "step 2 of 2" in v["headline"] and left(v))
    rows = dict(during["rows"])
    assert rows["traffic (as last read back)"] == "blue 50%, green 50%"
    assert rows["last verdict"].startswith("step 1: CONTINUE: no evidence that green is worse")
    assert re.fullmatch(
        r"5xx [\d.e+-]+ \(rolls back at 125\)"
        r"( · slower than 20 ms \(blue's p(90|99|99\.9)\) [\d.e+-]+ \(rolls back at \d+\)){3}",
        rows["evidence that green is worse"],
    )


def test_a_rollback_ends_the_display_saying_so():
    release, _, _ = make_release(bad_green, plan="25,50")
    watched = release._display = Watched()
    run(release)
    (shift,) = watched.lives
    assert shift[-1]["headline"].endswith("shift ended; the release is rolled_back")
    assert dict(shift[-1]["rows"])["last verdict"].startswith("step 1: ROLLBACK")


def test_headless_asks_once_per_step_and_shows_nothing():
    class Headless(Quiet):
        asked = 0

        def live(self, view):  # as IPython's display when no person watches
            Headless.asked += 1

    release, _, _ = make_release(healthy, plan="25,50")
    release._display = Headless()
    assert run(release)["outcome"] == "promoted"
    assert Headless.asked == 1  # the shift; not once per second of its 120 s of bakes


def test_a_failing_display_is_recorded_and_never_stops_the_release():
    class Broken(Quiet):
        def live(self, view):
            raise RuntimeError("comm closed")

    release, _, _ = make_release(healthy, plan="50")
    release._display = Broken()
    record = run(release)
    assert record["outcome"] == "promoted"
    assert any(
        "no live progress: RuntimeError: comm closed" in e["message"] for e in record["events"]
    )


def test_the_view_renders_as_text_and_escaped_html():
    view = {"headline": "shift · step 1 of 2", "rows": [("last verdict", "evidence 3 < 125")]}
    assert progress.text(view) == "shift · step 1 of 2\n  last verdict  evidence 3 < 125"
    assert "evidence 3 &lt; 125" in progress.page(view)
