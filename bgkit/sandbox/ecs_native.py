"""Amazon ECS's own blue/green, canary and linear deployments, for the sandbox.

moto keeps an ECS service's task definition but has no service deployments, revisions,
strategies or lifecycle hooks. This extension sees CreateService, UpdateService and
DescribeServices on their way to moto and serves the service-deployment API itself.
What it follows:

* Strategies (API Reference, DeploymentConfiguration.strategy, LinearConfiguration,
  CanaryConfiguration; "Amazon ECS blue/green deployments", "... linear deployments",
  "... canary deployments"): BLUE_GREEN shifts all production traffic at once; CANARY shifts
  canaryPercent, waits canaryBakeTimeInMinutes, then shifts the rest; LINEAR shifts
  stepPercent every stepBakeTimeInMinutes (no wait after 100 %). Then BAKE_TIME keeps blue
  running for bakeTimeInMinutes, then CLEAN_UP removes it.
* Lifecycle stages (API Reference, ServiceDeployment.lifecycleStage; "Amazon ECS blue/green
  service deployments workflow"): PRE_SCALE_UP, SCALE_UP (green's tasks start and register in
  the alternate target group), POST_SCALE_UP, TEST_TRAFFIC_SHIFT (the test listener rule
  forwards to green), POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT (the production
  listener rule's weights move), POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME, CLEAN_UP.
  RECONCILE_SERVICE is not modelled: a second deployment while one is in progress is refused
  below instead (see `before`).
* Required resources ("Amazon ECS blue/green deployment required resources"): each load
  balancer of the service has advancedConfiguration with alternateTargetGroupArn,
  productionListenerRule and roleArn (testListenerRule optional).
* Lifecycle hooks ("Lifecycle hooks for Amazon ECS service deployments", "Pause hooks",
  "Lambda hooks"; DeploymentLifecycleHook, DeploymentLifecycleHookDetail): a stage's hooks run
  when its work is done. PAUSE waits in AWAITING_ACTION for ContinueServiceDeployment
  (CONTINUE or ROLLBACK) or its timeoutConfiguration (default 1440 minutes, action
  ROLLBACK). AWS_LAMBDA invokes the function (the sandbox's local Lambda runtime) with the
  stage payload; hookStatus SUCCEEDED continues, FAILED or no valid status rolls back,
  IN_PROGRESS invokes it again after callBackDelay (default 30 s) with the returned
  hookDetails.
* StopServiceDeployment (stopType ROLLBACK; "Stopping Amazon ECS service deployments"):
  ROLLBACK_REQUESTED, ROLLBACK_IN_PROGRESS, then ROLLBACK_SUCCESSFUL with both listener rules
  back on the source revision's target group and green's tasks gone. A rollback uses the last
  successful service revision and creates none ("Amazon ECS service revisions").

* Alarms (DeploymentAlarms, ServiceDeploymentAlarms; "How CloudWatch alarms detect Amazon ECS
  deployment failures"): while a deployment is in progress its alarms are polled; one in ALARM
  fails it: rolled back when `rollback` is set, else STOPPED where it is. moto does not
  evaluate alarms itself: their state changes with SetAlarmState.

Time runs on the sandbox's clock: `minute_seconds[service ARN]` is how many real seconds one
ECS minute takes (60 on AWS; a few seconds in a demo).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..aws import AwsSession
from .codedeploy import PROPAGATION_SECONDS
from .extensions import AwsError, JsonService

STRATEGIES = ("BLUE_GREEN", "CANARY", "LINEAR")
STAGES = (
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
)
HOOK_STAGES = ("RECONCILE_SERVICE", "PRE_SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT",
               "POST_TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT",
               "POST_PRODUCTION_TRAFFIC_SHIFT")  # fmt: skip
ACTIVE = ("PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
HEALTH_CHECK_SECONDS = 1.0  # green's targets pass the load balancer's health check after this
DEFAULT_HOOK_TIMEOUT_MINUTES = 1440
DEFAULT_CALLBACK_SECONDS = 30
ALARM_POLL_SECONDS = 1.0


def production_schedule(config: dict[str, Any]) -> list[tuple[float, float]]:
    """(minutes after the production shift starts, percent on green) for a strategy."""
    strategy = config.get("strategy")
    if strategy == "CANARY":
        c = config.get("canaryConfiguration", {})
        return [
            (0.0, c.get("canaryPercent", 5.0)),
            (float(c.get("canaryBakeTimeInMinutes", 10)), 100.0),
        ]
    if strategy == "LINEAR":
        c = config.get("linearConfiguration", {})
        step, wait = c.get("stepPercent", 10.0), float(c.get("stepBakeTimeInMinutes", 6))
        schedule, percent, minute = [], 0.0, 0.0
        while percent < 100.0:
            percent = min(100.0, round(percent + step, 1))
            schedule.append((minute, percent))
            minute += wait
        return schedule
    return [(0.0, 100.0)]


def weights(green_percent: float) -> tuple[int, int]:
    """(blue, green) ALB weights for a percentage in tenths (ALB weights are 0-999 integers)."""
    if float(green_percent).is_integer():
        return 100 - int(green_percent), int(green_percent)
    green = round(green_percent * 10)
    return 1000 - green, green


@dataclass
class Hook:
    id: str
    spec: dict[str, Any]
    status: str
    expires_at: float
    details: Any = None
    next_call: float = 0.0

    def describe(self) -> dict[str, Any]:
        timeout = self.spec.get("timeoutConfiguration") or {}
        detail = {
            "hookId": self.id,
            "targetType": self.spec.get("targetType", "AWS_LAMBDA"),
            "status": self.status,
            "expiresAt": self.expires_at,
            "timeoutAction": timeout.get("action", "ROLLBACK"),
        }
        if self.spec.get("hookTargetArn"):
            detail["targetArn"] = self.spec["hookTargetArn"]
        return detail


@dataclass
class ServiceDeployment:
    arn: str
    service_arn: str
    cluster_arn: str
    source_revision: str
    target_revision: str
    config: dict[str, Any]
    load_balancer: dict[str, Any]
    blue_tg: str
    green_tg: str
    minute: float
    status: str = "PENDING"
    reason: str = ""
    stage: str = "PRE_SCALE_UP"
    stage_started: float = 0.0
    stage_done: bool = False
    hooks_pending: bool = False  # the stage's (or production step's) hooks have not finished
    step: int = -1  # index of the production step applied last (PRODUCTION_TRAFFIC_SHIFT)
    step_done_at: float = 0.0  # when that step's hooks finished: the next step waits from here
    rollback_propagated_at: float | None = None
    alarms_polled: float = 0.0
    triggered: list[str] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stopped: float | None = None
    updated: float = field(default_factory=time.time)
    green_percent: float = 0.0
    test_percent: float = 0.0
    rollback: dict[str, Any] | None = None

    def describe(self, revisions: dict[str, dict[str, Any]]) -> dict[str, Any]:
        green_running = self.stage_index() > STAGES.index("SCALE_UP") and self.status in (
            "IN_PROGRESS",
            "SUCCESSFUL",
        )
        blue_running = self.status != "SUCCESSFUL" or self.source_revision == self.target_revision

        def summary(arn: str, production: float, test: float, running: bool) -> dict[str, Any]:
            count = revisions[arn]["desiredCount"]
            return {
                "arn": arn,
                "requestedTaskCount": count,
                "runningTaskCount": count if running else 0,
                "pendingTaskCount": 0,
                "requestedProductionTrafficWeight": production,
                "requestedTestTrafficWeight": test,
            }

        answer = {
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "createdAt": self.created,
            "updatedAt": self.updated,
            "sourceServiceRevisions": [
                summary(
                    self.source_revision,
                    100.0 - self.green_percent,
                    100.0 - self.test_percent,
                    blue_running,
                )
            ],
            "targetServiceRevision": summary(
                self.target_revision, self.green_percent, self.test_percent, green_running
            ),
            "status": self.status,
            "lifecycleStage": self.stage,
            "deploymentConfiguration": self.config,
            "lifecycleHookDetails": [h.describe() for h in self.hooks],
        }
        alarms = self.config.get("alarms") or {}
        if alarms.get("enable") and alarms.get("alarmNames"):
            answer["alarms"] = {
                "status": "TRIGGERED"
                if self.triggered
                else ("MONITORING" if self.status == "IN_PROGRESS" else "MONITORING_COMPLETE"),
                "alarmNames": list(alarms["alarmNames"]),
                "triggeredAlarmNames": list(self.triggered),
            }
        else:
            answer["alarms"] = {"status": "DISABLED"}
        if self.reason:
            answer["statusReason"] = self.reason
        for key, value in (
            ("startedAt", self.started),
            ("finishedAt", self.finished),
            ("stoppedAt", self.stopped),
            ("rollback", self.rollback),
        ):
            if value is not None:
                answer[key] = value
        return answer

    def brief(self) -> dict[str, Any]:
        answer = {
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "createdAt": self.created,
            "targetServiceRevisionArn": self.target_revision,
            "status": self.status,
        }
        for key, value in (
            ("startedAt", self.started),
            ("finishedAt", self.finished),
            ("statusReason", self.reason or None),
        ):
            if value is not None:
                answer[key] = value
        return answer

    def stage_index(self) -> int:
        return STAGES.index(self.stage)


class EcsServiceDeployments(JsonService):
    target_prefix = "AmazonEC2ContainerServiceV20141113."
    service_model = "ecs"
    observed = frozenset({"CreateService", "UpdateService", "DescribeServices"})
    partial = True

    def __init__(
        self, session: AwsSession, lambda_runtime: Any = None, tick_seconds: float = 0.1
    ) -> None:
        self._session = session
        self._lambda = lambda_runtime
        self._lock = threading.RLock()
        self.services: dict[str, dict[str, Any]] = {}  # service ARN -> configuration we keep
        self.revisions: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, ServiceDeployment] = {}
        self.minute_seconds: dict[str, float] = {}  # service ARN -> real seconds per ECS minute
        self.task_definition_targets: dict[str, tuple[str, int]] = {}  # task definition -> address
        self._starting: set[str] = set()  # services whose deploying UpdateService is in moto now
        self._stop = threading.Event()
        self._tick = tick_seconds
        self._thread = threading.Thread(target=self._run, name="bgkit-ecs-deployments", daemon=True)

    def start(self) -> EcsServiceDeployments:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- the observed moto actions -------------------------------------------------------

    def before(self, action: str, body: dict[str, Any]) -> None:
        if action == "DescribeServices":
            return
        kept: dict[str, Any] = {}
        busy: list[ServiceDeployment] = []
        if action == "UpdateService":
            arn = self._service_arn(body.get("cluster", "default"), body["service"])
            with self._lock:
                kept = self.services.get(arn, {})
                busy = [
                    d
                    for d in self.deployments.values()
                    if d.service_arn == arn and d.status in ACTIVE
                ]
        if "deploymentConfiguration" in body or "loadBalancers" in body:
            config = (
                body.get("deploymentConfiguration") or kept.get("deploymentConfiguration") or {}
            )
            load_balancers = body.get("loadBalancers", kept.get("loadBalancers", []))
            _check_configuration(config, load_balancers or [])
        if action == "UpdateService" and (
            body.get("taskDefinition") or body.get("forceNewDeployment")
        ):
            with self._lock:
                if busy or arn in self._starting:
                    # AWS supersedes the in-flight deployment (RECONCILE_SERVICE); the sandbox
                    # does not model that and refuses, so nothing is ever half-reconciled here.
                    raise AwsError(
                        "InvalidParameterException",
                        "the bgkit sandbox does not supersede an in-progress service deployment "
                        f"({busy[0].arn if busy else 'starting'}); stop it first",
                    )
                self._starting.add(arn)  # until moto has answered (see settled)

    def settled(self, action: str, body: dict[str, Any]) -> None:
        if action == "UpdateService":
            arn = self._service_arn(body.get("cluster", "default"), body["service"])
            with self._lock:
                self._starting.discard(arn)

    def after(self, action: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        if action == "CreateService":
            return {"service": self._created(body, answer["service"])}
        if action == "UpdateService":
            return {"service": self._updated(body, answer["service"])}
        answer["services"] = [self._complete(s) for s in answer.get("services", [])]
        return answer

    def _created(self, body: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
        controller = (body.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS" or not service.get("taskDefinition"):
            return service  # CodeDeploy or external task sets: not ECS's own deployments
        arn = service["serviceArn"]
        config = body.get("deploymentConfiguration") or {"strategy": "ROLLING"}
        config.setdefault("strategy", "ROLLING")
        with self._lock:
            self.services[arn] = {
                "deploymentConfiguration": config,
                "loadBalancers": body.get("loadBalancers") or [],
                "clusterArn": service["clusterArn"],
                "desiredCount": body.get("desiredCount", 0),
            }
            revision = self._revision(arn, service["taskDefinition"])
            self.services[arn]["current"] = revision
            # Creating a service is its first deployment; the sandbox's tasks start at once.
            deployment = self._deployment(arn, revision, revision)
            deployment.status, deployment.stage = "SUCCESSFUL", "CLEAN_UP"
            deployment.started = deployment.finished = time.time()
            deployment.green_percent = 100.0
        return self._complete(service)

    def _updated(self, body: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
        arn = service["serviceArn"]
        with self._lock:
            kept = self.services.get(arn)
            if kept is None:
                return service
            if body.get("deploymentConfiguration") is not None:
                kept["deploymentConfiguration"] = {
                    "strategy": "ROLLING",
                    **body["deploymentConfiguration"],
                }
            if body.get("loadBalancers") is not None:
                kept["loadBalancers"] = body["loadBalancers"]
            if body.get("desiredCount") is not None:
                kept["desiredCount"] = body["desiredCount"]
            source = kept["current"]
            new_definition = body.get("taskDefinition")
            changed = new_definition and new_definition != self.revisions[source]["taskDefinition"]
            if changed or body.get("forceNewDeployment"):
                target = self._revision(arn, service["taskDefinition"])
                deployment = self._deployment(arn, source, target)
                if kept["deploymentConfiguration"]["strategy"] not in STRATEGIES:
                    # Rolling updates are not what bgkit drives: done at once, no traffic control.
                    deployment.status, deployment.finished = "SUCCESSFUL", time.time()
                    kept["current"] = target
        return self._complete(service)

    def _complete(self, service: dict[str, Any]) -> dict[str, Any]:
        kept = self.services.get(service["serviceArn"])
        if kept is None:
            return service
        with self._lock:
            service["deploymentConfiguration"] = kept["deploymentConfiguration"]
            service["loadBalancers"] = kept["loadBalancers"]
            service["taskDefinition"] = self.revisions[kept["current"]]["taskDefinition"]
            active = [
                d
                for d in self.deployments.values()
                if d.service_arn == service["serviceArn"] and d.status in ACTIVE
            ]
            if active:  # the service's task definition is the one being deployed
                target = active[0].target_revision
                service["taskDefinition"] = self.revisions[target]["taskDefinition"]
        return service

    def _revision(self, service_arn: str, task_definition: str) -> str:
        kept = self.services[service_arn]
        arn = (
            service_arn.replace(":service/", ":service-revision/")
            + "/"
            + str(uuid.uuid4().int)[:19]
        )
        self.revisions[arn] = {
            "serviceRevisionArn": arn,
            "serviceArn": service_arn,
            "clusterArn": kept["clusterArn"],
            "taskDefinition": task_definition,
            "loadBalancers": kept["loadBalancers"],
            "createdAt": time.time(),
            "desiredCount": kept["desiredCount"],
        }
        return arn

    def _deployment(self, service_arn: str, source: str, target: str) -> ServiceDeployment:
        kept = self.services[service_arn]
        load_balancer = next(iter(kept["loadBalancers"]), {})
        advanced = load_balancer.get("advancedConfiguration") or {}
        blue_tg, green_tg = (
            load_balancer.get("targetGroupArn", ""),
            advanced.get("alternateTargetGroupArn", ""),
        )
        rule = advanced.get("productionListenerRule")
        if rule:
            # Green is whichever target group of the pair has no production traffic now.
            production = self._rule_weights(rule)
            if production.get(green_tg, 0) > production.get(blue_tg, 0):
                blue_tg, green_tg = green_tg, blue_tg
        deployment = ServiceDeployment(
            arn=service_arn.replace(":service/", ":service-deployment/")
            + "/"
            + uuid.uuid4().hex[:20],
            service_arn=service_arn,
            cluster_arn=kept["clusterArn"],
            source_revision=source,
            target_revision=target,
            config=dict(kept["deploymentConfiguration"]),
            load_balancer=load_balancer,
            blue_tg=blue_tg,
            green_tg=green_tg,
            minute=self.minute_seconds.get(service_arn, 60.0),
        )
        self.deployments[deployment.arn] = deployment
        return deployment

    # -- the service-deployment API ----------------------------------------------------------

    def list_service_deployments(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = self._service_arn(body.get("cluster", "default"), body["service"])
        if arn not in self.services:
            raise AwsError("ServiceNotFoundException", "Service not found.")
        statuses = body.get("status")
        with self._lock:
            found = [
                d.brief()
                for d in sorted(self.deployments.values(), key=lambda d: d.created, reverse=True)
                if d.service_arn == arn and (not statuses or d.status in statuses)
            ]
        return {"serviceDeployments": found}

    def describe_service_deployments(self, body: dict[str, Any]) -> dict[str, Any]:
        found, failures = [], []
        with self._lock:
            for arn in body.get("serviceDeploymentArns", []):
                if arn in self.deployments:
                    found.append(self.deployments[arn].describe(self.revisions))
                else:
                    failures.append({"arn": arn, "reason": "MISSING"})
        return {"serviceDeployments": found, "failures": failures}

    def describe_service_revisions(self, body: dict[str, Any]) -> dict[str, Any]:
        arns = body.get("serviceRevisionArns", [])
        with self._lock:
            found = [
                {k: v for k, v in self.revisions[a].items() if k != "desiredCount"}
                for a in arns
                if a in self.revisions
            ]
            failures = [{"arn": a, "reason": "MISSING"} for a in arns if a not in self.revisions]
        return {"serviceRevisions": found, "failures": failures}

    def stop_service_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        stop_type = body.get("stopType", "ROLLBACK")
        if stop_type != "ROLLBACK":
            raise AwsError(
                "InvalidParameterException", "the bgkit sandbox supports stopType ROLLBACK only"
            )
        with self._lock:
            d = self._find(body["serviceDeploymentArn"])
            if d.status in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"):
                return {"serviceDeploymentArn": d.arn}  # already rolling back: it goes on
            if d.status not in ("PENDING", "IN_PROGRESS"):
                raise AwsError(
                    "ConflictException",
                    f"The service deployment is {d.status} and cannot be stopped.",
                )
            self._request_rollback(
                d, "Service deployment rolled back because of a StopServiceDeployment request."
            )
        return {"serviceDeploymentArn": d.arn}

    def continue_service_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action", "CONTINUE")
        if action not in ("CONTINUE", "ROLLBACK"):
            raise AwsError("InvalidParameterException", "action must be CONTINUE or ROLLBACK")
        with self._lock:
            d = self._find(body["serviceDeploymentArn"])
            hook = next((h for h in d.hooks if h.id == body.get("hookId")), None)
            if hook is None or hook.status != "AWAITING_ACTION" or d.status != "IN_PROGRESS":
                raise AwsError(
                    "InvalidParameterException",
                    f"the service deployment has no paused hook {body.get('hookId')!r}",
                )
            hook.status = "SUCCEEDED" if action == "CONTINUE" else "FAILED"
            if action == "ROLLBACK":
                self._request_rollback(
                    d, "Service deployment rolled back by ContinueServiceDeployment (ROLLBACK)."
                )
            d.updated = time.time()
        return {"serviceDeploymentArn": d.arn}

    # -- the engine ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                moving = [d for d in self.deployments.values() if d.status in ACTIVE]
            for d in moving:
                with self._lock:  # requests see a deployment between steps, never during one
                    try:
                        calls = self._advance(d)
                    except (
                        Exception
                    ) as error:  # recorded on the deployment, as ECS reports failures
                        self._failed(d, error)
                        calls = []
                # A hook function may take long or call the ECS API itself: its own thread,
                # outside the lock, so that other deployments and timeouts keep moving.
                for hook in calls:
                    threading.Thread(
                        target=self._invoke, args=(d, hook), name="bgkit-ecs-hook", daemon=True
                    ).start()

    def _failed(self, d: ServiceDeployment, error: Exception) -> None:
        what = f"{type(error).__name__}: {error}"
        if d.status in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"):
            d.status, d.finished = "ROLLBACK_FAILED", time.time()
            d.reason = f"rollback failed in the sandbox: {what}"
        else:
            self._request_rollback(d, f"{d.stage} failed: {what}")

    def _advance(self, d: ServiceDeployment) -> list[Hook]:
        """One step of a deployment. Returns the Lambda hooks due for an invocation."""
        now = time.time()
        if d.status in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"):
            self._roll_back(d, now)
            return []
        if d.status == "PENDING":
            d.status, d.started = "IN_PROGRESS", now
            self._enter(d, "PRE_SCALE_UP", now)
        if self._alarm_fails(d, now):
            return []
        if d.hooks_pending:
            done, due = self._check_hooks(d, now)
            if not done:
                return due
            d.hooks_pending, d.step_done_at = False, now
        if not d.stage_done:
            work = self._work(d, now)
            if work == "wait":
                return []
            d.stage_done = work == "done"
            self._start_hooks(d, now)  # after the stage, or after each production step
            return []
        if d.stage == STAGES[-1]:
            self.services[d.service_arn]["current"] = d.target_revision
            d.status, d.finished, d.updated = "SUCCESSFUL", now, now
            return []
        self._enter(d, STAGES[d.stage_index() + 1], now)
        return []

    def _alarm_fails(self, d: ServiceDeployment, now: float) -> bool:
        """Poll the deployment's alarms (once a second): one in ALARM fails it."""
        alarms = d.config.get("alarms") or {}
        names = alarms.get("alarmNames") or []
        if not alarms.get("enable") or not names or now - d.alarms_polled < ALARM_POLL_SECONDS:
            return False
        d.alarms_polled = now
        found = self._session.client("cloudwatch").describe_alarms(AlarmNames=names)
        d.triggered = [a["AlarmName"] for a in found["MetricAlarms"] if a["StateValue"] == "ALARM"]
        if not d.triggered:
            return False
        reason = f"Service deployment failed: alarm(s) {', '.join(d.triggered)} in ALARM state."
        if alarms.get("rollback"):
            self._request_rollback(d, reason)
        else:
            d.status, d.reason, d.stopped, d.finished, d.updated = "STOPPED", reason, now, now, now
        return True

    def _enter(self, d: ServiceDeployment, stage: str, now: float) -> None:
        d.stage, d.stage_started, d.stage_done, d.hooks, d.updated = stage, now, False, [], now
        d.step_done_at = now

    def _work(self, d: ServiceDeployment, now: float) -> str:
        """Do the stage's own work: "wait" (not yet), "step" (a production step applied: its
        hooks run before the next), or "done"."""
        advanced = d.load_balancer.get("advancedConfiguration") or {}
        if d.stage == "SCALE_UP":
            address = self.task_definition_targets.get(
                self.revisions[d.target_revision]["taskDefinition"]
            )
            if address is None:
                raise RuntimeError("no running tasks for the target task definition in the sandbox")
            self._elb().register_targets(
                TargetGroupArn=d.green_tg, Targets=[{"Id": address[0], "Port": address[1]}]
            )
            return "done" if now - d.stage_started >= HEALTH_CHECK_SECONDS else "wait"
        if d.stage == "TEST_TRAFFIC_SHIFT" and advanced.get("testListenerRule"):
            if d.test_percent < 100.0:
                self._forward(advanced["testListenerRule"], d, 100.0)
                d.test_percent = 100.0
            # The stage ends once the change has reached the load balancer's nodes.
            return "done" if now - d.stage_started >= PROPAGATION_SECONDS else "wait"
        if d.stage == "PRODUCTION_TRAFFIC_SHIFT":
            # Each step waits its bake time after the previous step (and that step's hooks).
            schedule = production_schedule(d.config)
            if d.step >= 0:
                interval = schedule[d.step + 1][0] - schedule[d.step][0]
                if now - d.step_done_at < interval * d.minute:
                    return "wait"
            d.step += 1
            percent = schedule[d.step][1]
            self._forward(advanced["productionListenerRule"], d, percent)
            d.green_percent, d.updated, d.step_done_at = percent, now, now
            return "done" if percent >= 100.0 else "step"
        if d.stage == "BAKE_TIME":
            minutes = d.config.get("bakeTimeInMinutes", 0)
            return "done" if now - d.stage_started >= minutes * d.minute else "wait"
        if d.stage == "CLEAN_UP":
            self._deregister(d.blue_tg)
        return "done"

    def _start_hooks(self, d: ServiceDeployment, now: float) -> None:
        hooks = []
        for spec in d.config.get("lifecycleHooks") or []:
            if d.stage in spec.get("lifecycleStages", []):
                timeout = (spec.get("timeoutConfiguration") or {}).get(
                    "timeoutInMinutes", DEFAULT_HOOK_TIMEOUT_MINUTES
                )
                paused = spec.get("targetType", "AWS_LAMBDA") == "PAUSE"
                hooks.append(
                    Hook(
                        id=uuid.uuid4().hex,
                        spec=spec,
                        status="AWAITING_ACTION" if paused else "IN_PROGRESS",
                        expires_at=now + timeout * d.minute,
                        details=spec.get("hookDetails"),
                    )
                )
        d.hooks, d.hooks_pending, d.updated = hooks, bool(hooks), now

    def _check_hooks(self, d: ServiceDeployment, now: float) -> tuple[bool, list[Hook]]:
        """Whether the stage's hooks are all done, and the Lambda hooks due for an invocation.
        A failed or timed-out hook requests the rollback."""
        due: list[Hook] = []
        for hook in d.hooks:
            if hook.status in ("AWAITING_ACTION", "IN_PROGRESS") and now >= hook.expires_at:
                hook.status = "TIMED_OUT"
                timeout = hook.spec.get("timeoutConfiguration") or {}
                if timeout.get("action", "ROLLBACK") == "ROLLBACK":
                    self._request_rollback(d, f"Lifecycle hook {hook.id} at {d.stage} timed out.")
                    return False, []
            if hook.status == "FAILED":
                self._request_rollback(d, f"Lifecycle hook {hook.id} at {d.stage} failed.")
                return False, []
            if hook.status == "IN_PROGRESS" and now >= hook.next_call:
                hook.next_call = float("inf")  # until this invocation answers
                due.append(hook)
        waiting = any(h.status in ("AWAITING_ACTION", "IN_PROGRESS") for h in d.hooks)
        return not waiting, due

    def _invoke(self, d: ServiceDeployment, hook: Hook) -> None:
        """A Lambda hook: invoke the function with the stage's payload ("Lifecycle payloads")."""
        payload = {
            "serviceArn": d.service_arn,
            "targetServiceRevisionArn": d.target_revision,
            "testTrafficWeights": {
                d.source_revision: 100 - d.test_percent,
                d.target_revision: d.test_percent,
            },
            "productionTrafficWeights": {
                d.source_revision: 100 - d.green_percent,
                d.target_revision: d.green_percent,
            },
            "lifecycleStage": d.stage,
            "hookDetails": hook.details,
        }
        function = hook.spec["hookTargetArn"].split(":function:", 1)[-1]
        name, _, qualifier = function.partition(":")
        status, delay, details = "FAILED", 0.0, hook.details
        try:
            _, error, result = self._lambda.invoke(name, qualifier or None, payload)
            if not error and isinstance(result, dict):
                status = result.get("hookStatus")
                delay = float(result.get("callBackDelay", DEFAULT_CALLBACK_SECONDS))
                details = result.get("hookDetails", details)
        except Exception:  # no such function, no code, or an answer ECS cannot read: rolls back
            status = "FAILED"
        with self._lock:
            if hook.status != "IN_PROGRESS":  # timed out or rolled back meanwhile
                return
            if status == "IN_PROGRESS" and delay >= 0:
                hook.next_call = time.time() + delay * d.minute / 60
                hook.details = details
            else:
                hook.status = "SUCCEEDED" if status == "SUCCEEDED" else "FAILED"

    def _request_rollback(self, d: ServiceDeployment, reason: str) -> None:
        now = time.time()
        d.status, d.reason, d.updated = "ROLLBACK_REQUESTED", reason, now
        d.rollback = {"reason": reason, "startedAt": now, "serviceRevisionArn": d.source_revision}
        for hook in d.hooks:
            if hook.status in ("AWAITING_ACTION", "IN_PROGRESS"):
                hook.status = "FAILED"

    def _roll_back(self, d: ServiceDeployment, now: float) -> None:
        """Both rules back to blue, then (once that reached the load balancer) green's tasks go."""
        if d.status == "ROLLBACK_REQUESTED":
            d.status = "ROLLBACK_IN_PROGRESS"
            advanced = d.load_balancer.get("advancedConfiguration") or {}
            for rule in (advanced.get("productionListenerRule"), advanced.get("testListenerRule")):
                if rule:
                    self._forward(rule, d, 0.0)
            d.green_percent = d.test_percent = 0.0
            d.rollback_propagated_at = now + PROPAGATION_SECONDS
            d.updated = now
            return
        if now < (d.rollback_propagated_at or 0.0):
            return
        self._deregister(d.green_tg)
        d.status, d.finished, d.stopped, d.updated = "ROLLBACK_SUCCESSFUL", now, now, now

    # -- helpers -------------------------------------------------------------------------

    def _elb(self) -> Any:
        return self._session.client("elbv2")

    def _rule_weights(self, rule_arn: str) -> dict[str, int]:
        rule = self._elb().describe_rules(RuleArns=[rule_arn])["Rules"][0]
        action = next(a for a in rule["Actions"] if a["Type"] == "forward")
        if "ForwardConfig" in action:
            return {
                g["TargetGroupArn"]: g.get("Weight", 1)
                for g in action["ForwardConfig"]["TargetGroups"]
            }
        return {action["TargetGroupArn"]: 1}

    def _forward(self, rule_arn: str, d: ServiceDeployment, green_percent: float) -> None:
        blue, green = weights(green_percent)
        groups = [
            {"TargetGroupArn": d.blue_tg, "Weight": blue},
            {"TargetGroupArn": d.green_tg, "Weight": green},
        ]
        self._elb().modify_rule(
            RuleArn=rule_arn,
            Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
        )

    def _deregister(self, target_group: str) -> None:
        elb = self._elb()
        targets = elb.describe_target_health(TargetGroupArn=target_group)[
            "TargetHealthDescriptions"
        ]
        if targets:
            elb.deregister_targets(
                TargetGroupArn=target_group, Targets=[t["Target"] for t in targets]
            )

    def _service_arn(self, cluster: str, service: str) -> str:
        if service.startswith("arn:"):
            return service
        cluster_name = cluster.rsplit("/", 1)[-1]
        with self._lock:
            for arn in self.services:
                if arn.endswith(f":service/{cluster_name}/{service}"):
                    return arn
        return f"arn:aws:ecs:{self._session.region}:123456789012:service/{cluster_name}/{service}"

    def _find(self, arn: str) -> ServiceDeployment:
        if arn not in self.deployments:
            raise AwsError(
                "ServiceDeploymentNotFoundException",
                f"The service deployment {arn} does not exist.",
            )
        return self.deployments[arn]


