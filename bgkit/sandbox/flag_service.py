"""The feature_flag scenario: one service whose requests take the `on` or `off` code path by a
flag it evaluates through the AppConfig Agent, per user.

Blue and green are one service here, as with a real flag: each request names its user
(`X-User-Id`), the service resolves the flag with OpenFeature (bgkit.flags.openfeature: the
agent asked with `Context: userId=<user>` and `Entity-Id: <user>`), and serves the variant it
gets. `on` is green (the scenario's
`green_error_rate` and `green_added_latency_ms` apply to it), `off` is blue. Every request is
counted in CloudWatch by flag and variant (bgkit.flags.metrics), the evidence bgkit judges,
and the variant is in the response's `X-Flag-Variant` header.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from ..flags.document import dumps
from ..flags.metrics import VariantMetrics
from ..flags.openfeature import AppConfigAgentProvider, VariantHook, variant_of
from ..flags.rules import split_rule
from .http import KeepAliveHandler, LoopbackServer, LoopErrors, each_second
from .loadgen import LoadGenerator
from .scenarios import Scenario, register

FLAG = "new_checkout"
NAMESPACE = "bgkit/Sandbox/FeatureFlags"
USER_HEADER = "X-User-Id"
USERS = 100_000  # the load generator's users, drawn at random per request


def initial_document() -> dict[str, Any]:
    """The flag as a team would have it before its release: defined, `off` for everyone."""
    return {
        "version": "1",
        "flags": {
            FLAG: {
                "name": "New checkout",
                "attributes": {"steps": {"constraints": {"type": "number"}}},
            }
        },
        "values": {
            FLAG: {
                "enabled": True,
                "_variants": [
                    {
                        "name": "on",
                        "enabled": True,
                        "rule": split_rule(0, "userId"),
                        "attributeValues": {"steps": 1},
                    },
                    {"name": "off", "enabled": False, "attributeValues": {"steps": 3}},
                ],
            }
        },
    }


class FlagService:
    def __init__(
        self,
        agent_url: str,
        path: str,
        flag: str,
        metrics: VariantMetrics,
        *,
        error_rate: float = 0.0,
        added_latency_ms: float = 0.0,
        work_ms: tuple[float, float] = (2.0, 6.0),
    ) -> None:
        self.flag, self.metrics = flag, metrics
        # one OpenFeature domain per service: scenarios of one sandbox have agents of their own
        domain = f"bgkit-sandbox-{uuid.uuid4().hex[:8]}"
        _, app, _, env, _, profile = path.strip("/").split("/")
        api.set_provider(AppConfigAgentProvider(agent_url, app, env, profile), domain=domain)
        self._client = api.get_client(domain)
        self._client.add_hooks([VariantHook()])
        self.error_rate, self.added_latency_ms, self.work_ms = error_rate, added_latency_ms, work_ms
        self._random = random.Random()
        self._server = LoopbackServer(self._handler(), name="bgkit-flag-service")
        self._stop = threading.Event()
        self._publisher = threading.Thread(
            target=lambda: each_second(self._stop, LoopErrors("flag service"), metrics.publish),
            name="bgkit-flag-metrics",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> FlagService:
        self._server.start()
        self._publisher.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._stop.set()
        if self._publisher.is_alive():
            self._publisher.join(timeout=5)
        self.metrics.publish(flush_all=True)

    def variant(self, user: str) -> str:
        """The flag's variant for `user`, resolved through the agent by the OpenFeature
        provider (bgkit.flags.openfeature) and kept by its hook for this request's metrics."""
        details = self._client.get_boolean_details(
            self.flag, False, EvaluationContext(targeting_key=user)
        )
        if details.error_code is not None:  # the SDK served the default: say why, as a 502
            raise RuntimeError(f"{details.error_code}: {details.error_message}")
        return variant_of(self.flag)

    def _handler(self) -> type[KeepAliveHandler]:
        service = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/health":
                    self.reply(200, b'{"status": "ok"}')
                    return
                started = time.perf_counter()
                user = self.headers.get(USER_HEADER) or f"anonymous-{uuid.uuid4().hex[:8]}"
                try:
                    variant = service.variant(user)
                except Exception as error:  # no flag, no answer: the service says so (502)
                    self.reply(502, json.dumps({"error": str(error)}).encode())
                    return
                low, high = service.work_ms
                extra = service.added_latency_ms if variant == "on" else 0.0
                time.sleep((service._random.uniform(low, high) + extra) / 1000)
                failed = variant == "on" and service._random.random() < service.error_rate
                status = 500 if failed else 200
                body = {"variant": variant} if not failed else {"error": "injected fault"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Flag-Variant", variant)
                self.end_headers()
                self.wfile.write(data)
                service.metrics.observe(variant, status, 1000 * (time.perf_counter() - started))

        return Handler


@register
class FeatureFlagScenario(Scenario):
    """An AppConfig application with a feature-flag profile whose flag `new_checkout` has an
    `on` and an `off` variant, deployed `off` for everyone to environment `production` (whose
    monitor is an alarm on `on`'s errors); a step strategy with no bake for bgkit's steps; the
    agent, the service and the load of users."""

    pattern = "feature_flag"

    def start(self) -> FeatureFlagScenario:
        from .appconfig_agent import AppConfigAgent

        appconfig = self.session.client("appconfig")
        name = f"bgkit-shop-{self.id}"
        app = appconfig.create_application(Name=name)["Id"]
        self.sandbox.appconfig.minute_seconds[app] = self.minute_seconds
        profile = appconfig.create_configuration_profile(
            ApplicationId=app, Name="flags", LocationUri="hosted", Type="AWS.AppConfig.FeatureFlags"
        )["Id"]
        version = appconfig.create_hosted_configuration_version(
            ApplicationId=app,
            ConfigurationProfileId=profile,
            Content=dumps(initial_document()),
            ContentType="application/json",
        )["VersionNumber"]
        alarm = f"{name}-on-errors"
        cloudwatch = self.session.client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName=alarm,
            Namespace=NAMESPACE,
            MetricName="Errors",
            Dimensions=[{"Name": "Flag", "Value": FLAG}, {"Name": "Variant", "Value": "on"}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=50,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
        )
        alarm_arn = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["AlarmArn"]
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="sandbox start")
        environment = appconfig.create_environment(
            ApplicationId=app, Name="production", Monitors=[{"AlarmArn": alarm_arn}]
        )["Id"]
        steps = appconfig.create_deployment_strategy(
            Name=f"{name}-steps",
            Description="bgkit's steps: every client at once, no bake (bgkit's judge bakes)",
            DeploymentDurationInMinutes=0,
            FinalBakeTimeInMinutes=0,
            GrowthFactor=100.0,
            GrowthType="LINEAR",
        )["Id"]
        appconfig.start_deployment(
            ApplicationId=app,
            EnvironmentId=environment,
            DeploymentStrategyId=steps,
            ConfigurationProfileId=profile,
            ConfigurationVersion=str(version),
            Description="the flag as it is before the release: off for everyone",
        )
        agent = self.agent = self._started(
            AppConfigAgent(self.session, self.sandbox.appconfig, poll_seconds=1.0)
        )
        path = f"/applications/{app}/environments/{environment}/configurations/{profile}"
        agent.prefetch(app, environment, profile)
        metrics = VariantMetrics(cloudwatch, NAMESPACE, FLAG)
        service = self._started(
            FlagService(
                agent.url,
                path,
                FLAG,
                metrics,
                error_rate=self.green_error_rate,
                added_latency_ms=self.green_added_latency_ms,
            )
        )
        users = random.Random()
        self._started(
            LoadGenerator(
                service.url,
                self.request_rate,
                headers=lambda index: {USER_HEADER: f"user-{users.randrange(USERS)}"},
            )
        )
        self.parameters = {
            "application_id": app,
            "environment_id": environment,
            "configuration_profile_id": profile,
            "flag_key": FLAG,
            "step_strategy": steps,
            "metric_namespace": NAMESPACE,
            "agent_poll_seconds": "1",
            "smoke_url": service.url + "/checkout",
            "production_url": service.url,
            "alarm_name": alarm,
        }
        return self
