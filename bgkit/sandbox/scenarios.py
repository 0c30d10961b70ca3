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

    def __init__(
        self,
        session: AwsSession,
        *,
        green_error_rate: float = 0.0,
        green_added_latency_ms: float = 0.0,
        request_rate: float = 50.0,
    ) -> None:
        self.session = session
        self.id = uuid.uuid4().hex[:8]
        self.green_error_rate = green_error_rate
        self.green_added_latency_ms = green_added_latency_ms
        self.request_rate = request_rate
        self.parameters: dict[str, Any] = {}
        self._stoppables: list[Any] = []

    def start(self) -> Scenario:
        raise NotImplementedError

    def stop(self) -> None:
        # Clients first, then servers: so no keep-alive connection holds a handler thread.
        while self._stoppables:
            self._stoppables.pop().stop()

    def _started(self, thing: Any) -> Any:
        self._stoppables.append(thing)
        return thing.start()


@register
class AlbScenario(Scenario):
    """An ALB whose production listener forwards 100 % to blue; a test listener forwards to green."""

    pattern = "alb_weighted"

    def start(self) -> AlbScenario:
        ec2, elb = self.session.client("ec2"), self.session.client("elbv2")
        name = f"bgkit-{self.id}"
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{self.session.region}{z}"
            )["Subnet"]["SubnetId"]
            for i, z in enumerate("ab")
        ]
        lb = elb.create_load_balancer(
            Name=name, Subnets=subnets, Type="application", Scheme="internal"
        )
        lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        # Servers start before anything routes to them; they stop last (registered first).
        blue = self._started(ColourService("blue", "v1"))
        green = self._started(
            ColourService(
                "green",
                "v2",
                error_rate=self.green_error_rate,
                added_latency_ms=self.green_added_latency_ms,
            )
        )
        groups = {}
        for colour, service in (("blue", blue), ("green", green)):
            group = elb.create_target_group(
                Name=f"{name}-{colour}",
                Protocol="HTTP",
                Port=80,
                VpcId=vpc,
                TargetType="ip",
                HealthCheckPath="/health",
            )["TargetGroups"][0]["TargetGroupArn"]
            # The target is the service's real loopback address; the router connects to it.
            elb.register_targets(
                TargetGroupArn=group, Targets=[{"Id": "127.0.0.1", "Port": service.port}]
            )
            groups[colour] = group
        production = elb.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTP",
            Port=PRODUCTION_PORT,
            DefaultActions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": groups["blue"], "Weight": 100},
                            {"TargetGroupArn": groups["green"], "Weight": 0},
                        ]
                    },
                }
            ],
        )["Listeners"][0]["ListenerArn"]
        elb.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTP",
            Port=TEST_PORT,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["green"]}],
        )
        router = self._started(AlbRouter(self.session, lb_arn))
        self._started(LoadGenerator(router.url(PRODUCTION_PORT), self.request_rate))
        self.router = router
        self.parameters = {
            "listener_arn": production,
            "blue_target_group_arn": groups["blue"],
            "green_target_group_arn": groups["green"],
            "smoke_url": router.url(TEST_PORT) + "/health",
            "production_url": router.url(PRODUCTION_PORT) + "/",
            "load_balancer_arn": lb_arn,
        }
        return self
