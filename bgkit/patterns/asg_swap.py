"""Swapping Auto Scaling groups behind a load balancer.

Blue is an Auto Scaling group attached to blue's target group. bgkit creates green as a new
group from a new version of blue's launch template, with blue's size, subnets and health
check settings; waits until its instances are InService; attaches it to green's (empty)
target group and waits until every target passes the load balancer's health checks. Each
group has its own target group so that each colour's load balancer metrics are its own
evidence; the listener's forward action then moves traffic step by step, as in alb_weighted.
After the promotion bgkit detaches blue from its target group, which stops new requests to
blue's instances and lets in-flight ones finish for the deregistration delay (connection
draining), and waits until they have drained. Blue keeps its instances for a rollback.

AWS: Amazon EC2 Auto Scaling User Guide, "Use Elastic Load Balancing to distribute incoming
application traffic in your Auto Scaling group" (AttachLoadBalancerTargetGroups,
DetachLoadBalancerTargetGroups: instances are deregistered and drain); Elastic Load Balancing
User Guide, "Deregistration delay"; AWS whitepaper "Blue/Green Deployments on AWS", "Swap the
Auto Scaling group behind the Elastic Load Balancer".

Rollback: the listener back to blue 100 % (blue re-attached first if it had been detached,
and waited for until healthy), then green detached from its target group. Green's group is
kept, out of service, for investigation; the record names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..clock import Clock, SystemClock
from ..errors import ParameterError, PreflightError, TrafficError
from ..metrics import MetricSource
from ..params import regex_checker
from ..planning import Change, Item, Wait, send_all
from . import register
from .alb_weighted import LISTENER, TARGET_GROUP, AlbWeighted
from .base import Split

_GROUP_NAME = re.compile(r"^[A-Za-z0-9][\x21-\x7e]{0,254}$")
_VERSION = re.compile(r"^([1-9][0-9]{0,9}|\$Latest|\$Default)$")
GROUP_WAIT_SECONDS = 900.0  # longest wait for instances to be InService, targets healthy, a drain
BLUE_ONLY: Split = {"blue": 100, "green": 0}


def _check_pair(resources: Mapping[str, str]) -> None:
    for blue, green in (
        ("blue_asg_name", "green_asg_name"),
        ("blue_target_group_arn", "green_target_group_arn"),
    ):
        if resources.get(blue) and resources.get(blue) == resources.get(green):
            raise ParameterError(green, f"must differ from {blue}", resources[green])


@register
class AsgSwap:
    name: ClassVar[str] = "asg_swap"
    title: ClassVar[str] = "Auto Scaling group swap"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        *AlbWeighted.iam_actions,  # the listener's weights
        "autoscaling:AttachLoadBalancerTargetGroups",
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribePolicies",
        "autoscaling:DetachLoadBalancerTargetGroups",
        "ec2:DescribeLaunchTemplateVersions",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
    )
    # Checked by IAM, not called (EC2 Auto Scaling's "dependent actions" of
    # CreateAutoScalingGroup with a launch template): launching the instances, tagging them if
    # the template tags, passing the template's instance profile role to EC2.
    iam_dependent_actions: ClassVar[tuple[dict[str, Any], ...]] = (
        {"Action": ["ec2:RunInstances"]},
        {
            "Action": ["ec2:CreateTags"],
            "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
        },
        {
            "Action": ["iam:PassRole"],
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "listener_arn": LISTENER,
        "blue_target_group_arn": TARGET_GROUP,
        "green_target_group_arn": TARGET_GROUP,
        "blue_asg_name": regex_checker(
            _GROUP_NAME, "must be an Auto Scaling group name: 1-255 printable characters"
        ),
        "green_asg_name": regex_checker(
            _GROUP_NAME,
            "must be a name for the new Auto Scaling group: 1-255 printable characters",
        ),
        "launch_template_version": regex_checker(
            _VERSION, "must be a launch template version number, $Latest or $Default"
        ),
    }
    check_resources = staticmethod(_check_pair)
    clock: Clock = SystemClock()

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._autoscaling = session.client("autoscaling")
        self._ec2 = session.client("ec2")
        self._elb = session.client("elbv2")
        self._listener = AlbWeighted(session, resources)
        self.groups = {"blue": resources["blue_asg_name"], "green": resources["green_asg_name"]}
        self.target_groups = {
            "blue": resources["blue_target_group_arn"],
            "green": resources["green_target_group_arn"],
        }
        self.requested_version = resources["launch_template_version"]
        self._blue: dict[str, Any] = {}  # blue's group as preflight read it
        self._policies: list[str] = []
        self._rolled_back = ""
        self._version: str | None = None  # the launch template version green runs, resolved

    def target_id(self) -> str:
        return self._listener.target_id()

    # -- reads -------------------------------------------------------------------------

    def _group(self, colour: str) -> dict[str, Any] | None:
        groups = self._autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.groups[colour]]
        )["AutoScalingGroups"]
        return groups[0] if groups else None

    def _attached(self, colour: str) -> bool:
        group = self._group(colour)
        return group is not None and self.target_groups[colour] in group.get("TargetGroupARNs", [])

    def _targets(self, colour: str) -> list[dict[str, Any]]:
        return self._elb.describe_target_health(TargetGroupArn=self.target_groups[colour])[
            "TargetHealthDescriptions"
        ]

    def read_split(self) -> Split:
        return self._listener.read_split()

    def metric_source(self) -> MetricSource:
        return self._listener.metric_source()

    def preflight(self) -> Split:
        self._listener.check_listener()
        blue = self._group("blue")
        if blue is None:
            raise PreflightError(
                f"Auto Scaling group {self.groups['blue']!r} does not exist",
                parameter="blue_asg_name",
            )
        if self.target_groups["blue"] not in blue.get("TargetGroupARNs", []):
            raise PreflightError(
                f"Auto Scaling group {self.groups['blue']!r} is not attached to blue's target group",
                parameter="blue_asg_name",
            )
        template = blue.get("LaunchTemplate")
        if template is None:
            raise PreflightError(
                f"Auto Scaling group {self.groups['blue']!r} has no launch template (a launch "
                "configuration or mixed instances policy); bgkit makes green from a new version "
                "of blue's launch template",
                parameter="blue_asg_name",
            )
        blue_targets = self._targets("blue")
        if not any(t["TargetHealth"]["State"] == "healthy" for t in blue_targets):
            raise PreflightError(
                "blue's target group has no healthy targets", parameter="blue_target_group_arn"
            )
        strangers = sorted(
            {t["Target"]["Id"] for t in blue_targets if t["TargetHealth"]["State"] != "draining"}
            - {i["InstanceId"] for i in blue["Instances"]}
        )
        if strangers:
            raise PreflightError(
                f"blue's target group also has targets that are not instances of "
                f"{self.groups['blue']!r} ({', '.join(strangers[:5])}): they would keep serving "
                "after blue's group is detached",
                parameter="blue_target_group_arn",
            )
        green_group = self._elb.describe_target_groups(
            TargetGroupArns=[self.target_groups["green"]]
        )["TargetGroups"][0]
        if green_group.get("TargetType", "instance") != "instance":
            raise PreflightError(
                f"green's target group has target type {green_group['TargetType']!r}; an Auto "
                "Scaling group registers instances, so it must be 'instance'",
                parameter="green_target_group_arn",
            )
        if self._group("green") is not None:
            raise PreflightError(
                f"Auto Scaling group {self.groups['green']!r} already exists (left by an earlier "
                "release?); choose another green_asg_name or delete it: aws autoscaling "
                f"delete-auto-scaling-group --auto-scaling-group-name {self.groups['green']} "
                "--force-delete",
                parameter="green_asg_name",
            )
        serving = [t for t in self._targets("green") if t["TargetHealth"]["State"] != "draining"]
        if serving:
            raise PreflightError(
                f"green's target group already has {len(serving)} target(s); it must be empty, so "
                "that green's evidence is green's alone",
                parameter="green_target_group_arn",
            )
        self._version = self._resolve_version(template, blue)
        self._blue = blue
        self._policies = [
            p["PolicyName"]
            for p in self._autoscaling.describe_policies(AutoScalingGroupName=self.groups["blue"])[
                "ScalingPolicies"
            ]
        ]
        return self.read_split()

    def _resolve_version(self, template: dict[str, Any], blue: dict[str, Any]) -> str:
        """The version number green will run ($Latest and $Default resolved now, so the record
        and green's group name one version)."""
        try:
            versions = self._ec2.describe_launch_template_versions(
                LaunchTemplateId=template["LaunchTemplateId"], Versions=[self.requested_version]
            )["LaunchTemplateVersions"]
        except ClientError as error:
            if "NotFound" not in error.response["Error"]["Code"]:
                raise
            versions = []
        if not versions:
            raise PreflightError(
                f"launch template {template['LaunchTemplateName']} has no version "
                f"{self.requested_version}",
                parameter="launch_template_version",
            )
        wanted = str(versions[0]["VersionNumber"])
        running = {str(i.get("LaunchTemplate", {}).get("Version")) for i in blue["Instances"]}
        if running == {wanted}:
            raise PreflightError(
                f"blue already runs launch template version {wanted}",
                parameter="launch_template_version",
            )
        return wanted

    def describe(self) -> dict[str, Any]:
        state: dict[str, Any] = {"listener": self._listener.describe(), "groups": {}}
        for colour in ("blue", "green"):
            group = self._group(colour)
            targets = self._targets(colour)
            state["groups"][colour] = {
                "name": self.groups[colour],
                "exists": group is not None,
                "target_group_attached": bool(
                    group and self.target_groups[colour] in group.get("TargetGroupARNs", [])
                ),
                "launch_template_version": (group or {}).get("LaunchTemplate", {}).get("Version"),
                "desired_capacity": (group or {}).get("DesiredCapacity"),
                "in_service": _in_service(group),
                "targets": _states(targets),
            }
        return state

    # -- changes -----------------------------------------------------------------------

    def deploy_green(self, release: str, note: Callable[[str], None]) -> str:
        create, in_service, attach, healthy = self.deploy_changes(release)
        green, template = self.groups["green"], self._blue["LaunchTemplate"]
        desired = self._blue["DesiredCapacity"]
        create.send()
        note(
            f"created Auto Scaling group {green} from {template['LaunchTemplateName']} version "
            f"{self._version}, {desired} instance(s) like blue"
            + (
                f"; blue's scaling policies ({', '.join(self._policies)}) are not copied: add them "
                "to green before it must scale"
                if self._policies
                else ""
            )
        )
        started = self.clock.now()
        self._wait(lambda: _in_service(self._group("green")) >= desired, in_service.means)
        attach.send()
        note(f"green's instances are InService; attached {green} to green's target group")
        self._wait(
            lambda: _states(self._targets("green")).get("healthy", 0) >= desired, healthy.means
        )
        return (
            f"green is deployed: {desired} instance(s) InService and healthy in green's target "
            f"group, {(self.clock.now() - started).total_seconds():.1f} s after the group was created"
        )

    def set_split(self, green_percent: int) -> Split:
        if green_percent == 0:
            return self._back_to_blue()
        return self._listener.set_split(green_percent)

    def retire_blue(self, note: Callable[[str], None]) -> str:
        blue = self.groups["blue"]
        delay = self._deregistration_delay("blue")
        detach, drained = self.retire_changes()
        detach.send()
        note(
            f"detached {blue} from blue's target group: its targets get no new requests and "
            f"drain for the deregistration delay ({delay:g} s)"
        )
        started = self.clock.now()
        self._wait(lambda: not self._targets("blue"), drained.means, longer=delay)
        size = (self._group("blue") or {}).get("DesiredCapacity")
        return (
            f"blue's targets drained in {(self.clock.now() - started).total_seconds():.1f} s; {blue} keeps its "
            f"{size} instance(s) for a rollback. When the release is trusted: aws autoscaling "
            f"update-auto-scaling-group --auto-scaling-group-name {blue} --min-size 0 "
            "--desired-capacity 0"
        )

    def _back_to_blue(self) -> Split:
        """The rollback: each part only where the state read just before it needs it."""
        done = []
        reattach = self._reattach_blue_changes(attached=self._attached("blue"))
        if reattach:
            send_all(reattach, wait=lambda _: self._wait_for_blue_again())
            done.append(f"re-attached {self.groups['blue']} to blue's target group")
        try:
            split = self.read_split()
        except TrafficError:  # e.g. a third target group in the forward action: rewrite it
            split = {}
        if self._listener_to_blue_changes(split):
            split = self._listener.set_split(0)  # sends those changes, then reads the split back
            done.append("set the listener to blue 100 / green 0")
        detach = self._detach_green_changes(attached=self._attached("green"))
        if detach:
            send_all(detach)
            done.append(f"detached {self.groups['green']} from green's target group")
        if self._group("green") is not None:
            done.append(
                f"{self.groups['green']} is kept, out of service, for investigation (aws "
                f"autoscaling delete-auto-scaling-group --auto-scaling-group-name "
                f"{self.groups['green']} --force-delete)"
            )
        self._rolled_back = "; ".join(done)
        return split

    def _wait_for_blue_again(self) -> None:
        # Most of blue, not all: green is being rolled back, and one sick blue instance
        # must not keep it serving.
        needed = max(1, -(-_in_service(self._group("blue")) // 2))
        self._wait(
            lambda: _states(self._targets("blue")).get("healthy", 0) >= needed,
            f"{needed} of blue's targets to pass health checks again",
        )

    # -- the calls it sends, built once (bgkit.planning): sent above, listed by a plan ------

    def deploy_changes(self, release: str) -> list[Item]:
        """deploy_green's calls: green's group made like blue's, attached once InService."""
        blue, green = self._blue, self.groups["green"]
        template, desired = blue["LaunchTemplate"], blue["DesiredCapacity"]
        create = {
            "AutoScalingGroupName": green,
            "LaunchTemplate": {"LaunchTemplateId": template["LaunchTemplateId"], "Version": self._version},
            "MinSize": blue["MinSize"],
            "MaxSize": blue["MaxSize"],
            "DesiredCapacity": desired,
            **_placement(blue),
            "HealthCheckType": blue["HealthCheckType"],
            "HealthCheckGracePeriod": blue.get("HealthCheckGracePeriod", 0),
            "Tags": [
                {"Key": "bgkit:release", "Value": release, "PropagateAtLaunch": True},
                {"Key": "bgkit:colour-of", "Value": blue["AutoScalingGroupName"], "PropagateAtLaunch": False},
            ],
        }  # fmt: skip
        return [
            Change(
                self._autoscaling,
                "CreateAutoScalingGroup",
                create,
                f"create {green} from {template['LaunchTemplateName']} version {self._version}, "
                f"{desired} instance(s) like blue",
            ),
            Wait(f"green's {desired} instance(s) to be InService"),
            self._attach_change("green"),
            Wait(f"green's {desired} target(s) to pass the load balancer's health checks"),
        ]

    def changes_to(self, green_percent: int) -> list[Item]:
        """A step's or the promotion's calls: the listener's weights. Green 0 is the rollback,
        whose calls depend on the state (as read now here; `rollback_changes` predicts it)."""
        if green_percent == 0:
            try:
                split = self.read_split()
            except TrafficError:
                split = {}
            return [
                *self._reattach_blue_changes(attached=self._attached("blue")),
                *self._listener_to_blue_changes(split),
                *self._detach_green_changes(attached=self._attached("green")),
            ]
        return self._listener.changes_to(green_percent)

    def rollback_changes(self, green_percent: int) -> list[Item]:
        """A rollback's calls from a point of the release, with the state it will have there:
        blue still attached (it is detached only after the promotion, which has no rollback),
        green attached since its deploy, the listener at `green_percent`."""
        split = {"blue": 100 - green_percent, "green": green_percent}
        return [
            *self._reattach_blue_changes(attached=True),
            *self._listener_to_blue_changes(split),
            *self._detach_green_changes(attached=True),
        ]

    def retire_changes(self) -> list[Item]:
        """retire_blue's calls: blue detached, then its targets drain."""
        return [self._detach_change("blue"), Wait("blue's targets to drain")]

    def _reattach_blue_changes(self, attached: bool) -> list[Item]:
        if attached:
            return []
        return [
            self._attach_change("blue"),
            Wait("most of blue's targets (half, at least one) to pass health checks again"),
        ]

    def _listener_to_blue_changes(self, split: Split) -> list[Change]:
        return [] if split == BLUE_ONLY else self._listener.changes_to(0)

    def _detach_green_changes(self, attached: bool) -> list[Change]:
        # Green has no weight by then; its targets drain in the background.
        return [self._detach_change("green")] if attached else []

    def _attach_change(self, colour: str) -> Change:
        return Change(
            self._autoscaling,
            "AttachLoadBalancerTargetGroups",
            {
                "AutoScalingGroupName": self.groups[colour],
                "TargetGroupARNs": [self.target_groups[colour]],
            },
            f"attach {self.groups[colour]} to {colour}'s target group",
        )

    def _detach_change(self, colour: str) -> Change:
        return Change(
            self._autoscaling,
            "DetachLoadBalancerTargetGroups",
            {
                "AutoScalingGroupName": self.groups[colour],
                "TargetGroupARNs": [self.target_groups[colour]],
            },
            f"detach {self.groups[colour]} from {colour}'s target group (its targets drain)",
        )

    def versions(self) -> dict[str, str]:
        """What each colour runs, as preflight read it: blue's instances' launch template
        version, and the version green will be made from (launch_template_version, resolved)."""
        template = self._blue["LaunchTemplate"]["LaunchTemplateName"]
        running = sorted(
            {str(i.get("LaunchTemplate", {}).get("Version")) for i in self._blue["Instances"]}
        )
        return {
            "blue": f"{template} version {', '.join(running)}",
            "green": f"{template} version {self._version} "
            f"(launch_template_version {self.requested_version})",
        }

    def how_rolled_back(self) -> str:
        return self._rolled_back

    def _deregistration_delay(self, colour: str) -> float:
        attributes = self._elb.describe_target_group_attributes(
            TargetGroupArn=self.target_groups[colour]
        )["Attributes"]
        return float(
            next(
                (
                    a["Value"]
                    for a in attributes
                    if a["Key"] == "deregistration_delay.timeout_seconds"
                ),
                300,
            )
        )

    def _wait(self, done: Callable[[], bool], what: str, longer: float = 0.0) -> None:
        deadline = self.clock.now() + timedelta(seconds=GROUP_WAIT_SECONDS + longer)
        while not done():
            if self.clock.now() > deadline:
                raise TrafficError(
                    f"gave up waiting for {what} after {GROUP_WAIT_SECONDS + longer:g} s",
                    split=self.read_split(),
                )
            self.clock.sleep(0.5)


def _placement(group: dict[str, Any]) -> dict[str, Any]:
    """Where blue's instances run: its subnets, or (without a VPC) its zones."""
    if group.get("VPCZoneIdentifier"):
        return {"VPCZoneIdentifier": group["VPCZoneIdentifier"]}
    return {"AvailabilityZones": group["AvailabilityZones"]}


def _in_service(group: dict[str, Any] | None) -> int:
    return sum(1 for i in (group or {}).get("Instances", []) if i["LifecycleState"] == "InService")


def _states(targets: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for target in targets:
        state = target["TargetHealth"]["State"]
        counts[state] = counts.get(state, 0) + 1
    return counts
