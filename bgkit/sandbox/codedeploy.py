"""CodeDeploy for the sandbox: deployments that move, as AWS CodeDeploy's do.

moto stores CodeDeploy deployments but never moves them, so the sandbox serves the
CodeDeploy API itself (same endpoint, same JSON protocol). What it follows:

* Predefined configurations and their traffic steps: "Working with deployment
  configurations in CodeDeploy" (ECS and Lambda tables); custom time-based canary/linear
  configurations: CreateDeploymentConfig, TrafficRoutingConfig, TimeBasedCanary/Linear.
* Amazon ECS blue/green: "What happens during an Amazon ECS deployment" and "AppSpec
  'hooks' section for an Amazon ECS deployment": lifecycle events BeforeInstall, Install
  (replacement task set), AfterInstall, AllowTestTraffic (test listener to the replacement
  target group), AfterAllowTestTraffic, BeforeAllowTraffic, AllowTraffic (production
  listener weights per the configuration), AfterAllowTraffic; then the original task set is
  terminated after terminationWaitTimeInMinutes.
* READY_WAIT: DeploymentReadyOption STOP_DEPLOYMENT holds the deployment in status Ready
  until ContinueDeployment(READY_WAIT), and stops it when waitTimeInMinutes passes.
* TERMINATION_WAIT: ContinueDeployment(TERMINATION_WAIT) ends the wait early.
* StopDeployment(autoRollbackEnabled=True): the deployment is Stopped and a rollback
  deployment (creator codeDeployRollback) reroutes traffic to the original task set and
  removes the replacement ("Redeploy and roll back a deployment with CodeDeploy").
* AWS Lambda: "What happens during an AWS Lambda deployment": BeforeAllowTraffic,
  AllowTraffic (the alias's AdditionalVersionWeights move per the configuration; at 100 % the
  alias points to the target version), AfterAllowTraffic. Rollback points the alias back.
* One active deployment per group: CreateDeployment raises DeploymentLimitExceededException.
* The deployment group keeps its alarm and auto-rollback configuration (moto drops alarms).
  While a deployment is active, its group's alarms are polled ("Monitoring deployments with
  CloudWatch alarms in CodeDeploy"; AlarmConfiguration): an alarm in ALARM stops it
  (ALARM_ACTIVE) and rolls it back when autoRollbackConfiguration has
  DEPLOYMENT_STOP_ON_ALARM; an alarm whose state cannot be read stops it too unless
  ignorePollAlarmFailure. (The alarms' own evaluation is CloudWatch's, which moto does not do:
  their state changes with SetAlarmState.)

* Lifecycle hooks ("AppSpec 'hooks' section" for ECS and for Lambda; API Reference,
  PutLifecycleEventHookExecutionStatus): at each hooked event CodeDeploy invokes the function
  with DeploymentId and LifecycleEventHookExecutionId, and the event stays InProgress until the
  function (or anyone) reports Succeeded or Failed for that execution, or one hour passes. A
  failed or timed-out hook fails the deployment (HOOK_EXECUTION_FAILURE), and automatic
  rollback on DEPLOYMENT_FAILURE rolls it back. Hook functions run in their own process with
  their environment variables, the SDK pointed at the sandbox (see lambda_worker).
  ECS hooks on AfterAllowTestTraffic, BeforeAllowTraffic and AfterAllowTraffic are run;
  BeforeInstall and AfterInstall hooks are refused (the sandbox installs in one step).

Time runs on the sandbox's clock: each application has `minute_seconds`, the real seconds
that one CodeDeploy minute takes (60 on AWS; a few seconds in a demo).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..aws import AwsSession
from .extensions import AwsError, JsonService

ACTIVE = ("Created", "Queued", "InProgress", "Baking", "Ready")
# TargetStatus (API Reference) of the deployment's target, by deployment status.
_TARGET_STATUS = {
    "Created": "Pending",
    "Queued": "Pending",
    "InProgress": "InProgress",
    "Baking": "InProgress",
    "Ready": "Ready",
    "Succeeded": "Succeeded",
    "Failed": "Failed",
    "Stopped": "Failed",
}
HEALTH_CHECK_SECONDS = 1.0  # new targets pass the load balancer's health check after this long
PROPAGATION_SECONDS = 0.5  # a listener change reaches the data plane within this long


def _linear(percent: int, minutes: int) -> dict[str, Any]:
    return {
        "type": "TimeBasedLinear",
        "timeBasedLinear": {"linearPercentage": percent, "linearInterval": minutes},
    }


def _canary(percent: int, minutes: int) -> dict[str, Any]:
    return {
        "type": "TimeBasedCanary",
        "timeBasedCanary": {"canaryPercentage": percent, "canaryInterval": minutes},
    }


_ALL = {"type": "AllAtOnce"}
PREDEFINED: dict[str, tuple[str, dict[str, Any]]] = {
    "CodeDeployDefault.ECSAllAtOnce": ("ECS", _ALL),
    "CodeDeployDefault.ECSLinear10PercentEvery1Minutes": ("ECS", _linear(10, 1)),
    "CodeDeployDefault.ECSLinear10PercentEvery3Minutes": ("ECS", _linear(10, 3)),
    "CodeDeployDefault.ECSCanary10Percent5Minutes": ("ECS", _canary(10, 5)),
    "CodeDeployDefault.ECSCanary10Percent15Minutes": ("ECS", _canary(10, 15)),
    "CodeDeployDefault.LambdaAllAtOnce": ("Lambda", _ALL),
    "CodeDeployDefault.LambdaCanary10Percent5Minutes": ("Lambda", _canary(10, 5)),
    "CodeDeployDefault.LambdaCanary10Percent10Minutes": ("Lambda", _canary(10, 10)),
    "CodeDeployDefault.LambdaCanary10Percent15Minutes": ("Lambda", _canary(10, 15)),
    "CodeDeployDefault.LambdaCanary10Percent30Minutes": ("Lambda", _canary(10, 30)),
    "CodeDeployDefault.LambdaLinear10PercentEvery1Minute": ("Lambda", _linear(10, 1)),
    "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes": ("Lambda", _linear(10, 2)),
    "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes": ("Lambda", _linear(10, 3)),
    "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes": ("Lambda", _linear(10, 10)),
}
LAMBDA_EVENTS = ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]
HOOKED = {
    "Lambda": ("BeforeAllowTraffic", "AfterAllowTraffic"),
    "ECS": ("AfterAllowTestTraffic", "BeforeAllowTraffic", "AfterAllowTraffic"),
}
HOOK_TIMEOUT_MINUTES = 60  # "an hour", AppSpec hooks section
ALARM_POLL_SECONDS = 1.0
ECS_EVENTS = ["BeforeInstall", "Install", "AfterInstall", "AllowTestTraffic", "AfterAllowTestTraffic",
              "BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]  # fmt: skip


class HookFailed(Exception):
    code = "HOOK_EXECUTION_FAILURE"


def _hooks(appspec: dict[str, Any], platform: str) -> dict[str, str]:
    """The AppSpec's Hooks ([{"BeforeAllowTraffic": "function"}, ...]) as event -> function."""
    hooks: dict[str, str] = {}
    for entry in appspec.get("Hooks") or []:
        if not isinstance(entry, dict):
            raise AwsError(
                "InvalidRevisionException", "each Hooks entry maps an event to a function"
            )
        for event, function in entry.items():
            if event not in HOOKED.get(platform, ()):
                raise AwsError(
                    "InvalidRevisionException",
                    f"the bgkit sandbox runs {platform} hooks on {', '.join(HOOKED[platform])}, not {event}",
                )
            hooks[event] = str(function)
    return hooks


