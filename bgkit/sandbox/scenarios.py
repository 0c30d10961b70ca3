"""Scenarios: each pattern's "current production", provisioned through boto3 like a user would.

A scenario provisions the control-plane resources, starts blue and green services, the
data plane (router) and the load generator, and hands the runbook the parameters a user
would pass against real AWS (ARNs, the smoke-test URL).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from ..aws import AwsSession
from .loadgen import LoadGenerator
from .router import AlbRouter
from .services import ColourService

PRODUCTION_PORT = 80
TEST_PORT = 8080

SCENARIOS: dict[str, type[Scenario]] = {}


def register(cls: type[Scenario]) -> type[Scenario]:
    SCENARIOS[cls.pattern] = cls
    return cls


class Scenario:
    pattern: ClassVar[str]
    hook_relay: ClassVar[bool] = False  # CodeDeploy's: bgkit's hook relay is installed first

    def __init__(
        self,
        session: AwsSession,
        *,
        sandbox: Any = None,
        green_error_rate: float = 0.0,
        green_added_latency_ms: float = 0.0,
        request_rate: float = 50.0,
        minute_seconds: float = 60.0,
        plan: str = "linear",
        step_percent: int = 25,
        canary_percent: int = 10,
    ) -> None:
        self.session = session
        self.sandbox = sandbox
        self.minute_seconds = minute_seconds
        self.id = uuid.uuid4().hex[:8]
        self.green_error_rate = green_error_rate
        self.green_added_latency_ms = green_added_latency_ms
        self.request_rate = request_rate
        # Where the service's own configuration decides the shift (ecs_native), the scenario
        # configures it like the runbook's plan, so that each strategy can be tried.
        self.plan, self.step_percent, self.canary_percent = plan, step_percent, canary_percent
        self.parameters: dict[str, Any] = {}
        self._stoppables: list[Any] = []
        # the scenario's database (a release with migrations): its URL, set before start()
        self.database_url = ""

    def start(self) -> Scenario:
        raise NotImplementedError

    @property
    def changes(self) -> Any:
        """The control plane's writes, for a data plane to follow (None outside a Sandbox)."""
        return self.sandbox.calls.changes if self.sandbox is not None else None

    def stop(self) -> None:
        # Clients first, then servers: so no keep-alive connection holds a handler thread.
        while self._stoppables:
            self._stoppables.pop().stop()

    def _started(self, thing: Any) -> Any:
        self._stoppables.append(thing)
        return thing.start()

    def _green_service(self) -> ColourService:
        return ColourService(
            "green",
            "v2",
            error_rate=self.green_error_rate,
            added_latency_ms=self.green_added_latency_ms,
            shop=self._shop(),
        )

    def _blue_service(self) -> ColourService:
        return ColourService("blue", "v1", shop=self._shop())

    def _shop(self) -> Any:
        """What a colour's requests do with the scenario's database (None: no database)."""
        if not self.database_url:
            return None
        from .database import Shop

        return Shop(self.database_url)


def _network(session: AwsSession, name: str) -> tuple[str, str]:
    """A VPC with two subnets and an internal ALB. Returns (vpc id, load balancer ARN)."""
    ec2, elb = session.client("ec2"), session.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{session.region}{zone}"
        )["Subnet"]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    lb = elb.create_load_balancer(Name=name, Subnets=subnets, Type="application", Scheme="internal")
    return vpc, lb["LoadBalancers"][0]["LoadBalancerArn"]


def _target_group(session: AwsSession, name: str, vpc: str) -> str:
    return session.client("elbv2").create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip", HealthCheckPath="/health"
    )["TargetGroups"][0]["TargetGroupArn"]


def _error_alarm(
    session: AwsSession,
    name: str,
    namespace: str,
    metric: str,
    dimensions: dict[str, str],
    threshold: float,
) -> str:
    """A CloudWatch alarm on green's errors, as a team would have (Sum over a minute above
    `threshold`). moto stores it but does not evaluate it: SetAlarmState changes its state."""
    session.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    return name


