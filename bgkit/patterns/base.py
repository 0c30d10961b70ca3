"""What a deployment pattern must provide: how to read and change its traffic control.

The release loop (`bgkit.release`) owns everything else: plans, bakes, judging,
rollback and the record. A pattern never sleeps, judges or records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None: ...

    def target_id(self) -> str:
        """The resource whose traffic this release controls (one release per target)."""

    def preflight(self) -> Split:
        """Check every resource exists and is releasable; return the current split. Read-only."""

    def read_split(self) -> Split:
        """The split as AWS reports it now."""

    def set_split(self, green_percent: int) -> Split:
        """Send `green_percent` of traffic to green, the rest to blue; return the read-back split."""

    def metric_source(self) -> MetricSource:
        """Where CloudWatch holds this pattern's per-colour evidence."""

    def describe(self) -> dict[str, Any]:
        """The traffic control's state as AWS reports it, for the record."""


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
    return {"blue": 100 - green, "green": green}