def traffic_schedule(routing: dict[str, Any]) -> list[tuple[float, int]]:
    """(minutes after traffic starts, percent on the replacement) for a TrafficRoutingConfig."""
    kind = routing.get("type", "AllAtOnce")
    if kind == "TimeBasedCanary":
        c = routing["timeBasedCanary"]
        return [(0.0, c["canaryPercentage"]), (float(c["canaryInterval"]), 100)]
    if kind == "TimeBasedLinear":
        c = routing["timeBasedLinear"]
        steps, percent, minute = [], 0, 0.0
        while percent < 100:
            percent = min(100, percent + c["linearPercentage"])
            steps.append((minute, percent))
            minute += c["linearInterval"]
        return steps
    return [(0.0, 100)]


@dataclass
class Deployment:
    id: str
    application: str
    group: str
    config: str
    revision: dict[str, Any]
    creator: str = "user"
    platform: str = "ECS"
    status: str = "Created"
    created: float = field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    events: dict[str, str] = field(default_factory=dict)
    phase: str = "start"
    deadline: float | None = None
    shift_started: float | None = None
    green_percent: int = 0
    error: dict[str, str] | None = None
    rollback_info: dict[str, str] | None = None
    messages: list[str] = field(default_factory=list)
    termination_wait_started: bool = False
    continue_termination: bool = False
    original_tg: str | None = None
    replacement_tg: str | None = None
    replacement_task_set: str | None = None
    original_task_set: str | None = None
    auto_rollback: dict[str, Any] | None = None
    lambda_target: dict[str, str] | None = None  # Name, Alias, CurrentVersion, TargetVersion
    stop_requested: bool | None = None  # StopDeployment received: with automatic rollback or not
    description: str = ""
    hooks: dict[str, str] = field(default_factory=dict)  # lifecycle event -> Lambda function
    alarms_polled: float = 0.0
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)  # hook executions by id

    def __post_init__(self) -> None:
        if not self.events:
            self.events = {
                e: "Pending" for e in (LAMBDA_EVENTS if self.platform == "Lambda" else ECS_EVENTS)
            }

    def info(self) -> dict[str, Any]:
        done = sum(1 for s in self.events.values() if s == "Succeeded")
        info = {
            "applicationName": self.application,
            "deploymentGroupName": self.group,
            "deploymentConfigName": self.config,
            "deploymentId": self.id,
            "revision": self.revision,
            "status": self.status,
            "createTime": self.created,
            "creator": self.creator,
            "description": self.description,
            "computePlatform": self.platform,
            "deploymentStyle": {
                "deploymentType": "BLUE_GREEN",
                "deploymentOption": "WITH_TRAFFIC_CONTROL",
            },
            "instanceTerminationWaitTimeStarted": self.termination_wait_started,
            "deploymentStatusMessages": list(self.messages),
            "deploymentOverview": {
                "Pending": sum(1 for s in self.events.values() if s == "Pending"),
                "InProgress": sum(1 for s in self.events.values() if s == "InProgress"),
                "Succeeded": done,
                "Failed": sum(1 for s in self.events.values() if s == "Failed"),
                "Skipped": 0,
                "Ready": 1 if self.status == "Ready" else 0,
            },
        }
        if self.auto_rollback is not None:
            info["autoRollbackConfiguration"] = self.auto_rollback
        for key, value in (
            ("startTime", self.started),
            ("completeTime", self.completed),
            ("errorInformation", self.error),
            ("rollbackInfo", self.rollback_info),
        ):
            if value is not None:
                info[key] = value
        return info


