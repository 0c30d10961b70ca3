"""Wall time of a sandbox release against its bake total, where the time goes, and the size of
the record.

Runs runbooks/alb_weighted.ipynb through papermill (engine bgkit) with a 3-step plan and
5 s bakes, `--runs` times, and reports:

* end_to_end_s: papermill start to finish (kernel start, sandbox start, release, plots);
* release_s: the record's started_at → finished_at (validate → promote, inside the kernel);
* both minus the bake total (3 × 5 s), and the executed notebook's size in bytes;
* phases: where the time goes, each measured from what the executed notebook holds (papermill's
  start and end times of the run and of each cell, the record's events and verdicts with their
  times and windows) and from this process's clock around the papermill call. Nothing is
  estimated: every phase is the difference of two recorded times. The phases of the release
  add up to release_s, and all phases to end_to_end_s (papermill's own rounding aside).
  Per step: `bake` is the bake as configured (bake_seconds, once per judged window),
  `boundary_wait` the rest of the time from the shift to the end of its last window (waiting
  for the window's end past the bake: alignment and the time the shift's traffic needed),
  `lag_and_reads` from the window's end to the verdict (the metric lag the release waits for,
  then its last CloudWatch reads), and `to_next` from the verdict to the next shift (or to
  the promotion: the gate and the promote call).
* targets (issue 19, part 3): release at most 5 s over its bakes, end to end at most 12 s
  over: met or missed, and by how much (on the median run).

    .venv/bin/python benchmarks/release_wall_time.py [--runs N]     (5 by default)

Writes benchmarks/results/release_wall_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import papermill

from bgkit.record import load

ROOT = Path(__file__).resolve().parent.parent
PARAMETERS = {"plan": "linear", "step_percent": 25, "bake_seconds": 5}
BAKE_SECONDS = 5
BAKE_TOTAL = 3 * BAKE_SECONDS
TARGETS = {"release_over_bake_s": 5.0, "end_to_end_over_bake_s": 12.0}
# The runbook's code cells, by what they start with, and the phase each one is.
CELLS = {
    "import bgkit": "validate_cell",
    "connection = bgkit.connect": "connect_cell",
    "release.preflight()": "preflight_cell",
    "release.check_schema()": "schema_cell",
    "release.deploy()": "deploy_cell",
    "release.smoke_test()": "smoke_cell",
    "release.shift()": "shift_cell",
    "await bgkit.promotion_gate": "gate_cell",
    "release.promote()": "promote_cell",
    "record = release.finish()": "finish_cell",
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def cell_times(nb: dict) -> dict[str, tuple[datetime, datetime]]:
    times = {}
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        for prefix, name in CELLS.items():
            if cell["cell_type"] == "code" and source.startswith(prefix):
                meta = cell["metadata"]["papermill"]
                times[name] = (at(meta["start_time"]), at(meta["end_time"]))
    return times


def phases(nb: dict, record: dict, called: datetime, returned: datetime) -> dict:
    """Where the time went, from the executed notebook and the record (see the docstring)."""
    run = nb["metadata"]["papermill"]
    cells = cell_times(nb)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first_cell = at(code[0]["metadata"]["papermill"]["start_time"])
    last_cell = at(code[-1]["metadata"]["papermill"]["end_time"])
    started, finished = at(record["started_at"]), at(record["finished_at"])
    events = record["events"]

    def event(kind: str, text: str = "") -> datetime:
        return next(at(e["at"]) for e in events if e["kind"] == kind and text in e["message"])

    baseline = event("judge", "blue measured")
    smoke = event("smoke")
    # the baseline's window, as the record says it: "blue measured ..., HH:MM:SS–HH:MM:SS: ..."
    window_text = next(
        e["message"] for e in events if e["kind"] == "judge" and "blue measured" in e["message"]
    )
    window_end_clock = window_text.split("–", 1)[1][:8]
    window_end = datetime.combine(
        baseline.date(), datetime.strptime(window_end_clock, "%H:%M:%S").time(), UTC
    )
    steps = []
    shifts = [e for e in events if e["kind"] == "shift" and "step" in e]
    promote = event("promote")
    for n, shift in enumerate(shifts):
        shifted = at(shift["at"])
        verdicts = [v for v in record["verdicts"] if v["step"] == shift["step"]]
        last = verdicts[-1]
        window_end_at, verdict_at = at(last["window"]["end"]), at(last["at"])
        following = at(shifts[n + 1]["at"]) if n + 1 < len(shifts) else promote
        bake = BAKE_SECONDS * len(verdicts)
        steps.append({
            "step": shift["step"],
            "windows": len(verdicts),
            "bake_s": bake,
            "boundary_wait_s": round(seconds(shifted, window_end_at) - bake, 3),
            "lag_and_reads_s": seconds(window_end_at, verdict_at),
            "to_next_s": seconds(verdict_at, following),
            "judged": [v["window"]["start"][11:19] + "–" + v["window"]["end"][11:19] for v in verdicts],
        })  # fmt: skip
    release = {
        "preflight_s": seconds(started, cells["schema_cell"][0]),
        "schema_s": seconds(cells["schema_cell"][0], cells["deploy_cell"][0]),
        # the deploy cell of alb_weighted: blue's baseline (green exists already)
        "baseline_to_window_end_s": seconds(cells["deploy_cell"][0], window_end),
        "baseline_lag_and_reads_s": seconds(window_end, baseline),
        "deploy_rest_s": seconds(baseline, cells["deploy_cell"][1]),
        "smoke_s": seconds(cells["deploy_cell"][1], smoke),
        "to_first_shift_s": seconds(smoke, at(shifts[0]["at"])),
        "steps_s": seconds(at(shifts[0]["at"]), promote),
        "promote_to_finished_s": seconds(promote, finished),
    }
    end_to_end = {
        "papermill_before_run_s": seconds(called, at(run["start_time"])),
        "kernel_start_s": seconds(at(run["start_time"]), first_cell),
        "parameters_and_validate_s": seconds(first_cell, cells["connect_cell"][0]),
        "connect_sandbox_start_s": seconds(cells["connect_cell"][0], started),
        "release_s": record["duration_seconds"],
        "after_release_to_finish_cell_s": seconds(finished, cells["finish_cell"][0]),
        "finish_cell_record_and_plots_s": seconds(*cells["finish_cell"]),
        "kernel_shutdown_s": seconds(last_cell, at(run["end_time"])),
        "papermill_after_run_s": seconds(at(run["end_time"]), returned),
    }
    return {"end_to_end": end_to_end, "release": release, "steps": steps}


def start_at_phase(n: int, runs: int) -> float:
    """Start run n of `runs` n/runs of the way into a bake-aligned 5 s window (wall clock), and
    return that phase. Blue's baseline is its last whole 5 s window before green gets traffic,
    and the sandbox's blue starts serving just before the record does: the release first waits
    for the end of the window it started in, 0 to 5 s by where that is. Runs one after another
    each last about a multiple of 5 s, so without this they would all start at one phase, and
    the median would be that phase's, not the typical one."""
    bake = PARAMETERS["bake_seconds"]
    phase = bake * n / runs
    time.sleep((phase - time.time() % bake) % bake)
    return round(phase, 2)