def _alb_5xx(lb_arn: str, target_group: str) -> dict[str, Any]:
    """The metric of a target group's 5xx, for _error_alarm."""
    return {
        "namespace": "AWS/ApplicationELB",
        "metric": "HTTPCode_Target_5XX_Count",
        "dimensions": {
            "LoadBalancer": lb_arn.split(":loadbalancer/", 1)[1],
            "TargetGroup": target_group.split(":", 5)[5],
        },
        "threshold": 10,
    }


def _codedeploy_group(
    scenario: Scenario, name: str, platform: str, alarm: dict[str, Any], **extra: Any
) -> str:
    """A CodeDeploy application and blue/green deployment group with automatic rollback and a
    CloudWatch alarm on green's errors (`alarm`: name and metric), as a team would set them up;
    the sandbox's CodeDeploy runs on the scenario's clock."""
    _error_alarm(scenario.session, f"{name}-{alarm['name']}", **alarm["metric"])
    codedeploy = scenario.session.client("codedeploy")
    codedeploy.create_application(applicationName=name, computePlatform=platform)
    scenario.sandbox.codedeploy.minute_seconds[name] = scenario.minute_seconds
    codedeploy.create_deployment_group(
        applicationName=name,
        deploymentGroupName=f"{name}-dg",
        serviceRoleArn=f"arn:aws:iam::123456789012:role/CodeDeploy{platform}Role",
        deploymentConfigName=f"CodeDeployDefault.{platform}AllAtOnce",
        deploymentStyle={
            "deploymentType": "BLUE_GREEN",
            "deploymentOption": "WITH_TRAFFIC_CONTROL",
        },
        autoRollbackConfiguration={
            "enabled": True,
            "events": [
                "DEPLOYMENT_FAILURE",
                "DEPLOYMENT_STOP_ON_REQUEST",
                "DEPLOYMENT_STOP_ON_ALARM",
            ],
        },
        alarmConfiguration={"enabled": True, "alarms": [{"name": f"{name}-{alarm['name']}"}]},
        **extra,
    )
    return f"{name}-dg"


def _listeners(
    session: AwsSession, lb_arn: str, groups: dict[str, str], test_colour: str
) -> tuple[str, str]:
    """The production listener (all traffic to blue, green at weight 0) and a test listener to
    `test_colour`'s target group. Returns their ARNs."""
    elb = session.client("elbv2")
    arns = []
    for port, weights in (
        (PRODUCTION_PORT, {groups["blue"]: 100, groups["green"]: 0}),
        (TEST_PORT, {groups[test_colour]: 100}),
    ):
        listener = elb.create_listener(
            LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port, DefaultActions=_forward(weights)
        )
        arns.append(listener["Listeners"][0]["ListenerArn"])
    return arns[0], arns[1]


def _ecs_network(session: AwsSession, vpc: str, name: str) -> dict[str, Any]:
    """An awsvpc network configuration in the VPC's subnets, with its own security group."""
    ec2 = session.client("ec2")
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    group = ec2.create_security_group(GroupName=name, Description="bgkit", VpcId=vpc)
    return {
        "awsvpcConfiguration": {
            "subnets": [s["SubnetId"] for s in subnets],
            "securityGroups": [group["GroupId"]],
            "assignPublicIp": "DISABLED",
        }
    }


def _task_definitions(session: AwsSession, family: str) -> list[str]:
    """Revisions 1 (image v1, running now) and 2 (image v2, to deploy) of a Fargate web task."""
    ecs = session.client("ecs")
    revisions = []
    for image in ("v1", "v2"):
        definition = ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=[
                {
                    "name": "web",
                    "image": f"bgkit/web:{image}",
                    "essential": True,
                    "memory": 512,
                    "cpu": 256,
                    "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                }
            ],
        )
        revisions.append(definition["taskDefinition"]["taskDefinitionArn"])
    return revisions


RELAY_FUNCTION = "bgkit-hook-relay"


