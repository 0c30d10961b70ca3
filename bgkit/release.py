"""The release loop, the same for every pattern.

    preflight ─► deploy ─► smoke test ─► shift: for each step, bake and judge blue vs green
                                            ROLLBACK ─► roll back, stop
                                            NO_DATA  ─► hold another window (never a pass)
              ─► promote ─► finish: read back the final state, record, plot

Two kinds of pattern share it. A *self-driven* pattern (ALB weights, DNS weights) lets
bgkit set each step's weights. A *managed* pattern (CodeDeploy, ECS, App Runner) shifts
traffic by its own configuration: bgkit starts it, smoke-tests green while it waits,
lets it continue, judges while it shifts, and stops it with rollback on a bad verdict.

Each step is safe to call again (a re-run notebook cell): it does nothing once the release
has moved past it. Any exception after the first change returns all traffic to blue before
it propagates, and the record says why.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from . import metrics as _metrics
from . import patterns
from .aws import AwsSession
from .clock import Clock, SystemClock
from .errors import DeploymentStopped, PreflightError, RollbackFailed, TrafficError
from .judge import METRICS, Counts, Decision, Judge
from .jupyter import is_interactive
from .lab_record import published
from .lock import ReleaseLock
from .notify import Notifier
from .params import ReleaseParams
from .patterns.base import Progress, checkpoint, restore
from .record import RECORD_MIME, Record

_TERMINAL = ("promoted", "rolled_back", "failed")
MANAGED_WAIT_SECONDS = 900.0  # longest wait for a managed deployment to reach its next phase


def _shows_progress(step: str) -> Any:
    """A step of the release during which a person in Jupyter sees its live progress."""

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def run(self: Release, *args: Any, **kwargs: Any) -> Any:
            with self._live_progress(step):
                return method(self, *args, **kwargs)

        return run

    return wrap


class Release:
    # Live progress (bgkit.progress): what the release waits for now, the judged window, and the
    # display: None while the step has not shown one yet, False when there is none (outside
    # the steps, and headless).
    _activity = ""
    _window: tuple[datetime, datetime] | None = None
    _live: Any = False
    _live_at: datetime | None = None

    def __init__(
        self,
        params: ReleaseParams,
        session: AwsSession,
        *,
        clock: Clock | None = None,
        pattern: Any = None,
        display: Any = None,
    ) -> None:
        self.params = params
        self.session = session
        self.clock = clock or SystemClock()
        self.pattern = pattern or patterns.get(params.runbook)(session, params.resources)
        # A pattern that waits for AWS to finish a change it made (a new group's instances to
        # pass health checks, a drain) waits on the release's clock, so tests need not sleep.
        self.pattern.clock = self.clock
        self.managed = bool(getattr(self.pattern, "managed", False))
        # A service that moves all traffic at once (App Runner): green is judged after the
        # switch against blue as measured just before the deployment (`baseline`).
        self.switches_at_once = bool(getattr(self.pattern, "switches_at_once", False))
        self.baseline: Any = None
        if self.managed:
            self.pattern.judge_seconds = params.bake_seconds + params.metric_lag_seconds
        self.plan = params.traffic_plan
        # The judge compares green with blue period by period (see bgkit.judge); it is made
        # once blue's latency is known, before green gets production traffic.
        self.judge: Judge | None = None
        self._display = display or _ipython_display
        self.state = "new"
        # a bgkit.gate.PromotionGate waiting for a person's decision: promote() waits for it
        self.pending_gate: Any = None
        self.split: dict[str, int] | None = None
        self.mutated = False
        self.deployment_id: str | None = None  # managed patterns: the service's deployment
        self._split_log: list[tuple[datetime, dict[str, int]]] = []  # managed: (read at, split)
        self.lock: ReleaseLock | None = None
        self._progress: dict[str, Any] = {}  # the in-flight state kept in the lock item
        self._resume_step = 1  # the first plan step to shift to (a resumed release: later)
        self._exit_hook = False  # _at_exit is registered (from the first change on)
        self._notifier = Notifier(session, params.notify_topic_arn, params.notify_webhook)
        describe = getattr(self.pattern, "plan_description", None)
        plan = describe() if describe is not None else self.plan.describe()
        self.record = Record(
            runbook=params.runbook,
            release=params.release,
            target=params.target,
            parameters=params.as_record(),
            plan=plan,
            started_at=self.clock.now(),
            mode="interactive" if is_interactive() else "headless",
        )

    # -- steps --------------------------------------------------------------------------

    def preflight(self) -> dict[str, int]:
        """Read the current state; refuse (changing nothing) unless blue has all traffic."""
        if self.state != "new":
            return self._note(f"preflight already done (state: {self.state})")
        with self._guard("preflight"):
            self.record.operator = self.session.caller_arn()
            self.record.target_id = self.pattern.target_id()
            found = self._find_interrupted()
            if found is not None:  # an earlier release of this target died mid-way
                self._take_on(found)
                if self.state != "new":  # resumed: carried on where it was
                    return self.split or {}
                split = self.pattern.preflight()  # rolled back: the target as it is now
            else:
                # Read-only checks first: a release refused for a missing resource writes
                # nothing, not even a lock item. The split is read again under the lock.
                split = self.pattern.preflight()
                if self._lock_target():
                    split = self.pattern.read_split()
            self.split = split
            if self.managed:
                self.record.plan = self.pattern.plan_description()
            if split.get("green", 0) != 0 or split.get("blue", 0) != 100:
                raise PreflightError(
                    f"traffic is {split}, not 100% blue: another release may be in flight or was "
                    "left half-shifted; roll it back before starting a new one"
                )
            self._event(
                "preflight",
                f"{self.pattern.title}: all traffic on blue; operator {self.record.operator}",
            )
            self.state = "ready"
            self._notify("started")
        return split

    @_shows_progress("deploy")
    def deploy(self) -> str:
        """Managed patterns: start the deployment and wait until green waits for its smoke test."""
        if self.state != "ready":
            return self._note(f"deploy not run (state: {self.state})")
        # Blue is measured before green exists: not for a service that measures it just before
        # its switch, nor for an all_at_once plan of bgkit's (no canary, nothing to judge).
        if not self.switches_at_once and (self.managed or self.plan.steps):
            with self._guard("deploy"):
                self._start_judge()
        if not self.managed:
            deploy_green = getattr(self.pattern, "deploy_green", None)
            if deploy_green is None:
                self._event("deploy", "green is already deployed in its own target group")
            else:
                with self._guard("deploy"):
                    self._create_green(deploy_green)
                if self.state in _TERMINAL:
                    return self.state
            self.state = "deployed"
            return self.state
        if not self.pattern.ready_wait:
            self._event(
                "deploy",
                "green is published; the deployment starts after the smoke test, "
                "since this service has no test route to hold green on",
            )
            self.state = "deployed"
            return self.state
        with self._guard("deploy"):
            self.mutated = (
                True  # set before the call: a failure after AWS accepted it still rolls back
            )
            self._checkpoint("deploying")
            deployment_id = self.deployment_id = self.pattern.start_deployment(self.params.release)
            self._checkpoint("deployed")
            self._event("deploy", f"deployment {deployment_id} created")
            progress = self._wait_phase(("ready", "shifting", "shifted", "succeeded", "stopped"))
            if progress.phase == "stopped":
                self._managed_stopped(progress, "before its smoke test")
                return self.state
            if progress.phase != "ready":
                raise TrafficError(
                    f"deployment {deployment_id} moved past its test-traffic wait without bgkit's "
                    f"smoke test (phase {progress.phase})"
                )
            self._event(
                "deploy",
                f"deployment {deployment_id}: green is deployed and waits for the smoke test "
                "before any production traffic",
            )
            self.state = "deployed"
        return self.state

    def _create_green(self, deploy_green: Any) -> None:
        """A self-driven pattern that makes green itself (a new group, a canary deployment, a
        new App Runner image); one that moves all traffic at once measures blue first."""
        if self.switches_at_once:
            self.baseline = self._measure_baseline()
            # kept with the release's state: a run that resumes it reads the same window again
            window = (self.baseline.start, self.baseline.end)
            self._progress["baseline"] = [t.isoformat() for t in window]
            self._start_judge()
        self.mutated = True  # before the call: a failure after AWS accepted part of it rolls back
        self._checkpoint("deploying")
        try:
            note = functools.partial(self._event, "deploy")
            self._event("deploy", deploy_green(self.params.release, note))
        except DeploymentStopped as stopped:  # the service put blue back itself
            self.rollback(str(stopped))
            return
        self._checkpoint("deployed")
        if self.switches_at_once:
            self.split = self.pattern.read_split()
            self._event(
                "shift",
                f"the service moved all traffic at once: green {self.split['green']}%",
                green_percent=self.split["green"],
                split=self.split,
            )

    @_shows_progress("smoke test")
    def smoke_test(self) -> dict[str, Any] | str:
        """Requests to green on its test route, before green gets any production traffic."""
        deploys_green = self.managed or hasattr(self.pattern, "deploy_green")
        if self.state != "deployed" and not (self.state == "ready" and not deploys_green):
            return self._note(f"smoke test not run (state: {self.state})")
        with self._guard("smoke test"):
            probe = getattr(self.pattern, "smoke_probe", None)
            url, count = self.params.smoke_url, self.params.smoke_requests
            if probe is not None:
                url = self.pattern.smoke_target()
            if probe is None and not url:
                self.record.smoke = {"skipped": True, "reason": "no smoke_url given"}
                self._event("smoke", "smoke test skipped: no smoke_url given")
            else:
                # A pattern's own probe (lambda_codedeploy: Invoke with IAM) takes no token.
                token = self.params.smoke_token
                results = [(probe or (lambda: _probe(url, token)))() for _ in range(count)]
                failures = [r for r in results if not 200 <= r["status"] < 300]
                latencies = sorted(r["ms"] for r in results)
                self.record.smoke = {
                    "url": url,
                    "requests": count,
                    "failures": len(failures),
                    "statuses": sorted({r["status"] for r in results}),
                    "p50_ms": round(latencies[len(latencies) // 2], 2),
                    "max_ms": round(latencies[-1], 2),
                    "errors": sorted({r["error"] for r in failures if r["error"]})[:3],
                }
                if failures:
                    reason = (
                        f"smoke test failed: {len(failures)}/{count} requests to {url} were not 2xx"
                    )
                    self._event("smoke", reason)
                    if self.mutated and self.switches_at_once:
                        self.rollback(reason + " after the service had moved all traffic to green")
                    elif self.mutated:
                        self.rollback(
                            reason + "; stopped before any production traffic reached green"
                        )
                    else:
                        self._end(
                            "rolled_back", reason + "; green never received production traffic"
                        )
                    return self.record.smoke
                self._event(
                    "smoke", f"smoke test passed: {count}/{count} requests to green returned 2xx"
                )
            if self.managed and self.pattern.ready_wait:
                done = self.pattern.continue_after_smoke()
                self._event("deploy", f"{done}: production traffic may shift")
                progress = self._wait_phase(
                    ("ready", "shifting", "shifted", "succeeded", "stopped")
                )
                if progress.phase == "ready":  # a second wait for bgkit (a hook, then READY_WAIT)
                    done = self.pattern.continue_after_smoke()
                    self._event("deploy", f"{done}: the smoke test had passed")
            elif self.managed:
                self.mutated = (
                    True  # set before the call: a failure after AWS accepted it still rolls back
                )
                self._checkpoint("deploying")
                deployment_id = self.deployment_id = self.pattern.start_deployment(
                    self.params.release
                )
                self._checkpoint("shifting")
                self._event(
                    "deploy", f"deployment {deployment_id} created: production traffic may shift"
                )
                progress = self._wait_phase(("shifting", "shifted", "succeeded", "stopped"))
                if progress.phase == "stopped":
                    self._managed_stopped(progress, "before shifting")
                    return self.record.smoke
            self.state = "smoked"
            self._checkpoint("smoked")
        return self.record.smoke

    @_shows_progress("shift")
    def shift(self) -> str:
        """Move traffic to green step by step, judging green against blue after each bake."""
        if self.state != "smoked":
            return self._note(f"shift not run (state: {self.state})")
        with self._guard("shift"):
            if self.managed:
                self._watch_managed_shift()
            else:
                self._shift_steps()
        return self.state

    @_shows_progress("promote")
    def promote(self) -> str:
        """Send all traffic to green once every step has passed."""
        if self.state != "shifted":
            return self._note(f"promote not run (state: {self.state})")
        if self.pending_gate is not None:  # a gate that was made but not awaited
            return self._note(
                "promote not run: the gate waits for a decision; await it "
                "(`await bgkit.promotion_gate(...)`) and click Approve or Roll back"
            )
        with self._guard("promote"):
            self.mutated = True  # from here on, a death leaves traffic to undo (all_at_once too)
            self._checkpoint("promoting")
            if self.managed:
                self.pattern.end_wait_after_shift()
                progress = self._wait_phase(
                    ("succeeded", "stopped"), longer=self.pattern.wait_after_shift_seconds()
                )
                if progress.phase == "stopped":
                    self._managed_stopped(progress, "while finishing")
                    return self.state
                self.split = self.pattern.read_split()
                reason = self._promotion_reason()
            else:
                self.mutated = True
                self.split = self.pattern.set_split(100)
                reason = self._promotion_reason()
            self._event(
                "promote", f"promoted: green 100% ({reason})", green_percent=100, split=self.split
            )
            self._end("promoted", reason)  # green has all traffic and passed every verdict
            self.mutated = False  # nothing left to undo: a later death leaves green serving
            self._checkpoint("promoted")
            retire_blue = getattr(self.pattern, "retire_blue", None)
            if retire_blue is not None:  # e.g. detach blue's instances once they have drained
                try:
                    self._event("promote", retire_blue(functools.partial(self._event, "promote")))
                except Exception as error:  # recorded; a good release is never rolled back for it
                    self._event(
                        "error",
                        f"green has all traffic, but taking blue out of service did not finish "
                        f"({type(error).__name__}: {error}); finish it by hand (see the runbook's "
                        "first cell)",
                    )
                self.record.finished_at = self.clock.now()  # the release's work ends here
        return self.state

    def rollback(self, reason: str) -> str:
        """Return all traffic to blue. Raises RollbackFailed, naming where traffic is, if it cannot."""
        self._checkpoint("rolling_back")
        try:
            if self.managed:
                self.split = self._stop_managed()
            else:
                self.split = self.pattern.set_split(0)
        except Exception as error:
            where = self._where_is_traffic()
            self._end(
                "failed", f"rollback failed: {type(error).__name__}: {error}"
            )  # no second attempt
            raise RollbackFailed(
                f"rollback of release {self.params.release} failed ({type(error).__name__}: {error}); "
                f"send all traffic back to blue on {self.pattern.target_id()} by hand "
                "(see the runbook's first cell, 'Rollback')",
                split=where,
            ) from error
        how = getattr(self.pattern, "how_rolled_back", lambda: "")()
        self._event(
            "rollback",
            f"rolled back: blue 100% ({reason})" + (f"; {how}" if how else ""),
            green_percent=0,
            split=self.split,
        )
        self._end("rolled_back", reason)
        self.mutated = False  # blue has all traffic again
        self._checkpoint("rolled_back")
        return self.state

    def finish(self, *, plot: bool = True) -> dict[str, Any]:
        """Read back the final state, then show and emit the record."""
        if self.state not in _TERMINAL:
            with self._guard("finish"):
                if self.mutated:
                    self.rollback(f"finished in state {self.state!r} without a promotion")
                else:
                    self._end(
                        "rolled_back", f"finished in state {self.state!r} before any traffic change"
                    )
        return self._publish(plot=plot)

    # -- self-driven shifting -----------------------------------------------------------

    def _shift_steps(self) -> None:
        if self.switches_at_once:
            self._watch_after_switch()
            return
        if not self.plan.steps:
            self._event(
                "shift", "all_at_once plan: no canary steps, promoting after the smoke test"
            )
            self.state = "shifted"
            return
        self.state = "shifting"
        source = self.pattern.metric_source()
        self._start_judge()  # blue's latency before green's first request
        judged_until: datetime | None = None  # the end of the last judged window
        for number, step in enumerate(self.plan.steps, start=1):
            if number < self._resume_step:
                continue  # done by the interrupted run this one resumes; its evidence is gone
            self.mutated = True
            self._activity = f"step {number} of {len(self.plan.steps)}: green {step.green_percent}%"
            self._checkpoint("shifting", step=number, green_percent=step.green_percent)
            self.split = self.pattern.set_split(step.green_percent)
            assert self.judge is not None
            self.judge.start_step()
            self._await_applied()
            # A change that clients see only later (a DNS TTL) is baked from when it is effective.
            effective = float(getattr(self.pattern, "effective_after_seconds", lambda: 0.0)())
            shifted_at = self.clock.now() + timedelta(seconds=effective)
            self._event(
                "shift",
                f"step {number}: green {step.green_percent}%"
                + (
                    f" (effective after the {effective:g} s TTL; the bake starts then)"
                    if effective
                    else ""
                ),
                step=number,
                green_percent=step.green_percent,
                split=self.split,
            )
            window = int(step.bake_seconds)  # validated to be a CloudWatch period
            end = _ceil_seconds(shifted_at + timedelta(seconds=window), window)
            last = number == len(self.plan.steps)
            for hold in range(self.params.max_holds + 1):
                # Every period is judged once: the first window of a step reaches back to the
                # last one judged (its traffic, at the previous split, is evidence too: the lag
                # before a verdict would otherwise leave it out), or to the shift.
                verdict = self._judge(
                    source,
                    end,
                    window,
                    since=(judged_until or shifted_at) if hold == 0 else None,
                    step=number,
                    green_percent=step.green_percent,
                    hold=hold,
                )
                judged_until = end
                if verdict.decision is Decision.ROLLBACK:
                    self.rollback(f"step {number} at {step.green_percent}%: {verdict.reason}")
                    return
                if self._may_go_on(verdict.decision, last):
                    break
                end += timedelta(seconds=window)  # hold for one more window
            else:
                self.rollback(
                    f"step {number} at {step.green_percent}%: {self._held_too_long(verdict.decision)}"
                )
                return
        self.state = "shifted"

    def _may_go_on(self, decision: Decision, last: bool) -> bool:
        """CONTINUE lets a step end after its bake; NO_DATA holds; with pass_margin the last
        step holds until the judge says PASS (evidence that green is not worse)."""
        if decision is Decision.NO_DATA:
            return False
        return decision is Decision.PASS or not (last and self.params.pass_margin)

    def _held_too_long(self, decision: Decision) -> str:
        if decision is Decision.NO_DATA:
            return f"no verdict after {self.params.max_holds} holds (too little traffic to judge)"
        blockers = self.judge.pass_blockers() if self.judge is not None else []
        return (
            f"no PASS after {self.params.max_holds} holds: not enough evidence that green is not "
            f"worse than blue by {self.params.pass_margin:g}x (pass_margin)"
            + (f"; {'; '.join(blockers)}" if blockers else "")
        )

    def _measure_baseline(self) -> Any:
        """Blue's numbers over the last full bake window before green gets traffic (holding
        for the next window while blue served fewer than min_requests)."""
        source, window = self.pattern.metric_source(), int(self.params.bake_seconds)
        end = _floor_seconds(self.clock.now(), window)
        # Only blue: a window that began before the service's last change may hold another version.
        since = getattr(self.pattern, "serving_since", lambda: None)()
        while since is not None and end - timedelta(seconds=window) < since:
            end += timedelta(seconds=window)
        self._activity = "measuring blue before green gets traffic"
        for _ in range(self.params.max_holds + 1):
            self._window = (end - timedelta(seconds=window), end)
            self._await_metrics(source, end)
            blue = _metrics.read_window(self.session, source, end - timedelta(seconds=window), end)[
                "blue"
            ]
            if blue.requests >= self.params.min_requests and blue.p90_ms is not None:
                self._event(
                    "judge",
                    f"blue measured before green gets traffic, {blue.start:%H:%M:%S}–"
                    f"{blue.end:%H:%M:%S}: {blue.requests} requests, {blue.errors} 5xx, p90 "
                    f"{blue.p90_ms:.1f} ms, p99 {_ms(blue.p99_ms)}"
                    + (
                        "; green will be judged against these numbers, since this service moves "
                        "all traffic at once"
                        if self.switches_at_once
                        else ""
                    ),
                )
                return blue
            end += timedelta(seconds=window)
        raise PreflightError(
            f"blue served fewer than {self.params.min_requests} requests (or none with a latency) in each of "
            f"{self.params.max_holds + 1} bake windows: nothing to judge green against "
            "(lower min_requests or raise bake_seconds)"
        )

    def _watch_after_switch(self) -> None:
        """Judge green's windows after the switch against blue's baseline, holding on NO_DATA."""
        self.state = "shifting"
        source, window = self.pattern.metric_source(), int(self.params.bake_seconds)
        switched = self.clock.now()
        end = _ceil_seconds(switched + timedelta(seconds=window), window)
        for hold in range(self.params.max_holds + 1):
            self._activity = f"green after the switch, against blue before it (window {hold + 1})"
            since = switched if hold == 0 else None
            verdict = self._judge(source, end, window, since=since, green_percent=100, hold=hold)
            if verdict.decision is Decision.ROLLBACK:
                self.rollback(f"after the switch: {verdict.reason}")
                return
            if self._may_go_on(verdict.decision, last=True):
                self.state = "shifted"
                return
            end += timedelta(seconds=window)
        self.rollback(f"after the switch: {self._held_too_long(verdict.decision)}")

    def _await_applied(self) -> None:
        """Wait until the service says the change is live everywhere (e.g. Route 53 INSYNC)."""
        applied = getattr(self.pattern, "change_applied", None)
        if applied is None:
            return
        deadline = self.clock.now() + timedelta(seconds=MANAGED_WAIT_SECONDS)
        while not applied():
            if self.clock.now() > deadline:
                raise TrafficError("the traffic change was not applied in time", split=self.split)
            self._pause(1.0)

    def _start_judge(self) -> None:
        """Blue's latency before green gets traffic sets what a slow request is; then the judge
        is made. An all-at-once service's green is judged against that same blue window."""
        if self.judge is not None:
            return
        blue = self.baseline if self.baseline is not None else self._measure_baseline()
        threshold = round(blue.p90_ms + self.params.slow_margin_ms, 3)
        baseline = None
        if self.switches_at_once:
            period = self.params.metric_period_seconds
            source = self.pattern.metric_source()
            periods = _metrics.read_periods(
                self.session, source, blue.start, blue.end, period, threshold
            )
            counts = [p["blue"] for _, p in periods]
            slow = [c.slow for c in counts]
            baseline = Counts(
                sum(c.requests for c in counts),
                sum(c.errors for c in counts),
                None if None in slow else sum(slow),  # type: ignore[arg-type]
            )
        # one test per planned step where bgkit moves traffic step by step (see StepTests)
        steps = 1 if self.managed or self.switches_at_once else max(1, len(self.plan.steps))
        self.judge = Judge(
            steps=steps,
            alpha=self.params.judge_alpha,
            min_requests=self.params.min_requests,
            slow_threshold_ms=threshold,
            pass_margin=self.params.pass_margin,
            error_rate_slo=self.params.error_rate_slo,
            p99_slo_ms=self.params.p99_slo_ms,
            baseline=baseline,
        )
        rails = [
            f"{name} {value:g}"
            for name, value in (
                ("error_rate_slo", self.params.error_rate_slo),
                ("p99_slo_ms", self.params.p99_slo_ms),
            )
            if value
        ]
        self._event(
            "judge",
            f"the judge compares green with blue on 5xx and on requests slower than {threshold:g} ms "
            f"(blue's p90 {blue.p90_ms:.1f} ms + slow_margin_ms {self.params.slow_margin_ms:g}), "
            f"every {self.params.metric_period_seconds} s period; it rolls back at evidence "
            f"{self.judge.worse['errors'].boundary:g} (5xx) or {self.judge.worse['slow'].boundary:g} "
            f"(slow), so a healthy green is rolled back with probability at most "
            f"{self.params.judge_alpha:g} (judge_alpha)"
            + (f"; guard rails (absolute SLO limits): {', '.join(rails)}" if rails else ""),
            slow_threshold_ms=threshold,
        )

    def _judge(
        self, source, end: datetime, window: int, since: datetime | None = None, **where: Any
    ):
        """Feed the judge each metric period of the bake window [end - window, end) as it is
        published (from `since`, when the step's traffic change came earlier than the window's
        aligned start); stop early when the evidence says green is worse. Then the verdict."""
        judge = self.judge
        assert judge is not None, "the judge starts before green gets traffic (_start_judge)"
        judge.start_window()
        period = self.params.metric_period_seconds
        lag = timedelta(seconds=self.params.metric_lag_seconds)
        start = end - timedelta(seconds=window)
        if since is not None:
            start = min(start, _ceil_seconds(since, period))
        self._window = (start, end)
        seen: set[datetime] = set()

        def take(upto: datetime) -> None:
            for at, counts in _metrics.read_periods(
                self.session, source, start, upto, period, judge.slow_threshold_ms
            ):
                if at not in seen:
                    seen.add(at)
                    blue = None if self.baseline is not None else counts["blue"]
                    judge.observe(at.isoformat(), blue, counts["green"])

        cursor = start
        while cursor < end and not judge.rejected:
            cursor = min(cursor + timedelta(seconds=period), end)
            if self.managed:  # the service may shift meanwhile: record it when it happens
                self._watch_split_until(cursor + lag)
            else:
                self._sleep_until(cursor + lag)
            take(cursor)
        green_p99 = blue_p99 = None
        if not judge.rejected:  # the whole window: late periods, and p99 for the guard rail
            self._await_metrics(source, end)
            take(end)
            stats = _metrics.read_window(self.session, source, end - timedelta(seconds=window), end)
            green_p99, blue_p99 = stats["green"].p99_ms, stats["blue"].p99_ms
            if self.baseline is not None:
                blue_p99 = self.baseline.p99_ms
        verdict = judge.verdict(green_p99_ms=green_p99)
        numbers = verdict.numbers
        self.record.verdicts.append(
            {
                **where,
                "at": self.clock.now().isoformat(),
                "decision": str(verdict.decision),
                "reason": verdict.reason,
                "window": {"start": start.isoformat(), "end": min(cursor, end).isoformat()},
                **(
                    {
                        "blue_window": {
                            "start": self.baseline.start.isoformat(),
                            "end": self.baseline.end.isoformat(),
                        }
                    }
                    if self.baseline is not None
                    else {}
                ),
                "p99_ms": {"blue": blue_p99, "green": green_p99},
                **numbers,
            }
        )
        label = (
            f"step {where['step']} ({where['green_percent']}%)"
            if "step" in where
            else "after the switch (blue: before the deployment)"
            if self.baseline is not None
            else f"at {where['green_percent']}%"
        )
        self._event(
            "verdict",
            f"{label}: {verdict.decision}: {verdict.reason}",
            decision=str(verdict.decision),
        )
        return verdict

    # -- managed shifting ---------------------------------------------------------------

    def _watch_managed_shift(self) -> None:
        """Judge every bake window while the service shifts; stop it with rollback on ROLLBACK."""
        self.state = "shifting"
        self._checkpoint("shifting")
        source = self.pattern.metric_source()
        window = int(self.params.bake_seconds)
        since: datetime | None = self.clock.now()  # the first judged window starts here
        end = _ceil_seconds(self.clock.now() + timedelta(seconds=window), window)
        deadline = self.clock.now() + timedelta(
            seconds=self.pattern.max_shift_seconds() + MANAGED_WAIT_SECONDS
        )
        self._seen_split = self.split  # as preflight read it: only changes are shifts
        self._split_log = [(self.clock.now(), dict(self.split or {"blue": 100, "green": 0}))]
        self._start_judge()
        passes = holds = 0
        self._note_split()
        shifted_seen: datetime | None = None  # when bgkit first saw the shift complete
        while True:
            self._watch_split_until(end)
            progress = self.pattern.progress()
            self._activity = f"deployment {progress.id}: {progress.status} ({progress.phase})"
            self._note_split()
            if progress.phase == "stopped":
                self._managed_stopped(progress, "while shifting")
                return
            if progress.phase == "ready":  # a second wait for bgkit (a hook, then READY_WAIT)
                done = self.pattern.continue_after_smoke()
                self._event("deploy", f"{done}: the smoke test had passed")
            if progress.phase in ("shifted", "succeeded") and shifted_seen is None:
                shifted_seen = self.clock.now()
            # Judge every window in which both colours served: a split at its start or its end,
            # or a shift during it (the jump to 100 % included), each as the service had it at
            # the time (read every second), not when the metrics arrived. The judge's
            # min_requests decides whether a colour served enough.
            at_start, split = self._split_at(end - timedelta(seconds=window)), self._split_at(end)
            if 0 < at_start["green"] < 100 or 0 < split["green"] < 100 or at_start != split:
                verdict = self._judge(
                    source, end, window, since=since, green_percent=split["green"], hold=holds
                )
                since = None
                if verdict.decision is Decision.ROLLBACK:
                    self.rollback(f"at {split['green']}% green: {verdict.reason}")
                    return
                if verdict.decision is Decision.NO_DATA:
                    holds += 1
                else:
                    passes += 1
            # Done once every window up to the moment the shift was seen complete is judged:
            # with a metric lag, the windows just before it come in only now.
            if shifted_seen is not None and end >= shifted_seen:
                break
            if self.clock.now() > deadline:
                raise TrafficError(
                    f"deployment {progress.id} did not finish shifting in time",
                    split=split,
                )
            end += timedelta(seconds=window)
        self.split = self.pattern.read_split()
        if passes == 0 and not self.pattern.all_at_once():
            self.rollback(
                "no verdict while traffic shifted (too little traffic to compare green with blue)"
            )
            return
        self.state = "shifted"

    def _note_split(self) -> dict[str, int]:
        """Read the split; record a shift event when the service has moved traffic since the last read."""
        split = self.pattern.read_split()
        if split != self._seen_split:
            self._event(
                "shift",
                f"the deployment shifted green to {split['green']}%",
                green_percent=split["green"],
                split=split,
            )
            self._seen_split = split
            self._split_log.append((self.clock.now(), dict(split)))
        return split

    def _split_at(self, when: datetime) -> dict[str, int]:
        """The split as bgkit last read it at or before `when` (read every second)."""
        seen = [split for at, split in self._split_log if at <= when]
        return seen[-1] if seen else self._split_log[0][1]

    def _watch_split_until(self, when: datetime) -> None:
        """Sleep until `when`, reading the split every second so shifts are recorded when they happen."""
        while (remaining := (when - self.clock.now()).total_seconds()) > 0:
            self._pause(min(1.0, remaining))
            self._note_split()

    def _wait_phase(self, phases: tuple[str, ...], longer: float = 0.0) -> Progress:
        deadline = self.clock.now() + timedelta(seconds=MANAGED_WAIT_SECONDS + longer)
        while True:
            progress = self.pattern.progress()
            if progress.phase in phases:
                return progress
            if self.clock.now() > deadline:
                raise TrafficError(f"deployment {progress.id} stayed {progress.status} too long")
            self._activity = (
                f"deployment {progress.id}: {progress.status} ({progress.phase}), until it is "
                + " or ".join(phases)
            )
            self._pause(0.5)

    def _stop_managed(self) -> dict[str, int]:
        self.pattern.stop_and_roll_back(
            self.clock, self.params.release, lambda message: self._event("rollback", message)
        )
        split = self.pattern.read_split()
        if split.get("green", 0) != 0 or split.get("blue", 0) != 100:
            raise TrafficError("after the rollback, blue does not have all traffic", split=split)
        return split

    def _managed_stopped(self, progress: Progress, when: str) -> None:
        """The service stopped the deployment by itself (alarm, timeout, failure)."""
        self.rollback(
            f"deployment {progress.id} {progress.status} {when}: {progress.reason}".strip()
        )

    def _promotion_reason(self) -> str:
        judged = [v for v in self.record.verdicts if v["decision"] in ("CONTINUE", "PASS")]
        if judged:
            last = judged[-1]
            passed = " (PASS)" if last["decision"] == "PASS" else ""
            return (
                f"{len(judged)} verdict(s) without evidence that green is worse{passed}; final "
                f"evidence: 5xx {last['e_values']['errors']:.2g}, slow requests "
                f"{last['e_values']['slow']:.2g}, against boundaries "
                f"{last['boundaries']['errors']:g} and {last['boundaries']['slow']:g}"
            )
        return "smoke test passed (all at once: no canary analysis)"

    # -- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, step: str) -> Iterator[None]:
        try:
            yield
        except GeneratorExit:  # an awaiting cell closed as its kernel exits: _at_exit's to handle
            raise
        except BaseException as error:
            # Ctrl-C, or the kernel's stop button (a cell that awaits, as the gate's, is
            # cancelled instead): no waiting for metrics to plot, the person wants out now.
            interrupted = isinstance(error, KeyboardInterrupt | asyncio.CancelledError)
            why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            reason = f"{step} {'interrupted' if interrupted else 'failed'}: {why}"
            try:
                if self.state in _TERMINAL:  # e.g. Ctrl-C while blue drains after the promotion
                    self._event(
                        "error",
                        f"{step} stopped after the release ended {self.state}: "
                        f"{type(error).__name__}: {error}; traffic now: {self._where_is_traffic()}",
                    )
                else:
                    if self.mutated:
                        try:
                            self.rollback(reason)
                        except RollbackFailed as failed:
                            self._event("error", str(failed))
                        except BaseException as stopped:  # e.g. a second Ctrl-C while rolling back
                            interrupted = True
                            self._event(
                                "error",
                                f"the rollback did not finish ({type(stopped).__name__}); traffic "
                                f"now: {self._where_is_traffic()}; finish it by hand (see the "
                                "runbook's first cell, 'Rollback')",
                            )
                    self._end("failed", reason)
                self._publish(plot=not interrupted)
            except Exception as secondary:  # never hide the original error behind a recording error
                error.add_note(
                    f"bgkit could not complete the record: {type(secondary).__name__}: {secondary}"
                )
            raise

    def _at_exit(self) -> None:
        """At the interpreter's exit (the kernel shut down after a failed cell, or the notebook
        was closed): a release that changed traffic and did not end is rolled back."""
        if self.state in _TERMINAL or not self.mutated:
            return
        self._display, self._live = _AtExitDisplay(), False  # no notebook listens any more
        try:
            self.rollback(
                f"the kernel exited in state {self.state!r} before the release ended (a cell "
                "failed, or the run was stopped)"
            )
        except Exception as error:  # at exit, printing is all that is left (and the lock item)
            print(f"bgkit: the rollback at exit failed: {error}", file=sys.__stderr__)
        try:
            self._publish(plot=False)
        except Exception as error:
            print(f"bgkit: the record could not be completed at exit: {error}", file=sys.__stderr__)

    def _end(self, outcome: str, reason: str) -> None:
        if self._exit_hook:
            atexit.unregister(self._at_exit)
            self._exit_hook = False
        self.state = outcome
        self.record.outcome = outcome
        self.record.reason = reason
        self.record.finished_at = self.clock.now()
        if self.pending_gate is not None:  # a gate never awaited: nothing left to click
            self.pending_gate.release_ended()
        self._notify(outcome)

    def _notify(self, event: str) -> None:
        """Tell the release's SNS topic and webhook (if any); the record says what was sent."""
        if self._notifier.enabled:
            for line in self._notifier.send(event, self.record, self.split):
                self._event("notify", line)

    def _where_is_traffic(self) -> dict[str, int] | None:
        try:
            return self.pattern.read_split()
        except Exception as error:  # the record must still say we do not know
            self._event("error", f"could not read the split back: {type(error).__name__}: {error}")
            return None

    def _new_lock(self) -> ReleaseLock:
        return ReleaseLock(
            self.session,
            self.params.lock_table,
            self.record.target_id,
            self.params.release,
            self.record.operator,
            self.params.lock_lease_seconds,
        )

    def _find_interrupted(self) -> dict[str, Any] | None:
        """Read-only: the state of an earlier release of this target that died after changing
        something (kept in its lock item), or None. A live holder is refused, naming it."""
        if not self.params.lock_table:
            return None
        found = self._new_lock().interrupted()
        if found is not None and self.params.on_interrupted == "resume":
            if found["release"] != self.params.release:
                raise PreflightError(
                    f"'resume' carries on the interrupted release itself, and release "
                    f"{found['release']} (not {self.params.release}) was interrupted "
                    f"{_where(found)}: run it again with release = {found['release']}, or with "
                    "on_interrupted = 'rollback' to put blue back first",
                    parameter="on_interrupted",
                )
            if found.get("runbook") != self.params.runbook:
                raise PreflightError(
                    f"'resume' needs the runbook that started release {found['release']} "
                    f"({found.get('runbook')}), not {self.params.runbook}",
                    parameter="on_interrupted",
                )
            for name, now in (("resources", dict(self.params.resources)), ("plan", self._steps())):
                if name in found and found[name] != now:
                    raise PreflightError(
                        f"'resume' carries on release {found['release']} as it was started, and "
                        f"its {name} were {found[name]}, not {now}: run it with the same "
                        "parameters, or with on_interrupted = 'rollback'",
                        parameter="on_interrupted",
                    )
        return found

    def _steps(self) -> list[int]:
        return [step.green_percent for step in self.plan.steps]

    def _take_on(self, found: dict[str, Any]) -> None:
        """Take the lock of an interrupted release with its state, then roll it back (default)
        or resume it (on_interrupted = "resume"), saying in the record what was found."""
        kept = ("phase", "step", "green_percent", "baseline")
        self._progress = {k: found[k] for k in kept if k in found}
        self._lock_target(state={**found, "inherited_from": found["release"]})
        self.mutated = True  # this release now answers for the traffic the other one moved
        what = (
            f"release {found['release']} of {found['operator']} (on {found['holder']}, since "
            f"{found['since']}) was interrupted {_where(found)}"
        )
        why_not = self._cannot_resume(found) if self.params.on_interrupted == "resume" else ""
        resuming = self.params.on_interrupted == "resume" and not why_not
        own = self.pattern
        if not resuming:
            # The dead release is undone with its own resources and state (its green, its
            # deployment); this release then goes on with its own pattern.
            self.pattern = patterns.get(found.get("runbook") or self.params.runbook)(
                self.session, found.get("resources") or self.params.resources
            )
            self.pattern.clock = self.clock
        restore(self.pattern, found.get("pattern") or {})
        deployment = getattr(self.pattern, "deployment", None)  # CodeDeploy's
        if deployment is not None and not deployment.deployment_id:
            # killed between CreateDeployment and keeping its id: found by its description
            since = datetime.fromisoformat(found["since"]) - timedelta(minutes=5)  # clock skew
            deployment.deployment_id = deployment.find(f"bgkit release {found['release']}", since)
        if resuming:
            self._resume(found, what)
            return
        if self.managed and found.get("phase") == "promoting":
            progress = self.pattern.progress()
            if progress.phase == "succeeded":  # the service finished the promotion by itself
                self._event(
                    "recover",
                    f"{what}; its deployment {progress.id} had passed every verdict and has "
                    "succeeded since: green serves, nothing to undo",
                )
                self._done_with_interrupted(own)
                return
        self._event(
            "recover",
            f"{what}; rolling it back ("
            + (f"on_interrupted is 'resume', but {why_not}" if why_not else "on_interrupted")
            + ")",
        )
        split = self._stop_managed() if self.managed else self.pattern.set_split(0)
        how = getattr(self.pattern, "how_rolled_back", lambda: "")()
        self._event(
            "recover",
            f"rolled back release {found['release']}: blue 100%" + (f"; {how}" if how else ""),
            green_percent=0,
            split=split,
        )
        self._done_with_interrupted(own)

    def _done_with_interrupted(self, own: Any) -> None:
        """Nothing of the interrupted release is left to undo: this release goes on with its own
        pattern, from an unchanged target."""
        self.pattern, self.mutated, self._progress = own, False, {}
        self._checkpoint("preflight")

    def _cannot_resume(self, found: dict[str, Any]) -> str:
        phase = found.get("phase")
        if phase == "rolling_back":
            return "it was rolling back, and a rollback is finished, not undone"
        if phase == "deploying" and not self.managed:
            return "it died while creating green, which may be incomplete"
        if self.switches_at_once and phase != "promoting":  # promoting: every verdict passed
            return self._baseline_again(found.get("baseline"))
        return ""

    def _baseline_again(self, window: list[str] | None) -> str:
        """A service that moved all traffic at once is judged against blue as measured before
        the switch: read that window again from CloudWatch (into `baseline`), or say why not."""
        if not window:
            return "blue's numbers measured before the switch were not kept"
        start, end = (datetime.fromisoformat(t) for t in window)
        try:
            source = self.pattern.metric_source()
            blue = _metrics.read_window(self.session, source, start, end)["blue"]
        except Exception as error:  # the reason not to resume: the rollback still runs
            return (
                f"blue's window before the switch could not be read again ({type(error).__name__}"
                f": {error})"
            )
        if blue.requests < self.params.min_requests or blue.p90_ms is None:
            return (
                f"blue's window before the switch ({start:%H:%M:%S}–{end:%H:%M:%S}) now reads "
                f"{blue.requests} requests in CloudWatch, fewer than min_requests "
                f"({self.params.min_requests})"
            )
        self.baseline = blue
        return ""

    def _resume(self, found: dict[str, Any], what: str) -> None:
        """Carry on the interrupted release from where it was; its judge's evidence is gone,
        so the step it was at is baked and judged again from the start."""
        phase = found.get("phase")
        if self.managed:
            progress = self._wait_phase(("ready", "shifting", "shifted", "succeeded", "stopped"))
            if progress.phase == "stopped":
                self._event("recover", f"{what}; its deployment {progress.id} has stopped")
                self._managed_stopped(progress, "while bgkit was not watching")
                return
            self.deployment_id = progress.id
            self.record.plan = self.pattern.plan_description()
            self.state = {"ready": "deployed", "succeeded": "shifted"}.get(progress.phase, "smoked")
            if phase == "promoting" and progress.phase == "shifted":
                self.state = "shifted"  # every verdict had passed: promote again
            doing = f"its deployment {progress.id} is {progress.status}"
        elif self.switches_at_once and phase != "promoting":
            self.state = "deployed"
            doing = (
                "smoke-testing green again, then judging it afresh against blue before the switch"
            )
        elif phase == "promoting":
            self.state, doing = "shifted", "promoting it again"
        elif phase == "shifting":
            self.state, self._resume_step = "smoked", int(found.get("step") or 1)
            doing = f"shifting again from step {self._resume_step}, judged afresh"
        else:  # deployed or smoke-tested: green exists, no production traffic yet
            self.state, doing = "deployed", "smoke-testing green again"
        self.split = self.pattern.read_split()
        self._event(
            "recover",
            f"{what}; resuming it (on_interrupted): {doing}; traffic now green "
            f"{self.split.get('green', 0)}%",
            green_percent=self.split.get("green", 0),
            split=self.split,
        )
        if self.switches_at_once and self.state == "deployed":
            blue = self.baseline  # read again by _baseline_again
            self._event(
                "judge",
                f"blue as measured before the switch, read again from CloudWatch "
                f"({blue.start:%H:%M:%S}–{blue.end:%H:%M:%S}): {blue.requests} requests, "
                f"{blue.errors} 5xx, p90 {blue.p90_ms:.1f} ms",
            )
            self._start_judge()

    def _checkpoint(self, phase: str, **fields: Any) -> None:
        """Keep where the release is in its lock item (in AWS), before each change it makes."""
        if self.mutated and not self._exit_hook:
            # A cell that is not bgkit's may fail after this change: papermill then stops
            # running cells, and `finish` never comes. The kernel's exit still puts blue back.
            atexit.register(self._at_exit)
            self._exit_hook = True
        if self.lock is None:
            return
        self._progress.update(phase=phase, **fields)
        state = {
            **self._progress,
            "mutated": self.mutated,
            "runbook": self.params.runbook,
            "resources": dict(self.params.resources),
            "plan": self._steps(),
            "pattern": checkpoint(self.pattern),
            "at": self.clock.now().isoformat(),
        }
        try:
            self.lock.save(state)
        except Exception as error:
            if getattr(error, "response", {}).get("Error", {}).get("Code") != (
                "ConditionalCheckFailedException"
            ):  # recorded: this process still knows where traffic is
                self._event(
                    "error",
                    f"could not keep the release's state in the lock item ({type(error).__name__}"
                    f": {error}); if this run dies now, the next release of the target will not "
                    "know where it was",
                )
                return
            # Another release took the target over (this one's lease ran out: a laptop asleep,
            # a lost network): the traffic is in its hands now, not to be touched by this one.
            self.mutated = False
            raise TrafficError(
                f"the lock of {self.record.target_id} was taken over by another release while "
                f"this one's lease had run out; stopped before changing anything more (phase "
                f"{phase})",
                split=self.split,
            ) from None

    def _lock_target(self, state: dict[str, Any] | None = None) -> bool:
        """One release per target, before anything is changed (bgkit.lock). True if locked."""
        if not self.params.lock_table:
            self._event("lock", "no lock (lock_table is empty): nothing stops a second release")
            return False
        self.lock = self._new_lock()
        took_over = self.lock.acquire(state)
        self._event(
            "lock",
            f"locked {self.record.target_id} for this release in {self.params.lock_table} "
            f"(lease {self.params.lock_lease_seconds:g} s, renewed while it runs)"
            + (f"; {took_over}" if took_over else ""),
        )
        return True

    def _unlock(self) -> None:
        lock, self.lock = self.lock, None
        if lock is None:
            return
        if lock.lost:
            self._event("error", f"the lock's lease could not be renewed: {lock.lost}")
        if self.mutated:  # failed without putting blue back: the next release must see it
            lock.abandon()
            self._event(
                "lock",
                f"left the lock item of {self.record.target_id} with this release's state "
                f"({self._progress.get('phase')}) and an ended lease: the next release of the "
                "target finds it and rolls it back (or resumes it: on_interrupted)",
            )
            return
        try:
            released = lock.release_lock()
        except Exception as error:  # recorded: the lease runs out by itself
            self._event(
                "error",
                f"could not release the lock ({type(error).__name__}: {error}); it expires "
                f"{self.params.lock_lease_seconds:g} s after its last renewal",
            )
            return
        self._event(
            "lock",
            "released the lock"
            if released
            else "the lock was no longer this release's (taken over after its lease ran out)",
        )

    def _publish(self, *, plot: bool) -> dict[str, Any]:
        record = self.record
        if self.state in _TERMINAL:
            self._unlock()
        for field, read in (
            ("final_split", self.pattern.read_split),
            ("final_state", self.pattern.describe),
        ):
            try:
                setattr(record, field, read())
            except Exception as error:  # recorded: the record says what it could not read back
                self._event(
                    "error", f"could not read the {field} back: {type(error).__name__}: {error}"
                )
        figure = None
        if plot and record.events:
            try:
                figure = self._figure()
            except Exception as error:  # recorded: a missing plot must never lose the record
                self._event("error", f"no plot: {type(error).__name__}: {error}")
        # A person's notebook: its kernel seals the record once the cell has shown it, or at its
        # exit, when the displays below may no longer reach anyone (bgkit.lab_record).
        published(record.to_dict())
        self._show(record, figure)
        return record.to_dict()

    def _figure(self):
        from . import plots

        first = datetime.fromisoformat(self.record.events[0]["at"])
        if self.baseline is not None:  # show the window green was judged against
            first = min(first, self.baseline.start)
        end = _ceil_seconds(self.clock.now(), self.params.metric_period_seconds)
        self._await_metrics(self.pattern.metric_source(), end)
        series = _metrics.read_series(
            self.session,
            self.pattern.metric_source(),
            first - timedelta(seconds=5),
            end,
            self.params.metric_period_seconds,
        )
        if self.switches_at_once:
            series = _serving_only(series, self.record.events)
        title = f"{self.params.runbook} · {self.params.release} · {self.record.outcome}"
        judge = self.judge
        return plots.release_figure(
            series,
            self.record.events,
            title,
            evidence=judge.evidence if judge else None,
            boundaries={m: t.boundary for m, t in judge.worse.items()} if judge else None,
        )

    def _show(self, record: Record, figure: Any) -> None:
        import pandas as pd

        from .record import to_json

        self._display.markdown(record.summary_markdown())
        timeline = pd.DataFrame(
            [
                {"at (UTC)": e["at"][11:23], "kind": e["kind"], "what": e["message"]}
                for e in record.events
            ]
        )
        self._display.markdown("### Timeline")
        self._display.table(timeline)
        if record.verdicts:
            self._display.markdown("### Verdicts (CloudWatch, per bake window)")
            self._display.table(pd.DataFrame([_verdict_row(v) for v in record.verdicts]))
        if figure is not None:
            self._display.markdown("### Traffic, latency and errors (measured, from CloudWatch)")
            self._display.figure(figure)
        self._display.record(record.to_dict(), to_json)

    def _event(self, kind: str, message: str, **data: Any) -> None:
        self.record.add_event(self.clock.now(), kind, message, **data)
        self._display.text(f"[{self.clock.now():%H:%M:%S}] {message}")

    def _note(self, message: str) -> str:
        self._display.text(message)
        return self.state

    def _await_metrics(self, source: _metrics.MetricSource, end: datetime) -> None:
        """Wait until CloudWatch has the last period before `end`, or metric_lag_seconds after it."""
        self._sleep_until(end)
        period = timedelta(seconds=self.params.metric_period_seconds)
        deadline = end + timedelta(seconds=self.params.metric_lag_seconds)
        while self.clock.now() < deadline:
            if _metrics.has_datapoint(self.session, source, end - period, end, period.seconds):
                return
            self._pause(min(0.25, (deadline - self.clock.now()).total_seconds()))

    def _sleep_until(self, when: datetime) -> None:
        """Sleep until `when`: at once, or a second at a time while a person watches."""
        while (remaining := (when - self.clock.now()).total_seconds()) > 0:
            self.clock.sleep(min(remaining, 1.0) if self._show_progress() else remaining)

    def _pause(self, seconds: float) -> None:
        """A short wait in a loop that waits for AWS or CloudWatch; the live display follows."""
        self._show_progress()
        self.clock.sleep(seconds)

    # -- live progress (bgkit.progress) -------------------------------------------------

    @contextlib.contextmanager
    def _live_progress(self, step: str) -> Iterator[None]:
        """While `step` runs, a person in Jupyter sees one display of where it is, updated in
        place once a second (none headless); it ends saying how the step ended."""
        self._activity, self._live, self._window = step, None, None
        try:
            yield
        finally:
            if self._live:
                self._activity, self._window = f"{step} ended; the release is {self.state}", None
                self._show_progress(force=True)
            self._live = False

    def _show_progress(self, force: bool = False) -> bool:
        """Show or update the live display; False when there is none (headless, tests)."""
        if self._live is False:
            return False
        now = self.clock.now()
        try:
            if self._live is None:
                self._live = self._display.live(self._progress_view(now)) or False
            elif force or self._live_at is None or (now - self._live_at).total_seconds() >= 1:
                self._live.update(self._progress_view(now))
            else:
                return True
        except Exception as error:  # recorded; a display never stops a release
            self._live = False
            self._event("error", f"no live progress: {type(error).__name__}: {error}")
            return False
        self._live_at = now
        return bool(self._live)

    def _progress_view(self, now: datetime) -> dict[str, Any]:
        rows: list[tuple[str, str]] = []
        if self.split:
            traffic = ", ".join(f"{colour} {percent}%" for colour, percent in self.split.items())
            rows.append(("traffic (as last read back)", traffic))
        if self._window is not None:
            start, end = self._window
            left = math.ceil((end - now).total_seconds())
            rows.append((
                "judged window (UTC)",
                f"{start:%H:%M:%S}–{end:%H:%M:%S}, "
                + (f"{left} s left" if left > 0 else "waiting for its last CloudWatch datapoints"),
            ))  # fmt: skip
        if self.record.verdicts:
            last = self.record.verdicts[-1]
            where = f"step {last['step']}" if "step" in last else f"{last['green_percent']}% green"
            rows.append(("last verdict", f"{where}: {last['decision']}: {last['reason']}"))
        if self.judge is not None:
            rows.append((
                "evidence that green is worse",
                " · ".join(
                    f"{METRICS[m]} {t.e_value:.3g} (rolls back at {t.boundary:g})"
                    for m, t in self.judge.worse.items()
                ),
            ))  # fmt: skip
        headline = f"{self.params.runbook} · {self.params.release} · {self._activity}"
        return {"headline": headline, "rows": rows}


