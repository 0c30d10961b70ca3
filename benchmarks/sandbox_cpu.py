"""CPU time of the sandbox itself: a scenario running for a while, its load generator, router,
services and control plane (moto) all in this process.

    .venv/bin/python benchmarks/sandbox_cpu.py [pattern] [seconds] [requests per second]

Prints the process CPU seconds per wall second with the scenario running (a share of one core)
and the CPU per request served. The test suite runs many scenarios at once on two cores, so this
is what bounds its wall time.
"""

from __future__ import annotations

import sys
import time

from bgkit.sandbox import Sandbox


def main() -> None:
    pattern = sys.argv[1] if len(sys.argv) > 1 else "alb_weighted"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0
    box = Sandbox().start()
    try:
        scenario = box.provision(pattern, request_rate=rate)
        time.sleep(3.0)  # past the scenario's start
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        box.release_scenario(scenario.id)
    finally:
        box.stop()
    print(
        f"{pattern} at {rate:g} requests/s for {wall:.1f} s: {cpu:.2f} CPU s, "
        f"{cpu / wall:.1%} of a core, {1000 * cpu / (wall * rate):.2f} ms CPU per request"
    )


if __name__ == "__main__":
    main()
