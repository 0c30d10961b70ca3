"""AWS App Runner for the sandbox: services whose deployments move, as App Runner's do.

moto has no App Runner, so the sandbox serves its API itself (same endpoint, JSON protocol,
``X-Amz-Target: AppRunner.<Action>``). What it follows (API Reference pages are
https://docs.aws.amazon.com/apprunner/latest/api/API_<Name>.html, Developer Guide pages
https://docs.aws.amazon.com/apprunner/latest/dg/<name>.html):

* Services from an image (API_CreateService, API_Service, API_SourceConfiguration,
  API_ImageRepository, API_ImageConfiguration, API_HealthCheckConfiguration,
  API_InstanceConfiguration): CreateService answers at once with Status
  OPERATION_IN_PROGRESS and an OperationId, "and automatically starts a deployment"; the
  service is RUNNING once it is deployed, CREATE_FAILED if that first deployment fails
  (dg/manage-create, "When service creation fails"). ARN
  ``arn:aws:apprunner:region:account:service/name/id`` with a 32-hex id (dg/architecture,
  "App Runner resources"; dg/monitor-ev example). ServiceUrl is a host name without scheme
  on AWS; here it is ``127.0.0.1:<port>`` of the service's own loopback front.
* Operations (API_ListOperations, API_OperationSummary; dg/monitor-activity): each
  asynchronous call is an operation (CREATE_SERVICE, UPDATE_SERVICE, START_DEPLOYMENT,
  PAUSE_SERVICE, RESUME_SERVICE, DELETE_SERVICE), listed newest first.
* Deployments (API_UpdateService, API_StartDeployment; dg/manage-deploy): the service is
  OPERATION_IN_PROGRESS while the new version's instances start; App Runner health-checks
  them with the service's HealthCheckConfiguration (dg/manage-configure-healthcheck: TCP
  connects to the application's port, HTTP requests Path; Interval, Timeout, Healthy- and
  UnhealthyThreshold consecutive checks), then moves all traffic to the new version at once.
  A version that fails its health check is rolled back automatically to the previous
  successful one, which serves throughout (aws/apprunner-roadmap#209: "App Runner
  automatically rollback to the previous successful revision"; OperationStatus
  ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCEEDED), and the service's configuration is the previous
  one again. StartDeployment redeploys the configured image identifier, pulling "the latest
  image" behind it (a mutable tag); in the sandbox an identifier maps to a loopback process
  (`serve_image`, for one service or all: scenarios share tag names but not processes),
  resolved when the deployment starts.
* Automatic deployments (API_SourceConfiguration.AutoDeploymentsEnabled; dg/manage-deploy):
  on by default for a same-account ECR image, off for ECR Public and other accounts' images
  (which cannot have them). `push_image` is the sandbox's "docker push": it deploys to the
  services that run that identifier with automatic deployments on (as START_DEPLOYMENT).
* Pause and resume (API_PauseService, API_ResumeService; dg/manage-pause): capacity goes to
  zero (PAUSED); resuming redeploys the version that ran before, not a newer image.
  UpdateService and StartDeployment are refused on a paused service.
* One operation at a time: UpdateService, PauseService, ResumeService and DeleteService refuse
  with InvalidStateException ("You can't perform this action when the resource is in its
  current state", API_UpdateService Errors) while another operation is in progress;
  StartDeployment, whose only client error is InvalidRequestException (API_StartDeployment
  Errors), refuses with that. DeleteService ends in DELETED; a deleted service can still be
  described (API_Service) but is no longer listed (API_ListServices: "running" services).
* Errors in the JSON protocol shape: ResourceNotFoundException for an ARN that names no
  service, InvalidRequestException for invalid input (patterns and ranges of the API shapes).
* Metrics (dg/monitor-cw, "App Runner metrics"): namespace AWS/AppRunner, service-level
  Requests, 2xxStatusResponses, 4xxStatusResponses, 5xxStatusResponses (counts),
  RequestLatency ("in milliseconds", sent as raw values so percentiles work) and
  ActiveInstances, at 1-second resolution. The page lists no dimensions: the sandbox uses
  ServiceName and ServiceID, the pair AWS publishes service metrics under (as CloudWatch
  dashboards and the CDK construct cdk-apprunner-metrics, citing that page, query them).
  It does not say whether zero counts are sent: the sandbox sends a status class only in
  seconds where it is non-zero (as ALB does), so code reading it must treat a missing series
  as zero, which is right whichever way AWS does it.

Not modelled: source-code repositories (builds), auto scaling configurations, VPC connectors,
custom domains, tags' own API, and health checks after a deployment has finished (App Runner
also replaces unhealthy instances of a running service).

Time runs on the sandbox's clock: `minute_seconds[service name]` is how many real seconds one
App Runner minute takes (60 on AWS; a fraction of a second in tests). Health-check intervals
scale with it; each check's Timeout is real time (it bounds a real network wait).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import http.client
import json
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..aws import AwsSession
from ..errors import SandboxError
from .extensions import AwsError, JsonService, distribution
from .http import (
    KeepAliveHandler,
    LoopbackServer,
    LoopErrors,
    Upstreams,
    each_second,
    forwarded_headers,
)
from .loadgen import LoadGenerator
from .scenarios import Scenario, register

ACCOUNT_ID = "123456789012"  # moto's account: the sandbox's resources all live in it
NAMESPACE = "AWS/AppRunner"
# The sandbox's durations, in App Runner minutes (scaled by minute_seconds). AWS documents
# none of them; a real deployment takes a few minutes.
PROVISION_MINUTES = 1.0  # the new version's instances start before their first health check
ROLLBACK_MINUTES = 0.5  # a failed version's instances are removed
STOP_MINUTES = 0.5  # pausing or deleting a service
DEPLOYING = ("CREATE_SERVICE", "UPDATE_SERVICE", "START_DEPLOYMENT", "RESUME_SERVICE")
ENDED = ("SUCCEEDED", "FAILED", "ROLLBACK_SUCCEEDED", "ROLLBACK_FAILED")
# API_HealthCheckConfiguration defaults (also dg/manage-configure-healthcheck).
DEFAULT_HEALTH_CHECK = {
    "Protocol": "TCP",
    "Path": "/",
    "Interval": 5,
    "Timeout": 2,
    "HealthyThreshold": 1,
    "UnhealthyThreshold": 5,
}
_HEALTH_CHECK_INTEGERS = ("Interval", "Timeout", "HealthyThreshold", "UnhealthyThreshold")
# API_InstanceConfiguration: defaults 1 vCPU and 2 GB; the API answers in CPU units and MB.
_CPU = {"0.25 vCPU": "256", "0.5 vCPU": "512", "1 vCPU": "1024", "2 vCPU": "2048", "4 vCPU": "4096"}
_MEMORY = {f"{gb} GB": str(int(float(gb) * 1024)) for gb in ("0.5", "1", "2", "3", "4", "6", "8", "10", "12")}  # fmt: skip
_ARN = re.compile(
    r"arn:aws:apprunner:([a-z0-9-]+):(\d{12}):service/([A-Za-z0-9][A-Za-z0-9_-]{3,39})/([0-9a-f]{32})"
)
_ECR = re.compile(r"(\d{12})\.dkr\.ecr\.[a-z-]+-\d\.amazonaws\.com/")


@functools.cache
def _pattern(shape: str, member: str) -> re.Pattern[str]:
    """A member's pattern in botocore's App Runner model: what the API itself validates."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("apprunner")
    return re.compile(model.shape_for(shape).members[member].metadata["pattern"])


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message)


