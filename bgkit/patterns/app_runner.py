"""App Runner: the service deploys a new image and moves all traffic to it at once.

App Runner runs one version of a service at a time: UpdateService with a new image starts an
operation (UPDATE_SERVICE) during which the current version keeps serving; App Runner
health-checks the new version and then sends it all traffic (operation SUCCEEDED), or rolls
the deployment back itself when the new version fails its health check (ROLLBACK_SUCCEEDED).
There is no traffic split and no test route, so bgkit measures blue over one bake window
before the deployment, deploys, smoke-tests the service URL, and judges green's windows
after the switch against blue's numbers. Rollback redeploys the previous image, which is a
new deployment of its own (App Runner has no "switch back"), and the record says so.

AWS: App Runner API Reference, UpdateService, ListOperations, OperationSummary
(PENDING | IN_PROGRESS | FAILED | SUCCEEDED | ROLLBACK_IN_PROGRESS | ROLLBACK_FAILED |
ROLLBACK_SUCCEEDED); Developer Guide, "Deployment methods" and "Viewing App Runner service
metrics reported to CloudWatch" (AWS/AppRunner Requests, 5xxStatusResponses, RequestLatency
per service). AWS has closed App Runner to new customers and points them to Amazon ECS
Express Mode; this pattern stays for existing services.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..clock import Clock, SystemClock
from ..errors import DeploymentStopped, PreflightError, TrafficError
from ..metrics import MetricSource
from ..params import arn_checker, regex_checker
from ..planning import Change, Wait, later
from . import register
from .base import Split

_IMAGE = re.compile(
    r"^(\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com|public\.ecr\.aws/[a-z0-9._-]+)"
    r"/[a-z0-9]+([._/-][a-z0-9]+)*(:[\w.+=:@/-]{1,128}|@sha256:[0-9a-f]{64})$",
    re.ASCII,  # \d and \w: ASCII digits and letters only, as in ECR image names and tags
)
_RUNNING = ("PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS")
_PRIVATE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repository>[^:@]+)"
    r"(:(?P<tag>[^@]+)|@(?P<digest>sha256:[0-9a-f]{64}))$"
)
OPERATION_WAIT_SECONDS = 1800.0  # longest wait for one App Runner deployment
# an operation's id before UpdateService has started it: a plan's placeholder
NEW_OPERATION = later("the OperationId UpdateService returns")


@register
class AppRunner:
    name: ClassVar[str] = "app_runner"
    title: ClassVar[str] = "App Runner"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        "apprunner:DescribeService",
        "apprunner:ListOperations",
        "apprunner:UpdateService",
        "ecr:DescribeImages",
    )
    # Checked by IAM, not called: UpdateService carries the service's ECR access role (its
    # source configuration is sent back whole), passed to App Runner (AWSAppRunnerFullAccess
    # names apprunner.amazonaws.com; the role trusts build.apprunner.amazonaws.com).
    iam_dependent_actions: ClassVar[tuple[dict[str, Any], ...]] = (
        {
            "Action": ["iam:PassRole"],
            "Condition": {
                "StringEquals": {
                    "iam:PassedToService": [
                        "apprunner.amazonaws.com",
                        "build.apprunner.amazonaws.com",
                    ]
                }
            },
        },
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "service_arn": arn_checker(
            "apprunner",
            r"service/[A-Za-z0-9][A-Za-z0-9_-]{3,39}/[0-9a-f]{32}",
            "arn:aws:apprunner:us-east-1:123456789012:service/web-app/8fe1e10304f84fd2b0df550fe98a71fa",
        ),
        "image_identifier": regex_checker(
            _IMAGE,
            "must be an ECR image with a tag or digest, such as "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v2 or public.ecr.aws/org/web:v2",
        ),
    }
    switches_at_once: ClassVar[bool] = True
    plans: ClassVar[tuple[str, ...]] = ("all_at_once",)  # App Runner cannot split traffic
    clock: Clock = SystemClock()

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._apprunner = session.client("apprunner")
        self._ecr = session.client("ecr")
        self.service_arn = resources["service_arn"]
        self.green_image = resources["image_identifier"]
        self.blue_image: str | None = None
        self.blue_digest: str | None = None  # blue's image as it was, should its tag move
        self._rolled_back = ""
        self._ours: set[str] = set()  # the operations this release started

    def target_id(self) -> str:
        return self.service_arn

    def plan_description(self) -> str:
        return (
            "all at once (App Runner): green judged after the switch against blue's window "
            "before the deployment"
        )

    # -- reads -------------------------------------------------------------------------

    def _service(self) -> dict[str, Any]:
        try:
            return self._apprunner.describe_service(ServiceArn=self.service_arn)["Service"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise PreflightError(
                    f"App Runner service {self.service_arn} does not exist", parameter="service_arn"
                ) from None
            raise

    def _latest_operation(self) -> dict[str, Any] | None:
        operations = self._apprunner.list_operations(ServiceArn=self.service_arn, MaxResults=1)
        return next(iter(operations["OperationSummaryList"]), None)

    def _image(self, service: dict[str, Any]) -> str | None:
        repository = service["SourceConfiguration"].get("ImageRepository")
        return None if repository is None else repository["ImageIdentifier"]

    def read_split(self) -> Split:
        """App Runner serves one version: the configured image once no operation runs; while one
        runs, the version from before it (the service shows the new configuration at once)."""
        configured_green = self._image(self._service()) == self.green_image
        operation = self._latest_operation()
        if operation is not None and operation["Status"] in _RUNNING:
            if operation["Id"] not in self._ours:
                raise TrafficError(
                    f"an operation bgkit did not start is in progress ({operation['Type']} "
                    f"{operation['Id']}): which version serves is unknown until it ends"
                )
            configured_green = not configured_green
        return {"blue": 0, "green": 100} if configured_green else {"blue": 100, "green": 0}

    def preflight(self) -> Split:
        service = self._service()
        image = self._image(service)
        if image is None:
            raise PreflightError(
                "the service deploys from a source code repository; bgkit releases image-based "
                "services (a new image identifier)",
                parameter="service_arn",
            )
        if service["Status"] != "RUNNING":
            raise PreflightError(
                f"the service is {service['Status']}, not RUNNING: an operation is in flight or the "
                "service is paused or failed",
                parameter="service_arn",
            )
        kind = service["SourceConfiguration"]["ImageRepository"].get("ImageRepositoryType")
        if kind != _repository_type(self.green_image):
            raise PreflightError(
                f"the service runs a {kind} image and {self.green_image} is "
                f"{_repository_type(self.green_image)}: changing the repository type changes how "
                "App Runner pulls images; release an image of the same kind",
                parameter="image_identifier",
            )
        if image == self.green_image:
            raise PreflightError(
                f"the service already runs {image}: name the new image by a new tag or digest, so "
                "that a rollback can redeploy the one running now",
                parameter="image_identifier",
            )
        if self._digest(self.green_image) is None and _in_account_ecr(
            self.green_image, self.service_arn
        ):
            raise PreflightError(
                f"ECR has no image {self.green_image}: push it first (or check the tag)",
                parameter="image_identifier",
            )
        self.blue_image = image
        self.blue_digest = self._digest(image)
        return self.read_split()

    def _digest(self, image: str) -> str | None:
        """The digest of a private ECR image of the service's account and region (ECR
        DescribeImages), or None: not found, or an image bgkit cannot look up there."""
        match = _PRIVATE.match(image)
        if match is None or not _in_account_ecr(image, self.service_arn):
            return None
        if match["digest"]:
            image_id = {"imageDigest": match["digest"]}
        else:
            image_id = {"imageTag": match["tag"]}
        try:
            found = self._ecr.describe_images(
                registryId=match["account"],
                repositoryName=match["repository"],
                imageIds=[image_id],
            )["imageDetails"]
        except ClientError as error:
            if error.response["Error"]["Code"] in (
                "ImageNotFoundException",
                "RepositoryNotFoundException",
            ):
                return None
            raise
        return found[0]["imageDigest"] if found else None

    def serving_since(self) -> datetime | None:
        """When the version serving now took over (its operation's end): blue's baseline window
        must not reach back before it."""
        operation = self._latest_operation()
        return None if operation is None else operation.get("EndedAt")

    def metric_source(self) -> MetricSource:
        """One set of service metrics: blue's numbers before the switch, green's after."""
        service_id = self.service_arn.rsplit("/", 1)[1]
        name = self.service_arn.rsplit("/", 2)[1]
        dimensions = {"ServiceName": name, "ServiceID": service_id}
        return MetricSource(
            namespace="AWS/AppRunner",
            requests="Requests",
            errors="5xxStatusResponses",
            latency="RequestLatency",
            latency_to_ms=1.0,
            dimensions={"blue": dimensions, "green": dimensions},
        )

    def describe(self) -> dict[str, Any]:
        service = self._service()
        operations = self._apprunner.list_operations(ServiceArn=self.service_arn, MaxResults=5)
        return {
            "service_arn": self.service_arn,
            "status": service["Status"],
            "image_identifier": self._image(service),
            "previous_image": self.blue_image,  # what a rollback redeploys
            "previous_image_digest": self.blue_digest,
            "auto_deployments_enabled": service["SourceConfiguration"].get(
                "AutoDeploymentsEnabled"
            ),
            "service_url": service.get("ServiceUrl"),
            "operations": [
                {k: str(o.get(k)) for k in ("Id", "Type", "Status", "StartedAt", "EndedAt")}
                for o in operations["OperationSummaryList"]
            ],
            "split": _or_unknown(self.read_split),
        }

    def versions(self) -> dict[str, str]:
        """Blue: the image the service runs (and its digest, where ECR has it); green: the
        image to deploy (likewise), so that a tag moved since the plan is drift."""
        blue = self.blue_image or self._image(self._service()) or "no image"
        return {"blue": self._image_text(blue), "green": self._image_text(self.green_image)}

    def _image_text(self, image: str) -> str:
        digest = self._digest(image)
        return image if digest is None or image.endswith(digest) else f"{image} ({digest})"

    # -- changes -----------------------------------------------------------------------

    def deploy_green(self, release: str, note: Callable[[str], None]) -> str:
        started = self.clock.now()
        operation = self._deploy(self.green_image)
        note(f"UpdateService: image {self.green_image} (operation {operation})")
        status = self._wait(operation)
        if status == "ROLLBACK_SUCCEEDED":
            raise DeploymentStopped(
                f"App Runner rolled the deployment of {self.green_image} back itself "
                f"(operation {operation} {status}): the new version did not pass its health check, "
                "and the previous version kept serving",
                split=self.read_split(),
            )
        if status != "SUCCEEDED":
            raise TrafficError(
                f"App Runner deployment of {self.green_image} ended {status} (operation {operation})"
            )
        if self.read_split()["green"] != 100:
            raise TrafficError(
                f"operation {operation} SUCCEEDED but the service does not run {self.green_image}",
                split=self.read_split(),
            )
        return (
            f"App Runner deployed {self.green_image} and moved all traffic to it "
            f"{_seconds(self.clock.now() - started)} after UpdateService"
        )

    def deploy_changes(self, release: str) -> list[Change | Wait]:
        """UpdateService to green's image, then App Runner's deployment of it."""
        return [self._update_service(self.green_image), self._operation_ends(NEW_OPERATION)]

    def set_split(self, green_percent: int) -> Split:
        if green_percent == 100:
            split = self.read_split()  # App Runner moved it all when the deployment succeeded
        elif green_percent == 0:
            split = self._redeploy_blue()
        else:
            raise TrafficError(
                f"App Runner cannot split traffic: asked for green {green_percent}%",
                split=self.read_split(),
            )
        if split["green"] != green_percent:
            raise TrafficError(
                f"asked for green {green_percent}% but the service reads back", split=split
            )
        return split

    def changes_to(self, green_percent: int) -> list[Change | Wait]:
        """What `set_split` sends once green serves: nothing for 100 (App Runner moved all
        traffic itself), blue's image redeployed for 0."""
        if green_percent == 0:
            target, _ = self._blue_target()
            return [self._update_service(target), self._operation_ends(NEW_OPERATION)]
        return []

    def rollback_changes(self, green_percent: int) -> list[Change | Wait]:
        """A rollback once green serves (any verdict or smoke test after the switch) redeploys
        blue's image; before the switch there is nothing to undo."""
        return self.changes_to(0) if green_percent else []

    def how_rolled_back(self) -> str:
        return self._rolled_back

    def _redeploy_blue(self) -> Split:
        operation = self._latest_operation()
        if operation is not None and operation["Status"] in _RUNNING:
            self._wait(operation["Id"])  # App Runner takes one operation at a time
        image = self._image(self._service())
        if image == self.blue_image:
            self._rolled_back = "green's image never took over; nothing to redeploy"
            return self.read_split()
        if image != self.green_image:
            raise TrafficError(
                f"the service now runs {image}, neither blue ({self.blue_image}) nor green: "
                "someone else deployed meanwhile; bgkit does not overwrite it"
            )
        if self.blue_image is None:
            raise TrafficError("the previous image is unknown (preflight did not run)")
        started = self.clock.now()
        target, pinned = self._blue_target()
        operation_id = self._deploy(target)
        status = self._wait(operation_id)
        if status != "SUCCEEDED":
            raise TrafficError(
                f"redeploying the previous image {target} ended {status} "
                f"(operation {operation_id})",
                split=self.read_split(),
            )
        self._rolled_back = (
            f"App Runner has no traffic switch back: bgkit redeployed the previous image "
            f"{target} (operation {operation_id}, {_seconds(self.clock.now() - started)}){pinned}"
        )
        return self.read_split()

    def _blue_target(self) -> tuple[str, str]:
        """The image a rollback redeploys: blue's, by its digest if its tag has moved since
        preflight; and what the record says of that ("" when not pinned)."""
        assert self.blue_image is not None  # read by preflight, before any change
        if self.blue_digest is not None and self._digest(self.blue_image) != self.blue_digest:
            # The tag was moved since preflight: redeploy what blue ran, by its digest.
            target = f"{self.blue_image.split('@')[0].rsplit(':', 1)[0]}@{self.blue_digest}"
            return target, "; blue's tag now names another image, so it was redeployed by digest"
        return self.blue_image, ""

    def _deploy(self, image: str) -> str:
        """UpdateService to `image`; returns the id of the operation it started."""
        operation = self._update_service(image).send()["OperationId"]
        self._ours.add(operation)
        return operation

    def _update_service(self, image: str) -> Change:
        """UpdateService to `image`, keeping the rest of the source configuration as it is."""
        source = self._service()["SourceConfiguration"]
        repository = {
            **source["ImageRepository"],
            "ImageIdentifier": image,
            "ImageRepositoryType": _repository_type(image),
        }
        configuration = {**source, "ImageRepository": repository}
        return Change(
            self._apprunner,
            "UpdateService",
            {"ServiceArn": self.service_arn, "SourceConfiguration": configuration},
            f"the service deploys image {image}",
        )

    def _operation_ends(self, operation_id: str) -> Wait:
        """The wait `_wait(operation_id)` does, in words (a plan has no id yet: NEW_OPERATION)."""
        return Wait(
            f"App Runner's operation {operation_id} ends: it health-checks the new version, then "
            "sends it all traffic (SUCCEEDED) or rolls back itself (ROLLBACK_SUCCEEDED)"
        )

    def _wait(self, operation_id: str) -> str:
        """Wait for an operation to end; returns its final status."""
        deadline = self.clock.now() + timedelta(seconds=OPERATION_WAIT_SECONDS)
        while True:
            operations = self._apprunner.list_operations(ServiceArn=self.service_arn, MaxResults=20)
            status = next(
                (
                    o["Status"]
                    for o in operations["OperationSummaryList"]
                    if o["Id"] == operation_id
                ),
                None,
            )
            if status is None:
                raise TrafficError(f"App Runner lists no operation {operation_id}")
            if status not in _RUNNING:
                return status
            if self.clock.now() > deadline:
                raise TrafficError(
                    f"operation {operation_id} still {status} after {OPERATION_WAIT_SECONDS:g} s"
                )
            self.clock.sleep(0.5)


def _or_unknown(read: Callable[[], Split]) -> Split | str:
    try:
        return read()
    except TrafficError as error:  # an operation bgkit did not start: the record says so
        return f"unknown: {error}"


def _in_account_ecr(image: str, service_arn: str) -> bool:
    """A private ECR image in the service's own account and region: one bgkit can look up."""
    match = _PRIVATE.match(image)
    _, _, _, region, account, _ = service_arn.split(":", 5)
    return match is not None and (match["account"], match["region"]) == (account, region)


def _repository_type(image: str) -> str:
    return "ECR_PUBLIC" if image.startswith("public.ecr.aws/") else "ECR"


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.1f} s"
