"""A shared sandbox: one sandbox process that outlives runs, kernels and Jupyter sessions.

`bgkit sandbox up` starts this module as its own process, in its own session (a terminal's
Ctrl-C or a finished CI step does not reach it). It starts a `Sandbox` with its admin API and
writes a state file (pid, admin URL, AWS endpoint) under `state_dir()`. Runbooks with
`target=sandbox` find the file and attach to the running sandbox (`running()`), else start their
own as before. `bgkit sandbox down` sends SIGTERM: the process stops every scenario and server,
then removes the file. A file whose process is gone, or whose admin API answers for another
process, is stale and ignored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "BGKIT_STATE_DIR"
STATE_FILE = "sandbox.json"
LOG_FILE = "sandbox.log"


def state_dir() -> Path:
    """Where the shared sandbox's state and log live: $BGKIT_STATE_DIR, else ~/.cache/bgkit."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "bgkit"


def running() -> dict[str, Any] | None:
    """The running shared sandbox's state, or None (no file, or a stale one)."""
    path = state_dir() / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(state.get("pid", -1)):
        return None
    try:
        with urllib.request.urlopen(f"{state['admin_url']}/health", timeout=5) as response:
            health = json.loads(response.read())
    except (OSError, ValueError, KeyError):
        return None
    return state if health.get("pid") == state["pid"] else None


def up(timeout: float = 120.0) -> tuple[dict[str, Any], bool]:
    """Start the shared sandbox unless one runs. Returns (its state, whether it started now)."""
    state = running()
    if state is not None:
        return state, False
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).unlink(missing_ok=True)  # a stale file from a killed sandbox
    with open(folder / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bgkit.sandbox.shared"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C or hang-up
            env={**os.environ, STATE_DIR_ENV: str(folder)},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running()
        if state is not None and state["pid"] == process.pid:
            return state, True
        if process.poll() is not None:
            raise RuntimeError(
                f"the shared sandbox exited with status {process.returncode} while starting; "
                f"see {folder / LOG_FILE}"
            )
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(
        f"the shared sandbox did not start in {timeout:g} s; see {folder / LOG_FILE}"
    )


def down(timeout: float = 60.0) -> dict[str, Any] | None:
    """Stop the shared sandbox. Returns the state of the one stopped, or None if none ran."""
    state = running()
    if state is None:
        (state_dir() / STATE_FILE).unlink(missing_ok=True)
        return None
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # its servers are threads: they end with it
            break
        time.sleep(0.2)
    (state_dir() / STATE_FILE).unlink(missing_ok=True)
    return state


def serve() -> None:
    """The shared sandbox process: start, publish the state file, wait for SIGTERM, stop."""
    from . import Sandbox

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = Sandbox().start()
    path = state_dir() / STATE_FILE
    try:
        admin_url = sandbox.serve_admin()
        state = {
            "pid": os.getpid(),
            "admin_url": admin_url,
            "endpoint_url": sandbox.endpoint_url,
            "region": sandbox.region,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(path)  # readers never see half a file
        print(f"bgkit shared sandbox {state}", flush=True)
        stop.wait()
    finally:
        if _pid_in(path) == os.getpid():  # never another sandbox's file
            path.unlink(missing_ok=True)
        sandbox.stop()
        print("bgkit shared sandbox stopped", flush=True)


def _pid_in(path: Path) -> int | None:
    try:
        return json.loads(path.read_text()).get("pid")
    except (OSError, ValueError):
        return None  # no file, or not one of ours


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False  # not our child: only the signal check can tell


def _alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if _reaped(pid):  # our own child that has exited (a test's `up`, then `down`)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, but the health check will not match
    return True


if __name__ == "__main__":
    serve()
