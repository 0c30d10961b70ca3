"""kill -9 the runbooks that make green themselves, asg_swap (an Auto Scaling group) and
app_runner (an image that takes all traffic at once), at each point of a release: see
test_interruption_matrix.py. Also: an App Runner release resumed after its switch.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from test_interruption import QUICK, kill_at, lock_item, next_release, recovered
from test_interruption_matrix import (
    AT_25,
    AT_50,
    BEFORE_ANY_CHANGE,
    GREEN_DEPLOYED,
    PROMOTION_DONE,
    PROMOTION_STATE_KEPT,
    ROLLING_BACK,
    Runbook,
    cases,
    kill_then_release_again,
)

from bgkit import patterns

RUNBOOKS = [
    Runbook(
        "asg_swap",  # green is an Auto Scaling group, made by the release
        (
            BEFORE_ANY_CHANGE,
            ("creating-green", r"^created Auto Scaling group", "while deploying green"),
            GREEN_DEPLOYED,
            AT_25,
            AT_50,
            PROMOTION_STATE_KEPT,
            PROMOTION_DONE,
            ROLLING_BACK,
        ),
        scenario={"minute_seconds": 2.0},
        parameters={"plan": "50"},
    ),
    Runbook(
        "app_runner",  # one UpdateService moves all traffic; a rollback redeploys blue's image
        (
            BEFORE_ANY_CHANGE,
            ("deploying-green", r"^UpdateService: image", "while deploying green"),
            ("switched-to-green", r"^CHECKPOINT deployed", "after green was deployed"),
            ("judging-after-the-switch", r"^CHECKPOINT smoked", "after its smoke test"),
            PROMOTION_STATE_KEPT,
            ROLLING_BACK,
            ("redeploying-blue", r"^CALLED _deploy #2", "while rolling back"),
        ),
        scenario={"minute_seconds": 1.0},
        parameters={"plan": "all_at_once"},
        mark_calls=("_deploy",),  # UpdateService: green's image (#1), then blue's (#2)
    ),
]


@pytest.mark.parametrize(("runbook", "point", "line", "where"), cases(RUNBOOKS))
def test_a_killed_release_that_made_green_leaves_blue_serving_after_the_next_release(
    sandbox, runbook, point, line, where
):
    kill_then_release_again(sandbox, runbook, point, line, where)


def test_an_app_runner_release_killed_after_its_switch_is_resumed_against_blue_before_it(sandbox):
    """on_interrupted = resume after App Runner moved all traffic: blue's window before the
    switch is kept in the lock item, read again from CloudWatch, and green is judged against
    it afresh (never against numbers that were not measured), then promoted."""
    scenario = sandbox.provision("app_runner", request_rate=20, minute_seconds=1.0)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in patterns.get("app_runner").parameters if k in p}
        namespace = {**resources, **QUICK, "plan": "all_at_once", "smoke_url": p["smoke_url"],
                     "release": "rel-r", "on_interrupted": "resume"}  # fmt: skip
        seen = kill_at(sandbox, "app_runner", namespace, r"^CHECKPOINT smoked")
        (measured,) = [line for line in seen if "blue measured before green gets traffic" in line]
        window = re.search(r"(\d\d:\d\d:\d\d–\d\d:\d\d:\d\d): (\d+) requests", measured)
        assert window is not None, measured
        record = next_release(sandbox, "app_runner", namespace, through="all")
        assert record["outcome"] == "promoted", record["reason"]
        (found,) = recovered(record)
        assert "was interrupted after its smoke test; resuming it (on_interrupted)" in found
        assert "then judging it afresh against blue before the switch; traffic now green 100%" in (
            found
        )
        again = [
            e["message"] for e in record["events"] if "read again from CloudWatch" in e["message"]
        ]
        assert again == [
            f"blue as measured before the switch, read again from CloudWatch ({window[1]}): "
            f"{window[2]} requests, " + again[0].split(" requests, ", 1)[1]
        ]
        (verdict,) = record["verdicts"]
        assert verdict["decision"] in ("CONTINUE", "PASS")
        start, end = (datetime.fromisoformat(verdict["blue_window"][k]) for k in ("start", "end"))
        assert f"{start:%H:%M:%S}–{end:%H:%M:%S}" == window[1]  # the same blue window
        shifts = [e for e in record["events"] if e["kind"] == "shift"]
        assert shifts == []  # no second UpdateService: green kept serving
        apprunner = sandbox.session().client("apprunner")
        service = apprunner.describe_service(ServiceArn=p["service_arn"])["Service"]
        assert (
            service["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
            == (p["image_identifier"])
        )
        assert lock_item(sandbox, p["service_arn"]) is None
    finally:
        sandbox.release_scenario(scenario.id)
