"""Shared by the CodeDeploy patterns: a deployment that CodeDeploy moves and bgkit watches.

bgkit does not set weights here: CodeDeploy shifts traffic by its deployment configuration.
bgkit creates the deployment, smoke-tests green while the deployment waits in READY_WAIT,
continues it, judges green against blue while traffic shifts, and stops it with automatic
rollback on a bad verdict (CodeDeploy API Reference: CreateDeployment, ContinueDeployment,
StopDeployment, GetDeployment).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from ..errors import ParameterError, PreflightError, TrafficError
from ..planning import Change, later
from ..relay import PARAMETER_PREFIX
from .base import Progress

ACTIVE = ("Created", "Queued", "InProgress", "Baking", "Ready")
ROLLBACK_WAIT_SECONDS = 900.0  # longest wait for CodeDeploy's rollback deployment
# What a plan cannot know before CreateDeployment answers, or before the hook relay runs.
LATER_DEPLOYMENT_ID = later("the deployment id CreateDeployment returns")
LATER_HOOK_EXECUTION_ID = later("the hook execution id bgkit's relay hands over")
HOOK_PASSED = "Succeeded"  # the hook's status once the smoke test has passed
_NAME = re.compile(r"^[A-Za-z0-9._+=,@-]{1,100}$")


def name_checker(what: str):
    def check(name: str, value: str) -> None:
        if not _NAME.fullmatch(value):
            raise ParameterError(
                name,
                f"must be a CodeDeploy {what} name: 1-100 of letters, digits and ._+=,@-",
                value,
            )

    return check


_FUNCTION = re.compile(
    r"(arn:aws(-[a-z]+)*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]{1,128})?",
    re.ASCII,
)


def hook_function_checker(name: str, value: str) -> None:
    if not _FUNCTION.fullmatch(value):
        raise ParameterError(
            name, "must be a Lambda function name or ARN (bgkit's hook relay), or empty", value
        )


hook_function_checker.optional = True  # type: ignore[attr-defined]


def config_checker(platform: str, predefined: tuple[str, ...]):
    """Predefined names must exist for `platform`; custom names are checked against AWS in preflight."""

    def check(name: str, value: str) -> None:
        if value.startswith("CodeDeployDefault."):
            if value not in predefined:
                raise ParameterError(
                    name,
                    f"must be a custom configuration or one of the {platform} ones: {', '.join(predefined)}",
                    value,
                )
        else:
            name_checker("deployment configuration")(name, value)

    return check


class CodeDeployDeployment:
    """The CodeDeploy side of a managed pattern: one deployment, from creation to its end."""

    def __init__(self, client: Any, application: str, group: str, ssm: Any = None) -> None:
        self._codedeploy = client
        self._ssm = ssm  # where bgkit's hook relay leaves hook executions (see bgkit.relay)
        self.application = application
        self.group = group
        self.deployment_id: str | None = None

    def group_info(self) -> dict[str, Any]:
        try:
            return self._codedeploy.get_deployment_group(
                applicationName=self.application, deploymentGroupName=self.group
            )["deploymentGroupInfo"]
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "ApplicationDoesNotExistException":
                raise PreflightError(
                    f"CodeDeploy application {self.application!r} does not exist",
                    parameter="application_name",
                ) from None
            if code == "DeploymentGroupDoesNotExistException":
                raise PreflightError(
                    f"deployment group {self.group!r} does not exist in {self.application!r}",
                    parameter="deployment_group_name",
                ) from None
            raise

    def check_config(self, name: str, platform: str) -> dict[str, Any]:
        try:
            info = self._codedeploy.get_deployment_config(deploymentConfigName=name)[
                "deploymentConfigInfo"
            ]
        except ClientError as error:
            if error.response["Error"]["Code"] == "DeploymentConfigDoesNotExistException":
                raise PreflightError(
                    f"deployment configuration {name!r} does not exist",
                    parameter="deployment_config_name",
                ) from None
            raise
        if info.get("computePlatform") != platform:
            raise PreflightError(
                f"{name!r} is for {info.get('computePlatform')}, not {platform}",
                parameter="deployment_config_name",
            )
        info.pop(
            "createTime", None
        )  # plain data only: a resumed release reads it back (checkpoint)
        return info

    def active(self) -> list[str]:
        return self._codedeploy.list_deployments(
            applicationName=self.application,
            deploymentGroupName=self.group,
            includeOnlyStatuses=list(ACTIVE),
        )["deployments"]

    def creation(
        self, revision: dict[str, Any], config: str, description: str, means: str
    ) -> Change:
        """CreateDeployment of `revision` in this group, moved by the configuration `config`."""
        params = {
            "applicationName": self.application,
            "deploymentGroupName": self.group,
            "revision": revision,
            "deploymentConfigName": config,
            "description": description,
        }
        return Change(self._codedeploy, "CreateDeployment", params, means)

    def create(self, creation: Change) -> str:
        """Send `creation` (see `creation`) as the release's own deployment; returns its id."""
        try:
            self.deployment_id = self.create_other(creation)
        except Exception:
            # The request may have reached AWS (a timeout, a retried call that then met its own
            # deployment): find this release's deployment by its description before giving up.
            self.deployment_id = self.find(creation.params["description"])
            if self.deployment_id is None:
                raise
        return self.deployment_id

    def find(self, description: str, since: datetime | None = None) -> str | None:
        """The active deployment of this group with this description (bgkit names each
        one after its release), or None. With `since`, also one that ended: created since
        then (a release killed before it kept the id, whose deployment finished meanwhile)."""
        candidates = (
            self.active()
            if since is None
            else self._codedeploy.list_deployments(
                applicationName=self.application,
                deploymentGroupName=self.group,
                createTimeRange={"start": since},
            )["deployments"]
        )
        for deployment_id in candidates:
            if self.info(deployment_id).get("description") == description:
                return deployment_id
        return None

    def create_other(self, creation: Change) -> str:
        """Send `creation`, a deployment that is not the release's own (a revert); returns its id."""
        return creation.send()["deploymentId"]

    def info(self, deployment_id: str | None = None) -> dict[str, Any]:
        return self._codedeploy.get_deployment(deploymentId=deployment_id or self.deployment_id)[
            "deploymentInfo"
        ]

    def lifecycle(self) -> dict[str, str]:
        """Lifecycle event -> status, from the deployment's target (ECS service or Lambda function)."""
        targets = self._codedeploy.list_deployment_targets(deploymentId=self.deployment_id)[
            "targetIds"
        ]
        if not targets:
            return {}
        target = self._codedeploy.get_deployment_target(
            deploymentId=self.deployment_id, targetId=targets[0]
        )["deploymentTarget"]
        detail = target.get("ecsTarget") or target.get("lambdaTarget") or {}
        return {e["lifecycleEventName"]: e["status"] for e in detail.get("lifecycleEvents", [])}

    def relayed_execution(self) -> str | None:
        """The hook execution bgkit's relay function handed over for this deployment, if any."""
        try:
            value = self._ssm.get_parameter(Name=PARAMETER_PREFIX + self.deployment_id)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise
        return json.loads(value["Parameter"]["Value"])["executionId"]

    def report_hook(self, status: str) -> None:
        """Report the relayed hook execution's result to CodeDeploy, then forget it."""
        execution = self.relayed_execution()
        if execution is None:
            raise TrafficError(f"no hook execution was relayed for deployment {self.deployment_id}")
        self.hook_report(self.deployment_id, execution, status).send()
        self.forget_hook()

    def hook_report(self, deployment_id: str, execution_id: str, status: str) -> Change:
        """PutLifecycleEventHookExecutionStatus: the hook execution's result, for CodeDeploy."""
        params = {
            "deploymentId": deployment_id,
            "lifecycleEventHookExecutionId": execution_id,
            "status": status,
        }
        means = f"reports the held lifecycle hook {status}: the deployment goes on"
        return Change(self._codedeploy, "PutLifecycleEventHookExecutionStatus", params, means)

    def forget_hook(self) -> None:
        """Delete the relay's parameter for this deployment, if there is one."""
        if self._ssm is None or self.deployment_id is None:
            return
        try:
            self._ssm.delete_parameter(Name=PARAMETER_PREFIX + self.deployment_id)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ParameterNotFound":
                raise

    def continue_ready(self) -> None:
        self.ready_continuation(self.deployment_id).send()

    def ready_continuation(self, deployment_id: str) -> Change:
        """ContinueDeployment(READY_WAIT): green leaves the test route for production traffic."""
        params = {"deploymentId": deployment_id, "deploymentWaitType": "READY_WAIT"}
        means = "ends READY_WAIT: production traffic starts to shift to green"
        return Change(self._codedeploy, "ContinueDeployment", params, means)

    def continue_termination(self) -> None:
        """End the termination wait; if it has just ended by itself, there is nothing to do."""
        try:
            self.termination_continuation(self.deployment_id).send()
        except ClientError as error:
            if error.response["Error"]["Code"] != "DeploymentIsNotInReadyStateException":
                raise

    def termination_continuation(self, deployment_id: str) -> Change:
        """ContinueDeployment(TERMINATION_WAIT): blue, kept for a rollback, is let go now."""
        params = {"deploymentId": deployment_id, "deploymentWaitType": "TERMINATION_WAIT"}
        means = "ends the termination wait: CodeDeploy removes blue and the deployment succeeds"
        return Change(self._codedeploy, "ContinueDeployment", params, means)

    def stop_request(self, deployment_id: str) -> Change:
        """StopDeployment with automatic rollback: CodeDeploy returns all traffic to blue."""
        params = {"deploymentId": deployment_id, "autoRollbackEnabled": True}
        means = "stops the deployment; CodeDeploy's rollback deployment returns traffic to blue"
        return Change(self._codedeploy, "StopDeployment", params, means)

    def stop_with_rollback(self, clock: Any, timeout: float = 900.0) -> str | None:
        """Stop the deployment and wait until CodeDeploy has stopped it; returns the rollback
        deployment's id (None when there was nothing to stop or no rollback was started).

        StopDeployment is asynchronous ("Pending"): the status and rollbackInfo come later.
        """
        if self.deployment_id is None:
            return None
        if self.info()["status"] in ACTIVE:
            try:
                self.stop_request(self.deployment_id).send()
            except ClientError as error:  # it completed between the read and the stop
                if error.response["Error"]["Code"] != "DeploymentAlreadyCompletedException":
                    raise
        waited = 0.0
        while True:
            info = self.info()
            rollback = (info.get("rollbackInfo") or {}).get("rollbackDeploymentId")
            if info["status"] not in ACTIVE and (
                rollback or info["status"] == "Succeeded" or waited > 30
            ):
                return rollback
            if waited > timeout:
                raise TrafficError(
                    f"deployment {self.deployment_id} is still {info['status']} after StopDeployment"
                )
            clock.sleep(0.5)
            waited += 0.5


