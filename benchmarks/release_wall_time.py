"""Wall time of a sandbox release against its bake total, and the size of the record.

Runs runbooks/alb_weighted.ipynb through papermill (engine bgkit) with a 3-step plan and
5 s bakes, `--runs` times, and reports:

* end_to_end_s: papermill start to finish (kernel start, sandbox start, release, plots);
* release_s: the record's started_at → finished_at (validate → promote, inside the kernel);
* both minus the bake total (3 × 5 s), and the executed notebook's size in bytes.

    .venv/bin/python benchmarks/release_wall_time.py [--runs N]

Writes benchmarks/results/release_wall_time.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import papermill

from bgkit.record import load

ROOT = Path(__file__).resolve().parent.parent
PARAMETERS = {"plan": "linear", "step_percent": 25, "bake_seconds": 5}
BAKE_TOTAL = 3 * 5


def one_run(folder: Path, n: int) -> dict:
    out = folder / f"run-{n}.ipynb"
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
    record = load(out)
    assert record and record["outcome"] == "promoted", record and record["outcome"]
    return {
        "end_to_end_s": round(end_to_end, 2),
        "release_s": record["duration_seconds"],
        "end_to_end_over_bake_s": round(end_to_end - BAKE_TOTAL, 2),
        "release_over_bake_s": round(record["duration_seconds"] - BAKE_TOTAL, 2),
        "notebook_bytes": out.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(Path(tmp), n) for n in range(args.runs)]
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    result = {"parameters": PARAMETERS, "bake_total_s": BAKE_TOTAL, "runs": runs, "median": summary}
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
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