class CodeDeploy(JsonService):
    target_prefix = "CodeDeploy_20141006."
    service_model = "codedeploy"

    def __init__(
        self, session: AwsSession, lambda_runtime: Any = None, tick_seconds: float = 0.1
    ) -> None:
        self._session = session
        self._lambda_runtime = lambda_runtime
        self._lock = threading.RLock()
        self.applications: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.configs: dict[str, tuple[str, dict[str, Any]]] = {}
        self.deployments: dict[str, Deployment] = {}
        self.minute_seconds: dict[
            str, float
        ] = {}  # application -> real seconds per CodeDeploy minute
        self.task_definition_targets: dict[
            str, tuple[str, int]
        ] = {}  # task definition ARN -> serving address
        self._stop = threading.Event()
        self._tick = tick_seconds
        self._thread = threading.Thread(target=self._run, name="bgkit-codedeploy", daemon=True)

    def start(self) -> CodeDeploy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- applications, groups, configurations ---------------------------------------

    def create_application(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["applicationName"]
        with self._lock:
            if name in self.applications:
                raise AwsError(
                    "ApplicationAlreadyExistsException", f"Application {name} already exists"
                )
            self.applications[name] = {
                "applicationName": name,
                "applicationId": uuid.uuid4().hex,
                "computePlatform": body.get("computePlatform", "Server"),
                "createTime": time.time(),
                "linkedToGitHub": False,
            }
        return {"applicationId": self.applications[name]["applicationId"]}

    def get_application(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"application": self._application(body["applicationName"])}

    def list_applications(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"applications": sorted(self.applications)}

    def create_deployment_group(self, body: dict[str, Any]) -> dict[str, Any]:
        application = self._application(body["applicationName"])
        key = (body["applicationName"], body["deploymentGroupName"])
        with self._lock:
            if key in self.groups:
                raise AwsError("DeploymentGroupAlreadyExistsException", f"{key[1]} already exists")
            config = body.get("deploymentConfigName", "CodeDeployDefault.ECSAllAtOnce")
            self._config(config)
            group = {k: v for k, v in body.items() if k != "applicationName"}
            group.update(
                {
                    "applicationName": key[0],
                    "deploymentGroupId": uuid.uuid4().hex,
                    "deploymentConfigName": config,
                    "computePlatform": application["computePlatform"],
                }
            )
            self.groups[key] = group
        return {"deploymentGroupId": group["deploymentGroupId"]}

    def get_deployment_group(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "deploymentGroupInfo": self._group(body["applicationName"], body["deploymentGroupName"])
        }

    def list_deployment_groups(self, body: dict[str, Any]) -> dict[str, Any]:
        self._application(body["applicationName"])
        names = sorted(g for a, g in self.groups if a == body["applicationName"])
        return {"applicationName": body["applicationName"], "deploymentGroups": names}

    def create_deployment_config(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["deploymentConfigName"]
        if name in PREDEFINED or name in self.configs:
            raise AwsError("DeploymentConfigAlreadyExistsException", f"{name} already exists")
        routing = body.get("trafficRoutingConfig", _ALL)
        if routing.get("type") not in ("TimeBasedCanary", "TimeBasedLinear", "AllAtOnce"):
            raise AwsError(
                "InvalidTrafficRoutingConfigurationException", "unknown trafficRoutingConfig type"
            )
        for key, percent in (
            ("timeBasedCanary", "canaryPercentage"),
            ("timeBasedLinear", "linearPercentage"),
        ):
            if key in routing and not 1 <= routing[key].get(percent, 0) <= 99:
                raise AwsError(
                    "InvalidTrafficRoutingConfigurationException", f"{percent} must be 1-99"
                )
        self.configs[name] = (body.get("computePlatform", "Server"), routing)
        return {"deploymentConfigId": uuid.uuid4().hex}

    def get_deployment_config(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["deploymentConfigName"]
        platform, routing = self._config(name)
        return {
            "deploymentConfigInfo": {
                "deploymentConfigName": name,
                "computePlatform": platform,
                "trafficRoutingConfig": routing,
            }
        }

    def list_deployment_configs(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"deploymentConfigsList": sorted([*PREDEFINED, *self.configs])}

    def delete_deployment_config(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["deploymentConfigName"]
        if name in PREDEFINED:
            raise AwsError(
                "InvalidOperationException", "predefined configurations cannot be deleted"
            )
        self.configs.pop(name, None)
        return {}

    # -- deployments ------------------------------------------------------------------

    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        group = self._group(body["applicationName"], body["deploymentGroupName"])
        config = body.get("deploymentConfigName") or group["deploymentConfigName"]
        self._config(config)
        appspec = self._appspec(body.get("revision", {}), group["computePlatform"])
        hooks = _hooks(appspec, group["computePlatform"])
        with self._lock:
            busy = [
                d
                for d in self.deployments.values()
                if (d.application, d.group)
                == (group["applicationName"], group["deploymentGroupName"])
                and d.status in ACTIVE
            ]
            if busy:
                raise AwsError(
                    "DeploymentLimitExceededException",
                    f"The deployment group already has an active deployment: {busy[0].id}",
                )
            deployment = Deployment(
                id="d-" + uuid.uuid4().hex[:9].upper(),
                application=group["applicationName"],
                group=group["deploymentGroupName"],
                config=config,
                revision=body.get("revision", {}),
                auto_rollback=body.get(
                    "autoRollbackConfiguration", group.get("autoRollbackConfiguration")
                ),
                platform=group["computePlatform"],
                description=body.get("description", ""),
                hooks=hooks,
            )
            if deployment.platform == "Lambda":
                deployment.lambda_target = next(iter(appspec["Resources"][0].values()))[
                    "Properties"
                ]
            self.deployments[deployment.id] = deployment
        return {"deploymentId": deployment.id}

    def get_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {"deploymentInfo": self._deployment(body["deploymentId"]).info()}

    def batch_get_deployments(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {
                "deploymentsInfo": [
                    self._deployment(i).info() for i in body.get("deploymentIds", [])
                ]
            }

    def list_deployments(self, body: dict[str, Any]) -> dict[str, Any]:
        statuses = body.get("includeOnlyStatuses")
        created = body.get("createTimeRange") or {}  # epoch seconds, either end optional
        start, end = created.get("start", float("-inf")), created.get("end", float("inf"))
        with self._lock:
            ids = [
                d.id
                for d in sorted(self.deployments.values(), key=lambda d: d.created, reverse=True)
                if (not body.get("applicationName") or d.application == body["applicationName"])
                and (not body.get("deploymentGroupName") or d.group == body["deploymentGroupName"])
                and (not statuses or d.status in statuses)
                and start <= d.created <= end
            ]
        return {"deployments": ids}

    def continue_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        wait_type = body.get("deploymentWaitType", "READY_WAIT")
        with self._lock:
            d = self._deployment(body["deploymentId"])
            if wait_type == "READY_WAIT":
                if d.phase != "ready_wait":
                    raise AwsError(
                        "DeploymentIsNotInReadyStateException",
                        f"deployment {d.id} is not in the Ready state (status {d.status})",
                    )
                d.status, d.phase = "InProgress", "before_allow_traffic"
            elif wait_type == "TERMINATION_WAIT":
                if d.phase != "termination_wait":
                    raise AwsError(
                        "DeploymentIsNotInReadyStateException",
                        f"deployment {d.id} is not waiting to terminate the original task set",
                    )
                d.continue_termination = True
            else:
                raise AwsError(
                    "InvalidDeploymentWaitTypeException", f"unknown deploymentWaitType {wait_type}"
                )
        return {}

    def put_lifecycle_event_hook_execution_status(self, body: dict[str, Any]) -> dict[str, Any]:
        status = body.get("status")
        if status not in ("Succeeded", "Failed"):
            raise AwsError(
                "InvalidLifecycleEventHookExecutionStatusException",
                "status must be Succeeded or Failed",
            )
        with self._lock:
            d = self._deployment(body["deploymentId"])
            execution = d.executions.get(body.get("lifecycleEventHookExecutionId", ""))
            if execution is None:
                raise AwsError(
                    "InvalidLifecycleEventHookExecutionIdException",
                    "No lifecycle event hook execution found for that id",
                )
            if execution["status"] != "InProgress" or d.status not in ACTIVE:
                raise AwsError(
                    "LifecycleEventAlreadyCompletedException",
                    f"The lifecycle event {execution['event']} is already {execution['status']}",
                )
            execution["status"] = status
        return {"lifecycleEventHookExecutionId": body["lifecycleEventHookExecutionId"]}

    def stop_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        """Asynchronous, as on AWS: the answer is Pending; the engine stops the deployment (and
        starts its rollback deployment) on its next tick."""
        with self._lock:
            d = self._deployment(body["deploymentId"])
            if d.status not in ACTIVE or d.stop_requested is not None:
                raise AwsError(
                    "DeploymentAlreadyCompletedException",
                    f"deployment {d.id} is already {d.status}",
                )
            d.stop_requested = bool(body.get("autoRollbackEnabled"))
        return {"status": "Pending", "statusMessage": "Stop request received"}

    def list_deployment_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        d = self._deployment(body["deploymentId"])
        if d.platform == "Lambda":
            return {"targetIds": [f"{d.lambda_target['Name']}:{d.lambda_target['Alias']}"]}
        group = self._group(d.application, d.group)
        return {
            "targetIds": [
                f"{s['clusterName']}:{s['serviceName']}" for s in group.get("ecsServices", [])
            ]
        }

    def get_deployment_target(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            d = self._deployment(body["deploymentId"])
            if d.platform == "Lambda":
                t = d.lambda_target
                events = [{"lifecycleEventName": n, "status": st} for n, st in d.events.items()]
                return {
                    "deploymentTarget": {
                        "deploymentTargetType": "LambdaTarget",
                        "lambdaTarget": {
                            "deploymentId": d.id,
                            "targetId": body.get("targetId", ""),
                            "lifecycleEvents": events,
                            "status": _TARGET_STATUS.get(d.status, "Unknown"),
                            "lambdaFunctionInfo": {
                                "functionName": t["Name"],
                                "functionAlias": t["Alias"],
                                "currentVersion": str(t["CurrentVersion"]),
                                "targetVersion": str(t["TargetVersion"]),
                                "targetVersionWeight": d.green_percent / 100,
                            },
                        },
                    }
                }
            events = [
                {"lifecycleEventName": name, "status": status} for name, status in d.events.items()
            ]
            task_sets = []
            for label, arn, tg, weight in (
                ("Blue", d.original_task_set, d.original_tg, 100 - d.green_percent),
                ("Green", d.replacement_task_set, d.replacement_tg, d.green_percent),
            ):
                if arn:
                    task_sets.append(
                        {
                            "identifer": arn,
                            "taskSetLabel": label,
                            "trafficWeight": float(weight),
                            "targetGroup": {"name": tg.split("/")[-2] if tg else ""},
                        }
                    )
            status = _TARGET_STATUS.get(d.status, "Unknown")
            return {
                "deploymentTarget": {
                    "deploymentTargetType": "ECSTarget",
                    "ecsTarget": {
                        "deploymentId": d.id,
                        "targetId": body.get("targetId", ""),
                        "lifecycleEvents": events,
                        "status": status,
                        "taskSetsInfo": task_sets,
                    },
                }
            }

    # -- the engine ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                active = [d.id for d in self.deployments.values() if d.status in ACTIVE]
            for deployment_id in active:
                # One critical section per deployment and tick: a StopDeployment cannot slip in
                # between a failed step and the failure it causes.
                with self._lock:
                    d = self.deployments[deployment_id]
                    if d.status not in ACTIVE:
                        continue
                    if d.stop_requested is None and self._alarm_stops(d):
                        continue
                    if d.stop_requested is not None:
                        self._finish(
                            d,
                            "Stopped",
                            {
                                "code": "MANUAL_STOP",
                                "message": "The deployment was stopped by the user.",
                            },
                        )
                        if d.stop_requested:
                            self._start_rollback(d, "Stopped by the user with automatic rollback")
                        continue
                    try:
                        self._advance(d)
                    except (
                        Exception
                    ) as error:  # a hook or an AWS call failed: so does the deployment
                        code, message = (
                            (error.code, str(error))
                            if isinstance(error, HookFailed)
                            else ("INTERNAL_ERROR", f"{type(error).__name__}: {error}")
                        )
                        self._finish(d, "Failed", {"code": code, "message": message})
                        events = (d.auto_rollback or {}).get("events", ["DEPLOYMENT_FAILURE"])
                        if (d.auto_rollback or {}).get(
                            "enabled"
                        ) and "DEPLOYMENT_FAILURE" in events:
                            self._start_rollback(d, "Deployment failed")

    def _advance(self, d: Deployment) -> None:
        if d.platform == "Lambda":
            self._advance_lambda(d)
            return
        now = time.time()
        minute = self.minute_seconds.get(d.application, 60.0)
        group = self._group(d.application, d.group)
        blue_green = group.get("blueGreenDeploymentConfiguration", {})
        if d.phase == "start":
            d.status, d.started = "InProgress", now
            if d.creator == "codeDeployRollback":
                self._roll_back_traffic(d)
                self._finish(d, "Succeeded", None)
                return
            self._install(d, group)
            # The ALB health-checks new targets before they serve; the sandbox's router
            # re-reads targets every 0.2 s, so wait a health-check interval before test traffic.
            d.phase, d.deadline = "registering", now + HEALTH_CHECK_SECONDS
        elif d.phase == "registering":
            if now < d.deadline:
                return
            pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
            for listener in pair.get("testTrafficRoute", {}).get("listenerArns", []):
                self._forward(listener, {d.replacement_tg: 100})
            d.events["AllowTestTraffic"] = "Succeeded"
            d.phase, d.deadline = "test_route_propagating", now + PROPAGATION_SECONDS
        elif d.phase == "test_route_propagating":
            if now < d.deadline or not self._hook(d, "AfterAllowTestTraffic", now, minute):
                return
            ready = blue_green.get("deploymentReadyOption", {})
            if ready.get("actionOnTimeout") == "STOP_DEPLOYMENT":
                d.status, d.phase = "Ready", "ready_wait"
                d.deadline = now + minute * ready.get("waitTimeInMinutes", 0)
            else:
                d.phase = "before_allow_traffic"
        elif d.phase == "ready_wait":
            if now >= d.deadline:
                self._finish(
                    d,
                    "Stopped",
                    {"code": "TIMEOUT", "message": "Traffic rerouting was not started in time."},
                )
                self._start_rollback(d, "Ready wait timed out")
        elif d.phase == "before_allow_traffic":
            if not self._hook(d, "BeforeAllowTraffic", now, minute):
                return
            d.events["AllowTraffic"] = "InProgress"
            d.phase, d.shift_started = "allow_traffic", now
        elif d.phase == "allow_traffic":
            elapsed_minutes = (now - d.shift_started) / minute
            schedule = traffic_schedule(self._config(d.config)[1])
            target = max(p for at, p in schedule if at <= elapsed_minutes)
            if target != d.green_percent:
                self._set_weights(group, d, target)
            if target == 100:
                d.events["AllowTraffic"] = "Succeeded"
                d.phase = "after_allow_traffic"
        elif d.phase == "after_allow_traffic":
            if self._hook(d, "AfterAllowTraffic", now, minute):
                ecs = self._session.client("ecs")
                service = group["ecsServices"][0]
                ecs.update_service_primary_task_set(
                    cluster=service["clusterName"],
                    service=service["serviceName"],
                    primaryTaskSet=d.replacement_task_set,
                )
                wait = blue_green.get("terminateBlueInstancesOnDeploymentSuccess", {}).get(
                    "terminationWaitTimeInMinutes", 0
                )
                d.phase, d.deadline, d.termination_wait_started = (
                    "termination_wait",
                    now + wait * minute,
                    True,
                )
        elif d.phase == "termination_wait" and (d.continue_termination or now >= d.deadline):
            self._delete_task_set(group, d.original_task_set, d.original_tg)
            self._finish(d, "Succeeded", None)

    def _advance_lambda(self, d: Deployment) -> None:
        """AWS Lambda deployments ("What happens during an AWS Lambda deployment"): BeforeAllowTraffic,
        AllowTraffic (the alias's AdditionalVersionWeights per the configuration), AfterAllowTraffic.
        No test route and no termination wait."""
        now = time.time()
        minute = self.minute_seconds.get(d.application, 60.0)
        target = d.lambda_target or {}
        if d.phase == "start":
            d.status, d.started = "InProgress", now
            if d.creator == "codeDeployRollback":
                original = self.deployments[d.rollback_info["rollbackTriggeringDeploymentId"]]
                self._alias(original.lambda_target, original.lambda_target["CurrentVersion"], 0)
                original.green_percent = 0
                for event in LAMBDA_EVENTS:
                    d.events[event] = "Succeeded"
                self._finish(d, "Succeeded", None)
                return
            alias = self._session.client("lambda").get_alias(
                FunctionName=target["Name"], Name=target["Alias"]
            )
            if str(alias["FunctionVersion"]) != str(target["CurrentVersion"]):
                self._finish(
                    d,
                    "Failed",
                    {
                        "code": "INVALID_LAMBDA_CONFIGURATION",
                        "message": f"alias {target['Alias']} points to version {alias['FunctionVersion']}, "
                        f"not CurrentVersion {target['CurrentVersion']}",
                    },
                )
                return
            d.phase = "before_allow_traffic"
        elif d.phase == "before_allow_traffic":
            if self._hook(d, "BeforeAllowTraffic", now, minute):
                d.events["AllowTraffic"] = "InProgress"
                d.phase, d.shift_started = "allow_traffic", now
        elif d.phase == "allow_traffic":
            schedule = traffic_schedule(self._config(d.config)[1])
            percent = max(p for at, p in schedule if at <= (now - d.shift_started) / minute)
            if percent != d.green_percent:
                self._alias(
                    target,
                    target["TargetVersion"] if percent == 100 else target["CurrentVersion"],
                    percent,
                )
                d.green_percent = percent
                d.messages.append(
                    f"Traffic shifted: {percent}% to version {target['TargetVersion']}"
                )
            if percent == 100:
                d.events["AllowTraffic"] = "Succeeded"
                d.phase = "after_allow_traffic"
        elif d.phase == "after_allow_traffic" and self._hook(d, "AfterAllowTraffic", now, minute):
            self._finish(d, "Succeeded", None)

    def _alarm_stops(self, d: Deployment) -> bool:
        """Poll the group's alarms (once a second); stop the deployment if one is in ALARM."""
        now = time.time()
        group = self._group(d.application, d.group)
        alarms = group.get("alarmConfiguration") or {}
        names = [a["name"] for a in alarms.get("alarms", [])]
        if d.creator == "codeDeployRollback" or not alarms.get("enabled") or not names:
            return False
        if now - d.alarms_polled < ALARM_POLL_SECONDS:
            return False
        d.alarms_polled = now
        try:
            found = self._session.client("cloudwatch").describe_alarms(AlarmNames=names)
            states = {a["AlarmName"]: a["StateValue"] for a in found["MetricAlarms"]}
        except Exception:  # CloudWatch did not answer: the alarms' state could not be read
            states = {}
        firing = [n for n in names if states.get(n) == "ALARM"]
        missing = [n for n in names if n not in states]
        if missing and not alarms.get("ignorePollAlarmFailure"):
            message = f"The state of alarm(s) {', '.join(missing)} could not be retrieved."
        elif firing:
            message = f"Alarm(s) {', '.join(firing)} in ALARM state."
        else:
            return False
        self._finish(d, "Stopped", {"code": "ALARM_ACTIVE", "message": message})
        rollback = d.auto_rollback or {}
        if rollback.get("enabled") and "DEPLOYMENT_STOP_ON_ALARM" in rollback.get("events", []):
            self._start_rollback(d, message)
        return True

    def _hook(self, d: Deployment, event: str, now: float, minute: float) -> bool:
        """Run `event`'s lifecycle hook, if the AppSpec names one. True once the event succeeded;
        raises HookFailed when its hook reported Failed or ran out of time."""
        function = d.hooks.get(event)
        if function is None:
            d.events[event] = "Succeeded"
            return True
        execution = next((e for e in d.executions.values() if e["event"] == event), None)
        if execution is None:
            execution_id = str(uuid.uuid4())
            d.executions[execution_id] = {
                "event": event,
                "status": "InProgress",
                "deadline": now + HOOK_TIMEOUT_MINUTES * minute,
            }
            d.events[event] = "InProgress"
            payload = {"DeploymentId": d.id, "LifecycleEventHookExecutionId": execution_id}
            threading.Thread(
                target=self._invoke_hook,
                args=(d, execution_id, function, payload),
                name="bgkit-codedeploy-hook",
                daemon=True,
            ).start()
            return False
        if execution["status"] == "Succeeded":
            d.events[event] = "Succeeded"
            return True
        if execution["status"] == "InProgress" and now < execution["deadline"]:
            return False
        d.events[event] = "Failed"
        why = "reported Failed" if execution["status"] == "Failed" else "timed out"
        raise HookFailed(f"The {event} hook ({function}) {why}.")

    def _invoke_hook(self, d: Deployment, execution_id: str, function: str, payload: dict) -> None:
        """The hook function, in its own process; a function error fails the hook at once."""
        name = function.split(":function:", 1)[-1].split(":", 1)[0]
        try:
            error, _ = self._lambda_runtime.invoke_isolated(name, payload)
        except Exception as failure:  # no such function: the hook cannot succeed
            error = f"{type(failure).__name__}: {failure}"
        if error:
            with self._lock:
                execution = d.executions[execution_id]
                if execution["status"] == "InProgress":
                    execution["status"] = "Failed"

    def _alias(self, target: dict[str, str], version: str, green_percent: int) -> None:
        weights = (
            {} if green_percent in (0, 100) else {str(target["TargetVersion"]): green_percent / 100}
        )
        self._session.client("lambda").update_alias(
            FunctionName=target["Name"],
            Name=target["Alias"],
            FunctionVersion=str(version),
            RoutingConfig={"AdditionalVersionWeights": weights},
        )

    def _install(self, d: Deployment, group: dict[str, Any]) -> None:
        appspec = self._appspec(d.revision)
        resource = next(iter(appspec["Resources"][0].values()))["Properties"]
        task_definition = resource["TaskDefinition"]
        lb = resource["LoadBalancerInfo"]
        pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
        elb, ecs = self._session.client("elbv2"), self._session.client("ecs")
        names = [tg["name"] for tg in pair["targetGroups"]]
        arns = {
            g["TargetGroupName"]: g["TargetGroupArn"]
            for g in elb.describe_target_groups(Names=names)["TargetGroups"]
        }
        weights = self._listener_weights(pair["prodTrafficRoute"]["listenerArns"][0])
        original = max(arns.values(), key=lambda arn: weights.get(arn, 0))
        d.original_tg, d.replacement_tg = original, next(a for a in arns.values() if a != original)
        d.events["BeforeInstall"] = "Succeeded"
        service = group["ecsServices"][0]
        described = ecs.describe_services(
            cluster=service["clusterName"], services=[service["serviceName"]]
        )
        for task_set in described["services"][0].get("taskSets", []):
            if task_set["status"] == "PRIMARY":
                d.original_task_set = task_set["taskSetArn"]
        created = ecs.create_task_set(
            cluster=service["clusterName"],
            service=service["serviceName"],
            taskDefinition=task_definition,
            externalId=d.id,
            scale={"unit": "PERCENT", "value": 100.0},
            launchType="FARGATE",
            networkConfiguration=self._network_configuration(service),
            loadBalancers=[
                {
                    "targetGroupArn": d.replacement_tg,
                    "containerName": lb["ContainerName"],
                    "containerPort": int(lb["ContainerPort"]),
                }
            ],
        )
        d.replacement_task_set = created["taskSet"]["taskSetArn"]
        address = self.task_definition_targets.get(task_definition)
        if address is None:
            raise RuntimeError(
                f"no running tasks for task definition {task_definition} in the sandbox"
            )
        elb.register_targets(
            TargetGroupArn=d.replacement_tg, Targets=[{"Id": address[0], "Port": address[1]}]
        )
        d.events["Install"] = d.events["AfterInstall"] = "Succeeded"

    def _network_configuration(self, service: dict[str, str]) -> dict[str, Any]:
        """The replacement task set runs in the same subnets as the service's primary task set."""
        described = self._session.client("ecs").describe_services(
            cluster=service["clusterName"], services=[service["serviceName"]]
        )["services"][0]
        for task_set in described.get("taskSets", []):
            if task_set.get("networkConfiguration"):
                return task_set["networkConfiguration"]
        return described.get("networkConfiguration", {})

    def _set_weights(self, group: dict[str, Any], d: Deployment, green: int) -> None:
        pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
        for listener in pair["prodTrafficRoute"]["listenerArns"]:
            self._forward(listener, {d.original_tg: 100 - green, d.replacement_tg: green})
        d.green_percent = green
        d.messages.append(f"Traffic shifted: {green}% to the replacement task set")

    def _roll_back_traffic(self, rollback: Deployment) -> None:
        d = self.deployments[rollback.rollback_info["rollbackTriggeringDeploymentId"]]
        group = self._group(d.application, d.group)
        pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
        if d.original_tg:
            for listener in pair["prodTrafficRoute"]["listenerArns"]:
                self._forward(listener, {d.original_tg: 100, d.replacement_tg: 0})
            for listener in pair.get("testTrafficRoute", {}).get("listenerArns", []):
                self._forward(listener, {d.original_tg: 100})
            d.green_percent = 0
        if d.original_task_set:
            service = group["ecsServices"][0]
            self._session.client("ecs").update_service_primary_task_set(
                cluster=service["clusterName"],
                service=service["serviceName"],
                primaryTaskSet=d.original_task_set,
            )
        self._delete_task_set(group, d.replacement_task_set, d.replacement_tg)
        for event in ECS_EVENTS:
            rollback.events[event] = "Succeeded"

    def _delete_task_set(
        self, group: dict[str, Any], task_set: str | None, target_group: str | None
    ) -> None:
        if not task_set:
            return
        service = group["ecsServices"][0]
        self._session.client("ecs").delete_task_set(
            cluster=service["clusterName"],
            service=service["serviceName"],
            taskSet=task_set,
            force=True,
        )
        if target_group:
            elb = self._session.client("elbv2")
            targets = elb.describe_target_health(TargetGroupArn=target_group)[
                "TargetHealthDescriptions"
            ]
            if targets:
                elb.deregister_targets(
                    TargetGroupArn=target_group, Targets=[t["Target"] for t in targets]
                )

    def _start_rollback(self, d: Deployment, message: str) -> None:
        rollback = Deployment(
            id="d-" + uuid.uuid4().hex[:9].upper(),
            application=d.application,
            group=d.group,
            config=d.config,
            revision=d.revision,
            creator="codeDeployRollback",
            platform=d.platform,
            lambda_target=d.lambda_target,
        )
        rollback.rollback_info = {
            "rollbackTriggeringDeploymentId": d.id,
            "rollbackMessage": f"Rollback of {d.id}: {message}",
        }
        d.rollback_info = {"rollbackDeploymentId": rollback.id, "rollbackMessage": message}
        self.deployments[rollback.id] = rollback

    def _finish(self, d: Deployment, status: str, error: dict[str, str] | None) -> None:
        d.status, d.completed, d.error, d.phase = status, time.time(), error, "done"
        for event, state in d.events.items():
            if state in ("Pending", "InProgress") and status != "Succeeded":
                d.events[event] = "Skipped" if state == "Pending" else "Failed"

    # -- helpers -------------------------------------------------------------------------

    def _listener_weights(self, listener_arn: str) -> dict[str, int]:
        listener = self._session.client("elbv2").describe_listeners(ListenerArns=[listener_arn])[
            "Listeners"
        ][0]
        action = listener["DefaultActions"][0]
        if "ForwardConfig" in action:
            return {
                g["TargetGroupArn"]: g.get("Weight", 1)
                for g in action["ForwardConfig"]["TargetGroups"]
            }
        return {action["TargetGroupArn"]: 1}

    def _forward(self, listener_arn: str, weights: dict[str, int]) -> None:
        groups = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights.items()]
        self._session.client("elbv2").modify_listener(
            ListenerArn=listener_arn,
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
        )

    def _appspec(self, revision: dict[str, Any], platform: str = "ECS") -> dict[str, Any]:
        """The AppSpec of a revision ("AppSpec 'resources' section" for ECS and for Lambda)."""
        if revision.get("revisionType") != "AppSpecContent":
            raise AwsError(
                "InvalidRevisionException", "the sandbox supports revisionType AppSpecContent"
            )
        required = (
            ("Name", "Alias", "CurrentVersion", "TargetVersion")
            if platform == "Lambda"
            else ("TaskDefinition",)
        )
        content = revision.get("appSpecContent", {}).get("content", "")
        try:
            appspec = json.loads(
                content
            )  # YAML is a superset of JSON; the sandbox reads the JSON form
            properties = next(iter(appspec["Resources"][0].values()))["Properties"]
            missing = [key for key in required if not properties.get(key)]
        except (ValueError, KeyError, IndexError, StopIteration, TypeError, AttributeError):
            missing = list(required)
        if missing:
            raise AwsError(
                "InvalidRevisionException",
                f"appSpecContent must be a JSON AppSpec whose Resources[0].<name>.Properties has {', '.join(required)}",
            )
        return appspec

    def _application(self, name: str) -> dict[str, Any]:
        if name not in self.applications:
            raise AwsError(
                "ApplicationDoesNotExistException", f"No application found for name: {name}"
            )
        return self.applications[name]

    def _group(self, application: str, name: str) -> dict[str, Any]:
        self._application(application)
        if (application, name) not in self.groups:
            raise AwsError(
                "DeploymentGroupDoesNotExistException",
                f"No Deployment Group found for name: {name}",
            )
        return self.groups[(application, name)]

    def _config(self, name: str) -> tuple[str, dict[str, Any]]:
        if name in PREDEFINED:
            return PREDEFINED[name]
        if name in self.configs:
            return self.configs[name]
        raise AwsError(
            "DeploymentConfigDoesNotExistException",
            f"No deployment configuration found for name: {name}",
        )

    def _deployment(self, deployment_id: str) -> Deployment:
        if deployment_id not in self.deployments:
            raise AwsError(
                "DeploymentDoesNotExistException",
                f"The deployment {deployment_id} could not be found",
            )
        return self.deployments[deployment_id]
