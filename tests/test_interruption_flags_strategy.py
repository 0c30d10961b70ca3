"""kill -9 the feature_flag runbook at each point of a release that AppConfig's deployment
strategy moves (the managed points of test_interruption_managed.py); the next release stops the
deployment (or reverts it once complete) and deploys the version that was live before: `off` for
everyone, nothing in flight, and a fresh release's preflight passes."""

from __future__ import annotations

import pytest
from test_interruption_managed import POINTS
from test_interruption_matrix import Runbook, cases, kill_then_release_again

STRATEGY = [
    Runbook(
        "feature_flag",
        POINTS,
        # a strategy of 6 s (one AppConfig minute) shifts slowly enough, at 30 requests a second,
        # for a verdict while both variants serve: the promotion point needs one
        scenario={"minute_seconds": 6.0, "request_rate": 30},
        parameters={"plan": "AppConfig.Linear50PercentEvery30Seconds"},
        mark_calls=("start_deployment",),
    ),
]


@pytest.mark.parametrize(
    ("runbook", "point", "line", "where"),
    [pytest.param(*p.values, id=f"strategy-{p.id}") for p in cases(STRATEGY)],
)
def test_a_killed_flag_release_under_appconfigs_strategy_leaves_the_flag_off(
    sandbox, runbook, point, line, where
):
    kill_then_release_again(sandbox, runbook, point, line, where)
