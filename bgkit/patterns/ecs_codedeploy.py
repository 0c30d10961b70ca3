"""CodeDeploy blue/green for Amazon ECS: a replacement task set behind the test listener,
then production traffic shifted by the deployment configuration.

AWS: "Amazon ECS blue/green deployments through CodeDeploy" (deployment group with a
target-group pair, production and test listeners), AppSpec "Resources" section for ECS
(TaskDefinition, LoadBalancerInfo.ContainerName/ContainerPort). Evidence: the ALB's
per-target-group metrics, as for alb_weighted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import PreflightError
from ..params import arn_checker
from ..planning import Change
from . import register
from .base import Split, TargetGroupPair, forward_action, forward_weights
from .codedeploy import (
    ManagedByCodeDeploy,
    config_checker,
    hook_function_checker,
    name_checker,
    require,
)

ECS_CONFIGS = (
    "CodeDeployDefault.ECSAllAtOnce",
    "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
    "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
    "CodeDeployDefault.ECSCanary10Percent5Minutes",
    "CodeDeployDefault.ECSCanary10Percent15Minutes",
)
TASK_DEFINITION = arn_checker(
    "ecs",
    r"task-definition/[A-Za-z0-9_-]{1,255}:\d+",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/web:42",
)


def require_task_definition(ecs: Any, arn: str) -> None:
    """The task definition revision exists (ECS answers ClientException when it does not)."""
    try:
        ecs.describe_task_definition(taskDefinition=arn)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ClientException", "InvalidParameterException"):
            raise PreflightError(
                f"task definition {arn} does not exist", parameter="task_definition_arn"
            ) from None
        raise


@register
class EcsCodeDeploy(TargetGroupPair, ManagedByCodeDeploy):
    name: ClassVar[str] = "ecs_codedeploy"
    title: ClassVar[str] = "CodeDeploy blue/green for Amazon ECS"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        *ManagedByCodeDeploy.iam_actions,
        "codedeploy:ContinueDeployment",  # after the smoke test (READY_WAIT), and to end the wait
        "ecs:DescribeServices",
        "ecs:DescribeTaskDefinition",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeTargetGroups",
    )
    managed: ClassVar[bool] = True
    parameters: ClassVar[Mapping[str, Any]] = {
        "application_name": name_checker("application"),
        "deployment_group_name": name_checker("deployment group"),
        "task_definition_arn": TASK_DEFINITION,
        "deployment_config_name": config_checker("ECS", ECS_CONFIGS),
        "hook_function_name": hook_function_checker,
    }
    hook_event = "AfterAllowTestTraffic"

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._elb = session.client("elbv2")
        self._ecs = session.client("ecs")
        self.task_definition = resources["task_definition_arn"]
        self._use_codedeploy(session, resources)
        self._lambda = session.client("lambda")
        self.blue_tg = self.green_tg = self.listener_arn = self.test_listener_arn = None
        self.service: dict[str, str] = {}
        self._container: dict[str, Any] = {}
        self._load_balancer_arn: str | None = None

    def target_id(self) -> str:
        return f"codedeploy:{self.deployment.application}/{self.deployment.group}"

    # -- reads ---------------------------------------------------------------------------

    def preflight(self) -> Split:
        group = self.check_group("ECS")
        termination = group.get("blueGreenDeploymentConfiguration", {}).get(
            "terminateBlueInstancesOnDeploymentSuccess", {}
        )
        if termination.get("action", "TERMINATE") == "TERMINATE":
            wait = 60 * termination.get("terminationWaitTimeInMinutes", 0)
            need = self.judge_seconds + 60
            require(
                wait >= need,
                f"the original task set is terminated {wait} s after traffic reaches green: too soon to stop "
                f"with rollback on a last verdict; set terminationWaitTimeInMinutes to at least {-(-need // 60)}",
                "deployment_group_name",
            )
        ready = group.get("blueGreenDeploymentConfiguration", {}).get("deploymentReadyOption", {})
        self.holds_in_ready_wait = ready.get("actionOnTimeout") == "STOP_DEPLOYMENT"
        require(
            ready.get("actionOnTimeout") == "STOP_DEPLOYMENT" or bool(self.hook_function),
            "the deployment group must wait for bgkit's smoke test before production traffic: set "
            "blueGreenDeploymentConfiguration.deploymentReadyOption.actionOnTimeout to STOP_DEPLOYMENT, "
            "or give hook_function_name (bgkit's relay, run as the AfterAllowTestTraffic hook)",
            "deployment_group_name",
        )
        self.check_hook_function(self._lambda)
        require_task_definition(self._ecs, self.task_definition)
        pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
        self.listener_arn = pair["prodTrafficRoute"]["listenerArns"][0]
        test_routes = pair.get("testTrafficRoute", {}).get("listenerArns", [])
        self.test_listener_arn = test_routes[0] if test_routes else None
        names = [tg["name"] for tg in pair["targetGroups"]]
        arns = {
            g["TargetGroupName"]: g["TargetGroupArn"]
            for g in self._elb.describe_target_groups(Names=names)["TargetGroups"]
        }
        weights = self._weights()
        live = [arn for arn in arns.values() if weights.get(arn, 0) > 0]
        require(
            len(live) == 1,
            f"production traffic is split between target groups ({weights}); "
            "a deployment may have been left half-shifted",
        )
        self.blue_tg = live[0]
        self.green_tg = next(arn for arn in arns.values() if arn != self.blue_tg)
        self.service = group["ecsServices"][0]
        described = self._ecs.describe_services(
            cluster=self.service["clusterName"], services=[self.service["serviceName"]]
        )["services"][0]
        primary = [t for t in described.get("taskSets", []) if t["status"] == "PRIMARY"]
        require(bool(primary), "the ECS service has no primary task set", "deployment_group_name")
        self._container = primary[0]["loadBalancers"][0]
        return self.read_split()

    def _weights(self) -> dict[str, int]:
        listener = self._elb.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0]
        self._load_balancer_arn = listener["LoadBalancerArn"]
        action = forward_action(listener["DefaultActions"])
        return forward_weights(action) if action else {}

    def describe(self) -> dict[str, Any]:
        state: dict[str, Any] = {"split": self.read_split(), **self.deployment_state()}
        if self.service:
            described = self._ecs.describe_services(
                cluster=self.service["clusterName"], services=[self.service["serviceName"]]
            )["services"][0]
            state["task_sets"] = [
                {"status": t["status"], "taskDefinition": t["taskDefinition"]}
                for t in described.get("taskSets", [])
            ]
        return state

    # -- the deployment ------------------------------------------------------------------

    def deployment_creation(self, release: str) -> Change:
        appspec: dict[str, Any] = {
            "version": 0.0,
            "Resources": [
                {
                    "TargetService": {
                        "Type": "AWS::ECS::Service",
                        "Properties": {
                            "TaskDefinition": self.task_definition,
                            "LoadBalancerInfo": {
                                "ContainerName": self._container["containerName"],
                                "ContainerPort": self._container["containerPort"],
                            },
                        },
                    }
                }
            ],
        }
        if self.hooks():
            appspec["Hooks"] = self.hooks()
        revision = {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": json.dumps(appspec)},
        }
        service = f"{self.service.get('clusterName')}/{self.service.get('serviceName')}"
        holds = [f"at {self.hook_event} for bgkit's smoke test"] if self.hooks() else []
        if self.holds_in_ready_wait:
            holds.append("in READY_WAIT")
        held = f" and is held there ({', then '.join(holds)})" if holds else ""
        return self.deployment.creation(
            revision,
            self.config,
            f"bgkit release {release}",
            f"deploys {self.task_definition} to {service} as a replacement task set by "
            f"{self.config}; green gets the test route{held}",
        )

    def versions(self) -> dict[str, str]:
        """What blue and green run: the service's primary task set's task definition, and the
        task definition green deploys as ECS describes it."""
        described = self._ecs.describe_services(
            cluster=self.service["clusterName"], services=[self.service["serviceName"]]
        )["services"][0]
        primary = [t for t in described.get("taskSets", []) if t["status"] == "PRIMARY"]
        blue = primary[0]["taskDefinition"] if primary else described.get("taskDefinition", "")
        green = self._ecs.describe_task_definition(taskDefinition=self.task_definition)
        return {"blue": blue, "green": green["taskDefinition"]["taskDefinitionArn"]}
