"""What a deployment pattern must provide: how to read and change its traffic control.

The release loop (`bgkit.release`) owns everything else: plans, bakes, judging,
rollback and the record. A pattern never judges or records, and sleeps only on the release's
clock (set as its `clock`) while AWS finishes a change the pattern made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..aws import AwsSession
from ..metrics import MetricSource

Split = dict[str, int]  # colour -> percent of traffic, e.g. {"blue": 75, "green": 25}
Checker = Callable[[str, str], None]


class Pattern(Protocol):
    name: ClassVar[str]
    title: ClassVar[str]
    # Pattern-specific parameters (resource identifiers) and how to validate each.
    parameters: ClassVar[Mapping[str, Checker]]
    # The AWS API actions it calls, as IAM names them: `bgkit iam-policy` allows them (bgkit.iam),
    # and the tests hold them to the sandbox's log of the runbook's calls. Optional,
    # `iam_dependent_actions`: statements (Action, Condition) for what IAM checks besides a call
    # (ec2:RunInstances for CreateAutoScalingGroup), which no log of calls shows.
    iam_actions: ClassVar[tuple[str, ...]]

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None: ...

    def target_id(self) -> str:
        """The resource whose traffic this release controls (one release per target)."""

    def preflight(self) -> Split:
        """Check every resource exists and is releasable; return the current split. Read-only."""

    def read_split(self) -> Split:
        """The split as AWS reports it now."""

    def set_split(self, green_percent: int) -> Split:
        """Send `green_percent` of traffic to green, the rest to blue; return the read-back split."""

    def changes_to(self, green_percent: int) -> list[Any]:
        """The calls `set_split(green_percent)` sends, as bgkit.planning `Change`s (and `Wait`s):
        `set_split` sends exactly these, and a plan lists them. One builder for both."""

    def metric_source(self) -> MetricSource:
        """Where CloudWatch holds this pattern's per-colour evidence."""

    def describe(self) -> dict[str, Any]:
        """The traffic control's state as AWS reports it, for the record."""

    # Optional, for plans (bgkit.planning), each built by the code that sends the same calls:
    #
    #   def versions(self) -> dict[str, str]:
    #       """What blue and green run, as AWS reports it (a plan's state: a release following
    #       the plan is refused if it changed)."""
    #   def deploy_changes(self, release: str) -> list[Change | Wait]:   # with deploy_green
    #   def retire_changes(self) -> list[Change | Wait]:                  # with retire_blue
    #   def rollback_changes(self, green_percent: int) -> list[Change | Wait]:
    #       """A rollback's calls with green at `green_percent` (default: changes_to(0))."""
    #
    # Optional, for a self-driven pattern that creates green itself (a new Auto Scaling group,
    # an API Gateway canary deployment) instead of finding it deployed:
    #
    #   def deploy_green(self, release: str, note: Callable[[str], None]) -> str:
    #       """Create green with no production traffic and wait until it can be smoke-tested;
    #       `note` records progress, the return value is the last event. From the first call
    #       on, `set_split(0)` must undo it as far as traffic goes (the release's rollback)."""
    #
    #   def retire_blue(self, note: Callable[[str], None]) -> str:
    #       """After the promotion: take blue out of service (e.g. detach its instances once they
    #       have drained), keeping it for a rollback; returns what was done, for the record."""


@dataclass(frozen=True)
class ServicePlan:
    """A pattern whose service has its own ways of moving traffic (AppConfig's deployment
    strategies) takes them as the release's `plan` too: `check(plan)` says whether `plan`
    names one, `allowed` says what such a plan looks like (for a refusal's message)."""

    check: Callable[[str], bool]
    allowed: str


# Where a managed deployment is, in the release loop's terms.
PHASES = ("deploying", "ready", "shifting", "shifted", "succeeded", "stopped")


@dataclass(frozen=True)
class Progress:
    """A managed deployment as its service reports it: its id, phase (one of PHASES), the
    service's own status word, and the service's reason when it stopped by itself."""

    id: str
    phase: str
    status: str
    reason: str = ""


