"""The release a runbook calls: its steps, in the order a runbook runs them.

    preflight ─► deploy ─► smoke test ─► shift: for each step, bake and judge blue vs green
                                            ROLLBACK ─► roll back, stop
                                            NO_DATA  ─► hold another window (never a pass)
              ─► (the gate: bgkit.gate) ─► promote ─► finish: read back, record, plot

How traffic moves is chosen once, from the pattern (bgkit.release.traffic: bgkit's steps, an
all-at-once switch; bgkit.release.managed: a managed service's shift). The rest of the release
lives in its rooms, mixed into `Release`: evidence for the judge, recovery and the lock,
publishing the record, and waiting with a live view.

Each step is safe to call again (a re-run notebook cell): it does nothing once the release
has moved past it. Any exception after the first change returns all traffic to blue before
it propagates, and the record says why (`_guard`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import Any

from .. import patterns, planning
from ..aws import AwsSession
from ..clock import Clock, SystemClock
from ..errors import PreflightError, RollbackFailed
from ..judge import Judge
from ..jupyter import is_interactive
from ..lock import ReleaseLock
from ..notify import Notifier
from ..params import ReleaseParams
from ..record import Record
from . import display as displays
from .evidence import Evidence
from .managed import Managed
from .planned import Planned
from .publishing import Publishing
from .recovery import Recovery
from .schema import SchemaStep
from .smoke import probe, smoke
from .states import TERMINAL
from .traffic import AtOnce, Steps, Traffic
from .waits import Waits, shows_progress


class Release(Evidence, Recovery, Publishing, SchemaStep, Planned, Waits):
    """One release of one target, by one pattern, with its record. A runbook makes it and calls
    its steps; a person's gate (bgkit.gate) stands between `shift` and `promote`."""

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
        # A plan only reads: its session refuses any other call before it is sent.
        session.read_only = params.dry_run
        self.clock = clock or SystemClock()
        self.pattern = pattern or patterns.get(params.runbook)(session, params.resources)
        # A pattern that waits for AWS to finish a change it made (a new group's instances to
        # pass health checks, a drain) waits on the release's clock, so tests need not sleep.
        self.pattern.clock = self.clock
        self.plan = params.traffic_plan
        # How traffic moves, chosen once: the steps below call it, whatever the way.
        self.traffic = _traffic(self)
        # A service that moves all traffic at once (App Runner): green is judged after the
        # switch against blue as measured just before the deployment.
        self.baseline: Any = None
        # The judge compares green with blue period by period (see bgkit.judge); it is made
        # once blue's latency is known, before green gets production traffic.
        self.judge: Judge | None = None
        self._display = display or displays.ipython_display
        self.state = "new"
        # a bgkit.gate.PromotionGate waiting for a person's decision: promote() waits for it
        self.pending_gate: Any = None
        self.split: dict[str, int] | None = None
        self.mutated = False
        self.deployment_id: str | None = None  # managed patterns: the service's deployment
        self.lock: ReleaseLock | None = None
        self._progress: dict[str, Any] = {}  # the in-flight state kept in the lock item
        self._resume_step = 1  # the first plan step to shift to (a resumed release: later)
        self._exit_hook = False  # _at_exit is registered (from the first change on)
        self._notifier = Notifier(session, params.notify_topic_arn, params.notify_webhook)
        self._planned_state: dict[str, Any] = {}  # what a plan read at preflight
        self._plan_to_follow: dict[str, Any] | None = None  # follow_plan: the plan's calls
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
            if found is not None and self.params.dry_run:
                raise PreflightError(
                    f"an earlier release of this target ({found.get('release')}) died mid-way "
                    f"in phase {found.get('phase')}; a plan cannot say what the release would "
                    "do until it is rolled back or resumed: run the release (on_interrupted)",
                    parameter="dry_run",
                )
            if found is not None:  # an earlier release of this target died mid-way
                self._take_on(found)
                if self.state != "new":  # resumed: carried on where it was
                    return self.split or {}
                split = self.pattern.preflight()  # rolled back: the target as it is now
            else:
                # Read-only checks first: a release refused for a missing resource writes
                # nothing, not even a lock item. The split is read again under the lock.
                split = self.pattern.preflight()
                self._schema_preflight()
                if self.params.follow_plan:  # refused here if anything drifted since the plan
                    self._check_plan(split)
                if self.params.dry_run:
                    self._planned_state = planning.state_of(self, split)
                elif self._lock_target():
                    split = self.pattern.read_split()
            self.split = split
            plan = self.traffic.described_plan()  # a service's, read now that it is locked
            if plan is not None:
                self.record.plan = plan
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

    @shows_progress("deploy")
    def deploy(self) -> str:
        """Deploy green with no production traffic (where the pattern makes green, or a managed
        service's deployment: until green waits for its smoke test)."""
        if self.state != "ready":
            return self._note(f"deploy not run (state: {self.state})")
        with self._guard("deploy"):
            if self.params.dry_run:  # a plan stops here, having changed nothing
                self._plan_release()
                return self.state
            self._schema_before_traffic()
            if self.state == "ready":  # not refused by the schema check
                self.traffic.deploy()
        return self.state

    @shows_progress("smoke test")
    def smoke_test(self) -> dict[str, Any] | str:
        """Requests to green on its test route, before green gets any production traffic."""
        nothing_to_deploy = self.state == "ready" and not self.traffic.deploys_green()
        if self.state != "deployed" and not nothing_to_deploy:
            return self._note(f"smoke test not run (state: {self.state})")
        with self._guard("smoke test"):
            self._schema_before_traffic()
            if self.state in TERMINAL:  # refused by the schema check
                return self.record.smoke
            if self._smoke_passed() and self.traffic.after_smoke():
                self.state = "smoked"
                self._checkpoint("smoked")
        return self.record.smoke

    def _smoke_passed(self) -> bool:
        """Smoke-test green, or record that there is nothing to test; a failure ends the release."""
        own_probe = getattr(self.pattern, "smoke_probe", None)
        url, count = self.params.smoke_url, self.params.smoke_requests
        if own_probe is not None:
            url = self.pattern.smoke_target()
        elif not url:
            self.record.smoke = {"skipped": True, "reason": "no smoke_url given"}
            self._event("smoke", "smoke test skipped: no smoke_url given")
            return True
        # A pattern's own probe (lambda_codedeploy: Invoke with IAM) takes no token.
        token = self.params.smoke_token
        headers = getattr(self.pattern, "smoke_headers", dict)()
        from_green = getattr(self.pattern, "smoke_served_by_green", None)
        self.record.smoke = smoke(
            own_probe or (lambda: probe(url, token, headers, from_green)), url, count
        )
        failures = self.record.smoke["failures"]
        if not failures:
            self._event(
                "smoke", f"smoke test passed: {count}/{count} requests to green returned 2xx"
            )
            return True
        reason = f"smoke test failed: {failures}/{count} requests to {url} were not 2xx"
        self._event("smoke", reason)
        if self.mutated:
            self.rollback(reason + self.traffic.smoke_failed)
        else:
            self._end("rolled_back", reason + "; green never received production traffic")
        return False

    @shows_progress("shift")
    def shift(self) -> str:
        """Move traffic to green step by step, judging green against blue after each bake."""
        if self.state != "smoked":
            return self._note(f"shift not run (state: {self.state})")
        with self._guard("shift"):
            self.traffic.shift()
        return self.state

    @shows_progress("promote")
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
            split = self.traffic.to_green()
            if split is None:  # the service stopped its deployment instead: rolled back
                return self.state
            self.split = split
            reason = self._promotion_reason()
            self._event(
                "promote", f"promoted: green 100% ({reason})", green_percent=100, split=self.split
            )
            self._end("promoted", reason)  # green has all traffic and passed every verdict
            self.mutated = False  # nothing left to undo: a later death leaves green serving
            self._checkpoint("promoted")
            self._retire_blue()
        return self.state

    def _retire_blue(self) -> None:
        """After the promotion, where the pattern does it: take blue out of service (e.g. detach
        blue's instances once they have drained). A good release is never rolled back for it."""
        retire_blue = getattr(self.pattern, "retire_blue", None)
        if retire_blue is None:
            return
        try:
            self._event("promote", retire_blue(functools.partial(self._event, "promote")))
        except Exception as error:  # recorded: green serves, blue is left to finish by hand
            self._event(
                "error",
                f"green has all traffic, but taking blue out of service did not finish "
                f"({type(error).__name__}: {error}); finish it by hand (see the runbook's "
                "first cell)",
            )
        self.record.finished_at = self.clock.now()  # the release's work ends here

    def rollback(self, reason: str) -> str:
        """Return all traffic to blue. Raises RollbackFailed, naming where traffic is, if it cannot."""
        self._checkpoint("rolling_back")
        try:
            self.split = self.traffic.to_blue()
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
            f"rolled back: blue 100% ({reason})"
            + (f"; {how}" if how else "")
            + self._migrations_left(),
            green_percent=0,
            split=self.split,
        )
        self._end("rolled_back", reason)
        self.mutated = False  # blue has all traffic again
        self._checkpoint("rolled_back")
        return self.state

    def finish(self, *, plot: bool = True) -> dict[str, Any]:
        """Read back the final state, then show and emit the record."""
        if self.state not in TERMINAL:
            with self._guard("finish"):
                if self.mutated:
                    self.rollback(f"finished in state {self.state!r} without a promotion")
                else:
                    self._end(
                        "rolled_back", f"finished in state {self.state!r} before any traffic change"
                    )
        return self._publish(plot=plot)

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
                if self.state in TERMINAL:  # e.g. Ctrl-C while blue drains after the promotion
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
        if self.state in TERMINAL or not self.mutated:
            return
        self._display, self._live = displays.AtExitDisplay(), False  # no notebook listens any more
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
        if self._notifier.enabled and not self.params.dry_run:  # a plan tells no one
            for line in self._notifier.send(event, self.record, self.split):
                self._event("notify", line)

    def _where_is_traffic(self) -> dict[str, int] | None:
        try:
            return self.pattern.read_split()
        except Exception as error:  # the record must still say we do not know
            self._event("error", f"could not read the split back: {type(error).__name__}: {error}")
            return None

    def _event(self, kind: str, message: str, **data: Any) -> None:
        self.record.add_event(self.clock.now(), kind, message, **data)
        self._display.text(f"[{self.clock.now():%H:%M:%S}] {message}")

    def _note(self, message: str) -> str:
        self._display.text(message)
        return self.state


def _traffic(release: Release) -> Traffic:
    """How traffic moves for the release's pattern, by what the pattern says of itself."""
    if getattr(release.pattern, "managed", False):
        return Managed(release)
    if getattr(release.pattern, "switches_at_once", False):
        return AtOnce(release)
    return Steps(release)
