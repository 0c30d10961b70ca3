"""EC2 instances and their load balancer target health, for the sandbox.

moto starts an Auto Scaling group's instances with nothing running on them, reports every
registered target `healthy` at once and forgets a deregistered target at once. A release
that swaps Auto Scaling groups must instead wait for real health and for the drain, so for
the target groups a scenario hands it (`manage`), the sandbox follows AWS:

* Each running instance whose AMI a scenario registered (`serve_image`) is served by its own
  process on loopback (a blue or green `ColourService`), started `boot_seconds` after the
  instance appears, as an instance boots before its application listens.
* Target health (Elastic Load Balancing User Guide, "Health checks for Application Load
  Balancer target groups"; API Reference, TargetHealth): a registered target is `initial`
  (Elb.RegistrationInProgress) until HealthyThresholdCount consecutive checks pass, then
  `healthy`; after UnhealthyThresholdCount consecutive failures it is `unhealthy`
  (Target.ResponseCodeMismatch, or Target.FailedHealthChecks when nothing answers). A check
  is a GET of HealthCheckPath every HealthCheckIntervalSeconds that must answer a code of
  Matcher.HttpCode within HealthCheckTimeoutSeconds.
* An Auto Scaling instance reports the launch template version it was launched from.
* Deregistration delay (User Guide, "Target groups for your Application Load Balancers",
  Deregistration delay; attribute deregistration_delay.timeout_seconds): a deregistered target
  is `draining` (Target.DeregistrationInProgress) for the delay, is still listed by
  DescribeTargetHealth, gets no new requests (the router sends only to healthy targets),
  and is then gone.

Times are AWS's seconds; a managed target group's `time_scale` (the scenario's
minute_seconds / 60) compresses them, as the sandbox's CodeDeploy compresses its minutes.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..aws import AwsSession
from .calls import Changes
from .http import FOLLOWING_SECONDS
from .services import ColourService

ACCOUNT_ID = "123456789012"


@dataclass
class _Health:
    registered_at: float
    next_check: float
    state: str = "initial"
    reason: str | None = "Elb.RegistrationInProgress"
    passes: int = 0
    fails: int = 0


@dataclass
class _Group:
    time_scale: float
    owner: Any  # the InstanceRuntime whose instances are its targets; it runs the checks
    health: dict[str, _Health] = field(default_factory=dict)  # target id -> health
    draining: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)  # until


class TargetHealthModel:
    """Health and draining of the managed target groups; moto's elbv2 backend asks it."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()

    def manage(self, target_group_arn: str, time_scale: float, owner: InstanceRuntime) -> None:
        with self._lock:
            self._groups[target_group_arn] = _Group(time_scale, owner)

    def forget(self, owner: InstanceRuntime) -> None:
        """Back to moto's own answers for the groups of a runtime that stopped."""
        with self._lock:
            for arn in [a for a, g in self._groups.items() if g.owner is owner]:
                del self._groups[arn]

    def managed(self, target_group_arn: str) -> bool:
        return target_group_arn in self._groups

    # -- what moto's backend calls -----------------------------------------------------

    def state_of(self, target_group: Any, target_id: str) -> tuple[str, str | None] | None:
        """(state, reason) of a target of a managed group, None for moto's own answer."""
        with self._lock:
            group = self._groups.get(target_group.arn)
            if group is None:
                return None
            if target_id in target_group.targets:
                health = group.health.setdefault(
                    target_id, _Health(time.monotonic(), time.monotonic())
                )
                return health.state, health.reason
            if target_id in group.draining:
                return "draining", "Target.DeregistrationInProgress"
        return None

    def deregistered(self, target_group: Any, target: dict[str, Any]) -> None:
        with self._lock:
            group = self._groups.get(target_group.arn)
            if group is None:
                return
            group.health.pop(target["Id"], None)
            delay = float(target_group.attributes.get("deregistration_delay.timeout_seconds", 300))
            group.draining[target["Id"]] = (target, time.monotonic() + delay * group.time_scale)

    def draining_targets(self, target_group: Any) -> list[dict[str, Any]]:
        with self._lock:
            group = self._groups.get(target_group.arn)
            if group is None:
                return []
            now = time.monotonic()
            for target_id, (_, until) in list(group.draining.items()):
                if until <= now or target_id in target_group.targets:
                    del group.draining[target_id]  # drained, or registered again
            return [target for target, _ in group.draining.values()]

    # -- health checks -----------------------------------------------------------------

    def check_due(self, backend: Any, owner: InstanceRuntime) -> None:
        """Run the health checks that are due in the target groups of `owner`'s instances."""
        now = time.monotonic()
        with self._lock:
            due = []
            for arn, group in self._groups.items():
                target_group = backend.target_groups.get(arn) if group.owner is owner else None
                if target_group is None:
                    continue
                for target_id in list(target_group.targets):
                    health = group.health.setdefault(target_id, _Health(now, now))
                    if health.next_check <= now:
                        interval = float(target_group.health_check_interval_seconds)
                        health.next_check = now + interval * group.time_scale
                        due.append((target_group, group, target_id, health))
        for target_group, group, target_id, health in due:
            passed, reason = self._check(target_group, group, target_id)
            with self._lock:
                self._count(target_group, health, passed, reason)

    def _check(self, target_group: Any, group: _Group, target_id: str) -> tuple[bool, str]:
        address = group.owner.address(target_id)
        if address is None:
            return False, "Target.FailedHealthChecks"
        host, port = address
        url = f"http://{host}:{port}{target_group.health_check_path or '/'}"
        timeout = max(0.2, float(target_group.health_check_timeout_seconds) * group.time_scale)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError):
            return False, "Target.FailedHealthChecks"
        if _code_matches(status, target_group.matcher.get("HttpCode", "200")):
            return True, ""
        return False, "Target.ResponseCodeMismatch"

    @staticmethod
    def _count(target_group: Any, health: _Health, passed: bool, reason: str) -> None:
        if passed:
            health.passes, health.fails = health.passes + 1, 0
            if health.passes >= int(target_group.healthy_threshold_count):
                health.state, health.reason = "healthy", None
        else:
            health.passes, health.fails = 0, health.fails + 1
            if health.fails >= int(target_group.unhealthy_threshold_count):
                health.state, health.reason = "unhealthy", reason


