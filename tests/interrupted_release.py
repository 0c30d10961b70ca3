"""A release in a process of its own, for tests/test_interruption.py to kill -9 at a chosen point.

    python tests/interrupted_release.py '<json: endpoint, runbook, namespace>'

It runs the same steps as a runbook's cells, printing each event as it happens, and marks the
points that events do not show exactly:
- `STEP preflight` once preflight is done: the target is locked, nothing changed yet;
- `CHECKPOINT <phase>` once the release's state is kept in its lock item (before the change
  that follows);
- `SET <percent>` once the pattern has changed the weights;
- `CALLED <method> #<n>` after the n-th return of a pattern's method named in the config's
  `mark_calls` (App Runner's UpdateService of a rollback, say).
After each mark it waits a moment, so that a kill lands right there. With `other_machine` in
the config, its lock item names another machine, as if the machine had died with it.
"""

from __future__ import annotations

import json
import sys
import time

from conftest import release_all  # this folder is the script's: sys.path[0]

import bgkit
import bgkit.lock
from bgkit.aws import AwsSession, release_agent
from bgkit.sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_REGION, SANDBOX_SECRET_ACCESS_KEY

PAUSE = 0.5


class Printer:
    def text(self, text: str) -> None:
        print(text, flush=True)

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def main() -> None:
    config = json.loads(sys.argv[1])
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
    release = bgkit.Release(params, session, display=Printer())
    keep = release._checkpoint
    set_split = getattr(release.pattern, "set_split", None)  # managed patterns have none

    def checkpoint(phase: str, **fields) -> None:
        keep(phase, **fields)
        print(f"CHECKPOINT {phase} {fields.get('step', '')}".rstrip(), flush=True)
        time.sleep(PAUSE)

    def set_and_mark(green_percent: int):
        split = set_split(green_percent)
        print(f"SET {green_percent}", flush=True)
        time.sleep(PAUSE)
        return split

    def marked(name: str):
        method, calls = getattr(release.pattern, name), []

        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            calls.append(name)
            print(f"CALLED {name} #{len(calls)}", flush=True)
            time.sleep(PAUSE)
            return result

        return call

    def preflight():
        split = preflight_once()
        print("STEP preflight", flush=True)  # the target is locked, nothing changed yet
        time.sleep(PAUSE)
        return split

    release._checkpoint = checkpoint
    preflight_once, release.preflight = release.preflight, preflight
    for name in config.get("mark_calls", ()):
        setattr(release.pattern, name, marked(name))
    if set_split is not None:
        release.pattern.set_split = set_and_mark
    record = release_all(release)
    print(f"OUTCOME {record['outcome']}", flush=True)


if __name__ == "__main__":
    main()