def install_hook_relay(session: AwsSession) -> str:
    """bgkit's lifecycle hook relay (bgkit/relay.py), installed as its docstring says; the
    sandbox does this before its first CodeDeploy scenario. Returns the function's name."""
    from pathlib import Path

    lam, iam = session.client("lambda"), session.client("iam")
    # moto keeps one account per process: a second sandbox in the same process finds it there.
    if RELAY_FUNCTION in [f["FunctionName"] for f in lam.list_functions()["Functions"]]:
        return RELAY_FUNCTION
    role_name = f"{RELAY_FUNCTION}-role"
    if role_name in [r["RoleName"] for r in iam.list_roles()["Roles"]]:
        role = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    else:
        role = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}',
        )["Role"]["Arn"]
    source = (Path(__file__).resolve().parent.parent / "relay.py").read_text()
    lam.create_function(
        FunctionName=RELAY_FUNCTION,
        Runtime="python3.12",
        Role=role,
        Handler="relay.handler",
        Code={"ZipFile": _zip(source, "relay.py")},
        Timeout=30,
    )
    return RELAY_FUNCTION


def _forward(weights: dict[str, int]) -> list[dict[str, Any]]:
    groups = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights.items()]
    return [{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}]


@register
class AlbScenario(Scenario):
    """An ALB whose production listener forwards 100 % to blue; a test listener forwards to green."""

    pattern = "alb_weighted"

    def start(self) -> AlbScenario:
        name = f"bgkit-{self.id}"
        _, lb_arn, groups = self._colours(name, registered=("blue", "green"))
        production, _ = _listeners(self.session, lb_arn, groups, test_colour="green")
        router = self._start_traffic(lb_arn)
        self.parameters = {
            "listener_arn": production,
            "blue_target_group_arn": groups["blue"],
            "green_target_group_arn": groups["green"],
            "smoke_url": router.url(TEST_PORT) + "/",
            "production_url": router.url(PRODUCTION_PORT) + "/",
            "load_balancer_arn": lb_arn,
        }
        return self

    def _colours(self, name: str, registered: tuple[str, ...]) -> tuple[str, str, dict[str, str]]:
        """A VPC and ALB, blue and green services and a target group each, the `registered`
        colours' services registered in theirs. Returns (vpc, load balancer ARN, groups)."""
        elb = self.session.client("elbv2")
        vpc, lb_arn = _network(self.session, name)
        # Servers start before anything routes to them; they stop last (registered first).
        self.services = {
            "blue": self._started(self._blue_service()),
            "green": self._started(self._green_service()),
        }
        groups = {}
        for colour, service in self.services.items():
            groups[colour] = _target_group(self.session, f"{name}-{colour}", vpc)
            if colour in registered:
                # The target is the service's real loopback address; the router connects to it.
                elb.register_targets(
                    TargetGroupArn=groups[colour],
                    Targets=[{"Id": "127.0.0.1", "Port": service.port}],
                )
        return vpc, lb_arn, groups

    def _start_traffic(self, lb_arn: str) -> AlbRouter:
        router = self._started(AlbRouter(self.session, lb_arn, changes=self.changes))
        self._started(LoadGenerator(router.url(PRODUCTION_PORT), self.request_rate))
        self.router = router
        return router