def _code_matches(status: int, codes: str) -> bool:
    """Matcher.HttpCode: codes such as "200", "200,202" or "200-299"."""
    for part in codes.split(","):
        low, _, high = part.strip().partition("-")
        if int(low) <= status <= int(high or low):
            return True
    return False


TARGET_HEALTH = TargetHealthModel()  # moto keeps one account per process; so does this


def install_target_health() -> None:
    """Make moto's elbv2 backend answer health and draining from TARGET_HEALTH."""
    from moto.elbv2 import models

    group_class, backend_class = models.FakeTargetGroup, models.ELBv2Backend
    original_health, original_deregister = group_class.health_for, group_class.deregister
    original_describe = backend_class.describe_target_health

    def health_for(self, target, ec2_backend):  # type: ignore[no-untyped-def]
        known = TARGET_HEALTH.state_of(self, target["Id"])
        if known is None:
            return original_health(self, target, ec2_backend)
        state, reason = known
        port = (self.targets.get(target["Id"]) or target).get("Port", self.port)
        description = {
            "Elb.RegistrationInProgress": "Target registration is in progress",
            "Target.DeregistrationInProgress": "Target deregistration is in progress",
            "Target.ResponseCodeMismatch": "Health checks failed with these codes",
            "Target.FailedHealthChecks": "Health checks failed",
        }.get(reason or "")
        return models.FakeHealthStatus(
            target["Id"], port, self.health_check_port, state, reason, description
        )

    def deregister(self, targets):  # type: ignore[no-untyped-def]
        registered = [self.targets.get(t["Id"]) for t in targets]
        original_deregister(self, targets)
        for target in registered:
            if target is not None:
                TARGET_HEALTH.deregistered(self, target)

    def describe_target_health(self, target_group_arn, targets):  # type: ignore[no-untyped-def]
        answer = original_describe(self, target_group_arn, targets)
        if not targets:  # every target the group has, draining ones included
            group = self.target_groups[target_group_arn]
            answer += [
                group.health_for(t, self.ec2_backend) for t in TARGET_HEALTH.draining_targets(group)
            ]
        return answer

    group_class.health_for = health_for
    group_class.deregister = deregister
    backend_class.describe_target_health = describe_target_health
    _install_instance_versions()


def _install_instance_versions() -> None:
    """An Auto Scaling instance reports the launch template version it was launched from
    (API Reference, Instance.LaunchTemplate); moto reports the template's default version."""
    from moto.autoscaling import models

    state_class = models.InstanceState
    original_init = state_class.__init__

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original_init(self, *args, **kwargs)
        group = self.auto_scaling_group
        template = getattr(group, "ec2_launch_template", None)
        self.launched_version = (
            str(template.get_version(group.launch_template_version).number) if template else None
        )

    def launch_template(self):  # type: ignore[no-untyped-def]
        template = self.auto_scaling_group.ec2_launch_template
        if template is None:
            return None
        return {
            "LaunchTemplateId": template.id,
            "LaunchTemplateName": template.name,
            "Version": self.launched_version,
        }

    state_class.__init__ = __init__
    state_class.launch_template = property(launch_template)


