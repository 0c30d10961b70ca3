"""A release in a process of its own, for tests/test_interruption.py to kill -9 at a chosen point.

    python tests/interrupted_release.py '<json: endpoint, runbook, namespace>'

The tests start it as a child of a multiprocessing fork server that has imported this module
(and so bgkit and boto3) once: `in_child` sends each line through a pipe instead of printing it.

It runs the same steps as a runbook's cells, printing each event as it happens, and marks the
points that events do not show exactly:
- `STEP preflight` once preflight is done: the target is locked, nothing changed yet;
- `CHECKPOINT <phase>` once the release's state is kept in its lock item (before the change
  that follows);
- `SET <percent>` once the pattern has changed the weights;
- `CALLED <method> #<n>` after the n-th return of a pattern's method named in the config's
  `mark_calls` (App Runner's UpdateService of a rollback, say).
Where its output matches the config's `kill_at` line, it holds, so that the kill lands right
there (and nowhere else does it wait). With `other_machine` in
the config, its lock item names another machine, as if the machine had died with it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from conftest import release_all  # this folder is the script's: sys.path[0]

import bgkit
import bgkit.lock
from bgkit.aws import AwsSession, release_agent
from bgkit.sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_REGION, SANDBOX_SECRET_ACCESS_KEY

HOLD = 60.0  # seconds a release waits at its kill line for the test to kill it (never reached)


class Printer:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def text(self, text: str) -> None:
        self.say(text)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def main() -> None:
    run(json.loads(sys.argv[1]), lambda text: print(text, flush=True))


def in_child(config: dict[str, Any], lines: Connection) -> None:
    run(config, lines.send)


def run(config: dict[str, Any], send: Callable[[str], None]) -> None:
    kill_line = re.compile(config["kill_at"]) if config.get("kill_at") else None

    def say(text: str) -> None:
        """Send a line; at the kill line, hold: the test kills this process right there, before
        anything else happens (no pause anywhere else)."""
        send(text)
        if kill_line and kill_line.search(re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", text)):
            time.sleep(HOLD)

    if config.get("other_machine"):  # its lock says so: a holder no pid check can find gone
        bgkit.lock.machine_id = lambda: "another-machine/boot"
        bgkit.lock.holder_name = lambda: "other-host:4242"
    params = bgkit.validate_parameters(config["runbook"], config["namespace"])
    session = AwsSession(
        SANDBOX_REGION,
        endpoint_url=config["endpoint"],
        access_key_id=SANDBOX_ACCESS_KEY_ID,
        secret_access_key=SANDBOX_SECRET_ACCESS_KEY,
        agent=release_agent(config["runbook"]),
    )
    release = bgkit.Release(params, session, display=Printer(say))
    keep = release._checkpoint
    set_split = getattr(release.pattern, "set_split", None)  # managed patterns have none

    def checkpoint(phase: str, **fields) -> None:
        keep(phase, **fields)
        say(f"CHECKPOINT {phase} {fields.get('step', '')}".rstrip())

    def set_and_mark(green_percent: int):
        split = set_split(green_percent)
        say(f"SET {green_percent}")
        return split

    def marked(name: str):
        method, calls = getattr(release.pattern, name), []

        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            calls.append(name)
            say(f"CALLED {name} #{len(calls)}")
            return result

        return call

    def preflight():
        split = preflight_once()
        say("STEP preflight")  # the target is locked, nothing changed yet
        return split

    release._checkpoint = checkpoint
    preflight_once, release.preflight = release.preflight, preflight
    for name in config.get("mark_calls", ()):
        setattr(release.pattern, name, marked(name))
    if set_split is not None:
        release.pattern.set_split = set_and_mark
    record = release_all(release)
    say(f"OUTCOME {record['outcome']}")


if __name__ == "__main__":
    main()