@register
class EcsCodeDeployScenario(AlbScenario):
    """An ECS service (deployment controller CODE_DEPLOY) behind an ALB, with a CodeDeploy
    application and blue/green deployment group, and a new task definition revision to deploy.

    The service's primary task set (revision 1) runs in blue's target group; the sandbox
    serves revision 2 from the green process once CodeDeploy starts its task set.
    """

    pattern = "ecs_codedeploy"
    hook_relay = True

    def start(self) -> EcsCodeDeployScenario:
        ecs = self.session.client("ecs")
        name = f"bgkit-{self.id}"
        vpc, lb_arn, groups = self._colours(name, registered=("blue",))
        self.network_configuration = _ecs_network(self.session, vpc, name)
        blue, green = self.services["blue"], self.services["green"]
        # CodeDeploy points the test listener at the replacement target group during a deployment.
        production, test = _listeners(self.session, lb_arn, groups, test_colour="blue")
        cluster = ecs.create_cluster(clusterName=name)["cluster"]["clusterName"]
        revisions = _task_definitions(self.session, name)
        service = ecs.create_service(
            cluster=cluster,
            serviceName="web",
            desiredCount=2,
            launchType="FARGATE",
            deploymentController={"type": "CODE_DEPLOY"},
        )["service"]["serviceName"]
        task_set = ecs.create_task_set(
            cluster=cluster,
            service=service,
            taskDefinition=revisions[0],
            launchType="FARGATE",
            networkConfiguration=self.network_configuration,
            scale={"unit": "PERCENT", "value": 100.0},
            loadBalancers=[
                {"targetGroupArn": groups["blue"], "containerName": "web", "containerPort": 8080}
            ],
        )["taskSet"]["taskSetArn"]
        ecs.update_service_primary_task_set(
            cluster=cluster, service=service, primaryTaskSet=task_set
        )
        # The sandbox's ECS "runs" each revision as a loopback process (no containers here).
        self.sandbox.codedeploy.task_definition_targets[revisions[0]] = ("127.0.0.1", blue.port)
        self.sandbox.codedeploy.task_definition_targets[revisions[1]] = ("127.0.0.1", green.port)

        _codedeploy_group(
            self,
            name,
            "ECS",
            {"name": "green-5xx", "metric": _alb_5xx(lb_arn, groups["green"])},
            blueGreenDeploymentConfiguration={
                "deploymentReadyOption": {
                    "actionOnTimeout": "STOP_DEPLOYMENT",
                    "waitTimeInMinutes": 60,
                },
                "terminateBlueInstancesOnDeploymentSuccess": {
                    "action": "TERMINATE",
                    "terminationWaitTimeInMinutes": 5,
                },
            },
            loadBalancerInfo={
                "targetGroupPairInfoList": [
                    {
                        "targetGroups": [{"name": f"{name}-blue"}, {"name": f"{name}-green"}],
                        "prodTrafficRoute": {"listenerArns": [production]},
                        "testTrafficRoute": {"listenerArns": [test]},
                    }
                ]
            },
            ecsServices=[{"serviceName": service, "clusterName": cluster}],
        )
        router = self._start_traffic(lb_arn)
        self.parameters = {
            "application_name": name,
            "deployment_group_name": f"{name}-dg",
            "task_definition_arn": revisions[1],
            "smoke_url": router.url(TEST_PORT) + "/",
            "production_url": router.url(PRODUCTION_PORT) + "/",
            "load_balancer_arn": lb_arn,
            "blue_target_group_arn": groups["blue"],
            "green_target_group_arn": groups["green"],
            "listener_arn": production,
        }
        return self


@register
class EcsNativeScenario(AlbScenario):
    """An ECS service (deployment controller ECS) behind an ALB, configured for ECS's own
    blue/green family of strategies, with a new task definition revision to deploy.

    The production and the test listener each have a rule that ECS moves between the blue and
    the green target group (advancedConfiguration); a PAUSE hook after the test traffic shift
    holds green there for bgkit's smoke test. The strategy follows the runbook's plan: linear
    → LINEAR (step_percent every 3 minutes), canary → CANARY (canary_percent for 3 minutes),
    all_at_once → BLUE_GREEN; blue is kept 5 minutes after the shift (bakeTimeInMinutes).
    """

    pattern = "ecs_native"

    def start(self) -> EcsNativeScenario:
        elb, ecs = self.session.client("elbv2"), self.session.client("ecs")
        name = f"bgkit-{self.id}"
        vpc, lb_arn, groups = self._colours(name, registered=("blue",))
        blue, green = self.services["blue"], self.services["green"]
        rules = []
        for listener in _listeners(self.session, lb_arn, groups, test_colour="blue"):
            rule = elb.create_rule(
                ListenerArn=listener,
                Priority=10,
                Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
                Actions=_forward({groups["blue"]: 100, groups["green"]: 0}),
            )
            rules.append(rule["Rules"][0]["RuleArn"])
        cluster = ecs.create_cluster(clusterName=name)["cluster"]["clusterName"]
        revisions = _task_definitions(self.session, name)
        self.sandbox.ecs.task_definition_targets[revisions[0]] = ("127.0.0.1", blue.port)
        self.sandbox.ecs.task_definition_targets[revisions[1]] = ("127.0.0.1", green.port)
        role = f"arn:aws:iam::123456789012:role/{name}-ecs-infrastructure"
        alarm = _error_alarm(self.session, f"{name}-green-5xx", **_alb_5xx(lb_arn, groups["green"]))
        service = ecs.create_service(
            cluster=cluster,
            serviceName="web",
            taskDefinition=revisions[0],
            desiredCount=2,
            launchType="FARGATE",
            networkConfiguration=_ecs_network(self.session, vpc, name),
            deploymentController={"type": "ECS"},
            deploymentConfiguration=self._deployment_configuration(alarm),
            loadBalancers=[
                {
                    "targetGroupArn": groups["blue"],
                    "containerName": "web",
                    "containerPort": 8080,
                    "advancedConfiguration": {
                        "alternateTargetGroupArn": groups["green"],
                        "productionListenerRule": rules[0],
                        "testListenerRule": rules[1],
                        "roleArn": role,
                    },
                }
            ],
        )["service"]
        self.sandbox.ecs.minute_seconds[service["serviceArn"]] = self.minute_seconds
        router = self._start_traffic(lb_arn)
        self.parameters = {
            "cluster_name": cluster,
            "service_name": service["serviceName"],
            "task_definition_arn": revisions[1],
            "smoke_url": router.url(TEST_PORT) + "/",
            "production_url": router.url(PRODUCTION_PORT) + "/",
            "load_balancer_arn": lb_arn,
            "blue_target_group_arn": groups["blue"],
            "green_target_group_arn": groups["green"],
            "production_rule_arn": rules[0],
        }
        return self

    def _deployment_configuration(self, alarm: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "alarms": {"alarmNames": [alarm], "enable": True, "rollback": True},
            "bakeTimeInMinutes": 5,
            "lifecycleHooks": [
                {
                    "targetType": "PAUSE",
                    "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                    "timeoutConfiguration": {"timeoutInMinutes": 60, "action": "ROLLBACK"},
                }
            ],
        }
        if self.plan == "canary":
            config["strategy"] = "CANARY"
            config["canaryConfiguration"] = {
                "canaryPercent": float(self.canary_percent),
                "canaryBakeTimeInMinutes": 3,
            }
        elif self.plan == "all_at_once":
            config["strategy"] = "BLUE_GREEN"
        else:
            config["strategy"] = "LINEAR"
            config["linearConfiguration"] = {
                "stepPercent": float(max(3, self.step_percent)),
                "stepBakeTimeInMinutes": 3,
            }
        return config


