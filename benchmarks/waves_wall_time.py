"""Wall time of a wave release in the sandbox against the sum of its targets' releases.

Runs `bgkit waves examples/waves/sandbox.yaml` (four targets in three waves, each its own
`bgkit run` process with its own embedded sandbox unless a shared one is up) into a temporary
folder, and reports from its summary record, every number a measured time:

* wall_s: the wave release, from its first target's start to its summary (the record's);
* bakes_s: the bakes between waves;
* releases_sum_s: the sum of the targets' releases (each record's started_at → finished_at);
* processes_sum_s: the sum of the targets' `bgkit run` processes (a kernel and a sandbox start
  before each release, the record written after it), as the runner measured them;
* per target: wave, outcome, release and process seconds.

    .venv/bin/python benchmarks/waves_wall_time.py [--manifest PATH]

Writes benchmarks/results/waves_wall_time.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bgkit import audit
from bgkit.record import from_notebook

ROOT = Path(__file__).resolve().parent.parent


def seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", default=str(ROOT / "examples" / "waves" / "sandbox.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgkit-waves-bench-") as folder:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "bgkit.cli", "waves", args.manifest, "--output", folder + "/"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        command_s = round(time.monotonic() - started, 2)
        (path,) = re.findall(r"^record: (.+\.ipynb)$", done.stdout, re.M)
        record = from_notebook(audit.read(path))
    targets = [
        {
            "name": t["name"],
            "wave": t["wave"],
            "outcome": t["outcome"],
            "release_s": seconds(t["started_at"], t["finished_at"]),
            "process_s": seconds(t.get("process_started_at"), t.get("process_finished_at")),
        }
        for t in record["targets"]
    ]
    result = {
        "manifest": str(Path(args.manifest).relative_to(ROOT)),
        "exit_code": done.returncode,
        "outcome": record["outcome"],
        "command_s": command_s,  # the whole command: its start, the waves, the summary written
        "wall_s": record["duration_seconds"],
        "bakes_s": round(
            sum(seconds(b["started_at"], b["finished_at"]) or 0 for b in record["bakes"]), 2
        ),
        "releases_sum_s": round(sum(t["release_s"] or 0 for t in targets), 2),
        "processes_sum_s": round(sum(t["process_s"] or 0 for t in targets), 2),
        "targets": targets,
        "measured_at": record["started_at"],
    }
    out = ROOT / "benchmarks" / "results" / "waves_wall_time.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