def _where(found: dict[str, Any]) -> str:
    """Where an interrupted release was, from the state in its lock item."""
    phase = found.get("phase")
    if phase == "shifting" and found.get("step"):
        return f"at step {found['step']} (green {found.get('green_percent')}%)"
    return {
        "deploying": "while deploying green",
        "deployed": "after green was deployed",
        "smoked": "after its smoke test",
        "shifting": "while traffic shifted",
        "promoting": "while promoting",
        "rolling_back": "while rolling back",
    }.get(phase, f"in phase {phase}")


def _serving_only(series: Any, events: list[dict[str, Any]]) -> Any:
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


def _floor_seconds(when: datetime, period: int) -> datetime:
    epoch = when.timestamp()
    return datetime.fromtimestamp(math.floor(epoch / period) * period, tz=when.tzinfo)


def _ceil_seconds(when: datetime, period: int) -> datetime:
    epoch = when.timestamp()
    return datetime.fromtimestamp(math.ceil(epoch / period) * period, tz=when.tzinfo)


def _verdict_row(v: dict[str, Any]) -> dict[str, Any]:
    window, blue_is = v["window"], v["blue_is"]
    g, b = v["window_counts"]["green"], v["window_counts"]["blue"]
    if blue_is == "baseline":  # blue measured before an all-at-once switch
        b = v["total"]["blue"]

    def share(counts: dict[str, Any], what: str) -> str:
        n, k = counts["requests"], counts[what]
        return "" if not n or k is None else f"{100 * k / n:.2f}% ({k})"

    def ms(x: float | None) -> str:
        return "" if x is None else f"{x:.1f}"

    def evidence(metric: str) -> str:
        return f"{v['e_values'][metric]:.3g} / {v['boundaries'][metric]:g}"

    return {
        "step": v.get("step", ""),
        "green %": v["green_percent"],
        "window (UTC)": f"{window['start'][11:19]}–{window['end'][11:19]}"
        + (
            f" (blue {v['blue_window']['start'][11:19]}–{v['blue_window']['end'][11:19]})"
            if "blue_window" in v
            else ""
        ),
        "decision": v["decision"],
        "blue" + (" (before)" if blue_is == "baseline" else "") + " req": b["requests"],
        "blue 5xx": share(b, "errors"),
        "blue slow": share(b, "slow"),
        "green req": g["requests"],
        "green 5xx": share(g, "errors"),
        "green slow": share(g, "slow"),
        "green p99 ms": ms(v["p99_ms"]["green"]),
        "5xx evidence": evidence("errors"),
        "slow evidence": evidence("slow"),
        "reason": v["reason"],
    }


