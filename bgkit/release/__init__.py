"""The release loop, the same for every pattern, in rooms with one job each:

steps.py       the `Release` a runbook calls: preflight, (schema,) deploy, smoke test, shift, promote,
               rollback, finish, in that order; a failure after the first change puts blue back
traffic.py     how traffic moves, chosen once per release: bgkit's steps, an all-at-once switch
managed.py     ... or a managed service's own shift (CodeDeploy, ECS), watched and judged
evidence.py    what the judge sees: blue's baseline, bake windows read from CloudWatch, verdicts
recovery.py    the lock, checkpoints, and taking over a release that died mid-way
schema.py      the database side: green's migrations checked against blue before traffic
publishing.py  the record as the release ends: state read back, figure, tables
waits.py       waiting on the release's clock, with a live view for a person in Jupyter
smoke.py       the smoke test's requests      display.py   where the release shows itself
states.py      the states a release moves through
"""

from __future__ import annotations

from .states import MANAGED_WAIT_SECONDS
from .steps import Release

__all__ = ["MANAGED_WAIT_SECONDS", "Release"]
