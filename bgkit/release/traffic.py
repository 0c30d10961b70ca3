"""How traffic moves to green: one of three ways, chosen once per release.

* `Steps`: bgkit sets each step's weights (ALB weights, DNS weights, API Gateway's canary, the
  Auto Scaling groups' listener), bakes and judges after each one. A plan without steps
  (all_at_once) promotes after the smoke test.
* `AtOnce`: the service moves all traffic as soon as green is deployed (App Runner). Blue is
  measured just before the deployment, and green is judged after the switch against it.
* `Managed` (bgkit.release.managed): the service shifts by its own configuration (CodeDeploy,
  ECS); bgkit starts it, lets it past the smoke test, judges while it shifts, stops it.

The steps of `Release` call the same small interface whatever the way; a new way of moving
traffic (a feature flag's percentage, say) is one more subclass of `Traffic`, chosen in
`Release.__init__` by what the pattern says of itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..clock import ceil_to
from ..errors import DeploymentStopped
from ..judge import Decision
from ..patterns.base import Progress, Split
from ..planning import ByService, Point

GREEN_INCOMPLETE = "it died while creating green, which may be incomplete"


class Traffic:
    """The interface, with what `Steps` and `AtOnce` share: traffic is moved by the split."""

    # said of a failed smoke test once green exists (see Release.smoke_test)
    smoke_failed = "; stopped before any production traffic reached green"

    def __init__(self, release: Any) -> None:
        self.release = release  # its pattern is read at each call: recovery may swap it

    def judged_steps(self) -> int:
        """How many anytime-valid tests the judge splits its alpha over (see StepTests)."""
        return 1

    def deploys_green(self) -> bool:
        """Whether `deploy` makes green (else the smoke test may run right after preflight)."""
        return True

    def described_plan(self) -> str | None:
        """The plan as the service will run it, read again once preflight has locked it."""
        return None

    def deploy(self) -> None:
        """Deploy green with no production traffic; the release is `deployed` after it."""
        raise NotImplementedError

    def after_smoke(self) -> bool:
        """Let production traffic move once the smoke test has passed; False if it ended."""
        return True

    def shift(self) -> None:
        """Move traffic to green, judging as it goes; the release is `shifted` (or ended) after."""
        raise NotImplementedError

    def to_green(self) -> Split | None:
        """All traffic to green (the promotion); None if the service stopped instead."""
        return self.release.pattern.set_split(100)

    def to_blue(self) -> Split:
        """All traffic back to blue (a rollback); raises if it cannot."""
        return self.release.pattern.set_split(0)

    def wait_until(self, when: datetime) -> None:
        """Wait between judged periods."""
        self.release._sleep_until(when)

    def finished_by_itself(self) -> Progress | None:
        """An interrupted promotion that the service has completed since, or None."""
        return None

    def cannot_resume(self, found: dict[str, Any]) -> str:
        """Why an interrupted release (its lock item's state) cannot be resumed; "" if it can."""
        return GREEN_INCOMPLETE if found.get("phase") == "deploying" else ""

    def resume(self, found: dict[str, Any], what: str) -> str | None:
        """Set the state to carry the interrupted release on from; say what it will do (None
        if it has ended meanwhile). Its judge's evidence is gone: its step is judged afresh."""
        release, phase = self.release, found.get("phase")
        if phase == "promoting":
            release.state = "shifted"
            return "promoting it again"
        release.state = "deployed"  # green exists, no production traffic yet
        return "smoke-testing green again"

    def resumed(self) -> None:
        """After the resumed release's state is recorded."""

    def as_served(self, series: Any, events: list[dict[str, Any]]) -> Any:
        """The plotted metrics, per colour."""
        return series

    def planned(self) -> list[Point]:
        """The release's points, each with the calls that reach it and a rollback's from it,
        built by the pattern's own builders of the calls it sends (bgkit.planning)."""
        raise NotImplementedError


class Steps(Traffic):
    """bgkit sets each step of the plan, bakes and judges it."""

    def judged_steps(self) -> int:
        return max(1, len(self.release.plan.steps))  # one test per planned step

    def deploys_green(self) -> bool:
        return hasattr(self.release.pattern, "deploy_green")

    def deploy(self) -> None:
        release = self.release
        if release.plan.steps:  # blue is measured before green exists (no canary: no judge)
            release._start_judge()
        deploy_green = getattr(release.pattern, "deploy_green", None)
        if deploy_green is None:
            release._event("deploy", "green is already deployed in its own target group")
        elif not create_green(release, deploy_green):
            return
        release.state = "deployed"

    def shift(self) -> None:
        release = self.release
        plan, params = release.plan, release.params
        if not plan.steps:
            release._event(
                "shift", "all_at_once plan: no canary steps, promoting after the smoke test"
            )
            release.state = "shifted"
            return
        release.state = "shifting"
        source = release.pattern.metric_source()
        release._start_judge()  # blue's latency before green's first request
        judged_until: datetime | None = None  # the end of the last judged window
        for number, step in enumerate(plan.steps, start=1):
            if number < release._resume_step:
                continue  # done by the interrupted run this one resumes; its evidence is gone
            release.mutated = True
            release._activity = f"step {number} of {len(plan.steps)}: green {step.green_percent}%"
            release._checkpoint("shifting", step=number, green_percent=step.green_percent)
            release.split = release.pattern.set_split(step.green_percent)
            assert release.judge is not None
            release.judge.start_step()
            release._await_applied()
            # A change that clients see only later (a DNS TTL) is baked from when it is effective.
            effective = float(getattr(release.pattern, "effective_after_seconds", lambda: 0.0)())
            shifted_at = release.clock.now() + timedelta(seconds=effective)
            release._event(
                "shift",
                f"step {number}: green {step.green_percent}%"
                + (
                    f" (effective after the {effective:g} s "
                    f"{getattr(release.pattern, 'effective_after', 'TTL')}; the bake starts then)"
                    if effective
                    else ""
                ),
                step=number,
                green_percent=step.green_percent,
                split=release.split,
            )
            window = int(step.bake_seconds)  # validated to be a CloudWatch period
            # The bake ends on the first metric period's end at least a bake after the shift:
            # the judge reads whole periods, and the whole window's statistics are read where
            # CloudWatch returns them whole (Evidence._judge). Aligning to the bake instead
            # would make each step after the first last twice its bake (the shift comes a
            # metric lag after the last window's end).
            end = ceil_to(shifted_at + timedelta(seconds=window), params.metric_period_seconds)
            # where the service splits requests itself (a flag), that green gets its share
            expected = step.green_percent if checks_ratio(release.pattern) else None
            last = number == len(plan.steps)
            for hold in range(params.max_holds + 1):
                # Every period is judged once: the first window of a step reaches back to the
                # last one judged (its traffic, at the previous split, is evidence too: the lag
                # before a verdict would otherwise leave it out), or to the shift.
                verdict = release._judge(
                    source,
                    end,
                    window,
                    since=(judged_until or shifted_at) if hold == 0 else None,
                    expected_percent=expected,
                    step=number,
                    green_percent=step.green_percent,
                    hold=hold,
                )
                judged_until = end
                if verdict.decision is Decision.ROLLBACK:
                    release.rollback(f"step {number} at {step.green_percent}%: {verdict.reason}")
                    return
                if release._may_go_on(verdict.decision, last):
                    break
                end += timedelta(seconds=window)  # hold for one more window
            else:
                release.rollback(
                    f"step {number} at {step.green_percent}%: "
                    + release._held_too_long(verdict.decision)
                )
                return
        release.state = "shifted"

    def planned(self) -> list[Point]:
        release, pattern = self.release, self.release.pattern
        points = []
        if self.deploys_green():
            deploy = pattern.deploy_changes(release.params.release)
            points.append(Point("deploy green", deploy, rollback_from(pattern, 0)))
        for number, step in enumerate(release.plan.steps, start=1):
            percent = step.green_percent
            points.append(
                Point(
                    f"step {number}: green {percent}%",
                    pattern.changes_to(percent),
                    rollback_from(pattern, percent),
                )
            )
        points.append(
            Point("promote: green 100%", pattern.changes_to(100), rollback_from(pattern, 100))
        )
        return points + retired(pattern)

    def resume(self, found: dict[str, Any], what: str) -> str | None:
        release = self.release
        if found.get("phase") == "shifting":
            release.state, release._resume_step = "smoked", int(found.get("step") or 1)
            return f"shifting again from step {release._resume_step}, judged afresh"
        return super().resume(found, what)


class AtOnce(Traffic):
    """The service moves all traffic when green is deployed; green is judged after the switch."""

    smoke_failed = " after the service had moved all traffic to green"

    def deploy(self) -> None:
        release = self.release
        release.baseline = release._measure_baseline(
            "green will be judged against these numbers, since this service moves all traffic "
            "at once"
        )
        # kept with the release's state: a run that resumes it reads the same window again
        window = (release.baseline.start, release.baseline.end)
        release._progress["baseline"] = [t.isoformat() for t in window]
        release._start_judge()
        if not create_green(release, release.pattern.deploy_green):
            return
        release.split = release.pattern.read_split()
        release._event(
            "shift",
            f"the service moved all traffic at once: green {release.split['green']}%",
            green_percent=release.split["green"],
            split=release.split,
        )
        release.state = "deployed"

    def shift(self) -> None:
        """Judge green's windows after the switch against blue's baseline, holding on NO_DATA."""
        release = self.release
        release.state = "shifting"
        source, window = release.pattern.metric_source(), int(release.params.bake_seconds)
        switched = release.clock.now()
        end = ceil_to(switched + timedelta(seconds=window), window)
        for hold in range(release.params.max_holds + 1):
            release._activity = (
                f"green after the switch, against blue before it (window {hold + 1})"
            )
            since = switched if hold == 0 else None
            verdict = release._judge(source, end, window, since=since, green_percent=100, hold=hold)
            if verdict.decision is Decision.ROLLBACK:
                release.rollback(f"after the switch: {verdict.reason}")
                return
            if release._may_go_on(verdict.decision, last=True):
                release.state = "shifted"
                return
            end += timedelta(seconds=window)
        release.rollback(f"after the switch: {release._held_too_long(verdict.decision)}")

    def cannot_resume(self, found: dict[str, Any]) -> str:
        if found.get("phase") == "deploying":
            return GREEN_INCOMPLETE
        if found.get("phase") != "promoting":  # promoting: every verdict had passed
            return self.release._baseline_again(found.get("baseline"))
        return ""

    def resume(self, found: dict[str, Any], what: str) -> str | None:
        if found.get("phase") == "promoting":
            return super().resume(found, what)
        self.release.state = "deployed"
        return "smoke-testing green again, then judging it afresh against blue before the switch"

    def resumed(self) -> None:
        release = self.release
        if release.state != "deployed":
            return
        blue = release.baseline  # read again by _baseline_again
        release._event(
            "judge",
            f"blue as measured before the switch, read again from CloudWatch "
            f"({blue.start:%H:%M:%S}–{blue.end:%H:%M:%S}): {blue.requests} requests, "
            f"{blue.errors} 5xx, p90 {blue.p90_ms:.1f} ms",
        )
        release._start_judge()

    def as_served(self, series: Any, events: list[dict[str, Any]]) -> Any:
        return serving_only(series, events)

    def planned_schedule(self) -> list[dict[str, Any]]:
        params = self.release.params
        bake = params.bake_seconds
        return [
            {"what": "blue's baseline before the deployment", "seconds": bake,
             "note": "at most one bake: the last whole window of blue"},
            {"what": "green judged after the switch", "seconds": bake + params.metric_lag_seconds,
             "note": f"a window of {bake:g} s and the metric lag; each hold adds {bake:g} s "
             f"(at most {params.max_holds})"},
        ]  # fmt: skip

    def planned(self) -> list[Point]:
        release, pattern = self.release, self.release.pattern
        moves = ByService(
            pattern.title, "moves all traffic to green as soon as green is deployed and healthy"
        )
        # A green that fails the service's health check never gets traffic: the service puts
        # blue back itself (create_green's DeploymentStopped), and the rollback is green 0%'s.
        stopped = ByService(
            pattern.title, "stops the deployment itself: green failed its health check"
        )
        deploy = pattern.deploy_changes(release.params.release)
        return [
            Point("deploy green", deploy, [stopped, *rollback_from(pattern, 0)]),
            Point("all traffic moves to green", [moves], rollback_from(pattern, 100)),
            Point("promote", pattern.changes_to(100), rollback_from(pattern, 100)),
            *retired(pattern),
        ]


def rollback_from(pattern: Any, green_percent: int) -> list[Any]:
    """The calls of a rollback with green at `green_percent` (a pattern whose rollback depends
    on where traffic is says so: `rollback_changes`; else it sets blue 100)."""
    planned = getattr(pattern, "rollback_changes", None)
    return planned(green_percent) if planned is not None else pattern.changes_to(0)


def retired(pattern: Any) -> list[Point]:
    """After the promotion, where the pattern takes blue out of service (Release._retire_blue)."""
    retire = getattr(pattern, "retire_changes", None)
    if retire is None:
        return []
    note = "none: the release has ended promoted (green passed every verdict); blue is kept"
    return [Point("after promoting: retire blue", retire(), note=note)]


def checks_ratio(pattern: Any) -> bool:
    """Whether the pattern's service splits requests itself (a flag), so that each verdict
    checks green got the share configured (bgkit.sample_ratio)."""
    return bool(getattr(pattern, "checks_sample_ratio", False))


def create_green(release: Any, deploy_green: Callable[..., str]) -> bool:
    """A pattern that makes green itself (a new group, a canary deployment, a new App Runner
    image); False if the service stopped it and the release was rolled back."""
    release.mutated = True  # before the call: a failure after AWS accepted part of it rolls back
    release._checkpoint("deploying")
    try:
        note = functools.partial(release._event, "deploy")
        release._event("deploy", deploy_green(release.params.release, note))
    except DeploymentStopped as stopped:  # the service put blue back itself
        release.rollback(str(stopped))
        return False
    release._checkpoint("deployed")
    return True


def serving_only(series: Any, events: list[dict[str, Any]]) -> Any:
    """A service that moves all traffic at once has one set of metrics: each period is shown as
    the colour that served it (blue until the switch event, green after, blue after a rollback)."""
    import pandas as pd

    switches = [
        (pd.Timestamp(datetime.fromisoformat(e["at"])), e["green_percent"])
        for e in events
        if "green_percent" in e and e["kind"] in ("shift", "promote", "rollback")
    ]
    green = pd.Series(False, index=series.index)
    for at, percent in switches:
        green[series.index >= at] = percent == 100
    series = series.copy()
    series.loc[green, "blue"] = float("nan")
    series.loc[~green, "green"] = float("nan")
    return series