@dataclass(frozen=True)
class Version:
    """What one deployment runs: an image identifier and the loopback process behind it."""

    image: str
    address: tuple[str, int] | None  # None: no process serves this image, so it cannot start


@dataclass
class Operation:
    id: str
    type: str
    target_arn: str
    status: str = "IN_PROGRESS"
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    ended: float | None = None
    # Progress, not in the API:
    phase: str = "provision"  # provision -> health -> (rollback) | stop
    deadline: float = 0.0
    candidate: Version | None = None
    healthy: int = 0  # consecutive passed health checks
    unhealthy: int = 0  # consecutive failed ones
    next_check: float = 0.0

    def summary(self) -> dict[str, Any]:
        answer = {
            "Id": self.id,
            "Type": self.type,
            "Status": self.status,
            "TargetArn": self.target_arn,
            "StartedAt": self.started,
            "UpdatedAt": self.updated,
        }
        if self.ended is not None:
            answer["EndedAt"] = self.ended
        return answer


@dataclass
class Service:
    name: str
    id: str
    arn: str
    config: dict[str, Any]  # the API's configuration members, as DescribeService shows them
    front: Front
    status: str = "OPERATION_IN_PROGRESS"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    deleted: float | None = None
    active: Version | None = None  # the version serving all traffic
    paused_version: Version | None = None  # what ran before a pause; resuming redeploys it
    deployed_config: dict[str, Any] | None = None  # of the last successful deployment
    operations: list[Operation] = field(default_factory=list)
    auto_deploy_pending: bool = False  # an image was pushed while an operation ran

    @property
    def operation(self) -> Operation | None:
        """The operation in progress, if any."""
        if self.operations and self.operations[-1].status not in ENDED:
            return self.operations[-1]
        return None

    def describe(self) -> dict[str, Any]:
        answer = {
            "ServiceName": self.name,
            "ServiceId": self.id,
            "ServiceArn": self.arn,
            "ServiceUrl": self.front.host,
            "CreatedAt": self.created,
            "UpdatedAt": self.updated,
            "Status": self.status,
            **copy.deepcopy(self.config),
        }
        if self.deleted is not None:
            answer["DeletedAt"] = self.deleted
        return answer

    def summary(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.describe().items()
            if k
            in ("ServiceName", "ServiceId", "ServiceArn", "ServiceUrl", "CreatedAt", "UpdatedAt",
                "Status")
        }  # fmt: skip


