"""kill -9 the feature_flag runbook at each point of its release, moved by bgkit's steps (AppConfig's
strategy: test_interruption_flags_strategy.py), as test_interruption_matrix.py does for the others:
the next release of the environment finds the dead one in its lock item, stops what is in
flight and deploys the version that was live before it; the flag is read back `off` for
everyone, nothing is in flight, and a fresh release's read-only preflight passes.
"""

from __future__ import annotations

import pytest
from test_interruption_matrix import (
    AT_25,
    AT_50,
    BEFORE_ANY_CHANGE,
    CREATING_GREEN,
    GREEN_DEPLOYED,
    PROMOTION_DONE,
    PROMOTION_STATE_KEPT,
    ROLLING_BACK,
    Runbook,
    cases,
    kill_then_release_again,
)

RUNBOOKS = [
    Runbook(
        "feature_flag",
        (
            BEFORE_ANY_CHANGE,
            CREATING_GREEN,
            GREEN_DEPLOYED,
            AT_25,
            AT_50,
            PROMOTION_STATE_KEPT,
            PROMOTION_DONE,
            ROLLING_BACK,
        ),
        parameters={"plan": "50"},
    ),
]


@pytest.mark.parametrize(("runbook", "point", "line", "where"), cases(RUNBOOKS))
def test_a_killed_flag_release_leaves_the_flag_off_after_the_next_release(
    sandbox, runbook, point, line, where
):
    kill_then_release_again(sandbox, runbook, point, line, where)