@register
class Route53Scenario(Scenario):
    """A weighted DNS name: one CNAME record per colour (SetIdentifier blue and green, blue at
    weight 100, green at 0, TTL 5 s) pointing at each colour's own load balancer, with a Route 53
    health check per colour. Clients resolve the name and cache answers for the TTL."""

    pattern = "route53_weighted"
    TTL = 5

    def start(self) -> Route53Scenario:
        from .dns import CachingClients, WeightedResolver

        elb, route53 = self.session.client("elbv2"), self.session.client("route53")
        name = f"bgkit-{self.id}"
        vpc, blue_lb = _network(self.session, f"{name}-blue")
        subnets = elb.describe_load_balancers(LoadBalancerArns=[blue_lb])["LoadBalancers"][0][
            "AvailabilityZones"
        ]
        green_lb = elb.create_load_balancer(
            Name=f"{name}-green",
            Subnets=[z["SubnetId"] for z in subnets],
            Type="application",
            Scheme="internal",
        )["LoadBalancers"][0]["LoadBalancerArn"]
        zone = route53.create_hosted_zone(Name=f"{name}.test", CallerReference=name)
        zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
        record = f"www.{name}.test"
        routers, groups, endpoints, changes = {}, {}, {}, []
        for colour, lb_arn, weight in (("blue", blue_lb, 100), ("green", green_lb, 0)):
            service = self._started(
                self._blue_service() if colour == "blue" else self._green_service()
            )
            groups[colour] = _target_group(self.session, f"{name}-{colour}", vpc)
            elb.register_targets(
                TargetGroupArn=groups[colour], Targets=[{"Id": "127.0.0.1", "Port": service.port}]
            )
            elb.create_listener(
                LoadBalancerArn=lb_arn,
                Protocol="HTTP",
                Port=PRODUCTION_PORT,
                DefaultActions=_forward({groups[colour]: 1}),
            )
            routers[colour] = self._started(AlbRouter(self.session, lb_arn, changes=self.changes))
            dns_name = elb.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0][
                "DNSName"
            ]
            port = int(routers[colour].url(PRODUCTION_PORT).rsplit(":", 1)[1])
            endpoints[dns_name] = ("127.0.0.1", port)
            check = route53.create_health_check(
                CallerReference=f"{name}-{colour}",
                HealthCheckConfig={
                    "Type": "HTTP",
                    "FullyQualifiedDomainName": dns_name,
                    "Port": 80,
                    "ResourcePath": "/health",
                    "RequestInterval": 10,
                    "FailureThreshold": 3,
                },
            )["HealthCheck"]["Id"]
            changes.append(
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": record,
                        "Type": "CNAME",
                        "SetIdentifier": colour,
                        "Weight": weight,
                        "TTL": self.TTL,
                        "ResourceRecords": [{"Value": dns_name}],
                        "HealthCheckId": check,
                    },
                }
            )
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
        clients = CachingClients(WeightedResolver(self.session, zone_id, record), endpoints)
        self._started(
            LoadGenerator(
                routers["blue"].url(PRODUCTION_PORT), self.request_rate, target=clients.target
            )
        )
        self.parameters = {
            "hosted_zone_id": zone_id,
            "record_name": record,
            "blue_set_identifier": "blue",
            "green_set_identifier": "green",
            "blue_target_group_arn": groups["blue"],
            "green_target_group_arn": groups["green"],
            "smoke_url": routers["green"].url(PRODUCTION_PORT) + "/",  # green's own endpoint
        }
        return self