class ManagedPattern(Pattern, Protocol):
    """A pattern whose service shifts traffic by its own configuration (CodeDeploy, ECS).

    bgkit starts the deployment, smoke-tests green while the service holds it on the test
    route (`ready_wait`), lets it continue, judges while it shifts, and stops it with
    rollback on a bad verdict. It never sets weights itself.
    """

    managed: ClassVar[bool]  # True
    ready_wait: ClassVar[bool]  # the service holds green on a test route until continued
    judge_seconds: float  # how long one verdict takes (bake + metric lag); set by the release

    def plan_description(self) -> str: ...
    def start_deployment(self, release: str) -> str: ...
    def progress(self) -> Progress: ...
    def continue_after_smoke(self) -> str:
        """Let green go on to production traffic; returns what was done, for the record."""

    def end_wait_after_shift(self) -> None:
        """Blue is kept after the shift for a rollback; all verdicts passed, so end that early
        where the service allows it (CodeDeploy TERMINATION_WAIT), else let it run out."""

    def stop_and_roll_back(self, clock: Any, release: str, note: Callable[[str], None]) -> None:
        """Stop the deployment so that all traffic returns to blue; return when it has."""

    def max_shift_seconds(self) -> float: ...
    def wait_after_shift_seconds(self) -> float:
        """How long the service keeps blue after the shift when it cannot be ended early."""

    def all_at_once(self) -> bool: ...

    # For plans (bgkit.planning): the calls each of the methods above sends, built by the same
    # code (the method sends what its builder returns), as `Change`s and `Wait`s.
    def start_changes(self, release: str) -> list[Any]: ...
    def continue_changes(self) -> list[Any]: ...
    def promote_changes(self) -> list[Any]: ...
    def stop_changes(self) -> list[Any]: ...

    # Optional, where a rollback's calls depend on the point (bgkit.release.managed.stopped_at):
    #   def stop_changes_at(self, phase: str) -> list[Any]:  # phase: one of PHASES
    #   def rollback_after_shift_changes(self, release: str) -> list[Any]:
    #       """A deployment that ended with its shift can no longer be stopped: deploy blue back."""


class TargetGroupPair:
    """Reads of a pattern whose blue and green are two target groups of one load balancer,
    weighted by a forward action that the service moves (`_weights`)."""

    blue_tg: str | None
    green_tg: str | None
    _load_balancer_arn: str | None

    def _weights(self) -> dict[str, int]:
        raise NotImplementedError

    def read_split(self) -> Split:
        weights = self._weights()
        return split_of(weights.get(self.blue_tg, 0), weights.get(self.green_tg, 0))

    def metric_source(self) -> MetricSource:
        from ..metrics import alb_source

        return alb_source(self._load_balancer_arn, {"blue": self.blue_tg, "green": self.green_tg})


def checkpoint(pattern: Any) -> dict[str, Any]:
    """A pattern's state: the plain data its preflight read and its changes made (target groups,
    the deployment it started, blue's image...), kept with the release's lock in AWS so that
    the next release of the target can undo or resume it after this process died. Clients,
    the clock and anything that is not plain JSON data are not state."""
    state = {}
    for name, value in vars(pattern).items():
        if name == "clock":
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # a client, a datetime-bearing description: read again when needed
        state[name] = value
    nested = getattr(pattern, "deployment", None)  # CodeDeploy patterns keep their deployment there
    if nested is not None and hasattr(nested, "deployment_id"):
        state["deployment.deployment_id"] = nested.deployment_id
    return state


def restore(pattern: Any, state: dict[str, Any]) -> None:
    """Put back what `checkpoint` kept (on a fresh pattern made from the same parameters)."""
    for name, value in state.items():
        if name == "deployment.deployment_id":
            pattern.deployment.deployment_id = value
        else:
            setattr(pattern, name, value)


def forward_action(actions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The forward action among a listener's or rule's actions (authenticate-* may come first)."""
    return next((a for a in actions if a["Type"] == "forward"), None)


def forward_weights(action: dict[str, Any]) -> dict[str, int]:
    """Target group ARN -> weight of a forward action (a plain TargetGroupArn weighs 1)."""
    if "ForwardConfig" in action:
        return {
            g["TargetGroupArn"]: g.get("Weight", 1) for g in action["ForwardConfig"]["TargetGroups"]
        }
    return {action["TargetGroupArn"]: 1}


def split_of(blue_weight: int, green_weight: int) -> Split:
    """Weights as percentages of traffic, blue + green = 100 (both 0 when neither gets any)."""
    total = blue_weight + green_weight
    if total == 0:
        return {"blue": 0, "green": 0}
    green = round(100 * green_weight / total)
    # 0 and 100 mean none at all: a 0.1 % canary (weights 999/1) is 1 %, not 0 %.
    green = min(max(green, 1 if green_weight else 0), 99 if blue_weight else 100)
    return {"blue": 100 - green, "green": green}