class InstanceRuntime:
    """Serves each running instance of a registered AMI from its own loopback process, and
    runs the managed target groups' health checks."""

    def __init__(
        self, session: AwsSession, *, poll_seconds: float = 0.1, changes: Changes | None = None
    ) -> None:
        self._ec2 = session.client("ec2")
        self.region = session.region
        self._images: dict[str, tuple[Callable[[], ColourService], float]] = {}
        self._running: dict[str, ColourService] = {}  # instance id -> its process
        self._image_of: dict[str, str] = {}  # instance id -> its AMI
        self._booting: dict[str, float] = {}  # instance id -> when its process starts
        self._lock = threading.Lock()
        self._poll = poll_seconds
        # Instances come and go by writes (an Auto Scaling group made or resized, an instance
        # terminated): they are listed again after one, while one boots, and else every 2 s.
        self._changes = changes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bgkit-ec2-runtime", daemon=True)
        self.errors = 0

    def start(self) -> InstanceRuntime:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        TARGET_HEALTH.forget(self)
        with self._lock:
            running, self._running = list(self._running.values()), {}
        for service in running:
            service.stop()

    def manage(self, target_group_arn: str, time_scale: float) -> None:
        """Model health checks and draining for a target group of this runtime's instances."""
        TARGET_HEALTH.manage(target_group_arn, time_scale, self)

    def serve_image(
        self, image_id: str, service: Callable[[], ColourService], boot_seconds: float
    ) -> None:
        """Instances launched from `image_id` run a `service()` after `boot_seconds`."""
        with self._lock:
            self._images[image_id] = (service, boot_seconds)

    def stop_image(self, image_id: str) -> None:
        """Stop serving `image_id`: its instances' processes end now (the instances stay)."""
        with self._lock:
            self._images.pop(image_id, None)
            ids = [i for i, image in self._image_of.items() if image == image_id]
            stopped = [self._running.pop(i) for i in ids if i in self._running]
            for i in ids:
                self._image_of.pop(i, None)
                self._booting.pop(i, None)
        for service in stopped:
            service.stop()

    def address(self, instance_id: str) -> tuple[str, int] | None:
        with self._lock:
            service = self._running.get(instance_id)
        return None if service is None else ("127.0.0.1", service.port)

    def _loop(self) -> None:
        from moto.elbv2.models import elbv2_backends

        backend = elbv2_backends[ACCOUNT_ID][self.region]
        seen, next_sync = -1, 0.0
        while not self._stop.wait(self._poll):
            try:
                count = self._changes.count if self._changes is not None else seen
                written = self._changes is None or count != seen  # no Changes: every poll
                if written or self._booting or time.monotonic() >= next_sync:
                    seen, next_sync = count, time.monotonic() + FOLLOWING_SECONDS
                    self._sync_instances()
                TARGET_HEALTH.check_due(backend, self)
            except Exception as error:  # the next poll retries; count and show the failure
                next_sync = 0.0
                self.errors += 1
                if self.errors in (1, 10, 100):
                    print(f"bgkit sandbox instances: {type(error).__name__}: {error}", flush=True)

    def _sync_instances(self) -> None:
        with self._lock:
            images = dict(self._images)
        if not images and not self._running:
            return
        running = {}
        for page in self._ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        ):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance["ImageId"] in images:
                        running[instance["InstanceId"]] = instance["ImageId"]
        now = time.monotonic()
        gone = []
        with self._lock:
            for instance_id in list(self._booting):
                if instance_id not in running:  # terminated, or its image stopped, while booting
                    del self._booting[instance_id]
            for instance_id in list(self._running):
                if instance_id not in running:
                    gone.append(self._running.pop(instance_id))
                    self._image_of.pop(instance_id, None)
            for instance_id, image_id in running.items():
                if instance_id in self._running:
                    continue
                factory, boot = images[image_id]
                starts = self._booting.setdefault(instance_id, now + boot)
                if starts <= now:
                    del self._booting[instance_id]
                    self._running[instance_id] = factory().start()
                    self._image_of[instance_id] = image_id
        for service in gone:  # terminated: its process ends
            service.stop()