def _probe(url: str, token: str = "") -> dict[str, Any]:
    """One GET of `url`; with a token, "Authorization: Bearer <token>" (never after a redirect,
    which could lead to another host, and never in the result)."""
    request = urllib.request.Request(url)
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            status, error = response.status, None
    except urllib.error.HTTPError as http_error:
        status, error = http_error.code, None
    except (urllib.error.URLError, OSError) as network_error:
        status, error = 0, f"{type(network_error).__name__}: {network_error}"
    return {"status": status, "ms": 1000 * (time.perf_counter() - started), "error": error}


class _IPythonDisplay:
    """Shows the record in the notebook. Tests pass their own object with the same methods."""

    def markdown(self, text: str) -> None:
        from IPython.display import Markdown, display

        display(Markdown(text))

    def text(self, text: str) -> None:
        print(text, flush=True)

    def table(self, frame: Any) -> None:
        from IPython.display import display

        # escaped: a reason such as "evidence 34 < 125" is text, not the start of an HTML tag
        display(frame.style.hide(axis="index").format(escape="html") if len(frame) else frame)

    def live(self, view: dict[str, Any]) -> Any:
        """A display of a release's progress that later views replace; None when no person
        watches (headless: papermill, CI), whose record has the events instead."""
        if not is_interactive():
            return None
        from .progress import Live

        return Live(view)

    def widget(self, widget: Any) -> Any:
        """Show a widget; returns its display, for `replace`."""
        from IPython.display import display

        return display(widget, display_id=True)

    def replace(self, handle: Any, text: str) -> None:
        """Replace what a display shows (a widget no longer to be clicked) by Markdown text."""
        from IPython.display import Markdown

        handle.update(Markdown(text))

    def figure(self, figure: Any) -> None:
        from IPython.display import Image, display

        from .plots import png

        display(Image(data=png(figure), format="png"))

    def record(self, record: dict[str, Any], to_json: Any) -> None:
        import json

        from IPython.display import display

        summary = f"bgkit record: release {record['release']} {record['outcome']}"
        display({RECORD_MIME: json.loads(to_json(record)), "text/plain": summary}, raw=True)


_ipython_display = _IPythonDisplay()


class _AtExitDisplay:
    """What a release shows at its interpreter's exit: the kernel's channel to the notebook may
    be closed by then (a print to it would raise), so its lines go to the process's own stderr
    (the terminal of `bgkit run`, a Jupyter server's log) and the rest nowhere."""

    def text(self, text: str) -> None:
        print(text, file=sys.__stderr__, flush=True)

    def __getattr__(self, name: str) -> Any:  # markdown, table, figure, record: not shown
        return lambda *args, **kwargs: None


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
