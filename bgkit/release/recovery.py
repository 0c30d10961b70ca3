"""Recovery: one release per target, and what happens when one dies mid-way.

Before its first change a release locks its target (bgkit.lock: a DynamoDB item with a lease
it renews). Before each change it keeps where it is in that item (`_checkpoint`). The next
release of the target finds a release that died after changing something (`_find_interrupted`)
and takes it over (`_take_on`): it rolls it back, with the dead release's own resources, or,
with on_interrupted = "resume", carries it on from where it was (`_resume`).

A mixin of `Release`; it uses the release's session, params, record, pattern and traffic.
"""

from __future__ import annotations

import atexit
from datetime import datetime, timedelta
from typing import Any

from .. import patterns
from ..errors import PreflightError, TrafficError
from ..lock import ReleaseLock
from ..patterns.base import checkpoint, restore


class Recovery:
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
                    f"{where(found)}: run it again with release = {found['release']}, or with "
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

    def _take_on(self, found: dict[str, Any]) -> None:
        """Take the lock of an interrupted release with its state, then roll it back (default)
        or resume it (on_interrupted = "resume"), saying in the record what was found."""
        kept = ("phase", "step", "green_percent", "baseline")
        self._progress = {k: found[k] for k in kept if k in found}
        self._lock_target(state={**found, "inherited_from": found["release"]})
        self.mutated = True  # this release now answers for the traffic the other one moved
        what = (
            f"release {found['release']} of {found['operator']} (on {found['holder']}, since "
            f"{found['since']}) was interrupted {where(found)}"
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
        if found.get("phase") == "promoting" and (done := self.traffic.finished_by_itself()):
            self._event(
                "recover",
                f"{what}; its deployment {done.id} had passed every verdict and has "
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
        split = self.traffic.to_blue()
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
        if found.get("phase") == "rolling_back":
            return "it was rolling back, and a rollback is finished, not undone"
        return self.traffic.cannot_resume(found)

    def _resume(self, found: dict[str, Any], what: str) -> None:
        """Carry on the interrupted release from where it was; its judge's evidence is gone,
        so the step it was at is baked and judged again from the start."""
        doing = self.traffic.resume(found, what)
        if doing is None:  # the service stopped it meanwhile: rolled back
            return
        self.split = self.pattern.read_split()
        self._event(
            "recover",
            f"{what}; resuming it (on_interrupted): {doing}; traffic now green "
            f"{self.split.get('green', 0)}%",
            green_percent=self.split.get("green", 0),
            split=self.split,
        )
        self.traffic.resumed()

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

    def _new_lock(self) -> ReleaseLock:
        return ReleaseLock(
            self.session,
            self.params.lock_table,
            self.record.target_id,
            self.params.release,
            self.record.operator,
            self.params.lock_lease_seconds,
        )

    def _steps(self) -> list[int]:
        return [step.green_percent for step in self.plan.steps]


def where(found: dict[str, Any]) -> str:
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
