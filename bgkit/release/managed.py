"""A managed service's shift (CodeDeploy for ECS and Lambda, ECS native blue/green): the service
moves traffic by its own configuration. bgkit starts the deployment, holds green on its test
route for the smoke test (where the service can wait), lets it continue, judges every window
while it shifts (reading the split every second, so each shift is recorded when it happens),
and stops it with rollback on a bad verdict. A deployment the service stops by itself (an
alarm, a timeout) is a rollback too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import ceil_to
from ..errors import TrafficError
from ..judge import Decision
from ..patterns.base import Progress, Split
from ..planning import ByService, Point, Wait
from .states import MANAGED_WAIT_SECONDS
from .traffic import Traffic, checks_ratio

PAST_DEPLOY = ("ready", "shifting", "shifted", "succeeded", "stopped")


class Managed(Traffic):
    def __init__(self, release: Any) -> None:
        super().__init__(release)
        # the service's wait after the shift must outlast one verdict
        release.pattern.judge_seconds = (
            release.params.bake_seconds + release.params.metric_lag_seconds
        )
        self._seen_split: Split | None = None  # the split as last read: only changes are shifts
        self._split_log: list[tuple[datetime, Split]] = []  # (read at, split)

    def described_plan(self) -> str | None:
        return self.release.pattern.plan_description()

    def deploy(self) -> None:
        """Start the deployment and wait until green waits for its smoke test."""
        release = self.release
        release._start_judge()  # blue is measured before green exists
        if not release.pattern.ready_wait:
            release._event(
                "deploy",
                "green is published; the deployment starts after the smoke test, "
                "since this service has no test route to hold green on",
            )
            release.state = "deployed"
            return
        deployment_id = self._start("deployed")
        release._event("deploy", f"deployment {deployment_id} created")
        progress = self.wait_phase(PAST_DEPLOY)
        if progress.phase == "stopped":
            self.stopped(progress, "before its smoke test")
            return
        if progress.phase != "ready":
            raise TrafficError(
                f"deployment {deployment_id} moved past its test-traffic wait without bgkit's "
                f"smoke test (phase {progress.phase})"
            )
        release._event(
            "deploy",
            f"deployment {deployment_id}: green is deployed and waits for the smoke test "
            "before any production traffic",
        )
        release.state = "deployed"

    def after_smoke(self) -> bool:
        release = self.release
        if release.pattern.ready_wait:
            done = release.pattern.continue_after_smoke()
            release._event("deploy", f"{done}: production traffic may shift")
            progress = self.wait_phase(PAST_DEPLOY)
            if progress.phase == "ready":  # a second wait for bgkit (a hook, then READY_WAIT)
                done = release.pattern.continue_after_smoke()
                release._event("deploy", f"{done}: the smoke test had passed")
            return True
        deployment_id = self._start("shifting")
        release._event(
            "deploy", f"deployment {deployment_id} created: production traffic may shift"
        )
        progress = self.wait_phase(("shifting", "shifted", "succeeded", "stopped"))
        if progress.phase == "stopped":
            self.stopped(progress, "before shifting")
            return False
        return True

    def _start(self, then: str) -> str:
        release = self.release
        release.mutated = True  # set before the call: a failure after AWS accepted it rolls back
        release._checkpoint("deploying")
        deployment_id = release.deployment_id = release.pattern.start_deployment(
            release.params.release
        )
        release._checkpoint(then)
        return deployment_id

    def shift(self) -> None:
        """Judge every bake window while the service shifts; stop it with rollback on ROLLBACK."""
        release = self.release
        release.state = "shifting"
        release._checkpoint("shifting")
        clock, pattern = release.clock, release.pattern
        source = pattern.metric_source()
        window = int(release.params.bake_seconds)
        since: datetime | None = clock.now()  # the first judged window starts here
        end = ceil_to(clock.now() + timedelta(seconds=window), window)
        deadline = clock.now() + timedelta(
            seconds=pattern.max_shift_seconds() + MANAGED_WAIT_SECONDS
        )
        self._seen_split = release.split  # as preflight read it: only changes are shifts
        self._split_log = [(clock.now(), dict(release.split or {"blue": 100, "green": 0}))]
        release._start_judge()
        passes = holds = mismatches = 0
        self._note_split()
        shifted_seen: datetime | None = None  # when bgkit first saw the shift complete
        while True:
            self.wait_until(end)
            progress = pattern.progress()
            release._activity = f"deployment {progress.id}: {progress.status} ({progress.phase})"
            self._note_split()
            if progress.phase == "stopped":
                self.stopped(progress, "while shifting")
                return
            if progress.phase == "ready":  # a second wait for bgkit (a hook, then READY_WAIT)
                done = pattern.continue_after_smoke()
                release._event("deploy", f"{done}: the smoke test had passed")
            if progress.phase in ("shifted", "succeeded") and shifted_seen is None:
                shifted_seen = clock.now()
            # Judge every window in which both colours served: a split at its start or its end,
            # or a shift during it (the jump to 100 % included), each as the service had it at
            # the time (read every second), not when the metrics arrived. The judge's
            # min_requests decides whether a colour served enough.
            at_start, split = self._split_at(end - timedelta(seconds=window)), self._split_at(end)
            if 0 < at_start["green"] < 100 or 0 < split["green"] < 100 or at_start != split:
                # a split the service held all through the window: green's share is known
                steady = at_start == split and checks_ratio(pattern)
                verdict = release._judge(
                    source,
                    end,
                    window,
                    since=since,
                    expected_percent=split["green"] if steady else None,
                    green_percent=split["green"],
                    hold=holds,
                )
                since = None
                if verdict.decision is Decision.ROLLBACK:
                    release.rollback(f"at {split['green']}% green: {verdict.reason}")
                    return
                if verdict.decision is Decision.NO_DATA:
                    holds += 1
                    mismatched = release.record.verdicts[-1].get("sample_ratio", {})
                    mismatches = mismatches + 1 if mismatched.get("mismatch") else 0
                    if mismatches > release.params.max_holds:
                        release.rollback(
                            f"at {split['green']}% green: {release._held_too_long(verdict.decision)}"
                        )
                        return
                else:
                    passes += 1
            # Done once every window up to the moment the shift was seen complete is judged:
            # with a metric lag, the windows just before it come in only now.
            if shifted_seen is not None and end >= shifted_seen:
                break
            if clock.now() > deadline:
                raise TrafficError(
                    f"deployment {progress.id} did not finish shifting in time",
                    split=split,
                )
            end += timedelta(seconds=window)
        release.split = pattern.read_split()
        if passes == 0 and not pattern.all_at_once():
            release.rollback(
                "no verdict while traffic shifted (too little traffic to compare green with blue)"
            )
            return
        release.state = "shifted"

    def planned(self) -> list[Point]:
        """The managed pattern's calls (start, continue after the smoke test, end blue's wait,
        stop with rollback: `*_changes`, the builders of what it sends) and the service's own
        schedule (its `plan_description`, as read at preflight)."""
        release, pattern = self.release, self.release.pattern
        # built first: a pattern's later calls may name the release it learns here
        start = pattern.start_changes(release.params.release)
        shifts = ByService(pattern.title, f"shifts traffic by {pattern.plan_description()}")
        promote = Point(
            "promote", pattern.promote_changes(), stopped_at(pattern, "shifted", release)
        )
        if pattern.ready_wait:
            held = Wait("green deployed and held on the test route, no production traffic")
            return [
                Point("deploy green", [*start, held], stopped_at(pattern, "ready", release)),
                Point(
                    "after the smoke test",
                    [*pattern.continue_changes(), shifts],
                    stopped_at(pattern, "shifting", release),
                ),
                promote,
            ]
        return [
            Point(
                "after the smoke test: start the deployment",
                [*start, shifts],
                stopped_at(pattern, "shifting", release),
            ),
            promote,
        ]

    def planned_schedule(self) -> list[dict[str, Any]]:
        pattern = self.release.pattern
        return [
            {
                "what": f"{pattern.title}: the service's shift",
                "seconds": pattern.max_shift_seconds(),
                "note": pattern.plan_description(),
            },
            {
                "what": "blue kept after the shift",
                "seconds": pattern.wait_after_shift_seconds(),
                "note": "ended early once every verdict passed, where the service allows it",
            },
        ]

    def to_green(self) -> Split | None:
        pattern = self.release.pattern
        pattern.end_wait_after_shift()
        progress = self.wait_phase(
            ("succeeded", "stopped"), longer=pattern.wait_after_shift_seconds()
        )
        if progress.phase == "stopped":
            self.stopped(progress, "while finishing")
            return None
        return pattern.read_split()

    def to_blue(self) -> Split:
        release = self.release
        release.pattern.stop_and_roll_back(
            release.clock,
            release.params.release,
            lambda message: release._event("rollback", message),
        )
        split = release.pattern.read_split()
        if split.get("green", 0) != 0 or split.get("blue", 0) != 100:
            raise TrafficError("after the rollback, blue does not have all traffic", split=split)
        return split

    def wait_until(self, when: datetime) -> None:
        """Sleep until `when`, reading the split every second so shifts are recorded when they happen."""
        release = self.release
        while (remaining := (when - release.clock.now()).total_seconds()) > 0:
            release._pause(min(1.0, remaining))
            self._note_split()

    def finished_by_itself(self) -> Progress | None:
        progress = self.release.pattern.progress()
        return progress if progress.phase == "succeeded" else None

    def cannot_resume(self, found: dict[str, Any]) -> str:
        return ""  # the service holds the deployment's state

    def resume(self, found: dict[str, Any], what: str) -> str | None:
        release = self.release
        progress = self.wait_phase(PAST_DEPLOY)
        if progress.phase == "stopped":
            release._event("recover", f"{what}; its deployment {progress.id} has stopped")
            self.stopped(progress, "while bgkit was not watching")
            return None
        release.deployment_id = progress.id
        release.record.plan = release.pattern.plan_description()
        release.state = {"ready": "deployed", "succeeded": "shifted"}.get(progress.phase, "smoked")
        if found.get("phase") == "promoting" and progress.phase == "shifted":
            release.state = "shifted"  # every verdict had passed: promote again
        return f"its deployment {progress.id} is {progress.status}"

    def wait_phase(self, phases: tuple[str, ...], longer: float = 0.0) -> Progress:
        release = self.release
        deadline = release.clock.now() + timedelta(seconds=MANAGED_WAIT_SECONDS + longer)
        while True:
            progress = release.pattern.progress()
            if progress.phase in phases:
                return progress
            if release.clock.now() > deadline:
                raise TrafficError(f"deployment {progress.id} stayed {progress.status} too long")
            release._activity = (
                f"deployment {progress.id}: {progress.status} ({progress.phase}), until it is "
                + " or ".join(phases)
            )
            release._pause(0.5)

    def stopped(self, progress: Progress, when: str) -> None:
        """The service stopped the deployment by itself (alarm, timeout, failure)."""
        self.release.rollback(
            f"deployment {progress.id} {progress.status} {when}: {progress.reason}".strip()
        )

    def _note_split(self) -> Split:
        """Read the split; record a shift event when the service has moved traffic since the last read."""
        release = self.release
        split = release.pattern.read_split()
        if split != self._seen_split:
            release._event(
                "shift",
                f"the deployment shifted green to {split['green']}%",
                green_percent=split["green"],
                split=split,
            )
            self._seen_split = split
            self._split_log.append((release.clock.now(), dict(split)))
        return split

    def _split_at(self, when: datetime) -> Split:
        """The split as bgkit last read it at or before `when` (read every second)."""
        seen = [split for at, split in self._split_log if at <= when]
        return seen[-1] if seen else self._split_log[0][1]


def stopped_at(pattern: Any, phase: str, release: Any) -> list[Any]:
    """A rollback's calls with the deployment at `phase` (one of PHASES): a pattern whose stop
    depends on it says so (`stop_changes_at(phase)`, e.g. an AppConfig flag: the deployment it
    stops is the smoke version's, then the strategy's); a deployment that ends with its shift
    (Lambda's: no termination wait) cannot be stopped at the promotion, and the pattern deploys
    blue back (`rollback_after_shift_changes`); else `stop_changes()`."""
    at_phase = getattr(pattern, "stop_changes_at", None)
    if at_phase is not None:
        return at_phase(phase)
    after_shift = getattr(pattern, "rollback_after_shift_changes", None)
    if phase == "shifted" and after_shift is not None:
        return after_shift(release.params.release)
    return pattern.stop_changes()