_APP_CODE = """\
import json
import random
import time

VERSION = {version!r}
COLOUR = {colour!r}
ERROR_RATE = {error_rate!r}
ADDED_LATENCY_MS = {added_latency_ms!r}


def handler(event, context):
    time.sleep((random.uniform(2.0, 6.0) + ADDED_LATENCY_MS) / 1000)
    if random.random() < ERROR_RATE:
        raise RuntimeError("injected fault")
    return {{"statusCode": 200, "body": json.dumps({{"colour": COLOUR, "version": VERSION}})}}
"""


def _zip(source: str, name: str = "app.py") -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, source)
    return buffer.getvalue()


@register
class LambdaCodeDeployScenario(Scenario):
    """A function with two published versions and an alias on the first; CodeDeploy (Lambda)
    application and deployment group; a function URL on the alias taking the load."""

    pattern = "lambda_codedeploy"
    hook_relay = True

    def start(self) -> LambdaCodeDeployScenario:
        from .lambda_runtime import FunctionUrl

        iam, lam = self.session.client("iam"), self.session.client("lambda")
        name = f"bgkit-{self.id}"
        role = iam.create_role(
            RoleName=f"{name}-exec",
            AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}',
        )["Role"]["Arn"]
        versions = []
        for colour, version, error_rate, latency in (
            ("blue", "v1", 0.0, 0.0),
            ("green", "v2", self.green_error_rate, self.green_added_latency_ms),
        ):
            code = _zip(
                _APP_CODE.format(
                    version=version, colour=colour, error_rate=error_rate, added_latency_ms=latency
                )
            )
            if not versions:
                lam.create_function(
                    FunctionName=name,
                    Runtime="python3.11",
                    Role=role,
                    Handler="app.handler",
                    Code={"ZipFile": code},
                    Publish=False,
                )
            else:
                lam.update_function_code(FunctionName=name, ZipFile=code)
            versions.append(lam.publish_version(FunctionName=name)["Version"])
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion=versions[0])
        _codedeploy_group(
            self,
            name,
            "Lambda",
            {
                "name": "errors",
                "metric": {
                    "namespace": "AWS/Lambda",
                    "metric": "Errors",
                    "dimensions": {
                        "FunctionName": name,
                        "Resource": f"{name}:live",
                        "ExecutedVersion": versions[1],
                    },
                    "threshold": 5,
                },
            },
        )
        front = self._started(FunctionUrl(self.sandbox.lambda_runtime, name, "live"))
        self._started(LoadGenerator(front.url, self.request_rate))
        self.parameters = {
            "function_name": name,
            "alias_name": "live",
            "target_version": versions[1],
            "application_name": name,
            "deployment_group_name": f"{name}-dg",
            "hook_function_name": RELAY_FUNCTION,  # BeforeAllowTraffic holds green for the smoke test
            "smoke_url": "",
            "production_url": front.url,
        }
        return self


