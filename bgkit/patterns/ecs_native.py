"""Amazon ECS's own blue/green, canary and linear deployments (no CodeDeploy).

The service's deployment configuration decides how production traffic moves (strategy
BLUE_GREEN, CANARY or LINEAR, bakeTimeInMinutes); its load balancer's advancedConfiguration
names the alternate target group and the production and test listener rules that ECS
moves. bgkit starts a deployment with UpdateService (the new task definition), smoke-tests
green while a PAUSE lifecycle hook holds it after the test traffic shift, continues it with
ContinueServiceDeployment, judges green against blue while ECS shifts, and on a bad verdict
calls StopServiceDeployment(stopType=ROLLBACK).

AWS: "Amazon ECS blue/green deployments", "... canary deployments", "... linear deployments",
"Lifecycle hooks for Amazon ECS service deployments" (pause hooks), API Reference
UpdateService, ListServiceDeployments, DescribeServiceDeployments, ContinueServiceDeployment,
StopServiceDeployment. Evidence: the ALB's per-target-group metrics, as for alb_weighted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import ParameterError, PreflightError, TrafficError
from ..planning import Change, later
from . import register
from .base import Progress, Split, TargetGroupPair, forward_action, forward_weights
from .codedeploy import require
from .ecs_codedeploy import TASK_DEFINITION, require_task_definition

STRATEGIES = ("BLUE_GREEN", "CANARY", "LINEAR")
IN_FLIGHT = (
    "PENDING",
    "IN_PROGRESS",
    "STOP_REQUESTED",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
)
SMOKE_STAGE = "POST_TEST_TRAFFIC_SHIFT"  # green has all test traffic and no production traffic
ROLLBACK_WAIT_SECONDS = 900.0
# What a plan cannot know before UpdateService has started the service deployment.
LATER_DEPLOYMENT_ARN = later("the service deployment's ARN, after UpdateService")
LATER_HOOK_ID = later("the PAUSE hook's id in that deployment")
_BEFORE_SMOKE = (
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "RECONCILE_SERVICE",
)
_SHIFTING = ("PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PAUSE_HOOK = (
    '{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"], '
    '"timeoutConfiguration": {"timeoutInMinutes": 60, "action": "ROLLBACK"}}'
)


def _name(what: str):
    def check(name: str, value: str) -> None:
        if not _NAME.fullmatch(value):
            raise ParameterError(
                name, f"must be an ECS {what} name: 1-255 letters, digits, - or _", value
            )

    return check


@register
class EcsNative(TargetGroupPair):
    name: ClassVar[str] = "ecs_native"
    title: ClassVar[str] = "Amazon ECS blue/green, canary or linear deployment (no CodeDeploy)"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        "ecs:ContinueServiceDeployment",
        "ecs:DescribeServiceDeployments",
        "ecs:DescribeServiceRevisions",
        "ecs:DescribeServices",
        "ecs:DescribeTaskDefinition",
        "ecs:ListServiceDeployments",
        "ecs:StopServiceDeployment",
        "ecs:UpdateService",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:DescribeTargetGroups",
    )
    managed: ClassVar[bool] = True
    ready_wait: ClassVar[bool] = True
    parameters: ClassVar[Mapping[str, Any]] = {
        "cluster_name": _name("cluster"),
        "service_name": _name("service"),
        "task_definition_arn": TASK_DEFINITION,
    }

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._ecs = session.client("ecs")
        self._elb = session.client("elbv2")
        self.cluster = resources["cluster_name"]
        self.service = resources["service_name"]
        self.task_definition = resources["task_definition_arn"]
        self.judge_seconds = 0.0
        self.config: dict[str, Any] = {}
        self.blue_tg = self.green_tg = self.production_rule = None
        self._load_balancer_arn: str | None = None
        self.deployment_arn: str | None = None
        self._continued: set[str] = set()  # PAUSE hooks bgkit has continued

    def target_id(self) -> str:
        return f"ecs:{self.cluster}/{self.service}"

    # -- reads ---------------------------------------------------------------------------

    def preflight(self) -> Split:
        service = self._describe_service()
        require(
            service.get("deploymentController", {}).get("type", "ECS") == "ECS",
            "the service's deployment controller is not ECS (for CODE_DEPLOY use the ecs_codedeploy runbook)",
            "service_name",
        )
        self.config = service.get("deploymentConfiguration") or {}
        strategy = self.config.get("strategy", "ROLLING")
        require(
            strategy in STRATEGIES,
            f"the service's deployment strategy is {strategy}; bgkit needs one of "
            f"{', '.join(STRATEGIES)} (deploymentConfiguration.strategy)",
            "service_name",
        )
        pauses = [
            h
            for h in self.config.get("lifecycleHooks") or []
            if h.get("targetType") == "PAUSE" and SMOKE_STAGE in h.get("lifecycleStages", [])
        ]
        require(
            len(pauses) == 1,
            f"the service must hold green for bgkit's smoke test before production traffic: add "
            f"exactly one PAUSE lifecycle hook at {SMOKE_STAGE} to deploymentConfiguration.lifecycleHooks, "
            f"for example {_PAUSE_HOOK}",
            "service_name",
        )
        timeout = pauses[0].get("timeoutConfiguration") or {}
        require(
            timeout.get("action", "ROLLBACK") == "ROLLBACK",
            "the PAUSE hook must roll back when it times out (timeoutConfiguration.action ROLLBACK), "
            "so that a release abandoned before its smoke test never reaches production",
            "service_name",
        )
        alarms = self.config.get("alarms") or {}
        require(
            not alarms.get("enable") or bool(alarms.get("rollback")),
            "deploymentConfiguration.alarms is enabled without rollback: ECS would stop a failed "
            "deployment where it is, possibly half-shifted; set alarms.rollback to true",
            "service_name",
        )
        bake = 60 * self.config.get("bakeTimeInMinutes", 0)
        need = self.judge_seconds + 60
        require(
            bake >= need,
            f"blue is removed {bake:g} s after traffic reaches green: too soon to roll back on a last "
            f"verdict; set deploymentConfiguration.bakeTimeInMinutes to at least {-(-need // 60):g}",
            "service_name",
        )
        load_balancers = service.get("loadBalancers") or []
        advanced = (load_balancers[0].get("advancedConfiguration") or {}) if load_balancers else {}
        require(
            bool(
                advanced.get("alternateTargetGroupArn") and advanced.get("productionListenerRule")
            ),
            "the service's load balancer has no advancedConfiguration (alternateTargetGroupArn, "
            "productionListenerRule, testListenerRule, roleArn)",
            "service_name",
        )
        require_task_definition(self._ecs, self.task_definition)
        require(
            service.get("taskDefinition") != self.task_definition,
            f"the service already runs {self.task_definition}",
            "task_definition_arn",
        )
        in_flight = self._ecs.list_service_deployments(
            cluster=self.cluster, service=self.service, status=list(IN_FLIGHT)
        )["serviceDeployments"]
        require(
            not in_flight,
            f"service deployment {in_flight[0]['serviceDeploymentArn'] if in_flight else ''} is "
            f"{in_flight[0]['status'] if in_flight else ''}; wait for it or stop it before starting another",
        )
        self.production_rule = advanced["productionListenerRule"]
        pair = (load_balancers[0]["targetGroupArn"], advanced["alternateTargetGroupArn"])
        weights = self._weights()
        live = [arn for arn in pair if weights.get(arn, 0) > 0]
        require(
            len(live) == 1,
            f"production traffic is split between target groups ({weights}); "
            "a deployment may have been left half-shifted",
        )
        self.blue_tg = live[0]
        self.green_tg = next(arn for arn in pair if arn != self.blue_tg)
        self._load_balancer_arn = self._elb.describe_target_groups(TargetGroupArns=[self.blue_tg])[
            "TargetGroups"
        ][0]["LoadBalancerArns"][0]
        return self.read_split()

    def _describe_service(self) -> dict[str, Any]:
        try:
            answer = self._ecs.describe_services(cluster=self.cluster, services=[self.service])
        except ClientError as error:
            if error.response["Error"]["Code"] == "ClusterNotFoundException":
                raise PreflightError(
                    f"ECS cluster {self.cluster!r} does not exist", parameter="cluster_name"
                ) from None
            raise
        services = [s for s in answer["services"] if s.get("status") == "ACTIVE"]
        if not services:
            raise PreflightError(
                f"service {self.service!r} does not exist (or is not ACTIVE) in cluster {self.cluster!r}",
                parameter="service_name",
            )
        return services[0]

    def _weights(self) -> dict[str, int]:
        rule = self._elb.describe_rules(RuleArns=[self.production_rule])["Rules"][0]
        action = forward_action(rule["Actions"])
        return forward_weights(action) if action else {}

    def describe(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.production_rule:
            state["split"] = self.read_split()
        service = self._describe_service()
        state["service"] = {"taskDefinition": service.get("taskDefinition")}
        if self.deployment_arn:
            d = self._deployment()
            keys = ("serviceDeploymentArn", "status", "statusReason", "lifecycleStage", "rollback")
            state["deployment"] = {k: d.get(k) for k in keys if k in d}
        return state

    def plan_description(self) -> str:
        strategy = self.config.get("strategy")
        if strategy == "CANARY":
            c = self.config.get("canaryConfiguration", {})
            shape = (
                f"canary {c.get('canaryPercent', 5.0):g}%, then 100% after "
                f"{c.get('canaryBakeTimeInMinutes', 10)} min"
            )
        elif strategy == "LINEAR":
            c = self.config.get("linearConfiguration", {})
            shape = (
                f"linear {c.get('stepPercent', 10.0):g}% every "
                f"{c.get('stepBakeTimeInMinutes', 6)} min"
            )
        elif strategy == "BLUE_GREEN":
            shape = "all at once (no canary analysis)"
        else:
            return f"ECS service deployment ({self.cluster}/{self.service})"
        return (
            f"ECS {strategy}: {shape}; blue kept {self.config.get('bakeTimeInMinutes', 0)} min after; "
            "bgkit judges every bake window and stops with rollback"
        )

    # -- the deployment ------------------------------------------------------------------

    def start_deployment(self, release: str) -> str:
        try:
            self.service_update().send()
        except Exception:
            # The request may have reached AWS (a timeout): look for its deployment first.
            if self._find() is None:
                raise
        arn = self._find()
        if arn is None:
            raise TrafficError(
                f"UpdateService on {self.cluster}/{self.service} started no service deployment"
            )
        self.deployment_arn = arn
        return arn

    def service_update(self) -> Change:
        """UpdateService to green's task definition: ECS starts a deployment by its strategy."""
        params = {
            "cluster": self.cluster,
            "service": self.service,
            "taskDefinition": self.task_definition,
        }
        means = (
            f"runs {self.task_definition} on {self.cluster}/{self.service}: ECS starts its "
            f"{self.config.get('strategy', '')} deployment, green held by the PAUSE hook at "
            f"{SMOKE_STAGE} for bgkit's smoke test"
        )
        return Change(self._ecs, "UpdateService", params, means)

    def hook_continuation(self, deployment_arn: str, hook_id: str) -> Change:
        """ContinueServiceDeployment: the PAUSE hook lets ECS shift production traffic."""
        params = {"serviceDeploymentArn": deployment_arn, "hookId": hook_id, "action": "CONTINUE"}
        means = f"continues the PAUSE hook at {SMOKE_STAGE}: production traffic starts to shift"
        return Change(self._ecs, "ContinueServiceDeployment", params, means)

    def rollback_stop(self, deployment_arn: str) -> Change:
        """StopServiceDeployment(ROLLBACK): ECS returns all traffic to blue."""
        params = {"serviceDeploymentArn": deployment_arn, "stopType": "ROLLBACK"}
        means = "stops the service deployment with ROLLBACK: ECS returns all traffic to blue"
        return Change(self._ecs, "StopServiceDeployment", params, means)

    # For plans (bgkit.planning): what the methods of the deployment send, from the builders above.

    def start_changes(self, release: str) -> list[Change]:
        return [self.service_update()]

    def continue_changes(self) -> list[Change]:
        return [self.hook_continuation(LATER_DEPLOYMENT_ARN, LATER_HOOK_ID)]

    def promote_changes(self) -> list[Change]:
        return []  # see end_wait_after_shift: ECS has no call to end the bake early

    def stop_changes(self) -> list[Change]:
        return [self.rollback_stop(LATER_DEPLOYMENT_ARN)]

    def versions(self) -> dict[str, str]:
        """What blue and green run: the service's task definition, and green's as ECS describes it."""
        green = self._ecs.describe_task_definition(taskDefinition=self.task_definition)
        return {
            "blue": self._describe_service().get("taskDefinition", ""),
            "green": green["taskDefinition"]["taskDefinitionArn"],
        }

    def _find(self) -> str | None:
        """This release's deployment: the in-flight one whose target runs our task definition."""
        briefs = self._ecs.list_service_deployments(
            cluster=self.cluster, service=self.service, status=list(IN_FLIGHT)
        )["serviceDeployments"]
        for brief in briefs:
            revision = self._ecs.describe_service_revisions(
                serviceRevisionArns=[brief["targetServiceRevisionArn"]]
            )["serviceRevisions"]
            if revision and revision[0]["taskDefinition"] == self.task_definition:
                return brief["serviceDeploymentArn"]
        return None

    def _deployment(self) -> dict[str, Any]:
        return self._ecs.describe_service_deployments(serviceDeploymentArns=[self.deployment_arn])[
            "serviceDeployments"
        ][0]

    def progress(self) -> Progress:
        d = self._deployment()
        status, stage = d["status"], d.get("lifecycleStage", "")
        if status == "SUCCESSFUL":
            phase = "succeeded"
        elif status not in ("PENDING", "IN_PROGRESS"):
            phase = "stopped"
        elif status == "PENDING" or stage in _BEFORE_SMOKE:
            phase = "deploying"
        elif stage == SMOKE_STAGE:
            phase = "ready" if self._paused_hook(d) else "deploying"
        elif stage in _SHIFTING:
            phase = "shifting"
        else:  # BAKE_TIME, CLEAN_UP
            phase = "shifted"
        return Progress(d["serviceDeploymentArn"], phase, status, d.get("statusReason", ""))

    def _paused_hook(self, d: dict[str, Any]) -> str | None:
        """The PAUSE hook waiting for bgkit (not one bgkit has continued already)."""
        for hook in d.get("lifecycleHookDetails") or []:
            if (
                hook.get("targetType") == "PAUSE"
                and hook.get("status") == "AWAITING_ACTION"
                and hook["hookId"] not in self._continued
            ):
                return hook["hookId"]
        return None

    def continue_after_smoke(self) -> str:
        hook = self._paused_hook(self._deployment())
        if hook is None:
            raise TrafficError(
                f"{self.deployment_arn} is not paused at {SMOKE_STAGE}; nothing to continue"
            )
        self.hook_continuation(self.deployment_arn, hook).send()
        self._continued.add(hook)
        return f"continued the PAUSE hook at {SMOKE_STAGE} (ContinueServiceDeployment)"

    def end_wait_after_shift(self) -> None:
        """ECS keeps blue for bakeTimeInMinutes and has no call to end that early: let it run."""

    def wait_after_shift_seconds(self) -> float:
        return 60.0 * self.config.get("bakeTimeInMinutes", 0)

    def stop_and_roll_back(self, clock: Any, release: str, note: Callable[[str], None]) -> None:
        if self.deployment_arn is None:
            # UpdateService may have been accepted without its deployment showing yet.
            self.deployment_arn = self._find()
            if self.deployment_arn is None:
                if self._describe_service().get("taskDefinition") == self.task_definition:
                    raise TrafficError(
                        f"UpdateService moved {self.cluster}/{self.service} to {self.task_definition} "
                        "but its service deployment cannot be found to stop"
                    )
                return  # nothing was started
        d = self._deployment()
        if d["status"] in ("PENDING", "IN_PROGRESS"):
            try:
                self.rollback_stop(self.deployment_arn).send()
                note(f"stopped {self.deployment_arn} with ROLLBACK: ECS returns traffic to blue")
            except ClientError as error:  # it finished between the read and the stop
                if error.response["Error"]["Code"] not in ("ConflictException", "ClientException"):
                    raise
        deadline = clock.now() + timedelta(seconds=ROLLBACK_WAIT_SECONDS)
        while True:
            d = self._deployment()
            if d["status"] in ("ROLLBACK_SUCCESSFUL", "STOPPED"):  # the release checks the split
                return
            if d["status"] == "SUCCESSFUL":
                raise TrafficError(
                    f"{self.deployment_arn} completed before the rollback: blue's tasks are gone; "
                    "deploy the previous task definition to go back"
                )
            if d["status"] == "ROLLBACK_FAILED" or clock.now() > deadline:
                raise TrafficError(
                    f"{self.deployment_arn} is {d['status']}: {d.get('statusReason', '')}"
                )
            clock.sleep(0.5)

    def max_shift_seconds(self) -> float:
        strategy = self.config.get("strategy")
        if strategy == "CANARY":
            return 60.0 * self.config.get("canaryConfiguration", {}).get(
                "canaryBakeTimeInMinutes", 10
            )
        if strategy == "LINEAR":
            c = self.config.get("linearConfiguration", {})
            steps = -(-100 // c.get("stepPercent", 10.0))
            return 60.0 * c.get("stepBakeTimeInMinutes", 6) * steps
        return 0.0

    def all_at_once(self) -> bool:
        return self.config.get("strategy") == "BLUE_GREEN"
