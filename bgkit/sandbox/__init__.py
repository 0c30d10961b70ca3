"""The embedded sandbox: AWS's control plane (moto, gaps filled) and a real data plane on loopback.

    sandbox = Sandbox().start()
    scenario = sandbox.provision("alb_weighted", green_error_rate=0.2)
    ... boto3 clients with sandbox.session() see the scenario's resources ...
    sandbox.stop()          # every thread, server and port it started is gone

A sandbox can also serve a small admin API (`serve_admin()`), so that a runbook's kernel
uses a sandbox that lives in another process (tests, a shared sandbox) through
``BGKIT_SANDBOX_URL``.
"""

from __future__ import annotations

import threading
from typing import Any

from ..aws import VERSION, AwsSession, release_agent
from ..errors import SandboxError
from .calls import Call, CallLog, Fault
from .control import ControlPlane
from .scenarios import SCENARIOS, Scenario, install_hook_relay

# Throwaway credentials: moto accepts any; they are not secrets and reach no AWS account.
SANDBOX_ACCESS_KEY_ID = "sandbox"
SANDBOX_SECRET_ACCESS_KEY = "sandbox"
SANDBOX_REGION = "us-east-1"


class Sandbox:
    def __init__(self, region: str = SANDBOX_REGION) -> None:
        self.region = region
        self._control = ControlPlane()
        self._scenarios: dict[str, Scenario] = {}
        self._by_release: dict[tuple[str, str], str] = {}  # (pattern, release) -> scenario id
        self._lock = threading.Lock()
        self._admin: Any = None
        from .database import Databases

        self.databases = Databases()  # started with the first scenario that has a database

    def start(self) -> Sandbox:
        try:
            self._start()
        except BaseException:
            self.stop()  # nothing half-started is left running
            raise
        return self

    def _start(self) -> None:
        from . import apigateway, flag_service  # noqa: F401 (their scenarios register themselves)
        from .appconfig import AppConfig
        from .apprunner import AppRunner  # its scenario registers itself
        from .codedeploy import CodeDeploy
        from .ecs_native import EcsServiceDeployments
        from .instances import InstanceRuntime
        from .lambda_runtime import LambdaInvoke, LocalLambda

        self._control.start()  # API Gateway's canary model: on its first call (control.py)
        self._create_lock_table()
        self.instances = InstanceRuntime(self.session(), changes=self.calls.changes).start()
        self.lambda_runtime = LocalLambda(self.session()).start()
        self.codedeploy = CodeDeploy(self.session(), self.lambda_runtime).start()
        self.ecs = EcsServiceDeployments(self.session(), self.lambda_runtime).start()
        self.apprunner = AppRunner(self.session()).start()
        self.appconfig = AppConfig(self.session()).start()
        self._control.extensions.extend(
            [
                self.codedeploy,
                self.ecs,
                self.apprunner,
                self.appconfig,
                LambdaInvoke(self.lambda_runtime),
            ]
        )

    def _create_lock_table(self) -> None:
        """One release per target: the lock table a user creates once per account (bgkit.lock).
        moto's backends live as long as the process, so a second sandbox in it finds the table."""
        dynamodb = self.session().client("dynamodb")
        try:
            dynamodb.create_table(
                TableName="bgkit-locks",
                AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except dynamodb.exceptions.ResourceInUseException:
            return  # made by an earlier sandbox of this process

    @property
    def endpoint_url(self) -> str:
        return self._control.endpoint_url

    def session(self, runbook: str | None = None) -> AwsSession:
        """boto3 clients on the sandbox; with `runbook`, their calls are logged as that
        runbook's release makes them (see calls.py), else as the sandbox's own."""
        return AwsSession(
            self.region,
            endpoint_url=self.endpoint_url,
            access_key_id=SANDBOX_ACCESS_KEY_ID,
            secret_access_key=SANDBOX_SECRET_ACCESS_KEY,
            agent=release_agent(runbook) if runbook else f"bgkit-sandbox/{VERSION}",
        )

    @property
    def calls(self) -> CallLog:
        """What releases asked the control plane (`calls.calls()`), and faults to inject."""
        return self._control.calls

    def provision(
        self, pattern: str, *, database: bool = False, release: str = "", **options: Any
    ) -> Scenario:
        """A scenario of `pattern`; with `database`, its colours use a real PostgreSQL database
        of their own (bgkit.sandbox.database), whose URL is in its parameters. With `release`,
        the scenario already provisioned for that release of the pattern, while it runs: a
        plan and the release that follows it see one target (bgkit.planning)."""
        with self._lock:
            kept = self._scenarios.get(self._by_release.get((pattern, release), ""))
        if release and kept is not None:
            return kept
        try:
            scenario_class = SCENARIOS[pattern]
        except KeyError:
            raise SandboxError(f"the sandbox has no scenario for pattern {pattern!r}") from None
        if scenario_class.hook_relay:  # its CodeDeploy hooks go through it; made once (0.7 s)
            install_hook_relay(self.session())
        scenario = scenario_class(self.session(), sandbox=self, **options)
        try:
            if database:
                scenario.database_url = self.databases.create(f"shop_{scenario.id}")
            scenario.start()
            if database:
                scenario.parameters["database_url"] = scenario.database_url
        except Exception:
            scenario.stop()
            raise
        with self._lock:
            self._scenarios[scenario.id] = scenario
            if release:
                self._by_release[(pattern, release)] = scenario.id
        return scenario

    def release_scenario(self, scenario_id: str) -> bool:
        with self._lock:
            scenario = self._scenarios.pop(scenario_id, None)
        if scenario is not None:
            scenario.stop()
        return scenario is not None

    def serve_admin(self) -> str:
        from .admin import AdminServer

        self._admin = AdminServer(self).start()
        return self._admin.url

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        for scenario_id in list(self._scenarios):
            self.release_scenario(scenario_id)
        self.databases.stop()
        for engine in (
            "appconfig",
            "apprunner",
            "codedeploy",
            "ecs",
            "lambda_runtime",
            "instances",
        ):
            if getattr(self, engine, None) is not None:
                getattr(self, engine).stop()
                setattr(self, engine, None)
        self._control.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "SANDBOX_ACCESS_KEY_ID",
    "SANDBOX_REGION",
    "SANDBOX_SECRET_ACCESS_KEY",
    "Call",
    "Fault",
    "Sandbox",
    "Scenario",
]