@register
class AsgScenario(Scenario):
    """Blue: an Auto Scaling group of three instances (launch template version 1) in blue's
    target group behind an ALB whose production listener forwards 100 % to blue and 0 % to
    green's empty target group; a test listener forwards to green's. Version 2 of the launch
    template is the release. Each instance is served by its own blue or green process, so
    boots, health checks and drains are real; the target groups check health every 5 s (two
    checks to change state) and drain for 30 s, in the scenario's compressed time."""

    pattern = "asg_swap"
    INSTANCES = 3
    BOOT_SECONDS = 30.0

    def start(self) -> AsgScenario:
        ec2, elb = self.session.client("ec2"), self.session.client("elbv2")
        autoscaling = self.session.client("autoscaling")
        runtime, scale = self.sandbox.instances, self.minute_seconds / 60
        name = f"bgkit-{self.id}"
        vpc, lb_arn = _network(self.session, name)
        subnets = [
            s["SubnetId"]
            for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        ]
        groups = {}
        for colour in ("blue", "green"):
            groups[colour] = elb.create_target_group(
                Name=f"{name}-{colour}", Protocol="HTTP", Port=80, VpcId=vpc,
                TargetType="instance", HealthCheckPath="/health", HealthCheckIntervalSeconds=5,
                HealthyThresholdCount=2, UnhealthyThresholdCount=2,
            )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
            elb.modify_target_group_attributes(
                TargetGroupArn=groups[colour],
                Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}],
            )
            runtime.manage(groups[colour], scale)
        production, _ = _listeners(self.session, lb_arn, groups, test_colour="green")
        self.images = {colour: f"ami-{uuid.uuid4().hex[:17]}" for colour in ("blue", "green")}
        runtime.serve_image(self.images["blue"], self._blue_service, self.BOOT_SECONDS * scale)
        runtime.serve_image(self.images["green"], self._green_service, self.BOOT_SECONDS * scale)
        template = ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={"ImageId": self.images["blue"], "InstanceType": "t3.micro"},
        )["LaunchTemplate"]["LaunchTemplateId"]
        ec2.create_launch_template_version(
            LaunchTemplateId=template,
            SourceVersion="1",
            VersionDescription="the release: image v2",
            LaunchTemplateData={"ImageId": self.images["green"]},
        )
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"{name}-v1",
            LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
            MinSize=self.INSTANCES,
            MaxSize=2 * self.INSTANCES,
            DesiredCapacity=self.INSTANCES,
            VPCZoneIdentifier=",".join(subnets),
            HealthCheckType="ELB",
            HealthCheckGracePeriod=60,
            TargetGroupARNs=[groups["blue"]],
        )
        _wait_healthy(
            elb, groups["blue"], self.INSTANCES, timeout=(self.BOOT_SECONDS + 60) * scale + 5
        )
        self.router = self._started(
            AlbRouter(self.session, lb_arn, resolve=runtime.address, changes=self.changes)
        )
        self._started(LoadGenerator(self.router.url(PRODUCTION_PORT), self.request_rate))
        self.parameters = {
            "listener_arn": production,
            "blue_target_group_arn": groups["blue"],
            "green_target_group_arn": groups["green"],
            "blue_asg_name": f"{name}-v1",
            "green_asg_name": f"{name}-v2",
            "launch_template_version": "2",
            "smoke_url": self.router.url(TEST_PORT) + "/",
            "production_url": self.router.url(PRODUCTION_PORT) + "/",
            "load_balancer_arn": lb_arn,
        }
        return self

    def stop(self) -> None:
        super().stop()
        for image in getattr(self, "images", {}).values():
            self.sandbox.instances.stop_image(image)  # the instances stay; their processes end


def _wait_healthy(elb: Any, target_group: str, count: int, timeout: float) -> None:
    import time

    from ..errors import SandboxError

    deadline = time.monotonic() + timeout
    while True:
        states = [
            t["TargetHealth"]["State"]
            for t in elb.describe_target_health(TargetGroupArn=target_group)[
                "TargetHealthDescriptions"
            ]
        ]
        if states.count("healthy") >= count:
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"targets of {target_group} not healthy in {timeout:g} s: {states}")
        time.sleep(0.1)