def one_run(folder: Path, n: int) -> dict:
    out = folder / f"run-{n}.ipynb"
    called = datetime.now(UTC)
    started = time.perf_counter()
    papermill.execute_notebook(
        str(ROOT / "runbooks" / "alb_weighted.ipynb"),
        str(out),
        parameters=PARAMETERS,
        engine_name="bgkit",
        progress_bar=False,
        cwd=str(ROOT / "runbooks"),
    )
    end_to_end = time.perf_counter() - started
    returned = datetime.now(UTC)
    record = load(out)
    assert record and record["outcome"] == "promoted", record and record["outcome"]
    nb = json.loads(out.read_text())
    return {
        "end_to_end_s": round(end_to_end, 2),
        "release_s": record["duration_seconds"],
        "end_to_end_over_bake_s": round(end_to_end - BAKE_TOTAL, 2),
        "release_over_bake_s": round(record["duration_seconds"] - BAKE_TOTAL, 2),
        "notebook_bytes": out.stat().st_size,
        "phases": phases(nb, record, called, returned),
    }


def median_phases(runs: list[dict]) -> dict:
    """Each phase's median over the runs (so the medians need not add up exactly)."""
    first = runs[0]["phases"]
    result: dict = {}
    for group in ("end_to_end", "release"):
        result[group] = {
            k: round(statistics.median(r["phases"][group][k] for r in runs), 3)
            for k in first[group]
        }
    result["steps"] = [
        {
            k: round(statistics.median(r["phases"]["steps"][i][k] for r in runs), 3)
            for k in ("bake_s", "boundary_wait_s", "lag_and_reads_s", "to_next_s")
        }
        for i in range(len(first["steps"]))
    ]
    return result


def targets(summary: dict) -> dict:
    return {
        key: {
            "target_s": limit,
            "measured_s": summary[key],
            "met": summary[key] <= limit,
            "by_s": round(limit - summary[key], 2),  # positive: under the target
        }
        for key, limit in TARGETS.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)  # the baseline wait varies from 0 to 5 s
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for n in range(args.runs):
            phase = start_at_phase(n, args.runs)
            runs.append({**one_run(Path(tmp), n), "start_phase_s": phase})
    keys = [k for k in runs[0] if k not in ("phases", "start_phase_s")]
    summary = {key: statistics.median(r[key] for r in runs) for key in keys}
    result = {
        "parameters": PARAMETERS,
        "bake_total_s": BAKE_TOTAL,
        "conditions": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "runs": runs,
        "median": summary,
        "median_phases": median_phases(runs),
        "targets": targets(summary),
    }
    out = ROOT / "benchmarks" / "results" / "release_wall_time.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{'run':>4} {'end-to-end s':>13} {'over bake':>10} {'release s':>10} {'over bake':>10} {'bytes':>8}"
    )
    for n, r in enumerate(runs):
        print(
            f"{n:>4} {r['end_to_end_s']:>13} {r['end_to_end_over_bake_s']:>10} {r['release_s']:>10} "
            f"{r['release_over_bake_s']:>10} {r['notebook_bytes']:>8}"
        )
    print(f"median: {summary}")
    print("\nphases (s), per run:")
    for group in ("end_to_end", "release"):
        names = list(runs[0]["phases"][group])
        for name in names:
            values = [r["phases"][group][name] for r in runs]
            print(f"  {group:>10} {name:<32} " + " ".join(f"{v:>7.2f}" for v in values))
    for i, step in enumerate(runs[0]["phases"]["steps"]):
        for name in ("bake_s", "boundary_wait_s", "lag_and_reads_s", "to_next_s"):
            values = [r["phases"]["steps"][i][name] for r in runs]
            print(
                f"  {'step ' + str(step['step']):>10} {name:<32} "
                + " ".join(f"{v:>7.2f}" for v in values)
            )
        print(f"  {'':>10} {'judged windows':<32} " + "  ".join(
            ",".join(r["phases"]["steps"][i]["judged"]) for r in runs
        ))  # fmt: skip
    for key, t in result["targets"].items():
        print(
            f"target {key} <= {t['target_s']:g}: measured {t['measured_s']:g}, "
            f"{'met' if t['met'] else 'missed'} by {abs(t['by_s']):g} s"
        )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
