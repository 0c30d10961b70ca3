"""kill -9 every managed runbook (the service shifts traffic by its own configuration) at each
point of its release, as test_interruption_matrix.py does for the self-driven ones: before the
first change, as the deployment is created, while green waits for its smoke test, while the
service shifts, during the promotion and during a rollback. The next release stops the dead
one's deployment with rollback; all traffic is back on blue and nothing is in flight.
"""

from __future__ import annotations

import pytest
from test_interruption_matrix import (
    BEFORE_ANY_CHANGE,
    PROMOTION_STATE_KEPT,
    ROLLING_BACK,
    Runbook,
    cases,
    kill_then_release_again,
)

POINTS = (
    BEFORE_ANY_CHANGE,
    # the state is kept, CreateDeployment (UpdateService) not yet called
    ("creating-the-deployment", r"^CHECKPOINT deploying", "while deploying green"),
    # the deployment exists, its id not yet kept: the next release finds it by its description
    ("deployment-created", r"^CALLED start_deployment #1", "while deploying green"),
    ("waiting-for-its-smoke-test", r"green is deployed and waits for the smoke test",
     "after green was deployed"),
    ("service-shifting", r"^the deployment shifted green to", "while traffic shifted"),
    PROMOTION_STATE_KEPT,
    ROLLING_BACK,
)  # fmt: skip

RUNBOOKS = [
    Runbook(
        "lambda_codedeploy",
        POINTS,
        scenario={"minute_seconds": 1.0},
        parameters={"deployment_config_name": "CodeDeployDefault.LambdaCanary10Percent5Minutes"},
        mark_calls=("start_deployment",),
    ),
    Runbook(
        "ecs_codedeploy",
        POINTS,
        scenario={"minute_seconds": 1.0},
        parameters={"deployment_config_name": "CodeDeployDefault.ECSCanary10Percent5Minutes"},
        mark_calls=("start_deployment",),
    ),
]


@pytest.mark.parametrize(("runbook", "point", "line", "where"), cases(RUNBOOKS))
def test_a_killed_managed_release_leaves_blue_serving_after_the_next_release(
    sandbox, runbook, point, line, where
):
    kill_then_release_again(sandbox, runbook, point, line, where)
