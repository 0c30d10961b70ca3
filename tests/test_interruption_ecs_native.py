"""kill -9 ecs_native (ECS's own blue/green, no CodeDeploy) at each point of a release: see
test_interruption_managed.py, whose points these are (a file of its own, so that pytest-xdist
runs it beside that one)."""

from __future__ import annotations

import pytest
from test_interruption_managed import POINTS
from test_interruption_matrix import Runbook, cases, kill_then_release_again

RUNBOOKS = [
    Runbook(
        "ecs_native",  # canary: 10 % for 3 minutes, then all; blue kept 5 minutes after
        POINTS,
        scenario={"minute_seconds": 2.0, "plan": "canary"},
        mark_calls=("start_deployment",),
    ),
]


@pytest.mark.parametrize(("runbook", "point", "line", "where"), cases(RUNBOOKS))
def test_a_killed_ecs_native_release_leaves_blue_serving_after_the_next_release(
    sandbox, runbook, point, line, where
):
    kill_then_release_again(sandbox, runbook, point, line, where)