class AppRunner(JsonService):
    target_prefix = "AppRunner."
    service_model = "apprunner"

    def __init__(
        self, session: AwsSession, tick_seconds: float = 0.05, default_minute_seconds: float = 60.0
    ) -> None:
        self.region = session.region
        self._cloudwatch = session.client("cloudwatch")
        self._lock = threading.RLock()
        self.services: dict[str, Service] = {}  # by ARN
        self.minute_seconds: dict[str, float] = {}  # service name -> real seconds per minute
        self.default_minute_seconds = default_minute_seconds
        # The sandbox's image registry: (service name or None for every service, identifier)
        # -> the loopback process that "runs" that image.
        self._images: dict[tuple[str | None, str], tuple[str, int]] = {}
        self._stop = threading.Event()
        self._tick = tick_seconds
        self._threads = [
            threading.Thread(target=self._run, name="bgkit-apprunner", daemon=True),
            threading.Thread(
                target=lambda: each_second(self._stop, self._loop_error, self._publish_serving),
                name="bgkit-apprunner-metrics", daemon=True,
            ),
        ]  # fmt: skip
        self._loop_error = LoopErrors("App Runner")

    def start(self) -> AppRunner:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            services = list(self.services.values())
        for service in services:
            service.front.stop()
        self._guarded("metrics", lambda: self._publish(services, flush_all=True))

    # -- the sandbox's registry ---------------------------------------------------------

    def serve_image(
        self, identifier: str, address: tuple[str, int], *, service_name: str | None = None
    ) -> None:
        """Say which loopback process runs `identifier` (for one service, or for all)."""
        with self._lock:
            self._images[(service_name, identifier)] = address

    def push_image(
        self, identifier: str, address: tuple[str, int], *, service_name: str | None = None
    ) -> None:
        """A new image behind `identifier` (a push to its tag): services running it with
        automatic deployments enabled deploy it (dg/manage-deploy, "Automatic deployment")."""
        with self._lock:
            self._images[(service_name, identifier)] = address
            for service in self.services.values():
                source = service.config["SourceConfiguration"]
                if (
                    source.get("AutoDeploymentsEnabled")
                    and source["ImageRepository"]["ImageIdentifier"] == identifier
                    and service_name in (None, service.name)
                    and service.status not in ("DELETED", "PAUSED", "CREATE_FAILED")
                ):
                    service.auto_deploy_pending = True  # started by the engine when idle

    def release(self, service_arn: str) -> None:
        """Stop a service's data plane (its front): the scenario that made it is done. The
        service stays in the API for inspection, like the other scenarios' resources."""
        with self._lock:
            service = self.services.get(service_arn)
            if service is None:
                return
            for key in [k for k in self._images if k[0] == service.name]:
                del self._images[key]
        service.front.stop()
        self._guarded("metrics", lambda: self._publish([service], flush_all=True))

    def _version(self, service: Service) -> Version:
        identifier = service.config["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
        address = self._images.get((service.name, identifier)) or self._images.get(
            (None, identifier)
        )
        return Version(identifier, address)

    def _minute(self, service: Service) -> float:
        return self.minute_seconds.get(service.name, self.default_minute_seconds)

    # -- the API ------------------------------------------------------------------------

    def create_service(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("ServiceName", "")
        if not _pattern("CreateServiceRequest", "ServiceName").fullmatch(name):
            raise _invalid(f"ServiceName {name!r} must be 4-40 letters, digits, - and _")
        source = _source(body.get("SourceConfiguration") or {}, None)
        config = {
            "SourceConfiguration": source,
            "InstanceConfiguration": _instance(body.get("InstanceConfiguration")),
            "HealthCheckConfiguration": _health_check(body.get("HealthCheckConfiguration")),
            "AutoScalingConfigurationSummary": self._default_auto_scaling(body),
            "NetworkConfiguration": _network(body.get("NetworkConfiguration")),
            "ObservabilityConfiguration": body.get("ObservabilityConfiguration")
            or {"ObservabilityEnabled": False},
        }
        if body.get("EncryptionConfiguration"):
            config["EncryptionConfiguration"] = body["EncryptionConfiguration"]
        service_id = uuid.uuid4().hex
        arn = f"arn:aws:apprunner:{self.region}:{ACCOUNT_ID}:service/{name}/{service_id}"
        with self._lock:
            # API_CreateService.ServiceName: unique among the account's services in the Region.
            if any(s.name == name and s.status != "DELETED" for s in self.services.values()):
                raise _invalid(f"Service with the provided name already exists: {name}")
            front = Front(name)
            service = Service(name, service_id, arn, config, front)
            front.route = lambda: service.active
            front.start()
            self.services[arn] = service
            operation = self._begin(service, "CREATE_SERVICE")
            return {"Service": service.describe(), "OperationId": operation.id}

    def describe_service(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {"Service": self._service(body).describe()}

    def list_services(self, body: dict[str, Any]) -> dict[str, Any]:
        # API_ListServices: "a list of running App Runner services" (not deleted ones).
        with self._lock:
            summaries = [
                s.summary()
                for s in sorted(self.services.values(), key=lambda s: s.created)
                if s.status != "DELETED"
            ]
        page, token = _page(summaries, body, "services")
        return {"ServiceSummaryList": page, **({"NextToken": token} if token else {})}

    def list_operations(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            service = self._service(body)
            # "sorted in reverse chronological order ... the last started operation" first
            summaries = [o.summary() for o in reversed(service.operations)]
        page, token = _page(summaries, body, service.arn)
        return {"OperationSummaryList": page, **({"NextToken": token} if token else {})}

    def update_service(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            service = self._service(body)
            # RUNNING, or CREATE_FAILED to rebuild it (API_Service.Status); never while an
            # operation runs, nor while PAUSED (dg/manage-pause, actions you cannot perform).
            if service.status not in ("RUNNING", "CREATE_FAILED"):
                raise AwsError(
                    "InvalidStateException",
                    f"Service {service.name} cannot be updated while its status is "
                    f"{service.status}",
                )
            config = copy.deepcopy(service.config)
            if body.get("SourceConfiguration") is not None:
                config["SourceConfiguration"] = _source(
                    body["SourceConfiguration"], config["SourceConfiguration"]
                )
            if body.get("InstanceConfiguration") is not None:
                config["InstanceConfiguration"] = _instance(body["InstanceConfiguration"])
            if body.get("HealthCheckConfiguration") is not None:
                config["HealthCheckConfiguration"] = _health_check(body["HealthCheckConfiguration"])
            if body.get("NetworkConfiguration") is not None:
                config["NetworkConfiguration"] = _network(body["NetworkConfiguration"])
            if body.get("ObservabilityConfiguration") is not None:
                config["ObservabilityConfiguration"] = body["ObservabilityConfiguration"]
            if body.get("AutoScalingConfigurationArn"):
                self._default_auto_scaling(body)  # refuses what the sandbox does not model
            # "All configuration values in the returned Service structure reflect
            # configuration changes that are being applied by this request."
            service.config = config
            operation = self._begin(service, "UPDATE_SERVICE")
            return {"Service": service.describe(), "OperationId": operation.id}

    def start_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            service = self._service(body)
            if service.status != "RUNNING":
                raise _invalid(
                    f"Service {service.name} cannot be deployed while its status is "
                    f"{service.status}"
                )
            return {"OperationId": self._begin(service, "START_DEPLOYMENT").id}

    def pause_service(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._transition(body, "PAUSE_SERVICE", "RUNNING")

    def resume_service(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._transition(body, "RESUME_SERVICE", "PAUSED")

    def delete_service(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._transition(
            body, "DELETE_SERVICE", "RUNNING", "PAUSED", "CREATE_FAILED", "DELETE_FAILED"
        )

    def _transition(self, body: dict[str, Any], kind: str, *allowed: str) -> dict[str, Any]:
        with self._lock:
            service = self._service(body)
            if service.status not in allowed:
                raise AwsError(
                    "InvalidStateException",
                    f"{kind} is not possible while service {service.name} is {service.status}",
                )
            operation = self._begin(service, kind)
            return {"Service": service.describe(), "OperationId": operation.id}

    def _service(self, body: dict[str, Any]) -> Service:
        arn = body.get("ServiceArn", "")
        if not _ARN.fullmatch(arn):
            raise _invalid(f"ServiceArn {arn!r} is not an App Runner service ARN")
        service = self.services.get(arn)
        if service is None:
            raise AwsError(
                "ResourceNotFoundException", f"Service {arn} does not exist in this account"
            )
        return service

    def _default_auto_scaling(self, body: dict[str, Any]) -> dict[str, Any]:
        # API_CreateService.AutoScalingConfigurationArn: without one, App Runner associates
        # the latest revision of the default configuration.
        if body.get("AutoScalingConfigurationArn"):
            raise _invalid("the bgkit sandbox has no auto scaling configurations but the default")
        return {
            "AutoScalingConfigurationArn": f"arn:aws:apprunner:{self.region}:{ACCOUNT_ID}:"
            "autoscalingconfiguration/DefaultConfiguration/1/00000000000000000000000000000001",
            "AutoScalingConfigurationName": "DefaultConfiguration",
            "AutoScalingConfigurationRevision": 1,
            "Status": "ACTIVE",
            "HasAssociatedService": True,
            "IsDefault": True,
        }

    # -- the engine ---------------------------------------------------------------------

    def _begin(self, service: Service, kind: str) -> Operation:
        """Start an operation (the caller holds the lock and has checked the service's state)."""
        now = time.time()
        minute = self._minute(service)
        operation = Operation(str(uuid.uuid4()), kind, service.arn, started=now, updated=now)
        if kind in DEPLOYING:
            # Resuming redeploys what ran before the pause (dg/manage-pause); every other
            # deployment pulls the image behind the configured identifier now.
            operation.candidate = (
                service.paused_version if kind == "RESUME_SERVICE" else self._version(service)
            )
            operation.deadline = now + PROVISION_MINUTES * minute
        else:
            operation.phase, operation.deadline = "stop", now + STOP_MINUTES * minute
        service.operations.append(operation)
        service.status, service.updated = "OPERATION_IN_PROGRESS", now
        if kind == "START_DEPLOYMENT":
            service.auto_deploy_pending = False
        return operation

    def _end(
        self, service: Service, operation: Operation, status: str, service_status: str
    ) -> None:
        now = time.time()
        operation.status, operation.ended, operation.updated = status, now, now
        service.status, service.updated = service_status, now

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self._guarded("engine", self._step)

    def _step(self) -> None:
        now = time.time()
        checks, retired = [], []
        with self._lock:
            for service in self.services.values():
                operation = service.operation
                if operation is None:
                    if service.auto_deploy_pending and service.status == "RUNNING":
                        self._begin(service, "START_DEPLOYMENT")
                    continue
                if operation.phase == "health":
                    if now >= operation.next_check:
                        health = dict(service.config["HealthCheckConfiguration"])
                        checks.append((service, operation, health))
                elif now >= operation.deadline and self._timed(service, operation, now):
                    retired.append(service)  # deleted: its URL goes away
        for service, operation, health in checks:
            healthy = health_check(operation.candidate, health)  # real network: not under the lock
            with self._lock:
                if service.operation is operation and operation.phase == "health":
                    self._checked(service, operation, health, healthy)
        for service in retired:
            service.front.stop()
            self._guarded("metrics", lambda s=service: self._publish([s], flush_all=True))

    def _timed(self, service: Service, operation: Operation, now: float) -> bool:
        """Move an operation whose timer ran out. Returns whether the service is now deleted."""
        if operation.phase == "provision":
            operation.phase, operation.next_check, operation.updated = "health", now, now
        elif operation.phase == "rollback":
            # The failed version's instances are gone; the configuration is the previous one.
            service.config = copy.deepcopy(service.deployed_config)
            self._end(service, operation, "ROLLBACK_SUCCEEDED", "RUNNING")
        elif operation.type == "PAUSE_SERVICE":
            # dg/manage-pause: capacity goes to zero; images pushed meanwhile are not deployed
            # on resume, even with automatic deployments.
            service.paused_version, service.active = service.active, None
            service.auto_deploy_pending = False
            self._end(service, operation, "SUCCEEDED", "PAUSED")
        elif operation.type == "DELETE_SERVICE":
            # dg/manage-delete; API_Service: a deleted service is still described, DELETED.
            service.active, service.deleted = None, now
            self._end(service, operation, "SUCCEEDED", "DELETED")
            return True
        return False

    def _checked(
        self, service: Service, operation: Operation, health: dict[str, Any], healthy: bool
    ) -> None:
        now = time.time()
        operation.updated = now
        if healthy:
            operation.healthy, operation.unhealthy = operation.healthy + 1, 0
        else:
            operation.healthy, operation.unhealthy = 0, operation.unhealthy + 1
        # dg/manage-configure-healthcheck: Interval seconds apart; HealthyThreshold
        # consecutive passes make it healthy, UnhealthyThreshold consecutive failures not.
        operation.next_check = now + health["Interval"] * self._minute(service) / 60
        if operation.healthy >= health["HealthyThreshold"]:
            # Healthy: all traffic moves to the new version at once; nothing is ever split.
            service.active = operation.candidate
            service.paused_version = None
            service.deployed_config = copy.deepcopy(service.config)
            self._end(service, operation, "SUCCEEDED", "RUNNING")
        elif operation.unhealthy >= health["UnhealthyThreshold"]:
            if operation.type == "RESUME_SERVICE":
                self._end(service, operation, "FAILED", "PAUSED")
            elif service.deployed_config is None:  # never deployed: nothing to roll back to
                # dg/manage-create, "When service creation fails": CREATE_FAILED.
                self._end(service, operation, "FAILED", "CREATE_FAILED")
            else:
                # Automatic rollback (aws/apprunner-roadmap#209; OperationStatus): the
                # previous version has served all along and goes on serving.
                operation.status, operation.phase = "ROLLBACK_IN_PROGRESS", "rollback"
                operation.deadline = now + ROLLBACK_MINUTES * self._minute(service)

    def _guarded(self, loop: str, work: Callable[[], Any]) -> None:
        """Run one pass of a loop; a failure is counted and shown, and the next pass retries."""
        try:
            work()
        except Exception as error:  # counted and shown; the next pass retries
            self._loop_error(loop, error)

    # -- metrics ------------------------------------------------------------------------

    def _publish_serving(self) -> None:
        with self._lock:
            services = [s for s in self.services.values() if s.front.serving]
        self._publish(services)

    def _publish(self, services: list[Service], flush_all: bool = False) -> None:
        data: list[dict[str, Any]] = []
        last_second = int(time.time()) - 1
        for service in services:
            dims = [
                {"Name": "ServiceName", "Value": service.name},
                {"Name": "ServiceID", "Value": service.id},
            ]
            for second, bucket in sorted(service.front.drain(flush_all).items()):
                base = {
                    "Dimensions": dims,
                    "Timestamp": datetime.fromtimestamp(second, UTC),
                    "StorageResolution": 1,
                }
                data.append(
                    {**base, "MetricName": "Requests", "Value": bucket.requests, "Unit": "Count"}
                )
                for status_class, count in sorted(bucket.statuses.items()):
                    if count:
                        data.append(
                            {
                                **base,
                                "MetricName": f"{status_class}xxStatusResponses",
                                "Value": count,
                                "Unit": "Count",
                            }
                        )
                data.extend(distribution(base, "RequestLatency", "Milliseconds", bucket.latencies))
            if not flush_all and service.active is not None:
                # One instance per version in the sandbox (no auto scaling).
                data.append(
                    {
                        "Dimensions": dims,
                        "Timestamp": datetime.fromtimestamp(last_second, UTC),
                        "StorageResolution": 1,
                        "MetricName": "ActiveInstances",
                        "Value": 1,
                        "Unit": "Count",
                    }
                )
        for chunk in range(0, len(data), 500):
            self._cloudwatch.put_metric_data(
                Namespace=NAMESPACE, MetricData=data[chunk : chunk + 500]
            )


def _source(given: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """A SourceConfiguration checked and completed; on update, members left out keep their
    current values (API_UpdateService: "set the values to members of the structure that
    you include")."""
    if given.get("CodeRepository") is not None:
        raise _invalid("the bgkit sandbox runs image repositories only, not CodeRepository")
    image = given.get("ImageRepository")
    if image is None:
        raise _invalid("SourceConfiguration needs an ImageRepository")
    identifier = image.get("ImageIdentifier", "")
    kind = image.get("ImageRepositoryType")
    if not _pattern("ImageRepository", "ImageIdentifier").fullmatch(identifier):
        raise _invalid(f"ImageIdentifier {identifier!r} is not an Amazon ECR image name")
    ecr = _ECR.match(identifier)
    if kind not in ("ECR", "ECR_PUBLIC") or (kind == "ECR") != bool(ecr):
        raise _invalid(f"ImageRepositoryType {kind!r} does not match image {identifier}")
    previous = current or {}
    old_image = previous.get("ImageRepository", {})
    result: dict[str, Any] = {
        "ImageRepository": {
            "ImageIdentifier": identifier,
            "ImageConfiguration": _image_configuration(
                image.get("ImageConfiguration", old_image.get("ImageConfiguration"))
            ),
            "ImageRepositoryType": kind,
        }
    }
    # dg/manage-deploy: no automatic deployment for ECR Public nor another account's ECR.
    automatic_possible = kind == "ECR" and ecr.group(1) == ACCOUNT_ID
    automatic = given.get("AutoDeploymentsEnabled", previous.get("AutoDeploymentsEnabled"))
    if automatic is None:
        automatic = automatic_possible  # API_SourceConfiguration default
    if automatic and not automatic_possible:
        raise _invalid(
            "App Runner doesn't support automatic deployment for Amazon ECR Public images, "
            "and for images in an Amazon ECR repository of a different account"
        )
    result["AutoDeploymentsEnabled"] = bool(automatic)
    authentication = given.get(
        "AuthenticationConfiguration", previous.get("AuthenticationConfiguration")
    )
    # dg/manage-create: a private ECR image needs an access role; ECR Public does not.
    if kind == "ECR" and not (authentication or {}).get("AccessRoleArn"):
        raise _invalid(
            "an Amazon ECR image needs AuthenticationConfiguration.AccessRoleArn, an access "
            "role that lets App Runner pull it"
        )
    if authentication:
        result["AuthenticationConfiguration"] = authentication
    return result


def _image_configuration(given: dict[str, Any] | None) -> dict[str, Any]:
    configuration = dict(given or {})
    configuration.setdefault("Port", "8080")  # API_ImageConfiguration.Port default
    if not str(configuration["Port"]).isdigit():
        raise _invalid(f"ImageConfiguration.Port {configuration['Port']!r} is not a port")
    return configuration


def _instance(given: dict[str, Any] | None) -> dict[str, Any]:
    configuration = {"Cpu": "1024", "Memory": "2048", **(given or {})}
    cpu = _CPU.get(configuration["Cpu"], configuration["Cpu"])
    memory = _MEMORY.get(configuration["Memory"], configuration["Memory"])
    if cpu not in _CPU.values() or memory not in _MEMORY.values():
        raise _invalid(f"InstanceConfiguration Cpu {cpu!r} / Memory {memory!r} is not offered")
    return {**configuration, "Cpu": cpu, "Memory": memory}


def _health_check(given: dict[str, Any] | None) -> dict[str, Any]:
    check = {**DEFAULT_HEALTH_CHECK, **(given or {})}
    if check["Protocol"] not in ("TCP", "HTTP"):
        raise _invalid(f"HealthCheckConfiguration.Protocol {check['Protocol']!r}: TCP or HTTP")
    for key in _HEALTH_CHECK_INTEGERS:
        if not isinstance(check[key], int) or not 1 <= check[key] <= 20:
            raise _invalid(f"HealthCheckConfiguration.{key} must be 1-20, not {check[key]!r}")
    if not str(check["Path"]).startswith("/"):
        raise _invalid(f"HealthCheckConfiguration.Path {check['Path']!r} must start with /")
    return check


def _network(given: dict[str, Any] | None) -> dict[str, Any]:
    network = {
        "EgressConfiguration": {"EgressType": "DEFAULT"},
        "IngressConfiguration": {"IsPubliclyAccessible": True},
        "IpAddressType": "IPV4",
        **(given or {}),
    }
    if network["EgressConfiguration"].get("EgressType", "DEFAULT") != "DEFAULT":
        raise _invalid("the bgkit sandbox has no VPC connectors: EgressType must be DEFAULT")
    return network


def _page(items: list[dict[str, Any]], body: dict[str, Any], scope: str) -> tuple[list, str | None]:
    """One page of a listing (MaxResults 1-20; without it, everything) and the next token."""
    limit = body.get("MaxResults")
    if limit is not None and not (isinstance(limit, int) and 1 <= limit <= 20):
        raise _invalid(f"MaxResults must be 1-20, not {limit!r}")
    start = 0
    if body.get("NextToken"):
        try:
            token = json.loads(base64.urlsafe_b64decode(body["NextToken"]))
            start, token_scope = int(token["offset"]), token["scope"]
        except (ValueError, KeyError, TypeError):
            raise _invalid("NextToken is not a token this listing gave") from None
        if token_scope != scope:
            raise _invalid("NextToken belongs to another listing")
    if limit is None:
        return items[start:], None
    end = start + limit
    if end >= len(items):
        return items[start:], None
    token = base64.urlsafe_b64encode(json.dumps({"offset": end, "scope": scope}).encode())
    return items[start:end], token.decode()


def health_check(version: Version | None, check: dict[str, Any]) -> bool:
    """One App Runner health check of a version's instance: TCP connects to its port, HTTP
    requests `Path` and wants 200; either within `Timeout` seconds."""
    if version is None or version.address is None:
        return False  # the image has no process: its instance never starts listening
    host, port = version.address
    try:
        if check["Protocol"] == "TCP":
            with socket.create_connection((host, port), timeout=check["Timeout"]):
                return True
        connection = http.client.HTTPConnection(host, port, timeout=check["Timeout"])
        try:
            connection.request("GET", check["Path"], headers={"User-Agent": "bgkit-apprunner"})
            response = connection.getresponse()
            response.read()
            return response.status == 200
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        return False


@dataclass
class _Second:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # 2, 4, 5 -> n
    latencies: dict[float, int] = field(default_factory=lambda: defaultdict(int))  # ms -> n


class Front:
    """A service's data plane: its URL on loopback, forwarding each request to the version
    that serves all traffic now, and counting what App Runner's service metrics count."""

    def __init__(self, name: str) -> None:
        self.route: Callable[[], Version | None] = lambda: None
        self._server = LoopbackServer(self._handler(), name=f"bgkit-apprunner-{name}")
        self._seconds: dict[int, _Second] = defaultdict(_Second)
        self._lock = threading.Lock()
        self._upstreams = Upstreams()
        self._state = "new"  # new -> serving -> stopped

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.port}"

    @property
    def serving(self) -> bool:
        return self._state == "serving"

    def start(self) -> Front:
        self._server.start()
        self._state = "serving"
        return self

    def stop(self) -> None:
        with self._lock:
            if self._state != "serving":
                return
            self._state = "stopped"
        self._server.stop()
        self._upstreams.close()

    def drain(self, flush_all: bool = False) -> dict[int, _Second]:
        """The finished seconds' counts (all of them with `flush_all`), removed."""
        now = int(time.time())
        with self._lock:
            done = [s for s in self._seconds if flush_all or s < now]
            return {s: self._seconds.pop(s) for s in done}

    def _handler(self) -> type[KeepAliveHandler]:
        front = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                front._serve(self)

            do_HEAD = do_POST = do_GET

        return Handler

    def _serve(self, request: KeepAliveHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        payload = request.rfile.read(length) if length else None
        version = self.route()
        if version is None or version.address is None:
            # No instance (creating, paused, failed): nothing processed the request, so App
            # Runner's metrics (requests "your web service" handled) do not count it.
            request.reply(503, b'{"error": "no running instance"}')
            return
        headers = forwarded_headers(request)
        started = time.perf_counter()
        try:
            status, body, content_type = self._upstreams.request(
                version.address, request.command, request.path, headers, payload
            )
        except (OSError, http.client.HTTPException):
            status, body, content_type = 502, b'{"error": "bad gateway"}', "application/json"
        self._count(status, 1000 * (time.perf_counter() - started))
        request.reply(status, body, content_type)

    def _count(self, status: int, elapsed_ms: float) -> None:
        with self._lock:
            bucket = self._seconds[int(time.time())]
            bucket.requests += 1
            if status // 100 in (2, 4, 5):
                bucket.statuses[status // 100] += 1
            bucket.latencies[round(elapsed_ms, 2)] += 1


class _DataPlane:
    """A scenario's handle on its service's front, so releasing the scenario stops it."""

    def __init__(self, engine: AppRunner, service_arn: str) -> None:
        self._engine, self._service_arn = engine, service_arn

    def stop(self) -> None:
        self._engine.release(self._service_arn)


REPOSITORY = f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/bgkit-web"


def push_images(session: Any, tags: tuple[str, ...]) -> dict[str, str]:
    """The scenario's images in ECR (repository bgkit-web), as a build pipeline pushes them, so
    that a release can check an image exists and pin blue by digest. Returns tag -> digest.
    (moto derives a digest from the manifest's layer digests, so each tag gets its own layer.)"""
    ecr = session.client("ecr")
    repository = REPOSITORY.rsplit("/", 1)[1]
    existing = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    if repository not in existing:  # else another scenario of this sandbox made it
        ecr.create_repository(repositoryName=repository)
    digests = {}
    for tag in tags:
        layer = hashlib.sha256(f"bgkit-web:{tag}".encode()).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "size": 1, "digest": f"sha256:{layer}"},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "size": 1, "digest": f"sha256:{layer}"}],
            }
        )  # fmt: skip
        try:
            image = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
            digests[tag] = image["image"]["imageId"]["imageDigest"]
        except ecr.exceptions.ImageAlreadyExistsException:  # the same image, pushed before
            found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
            digests[tag] = found["imageDetails"][0]["imageDigest"]
    return digests


@register
class AppRunnerScenario(Scenario):
    """An App Runner service from a private ECR image (tag v1, blue) with an HTTP health check
    on /health and manual deployments, taking load on its URL; tag v2 (green, with the fault
    knobs) is the release. Each tag is served by its own loopback process."""

    pattern = "app_runner"

    def start(self) -> AppRunnerScenario:
        engine = self.sandbox.apprunner
        apprunner = self.session.client("apprunner")
        name = f"bgkit-{self.id}"
        digests = push_images(self.session, ("v1", "v2", "v3"))  # v3: pushed, never starts
        processes = {
            "v1": self._started(self._blue_service()),
            "v2": self._started(self._green_service()),
        }
        for tag, process in processes.items():  # by tag and by digest, as App Runner pulls either
            for identifier in (f"{REPOSITORY}:{tag}", f"{REPOSITORY}@{digests[tag]}"):
                engine.serve_image(identifier, ("127.0.0.1", process.port), service_name=name)
        engine.minute_seconds[name] = self.minute_seconds
        service = apprunner.create_service(
            ServiceName=name,
            SourceConfiguration={
                "ImageRepository": {
                    "ImageIdentifier": f"{REPOSITORY}:v1",
                    "ImageRepositoryType": "ECR",
                    "ImageConfiguration": {"Port": "8080"},
                },
                "AutoDeploymentsEnabled": False,  # releases are the runbook's to start
                "AuthenticationConfiguration": {
                    "AccessRoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/service-role/AppRunnerECRAccessRole"
                },
            },
            InstanceConfiguration={"Cpu": "1 vCPU", "Memory": "2 GB"},
            HealthCheckConfiguration={
                "Protocol": "HTTP",
                "Path": "/health",
                "Interval": 5,
                "Timeout": 2,
                "HealthyThreshold": 1,
                "UnhealthyThreshold": 5,
            },
        )["Service"]
        self._stoppables.append(_DataPlane(engine, service["ServiceArn"]))
        service = self._wait_running(apprunner, service["ServiceArn"])
        self._started(LoadGenerator(f"http://{service['ServiceUrl']}/", self.request_rate))
        self.parameters = {
            "service_arn": service["ServiceArn"],
            "image_identifier": f"{REPOSITORY}:v2",
            "smoke_url": f"http://{service['ServiceUrl']}/",
            "production_url": f"http://{service['ServiceUrl']}/",
        }
        return self

    def _wait_running(self, apprunner: Any, arn: str) -> dict[str, Any]:
        # Provisioning, then up to UnhealthyThreshold checks Interval apart, and some slack.
        deadline = time.monotonic() + (PROVISION_MINUTES + 1) * self.minute_seconds + 10
        while time.monotonic() < deadline:
            service = apprunner.describe_service(ServiceArn=arn)["Service"]
            if service["Status"] != "OPERATION_IN_PROGRESS":
                break
            time.sleep(0.05)
        if service["Status"] != "RUNNING":
            raise SandboxError(f"App Runner service {arn} did not start: {service['Status']}")
        return service