def _check_configuration(
    config: dict[str, Any], load_balancers: list[dict[str, Any]] | None
) -> None:
    """What ECS refuses in a deployment configuration for these strategies (API Reference)."""
    strategy = config.get("strategy", "ROLLING")
    if strategy not in (*STRATEGIES, "ROLLING"):
        raise AwsError("InvalidParameterException", f"Invalid deployment strategy {strategy}.")
    if strategy == "ROLLING":
        return
    if strategy == "BLUE_GREEN" and "bakeTimeInMinutes" not in config:
        raise AwsError(
            "InvalidParameterException",
            "bakeTimeInMinutes is required for the BLUE_GREEN strategy.",
        )
    if not 0 <= config.get("bakeTimeInMinutes", 0) <= 1440:
        raise AwsError("InvalidParameterException", "bakeTimeInMinutes must be from 0 to 1440.")
    linear = config.get("linearConfiguration") or {}
    canary = config.get("canaryConfiguration") or {}
    for value, low, name in (
        (linear.get("stepPercent", 10.0), 3.0, "stepPercent"),
        (canary.get("canaryPercent", 5.0), 0.1, "canaryPercent"),
    ):
        if not low <= value <= 100.0 or abs(value * 10 - round(value * 10)) > 1e-9:
            raise AwsError(
                "InvalidParameterException",
                f"{name} must be a multiple of 0.1 from {low} to 100.0.",
            )
    for value, name in (
        (linear.get("stepBakeTimeInMinutes", 6), "stepBakeTimeInMinutes"),
        (canary.get("canaryBakeTimeInMinutes", 10), "canaryBakeTimeInMinutes"),
    ):
        if not 0 <= value <= 1440:
            raise AwsError("InvalidParameterException", f"{name} must be from 0 to 1440.")
    for hook in config.get("lifecycleHooks") or []:
        kind = hook.get("targetType", "AWS_LAMBDA")
        stages = hook.get("lifecycleStages") or []
        if not stages or any(s not in HOOK_STAGES for s in stages):
            raise AwsError(
                "InvalidParameterException",
                f"lifecycleStages must be one or more of {', '.join(HOOK_STAGES)}.",
            )
        if kind == "AWS_LAMBDA" and not (hook.get("hookTargetArn") and hook.get("roleArn")):
            raise AwsError(
                "InvalidParameterException",
                "An AWS_LAMBDA lifecycle hook needs hookTargetArn and roleArn.",
            )
    if not load_balancers:
        raise AwsError(
            "InvalidParameterException",
            f"The {strategy} strategy needs a load balancer (the bgkit sandbox supports an "
            "Application Load Balancer).",
        )
    for lb in load_balancers:
        advanced = lb.get("advancedConfiguration") or {}
        if not (
            advanced.get("alternateTargetGroupArn")
            and advanced.get("productionListenerRule")
            and advanced.get("roleArn")
        ):
            raise AwsError(
                "InvalidParameterException",
                f"The {strategy} strategy needs loadBalancers[].advancedConfiguration with alternateTargetGroupArn, productionListenerRule and roleArn.",
            )