class ManagedByCodeDeploy:
    """What the release loop asks of a pattern whose traffic CodeDeploy shifts."""

    managed = True
    # The deployment's AWS API actions (bgkit.iam), hook relay included: its parameters in SSM
    # and the hook function's check. A pattern adds its own (ContinueDeployment: READY_WAIT).
    iam_actions: tuple[str, ...] = (
        "codedeploy:CreateDeployment",
        "codedeploy:GetDeployment",
        "codedeploy:GetDeploymentConfig",
        "codedeploy:GetDeploymentGroup",
        "codedeploy:GetDeploymentTarget",
        "codedeploy:ListDeploymentTargets",
        "codedeploy:ListDeployments",
        "codedeploy:PutLifecycleEventHookExecutionStatus",
        "codedeploy:StopDeployment",
        "lambda:GetFunction",
        "ssm:DeleteParameter",
        "ssm:GetParameter",
    )
    ready_wait = True  # ECS: green waits on the test route until ContinueDeployment(READY_WAIT)
    # The group's deploymentReadyOption STOP_DEPLOYMENT: READY_WAIT holds green (ECS; read at
    # preflight), after the hook if there is one.
    holds_in_ready_wait = False
    # After the shift CodeDeploy keeps blue until TERMINATION_WAIT ends (ECS; a Lambda
    # deployment ends with its shift).
    termination_wait = True
    config: str
    deployment: CodeDeployDeployment
    # With bgkit's relay as the hook on `hook_event`, green waits there until bgkit reports the
    # smoke test's result (PutLifecycleEventHookExecutionStatus).
    hook_event: str
    hook_function: str = ""
    _ready_continued = False  # ContinueDeployment(READY_WAIT) was called for this deployment
    _config_info: dict[str, Any]
    judge_seconds: float = 0.0  # bake + metric lag: how long a verdict takes (set by the release)

    def _use_codedeploy(self, session: Any, resources: Mapping[str, str]) -> None:
        """The deployment group, configuration and optional hook relay from the parameters."""
        self.config = resources["deployment_config_name"]
        self.deployment = CodeDeployDeployment(
            session.client("codedeploy"),
            resources["application_name"],
            resources["deployment_group_name"],
            ssm=session.client("ssm"),
        )
        self.hook_function = resources.get("hook_function_name", "")
        self._config_info = {}

    def check_group(self, platform: str) -> dict[str, Any]:
        """The deployment group, its configuration and that nothing else is deploying. Read-only."""
        group = self.deployment.group_info()
        require(
            group.get("computePlatform") == platform,
            f"the deployment group is not for {platform}",
            "deployment_group_name",
        )
        style = group.get("deploymentStyle", {})
        require(
            style.get("deploymentType", "BLUE_GREEN") == "BLUE_GREEN"
            and style.get("deploymentOption", "WITH_TRAFFIC_CONTROL") == "WITH_TRAFFIC_CONTROL",
            "the deployment group must be BLUE_GREEN WITH_TRAFFIC_CONTROL",
            "deployment_group_name",
        )
        alarms = group.get("alarmConfiguration") or {}
        rollback = group.get("autoRollbackConfiguration") or {}
        events = rollback.get("events", []) if rollback.get("enabled") else []
        require(
            not (alarms.get("enabled") and alarms.get("alarms"))
            or "DEPLOYMENT_STOP_ON_ALARM" in events,
            "the deployment group's alarms can stop a deployment without rolling it back, leaving "
            "traffic where it is: add DEPLOYMENT_STOP_ON_ALARM to autoRollbackConfiguration.events",
            "deployment_group_name",
        )
        require(
            not self.hook_function or "DEPLOYMENT_FAILURE" in events,
            "with a hook, a failed hook fails the deployment: add DEPLOYMENT_FAILURE to "
            "autoRollbackConfiguration.events so that CodeDeploy rolls it back",
            "deployment_group_name",
        )
        self._config_info = self.deployment.check_config(self.config, platform)
        active = self.deployment.active()
        require(
            not active,
            f"deployment {active[0] if active else ''} is still active in this group; "
            "wait for it or stop it before starting another",
        )
        return group

    def deployment_state(self) -> dict[str, Any]:
        """The release's deployment as CodeDeploy reports it, for the record."""
        if not self.deployment.deployment_id:
            return {}
        info = self.deployment.info()
        keys = (
            "deploymentId",
            "status",
            "deploymentConfigName",
            "errorInformation",
            "rollbackInfo",
        )
        return {"deployment": {k: info.get(k) for k in keys}}

    def progress(self) -> Progress:
        info = self.deployment.info()
        current = phase(info)
        # InProgress covers installing green as well as shifting: the lifecycle events tell which.
        if current == "shifting":
            events = self.deployment.lifecycle()
            if events.get("AllowTraffic", "Pending") == "Pending":
                current = "deploying"
                if (
                    self.hook_function
                    and events.get(self.hook_event) == "InProgress"
                    and self.deployment.relayed_execution()
                ):
                    current = "ready"  # green waits at the hook for bgkit's smoke test
        if current == "ready" and info["status"] == "Ready" and self._ready_continued:
            current = "deploying"  # continued already; AWS may still read Ready for a moment
        error = info.get("errorInformation") or {}
        reason = f"{error.get('code', '')} {error.get('message', '')}".strip()
        return Progress(info["deploymentId"], current, info["status"], reason)

    # -- the calls, as plans list them (bgkit.planning); the methods below send the same ------

    def deployment_creation(self, release: str) -> Change:
        """The release's CreateDeployment (the pattern's revision): what start_deployment sends."""
        raise NotImplementedError

    def start_deployment(self, release: str) -> str:
        return self.deployment.create(self.deployment_creation(release))

    def start_changes(self, release: str) -> list[Change]:
        return [self.deployment_creation(release)]

    def continue_changes(self) -> list[Change]:
        """What continue_after_smoke sends, in the order the deployment waits for bgkit: the
        relayed hook's report (with a hook), then the end of READY_WAIT (where the group has it)."""
        changes = []
        if self.hook_function:
            report = self.deployment.hook_report(
                LATER_DEPLOYMENT_ID, LATER_HOOK_EXECUTION_ID, HOOK_PASSED
            )
            changes.append(report)
        if self.holds_in_ready_wait:
            changes.append(self.deployment.ready_continuation(LATER_DEPLOYMENT_ID))
        return changes

    def promote_changes(self) -> list[Change]:
        """What end_wait_after_shift sends: the end of the termination wait, where there is one."""
        if not self.termination_wait:
            return []
        return [self.deployment.termination_continuation(LATER_DEPLOYMENT_ID)]

    def stop_changes(self) -> list[Change]:
        """What stop_and_roll_back sends while the deployment is active."""
        return [self.deployment.stop_request(LATER_DEPLOYMENT_ID)]

    def continue_after_smoke(self) -> str:
        """Let green go on: report the relayed hook Succeeded, or end READY_WAIT."""
        if self.hook_function and self.deployment.relayed_execution():
            self.deployment.report_hook(HOOK_PASSED)
            return f"reported the {self.hook_event} hook Succeeded (PutLifecycleEventHookExecutionStatus)"
        self.deployment.continue_ready()
        self._ready_continued = True
        return "ended READY_WAIT (ContinueDeployment)"

    def check_hook_function(self, lambda_client: Any) -> None:
        if not self.hook_function:
            return
        try:
            lambda_client.get_function(FunctionName=self.hook_function)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise PreflightError(
                    f"hook function {self.hook_function!r} does not exist (see bgkit.relay for how to create it)",
                    parameter="hook_function_name",
                ) from None
            raise

    def hooks(self) -> list[dict[str, str]]:
        """The AppSpec Hooks section: bgkit's relay on `hook_event`, if one is configured."""
        return [{self.hook_event: self.hook_function}] if self.hook_function else []

    def wait_after_shift_seconds(self) -> float:
        return 0.0  # bgkit ends the termination wait (TERMINATION_WAIT) once all verdicts passed

    def end_wait_after_shift(self) -> None:
        if phase(self.deployment.info()) == "shifted":
            self.deployment.continue_termination()

    def stop_and_roll_back(self, clock: Any, release: str, note: Callable[[str], None]) -> None:
        """StopDeployment with automatic rollback, then wait for CodeDeploy's rollback deployment.

        A deployment that succeeded before the verdict cannot be stopped: a pattern that can
        deploy blue back (`revert_completed`) does so, all at once.
        """
        deployment = self.deployment
        if deployment.deployment_id is None:
            # CreateDeployment was never accepted (or, after a restart, no active deployment of
            # this release was found): nothing to stop; the release reads the split back.
            return
        rollback_id = deployment.stop_with_rollback(clock)
        if self.hook_function:
            deployment.forget_hook()  # a hook execution that will never be reported
        if rollback_id:
            note(
                f"stopped {deployment.deployment_id}; CodeDeploy rollback deployment {rollback_id} started"
            )
        elif deployment.info()["status"] == "Succeeded" and hasattr(self, "revert_completed"):
            rollback_id = self.revert_completed(release)
            note(
                f"{deployment.deployment_id} had already succeeded; deployment {rollback_id} "
                "moves traffic back to blue all at once"
            )
        if not rollback_id:
            return
        deadline = clock.now() + timedelta(seconds=ROLLBACK_WAIT_SECONDS)
        while True:
            status = deployment.info(rollback_id)["status"]
            if status == "Succeeded":
                return
            if status in ("Failed", "Stopped") or clock.now() > deadline:
                raise TrafficError(f"rollback deployment {rollback_id} ended {status}")
            clock.sleep(0.5)

    def routing(self) -> dict[str, Any]:
        return self._config_info.get("trafficRoutingConfig") or {"type": "AllAtOnce"}

    def all_at_once(self) -> bool:
        return self.routing().get("type", "AllAtOnce") == "AllAtOnce"

    def max_shift_seconds(self) -> float:
        """How long CodeDeploy's own schedule takes, in minutes of AWS time."""
        routing = self.routing()
        if routing.get("type") == "TimeBasedCanary":
            return 60.0 * routing["timeBasedCanary"]["canaryInterval"]
        if routing.get("type") == "TimeBasedLinear":
            linear = routing["timeBasedLinear"]
            steps = -(-100 // linear["linearPercentage"])
            return 60.0 * linear["linearInterval"] * steps
        return 0.0

    def plan_description(self) -> str:
        if not self._config_info:
            return f"CodeDeploy {self.config}"
        routing = self.routing()
        if routing.get("type") == "TimeBasedCanary":
            c = routing["timeBasedCanary"]
            shape = f"canary {c['canaryPercentage']}%, then 100% after {c['canaryInterval']} min"
        elif routing.get("type") == "TimeBasedLinear":
            c = routing["timeBasedLinear"]
            shape = f"linear {c['linearPercentage']}% every {c['linearInterval']} min"
        else:
            shape = "all at once (no canary analysis)"
        return f"CodeDeploy {self.config}: {shape}; bgkit judges every bake window and stops with rollback"


def phase(info: dict[str, Any]) -> str:
    """Where a deployment is, in bgkit's terms: deploying, ready, shifting, shifted, succeeded, stopped."""
    status = info["status"]
    if status in ("Created", "Queued"):
        return "deploying"
    if status == "Ready":
        return "ready"
    if status == "Succeeded":
        return "succeeded"
    if status in ("Failed", "Stopped"):
        return "stopped"
    if info.get("instanceTerminationWaitTimeStarted"):
        return "shifted"
    return "shifting"


def require(condition: bool, message: str, parameter: str | None = None) -> None:
    if not condition:
        raise PreflightError(message, parameter=parameter)


__all__ = [
    "ACTIVE",
    "CodeDeployDeployment",
    "TrafficError",
    "config_checker",
    "name_checker",
    "phase",
    "require",
]
