"""ALB weighted target groups: the listener's forward action splits traffic by weight.

AWS: a forward action's ForwardConfig lists up to five target groups with weights 0-999;
the load balancer routes each request by weight (Elastic Load Balancing User Guide,
"Listener rules for your Application Load Balancer", forward actions). bgkit writes
weights as percentages, blue = 100 - green.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import PreflightError, TrafficError
from ..metrics import MetricSource, alb_source
from ..params import arn_checker
from ..planning import Change, send_all
from . import register
from .base import Split, forward_action, forward_weights, split_of

LISTENER = arn_checker(
    "elasticloadbalancing",
    r"listener/app/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}/[0-9a-f]{16}",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2",
)
TARGET_GROUP = arn_checker(
    "elasticloadbalancing",
    r"targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/prod-blue/73e2d6bc24d8a067",
)


def _check_target_groups(resources: Mapping[str, str]) -> None:
    from ..errors import ParameterError

    blue, green = resources.get("blue_target_group_arn"), resources.get("green_target_group_arn")
    if blue and green and blue == green:
        raise ParameterError(
            "green_target_group_arn", "must differ from blue_target_group_arn", green
        )


@register
class AlbWeighted:
    name: ClassVar[str] = "alb_weighted"
    title: ClassVar[str] = "ALB weighted target groups"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:ModifyListener",
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "listener_arn": LISTENER,
        "blue_target_group_arn": TARGET_GROUP,
        "green_target_group_arn": TARGET_GROUP,
    }
    check_resources = staticmethod(_check_target_groups)

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._elb = session.client("elbv2")
        self.listener_arn = resources["listener_arn"]
        self.blue = resources["blue_target_group_arn"]
        self.green = resources["green_target_group_arn"]
        self._load_balancer_arn: str | None = None
        self._stickiness: dict[str, Any] | None = None
        self._actions: list[dict[str, Any]] = []

    def target_id(self) -> str:
        return self.listener_arn

    # -- reads -------------------------------------------------------------------------

    def _listener(self) -> dict[str, Any]:
        try:
            return self._elb.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ListenerNotFound", "ListenerNotFoundException"):
                raise PreflightError(
                    f"listener {self.listener_arn} does not exist", parameter="listener_arn"
                ) from None
            raise

    def _forward_weights(self, listener: dict[str, Any]) -> dict[str, int]:
        self._actions = listener["DefaultActions"]
        action = forward_action(self._actions)
        if action is None:
            raise PreflightError(
                "the listener's default action is not a forward action; bgkit shifts traffic "
                "only between forwarded target groups",
                parameter="listener_arn",
            )
        self._stickiness = action.get("ForwardConfig", {}).get("TargetGroupStickinessConfig")
        return forward_weights(action)

    def read_split(self) -> Split:
        weights = self._forward_weights(self._listener())
        others = {arn: w for arn, w in weights.items() if arn not in (self.blue, self.green) and w}
        if others:
            raise TrafficError(
                f"the listener also forwards to target groups that are neither blue nor green: {sorted(others)}"
            )
        return split_of(weights.get(self.blue, 0), weights.get(self.green, 0))

    def preflight(self) -> Split:
        self.check_listener()
        health = self._elb.describe_target_health(TargetGroupArn=self.green)[
            "TargetHealthDescriptions"
        ]
        healthy = [t for t in health if t["TargetHealth"]["State"] == "healthy"]
        if not healthy:
            states = sorted({t["TargetHealth"]["State"] for t in health}) or [
                "no targets registered"
            ]
            raise PreflightError(
                f"green has no healthy targets ({', '.join(states)}); deploy green before releasing",
                parameter="green_target_group_arn",
            )
        return self.read_split()

    def check_listener(self) -> dict[str, Any]:
        """Check the listener forwards to blue, both target groups are its load balancer's, and
        no rule of it sends blue's or green's traffic elsewhere; returns the listener. Read-only."""
        listener = self._listener()
        self._load_balancer_arn = listener["LoadBalancerArn"]
        for parameter, arn in (
            ("blue_target_group_arn", self.blue),
            ("green_target_group_arn", self.green),
        ):
            try:
                group = self._elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
            except ClientError as error:
                if "TargetGroupNotFound" in error.response["Error"]["Code"]:
                    raise PreflightError(
                        f"target group {arn} does not exist", parameter=parameter
                    ) from None
                raise
            if self._load_balancer_arn not in group.get("LoadBalancerArns", []):
                # AWS attaches a target group to a load balancer once a listener or rule uses it.
                raise PreflightError(
                    f"target group {arn} is not used by the listener's load balancer",
                    parameter=parameter,
                )
        for rule in self._elb.describe_rules(ListenerArn=self.listener_arn)["Rules"]:
            if rule["IsDefault"]:
                continue
            forwarded = {a.get("TargetGroupArn") for a in rule["Actions"]} | {
                g["TargetGroupArn"]
                for a in rule["Actions"]
                for g in a.get("ForwardConfig", {}).get("TargetGroups", [])
            }
            if forwarded & {self.blue, self.green}:
                # Shifting only the default action would leave this rule's traffic behind.
                raise PreflightError(
                    f"listener rule {rule['RuleArn']} (priority {rule['Priority']}) also forwards to "
                    "blue or green; bgkit shifts only the default action, so that traffic would not move",
                    parameter="listener_arn",
                )
        weights = self._forward_weights(listener)
        if self.blue not in weights:
            raise PreflightError(
                "the listener's default action does not forward to blue",
                parameter="blue_target_group_arn",
            )
        return listener

    def metric_source(self) -> MetricSource:
        if self._load_balancer_arn is None:
            self._load_balancer_arn = self._listener()["LoadBalancerArn"]
        return alb_source(self._load_balancer_arn, {"blue": self.blue, "green": self.green})

    def describe(self) -> dict[str, Any]:
        listener = self._listener()
        return {
            "listener_arn": self.listener_arn,
            "default_actions": listener["DefaultActions"],
            "split": self.read_split(),
        }

    # -- the one write ------------------------------------------------------------------

    def set_split(self, green_percent: int) -> Split:
        send_all(self.changes_to(green_percent))
        split = self.read_split()
        if split["green"] != green_percent:
            raise TrafficError(
                f"asked for green {green_percent}% but the listener reads back", split=split
            )
        return split

    def changes_to(self, green_percent: int) -> list[Change]:
        """The listener's forward weights for `green_percent`: one ModifyListener."""
        forward: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": self.blue, "Weight": 100 - green_percent},
                {"TargetGroupArn": self.green, "Weight": green_percent},
            ]
        }
        if self._stickiness is not None:
            forward["TargetGroupStickinessConfig"] = self._stickiness
        if not self._actions:
            self._forward_weights(self._listener())
        # Only the forward action changes; authenticate-* and other actions keep their Order.
        actions = []
        for action in self._actions:
            if action["Type"] == "forward":
                kept = {k: v for k, v in action.items() if k in ("Order",)}
                action = {**kept, "Type": "forward", "ForwardConfig": forward}
            actions.append(action)
        return [
            Change(
                self._elb,
                "ModifyListener",
                {"ListenerArn": self.listener_arn, "DefaultActions": actions},
                f"forward weights blue {100 - green_percent} / green {green_percent}",
            )
        ]

    def versions(self) -> dict[str, str]:
        """What each colour serves: its target group's registered targets."""
        found = {}
        for colour, arn in (("blue", self.blue), ("green", self.green)):
            health = self._elb.describe_target_health(TargetGroupArn=arn)[
                "TargetHealthDescriptions"
            ]
            found[colour] = ", ".join(
                sorted(f"{t['Target']['Id']}:{t['Target'].get('Port', '')}" for t in health)
            )
        return found
