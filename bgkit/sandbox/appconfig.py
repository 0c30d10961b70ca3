"""AWS AppConfig as the sandbox serves what moto 5.2.5 lacks: environments, deployment
strategies, deployments and the appconfigdata session API (moto serves applications,
configuration profiles and hosted configuration versions; this reads those from its backend).

Each behaviour follows the AWS page named beside it (AppConfig User Guide, "UG"; API
Reference, "API"; botocore's examples of the service, "examples"):

* Environments with monitors (API CreateEnvironment, Monitor: at most 5, AlarmArn required).
  A new environment is READY_FOR_DEPLOYMENT; it is DEPLOYING while a deployment runs or bakes,
  then READY_FOR_DEPLOYMENT, ROLLED_BACK or REVERTED as its last deployment ended.
* Deployment strategies: the predefined ones (UG "Using predefined deployment strategies";
  the AWS CLI's list-deployment-strategies example), custom ones (API CreateDeploymentStrategy:
  duration and bake 0-1440 minutes, growth factor 1-100, LINEAR by default, bake 0 by default).
* Deployments (API StartDeployment, GetDeployment, ListDeployments, StopDeployment; UG
  "Deploying a configuration"): one at a time per environment, whatever the profile (409
  ConflictException; one that bakes counts as running: UG says the bake is part of the
  deployment). Numbers count from 1 per environment; the list is newest first. The
  percentage grows as the botocore example of GetDeployment shows a real one grow: at start
  PercentageComplete is 1.0 (the shape's minimum); with N = steps to 100 % (LINEAR: 100 / G
  rounded up; EXPONENTIAL: G·2^k until 100, UG "Creating a deployment strategy"), step k is
  reached at k·D/(N+1) minutes, the bake (BAKING) starts at D and lasts FinalBakeTimeInMinutes,
  then COMPLETE. Each change is an event (newest first), worded as in that example.
* Monitors (UG "Monitoring deployments for automatic rollback"): an alarm of the environment
  in ALARM or INSUFFICIENT_DATA while a deployment runs or bakes rolls it back (ROLLING_BACK,
  then ROLLED_BACK, TriggeredBy CLOUDWATCH_ALARM). A complete deployment is not rolled back.
  The alarms' own evaluation is CloudWatch's, which moto does not do: SetAlarmState sets them.
* StopDeployment (UG "Reverting a configuration"; API StopDeployment): a running or baking
  deployment is ROLLED_BACK, with or without AllowRevert; a complete one is REVERTED with
  AllowRevert within 72 hours, else BadRequestException. Clients get the previous version.
* appconfigdata (API StartConfigurationSession, GetLatestConfiguration): a session gives a
  one-use token; each poll returns the configuration the session should have now, or an empty
  body when it has it already, and the next token. A session is a client: during a deployment
  it gets the new version when its place among clients is within PercentageComplete.

Departures, said here so nobody mistakes them for AWS's: the retrieval-time format of a
profile with multi-variant flags is Amazon Ion on AWS, read only by the AppConfig Agent; the
sandbox serves the stored JSON document to its own agent (bgkit.sandbox.appconfig_agent)
instead. Validators are not run (no VALIDATING state). Time runs on the sandbox's clock:
`minute_seconds[application id]` real seconds per AppConfig minute.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

from ..aws import AwsSession
from .http import LoopErrors

_SIGNED_FOR_APPCONFIG = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/appconfig/aws4_request")
_ID = re.compile(r"^[a-z0-9]{4,7}$")
_NAME = re.compile(r"^.{1,64}$", re.S)
REVERT_WINDOW = timedelta(hours=72)
ALARM_POLL_SECONDS = 0.5
# (duration, growth factor, growth type, bake, description): the AWS CLI's example output of
# list-deployment-strategies; Linear20PercentEvery6Minutes from UG's description of it.
PREDEFINED = {
    "AppConfig.AllAtOnce": (0, 100.0, "LINEAR", 10, "Quick"),
    "AppConfig.Linear50PercentEvery30Seconds": (1, 50.0, "LINEAR", 1, "Test/Demo"),
    "AppConfig.Canary10Percent20Minutes": (20, 10.0, "EXPONENTIAL", 10, "AWS Recommended"),
    "AppConfig.Linear20PercentEvery6Minutes": (30, 20.0, "LINEAR", 30, "AWS Recommended"),
}
RUNNING = ("DEPLOYING", "BAKING", "VALIDATING", "ROLLING_BACK")


class AppConfigError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _not_found(what: str) -> AppConfigError:
    return AppConfigError("ResourceNotFoundException", f"{what} not found", 404)


def _bad(message: str) -> AppConfigError:
    return AppConfigError("BadRequestException", message)


def steps(duration: float, factor: float, growth: str) -> list[float]:
    """The percentages a strategy reaches, in order, ending at 100."""
    if duration == 0 or factor >= 100:
        return [100.0]
    found, k = [], 0
    while not found or found[-1] < 100:
        k += 1
        value = factor * k if growth == "LINEAR" else factor * 2 ** (k - 1)
        found.append(min(100.0, value))
    return found


@dataclass
class Deployment:
    number: int
    application: str
    environment: str
    profile: str
    profile_name: str
    version: str
    previous: str | None  # the version clients had before it (None: none deployed yet)
    strategy: str
    duration: int
    factor: float
    growth: str
    bake: int
    description: str
    minute: float  # real seconds per AppConfig minute
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: str = "DEPLOYING"
    percentage: float = 1.0
    completed_at: datetime | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    rollback_done: float | None = None  # monotonic time the rollback completes
    alarms_polled: float = 0.0

    def event(self, kind: str, by: str, description: str) -> None:
        self.events.insert(
            0,
            {
                "EventType": kind,
                "TriggeredBy": by,
                "Description": description,
                "ActionInvocations": [],
                "OccurredAt": datetime.now(UTC).isoformat(),
            },
        )

    def served(self) -> tuple[str | None, str | None, float]:
        """(new version, previous version, percent of clients on the new one) as clients see it."""
        if self.state in ("ROLLED_BACK", "REVERTED", "ROLLING_BACK"):
            return self.version, self.previous, 0.0
        if self.state == "DEPLOYING":
            return self.version, self.previous, self.percentage
        return self.version, self.previous, 100.0

    def as_dict(self, summary: bool = False) -> dict[str, Any]:
        common = {
            "DeploymentNumber": self.number,
            "ConfigurationProfileId": self.profile,
            "ConfigurationName": self.profile_name,
            "ConfigurationVersion": self.version,
            "DeploymentDurationInMinutes": self.duration,
            "GrowthType": self.growth,
            "GrowthFactor": self.factor,
            "FinalBakeTimeInMinutes": self.bake,
            "State": self.state,
            "PercentageComplete": self.percentage,
            "StartedAt": self.started_at.isoformat(),
        }
        if self.completed_at is not None:
            common["CompletedAt"] = self.completed_at.isoformat()
        if summary:
            return {**common, "Type": "USER"}
        return {
            **common,
            "ApplicationId": self.application,
            "EnvironmentId": self.environment,
            "DeploymentStrategyId": self.strategy,
            "ConfigurationLocationUri": "hosted",
            "Description": self.description,
            "EventLog": self.events,
        }


@dataclass
class Session:
    application: str
    environment: str
    profile: str
    client_place: float  # where this client falls among all clients, in [0, 100)
    minimum_poll: int
    given: str | None = None  # the version it last received


class AppConfig:
    """The REST operations (matched by method and path) and the engine that moves deployments."""

    def __init__(self, session: AwsSession, tick_seconds: float = 0.05) -> None:
        self.region = session.region
        self._cloudwatch = session.client("cloudwatch")
        self._lock = threading.RLock()
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.strategies: dict[str, dict[str, Any]] = {
            sid: _strategy(sid, sid, *values) for sid, values in PREDEFINED.items()
        }
        self.deployments: dict[tuple[str, str], list[Deployment]] = {}
        self.sessions: dict[str, Session] = {}
        self.tokens: dict[str, str] = {}  # token -> session id
        self.minute_seconds: dict[str, float] = {}  # application id -> real seconds per minute
        self._stop = threading.Event()
        self._tick = tick_seconds
        self._errors = LoopErrors("AppConfig")
        self._thread = threading.Thread(target=self._run, name="bgkit-appconfig", daemon=True)

    def start(self) -> AppConfig:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- dispatch -------------------------------------------------------------------------

    _ROUTES = (
        ("GET", r"/applications/([^/]+)/environments", "list_environments"),
        ("POST", r"/applications/([^/]+)/environments", "create_environment"),
        ("GET", r"/applications/([^/]+)/environments/([^/]+)", "get_environment"),
        ("PATCH", r"/applications/([^/]+)/environments/([^/]+)", "update_environment"),
        ("GET", r"/applications/([^/]+)/environments/([^/]+)/deployments", "list_deployments"),
        ("POST", r"/applications/([^/]+)/environments/([^/]+)/deployments", "start_deployment"),
        ("GET", r"/applications/([^/]+)/environments/([^/]+)/deployments/(\d+)", "get_deployment"),
        (
            "DELETE",
            r"/applications/([^/]+)/environments/([^/]+)/deployments/(\d+)",
            "stop_deployment",
        ),
        ("GET", r"/deploymentstrategies", "list_deployment_strategies"),
        ("POST", r"/deploymentstrategies", "create_deployment_strategy"),
        ("GET", r"/deploymentstrategies/([^/]+)", "get_deployment_strategy"),
        ("POST", r"/configurationsessions", "start_configuration_session"),
        ("GET", r"/configuration", "get_latest_configuration"),
    )
    _COMPILED = [(m, re.compile(p + "$"), name) for m, p, name in _ROUTES]

    def _route(self, environ: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
        if not _SIGNED_FOR_APPCONFIG.search(environ.get("HTTP_AUTHORIZATION", "")):
            return None
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        for want, pattern, name in self._COMPILED:
            match = pattern.match(path)
            if match and want == method:
                return name, tuple(unquote(g) for g in match.groups())
        return None

    def matches(self, environ: dict[str, Any]) -> bool:
        return self._route(environ) is not None

    def respond(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        name, args = self._route(environ)  # type: ignore[misc]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        body = json.loads(raw) if raw else {}
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        try:
            with self._lock:
                answer = getattr(self, name)(*args, body=body, query=query, headers=headers)
        except AppConfigError as error:
            payload = json.dumps({"Message": error.message}).encode()
            return (
                error.status,
                [("Content-Type", "application/json"), ("x-amzn-ErrorType", error.code)],
                payload,
            )
        if isinstance(answer, tuple):  # (status, headers, raw body): the data API
            return answer
        status = {"create": 201, "start": 201, "stop": 202}.get(name.split("_")[0], 200)
        return status, [("Content-Type", "application/json")], json.dumps(answer).encode()

    # -- moto's side: applications, profiles, hosted versions -----------------------------

    def _backend(self) -> Any:
        from moto.appconfig.models import appconfig_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        return appconfig_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _application(self, identifier: str) -> Any:
        backend = self._backend()
        for app in backend.applications.values():
            if identifier in (app.id, app.name):
                return app
        raise _not_found(f"Application {identifier}")

    def _profile(self, app: Any, identifier: str) -> Any:
        for profile in app.config_profiles.values():
            if identifier in (profile.id, profile.name):
                return profile
        raise _not_found(f"Configuration profile {identifier}")

    def ids(self, application: str, environment: str, profile: str) -> tuple[str, str, str]:
        """Identifiers (ids or names, as the agent's URL and the data API take them) as ids."""
        with self._lock:
            app = self._application(application)
            return (
                app.id,
                self._environment(app.id, environment)["Id"],
                self._profile(app, profile).id,
            )

    def content(self, application: str, profile: str, version: str) -> tuple[bytes, str]:
        """A hosted version's content and content type (the agent reads it)."""
        with self._lock:
            found = self._profile(self._application(application), profile)
            hosted = found.config_versions.get(int(version))
            if hosted is None:
                raise _not_found(f"Hosted configuration version {version}")
            content = hosted.content  # moto keeps the body as text
            return (content.encode() if isinstance(content, str) else content), hosted.content_type

    # -- environments ---------------------------------------------------------------------

    def _environment(self, application: str, identifier: str) -> dict[str, Any]:
        app = self._application(application)
        for (app_id, _), env in self.environments.items():
            if app_id == app.id and identifier in (env["Id"], env["Name"]):
                return env
        raise _not_found(f"Environment {identifier}")

    def create_environment(self, application: str, *, body: dict, **_: Any) -> dict[str, Any]:
        app = self._application(application)
        name = body.get("Name", "")
        if not _NAME.fullmatch(name):
            raise _bad("Name must be 1-64 characters")
        env = {
            "ApplicationId": app.id,
            "Id": uuid.uuid4().hex[:7],
            "Name": name,
            "Description": body.get("Description", ""),
            "State": "READY_FOR_DEPLOYMENT",
            "Monitors": _monitors(body.get("Monitors") or []),
        }
        self.environments[(app.id, env["Id"])] = env
        return env

    def get_environment(self, application: str, environment: str, **_: Any) -> dict[str, Any]:
        return self._environment(application, environment)

    def update_environment(
        self, application: str, environment: str, *, body: dict, **_: Any
    ) -> dict[str, Any]:
        env = self._environment(application, environment)
        for key in ("Name", "Description"):
            if key in body:
                env[key] = body[key]
        if "Monitors" in body:
            env["Monitors"] = _monitors(body["Monitors"])
        return env

    def list_environments(self, application: str, **_: Any) -> dict[str, Any]:
        app = self._application(application)
        return {"Items": [e for (a, _), e in self.environments.items() if a == app.id]}

    # -- strategies -----------------------------------------------------------------------

    def create_deployment_strategy(self, *, body: dict, **_: Any) -> dict[str, Any]:
        name = body.get("Name", "")
        if not _NAME.fullmatch(name):
            raise _bad("Name must be 1-64 characters")
        duration, bake = (
            body.get("DeploymentDurationInMinutes"),
            body.get("FinalBakeTimeInMinutes", 0),
        )
        factor, growth = body.get("GrowthFactor"), body.get("GrowthType", "LINEAR")
        for label, value in (
            ("DeploymentDurationInMinutes", duration),
            ("FinalBakeTimeInMinutes", bake),
        ):
            if not isinstance(value, int) or not 0 <= value <= 1440:
                raise _bad(f"{label} must be 0 to 1440")
        if not isinstance(factor, int | float) or not 1.0 <= factor <= 100.0:
            raise _bad("GrowthFactor must be 1.0 to 100.0")
        if growth not in ("LINEAR", "EXPONENTIAL"):
            raise _bad("GrowthType must be LINEAR or EXPONENTIAL")
        sid = uuid.uuid4().hex[:7]
        self.strategies[sid] = _strategy(
            sid, name, duration, float(factor), growth, bake, body.get("Description", "")
        )
        return self.strategies[sid]

    def get_deployment_strategy(self, strategy: str, **_: Any) -> dict[str, Any]:
        if strategy not in self.strategies:
            raise _not_found(f"Deployment strategy {strategy}")
        return self.strategies[strategy]

    def list_deployment_strategies(self, **_: Any) -> dict[str, Any]:
        return {"Items": list(self.strategies.values())}

    # -- deployments ----------------------------------------------------------------------

    def start_deployment(
        self, application: str, environment: str, *, body: dict, **_: Any
    ) -> dict[str, Any]:
        app = self._application(application)
        env = self._environment(application, environment)
        strategy = self.strategies.get(body.get("DeploymentStrategyId", ""))
        if strategy is None:
            raise _not_found(f"Deployment strategy {body.get('DeploymentStrategyId')}")
        profile = self._profile(app, body.get("ConfigurationProfileId", ""))
        version = str(body.get("ConfigurationVersion", ""))
        if not version.isdigit() or int(version) not in profile.config_versions:
            raise _not_found(f"Hosted configuration version {version}")
        history = self.deployments.setdefault((app.id, env["Id"]), [])
        running = [d for d in history if d.state in RUNNING]
        if running:
            raise AppConfigError(
                "ConflictException",
                f"Deployment number {running[0].number} is in progress in environment "
                f"{env['Id']}; only one deployment at a time is allowed",
                409,
            )
        latest = body.get("LatestDeploymentNumber")
        if latest is not None and latest != len(history):
            raise AppConfigError(
                "ConflictException",
                f"The latest deployment number is {len(history)}, not {latest}",
                409,
            )
        deployment = Deployment(
            number=len(history) + 1,
            application=app.id,
            environment=env["Id"],
            profile=profile.id,
            profile_name=profile.name,
            version=version,
            previous=self.current_version(app.id, env["Id"], profile.id),
            strategy=strategy["Id"],
            duration=strategy["DeploymentDurationInMinutes"],
            factor=strategy["GrowthFactor"],
            growth=strategy["GrowthType"],
            bake=strategy["FinalBakeTimeInMinutes"],
            description=body.get("Description", ""),
            minute=self.minute_seconds.get(app.id, 60.0),
        )
        deployment.event("DEPLOYMENT_STARTED", "USER", "Deployment started")
        history.append(deployment)
        env["State"] = "DEPLOYING"
        self._advance(deployment, time.monotonic())
        return deployment.as_dict()

    def _deployment(self, application: str, environment: str, number: str) -> Deployment:
        app = self._application(application)
        env = self._environment(application, environment)
        history = self.deployments.get((app.id, env["Id"]), [])
        if not 1 <= int(number) <= len(history):
            raise _not_found(f"Deployment {number}")
        return history[int(number) - 1]

    def get_deployment(self, application: str, environment: str, number: str, **_: Any) -> dict:
        return self._deployment(application, environment, number).as_dict()

    def list_deployments(self, application: str, environment: str, **_: Any) -> dict[str, Any]:
        app = self._application(application)
        env = self._environment(application, environment)
        history = self.deployments.get((app.id, env["Id"]), [])
        return {"Items": [d.as_dict(summary=True) for d in reversed(history)]}

    def stop_deployment(
        self, application: str, environment: str, number: str, *, headers: dict, **_: Any
    ) -> dict[str, Any]:
        deployment = self._deployment(application, environment, number)
        allow_revert = headers.get("allow-revert", "false").lower() == "true"
        if deployment.state in ("DEPLOYING", "BAKING", "VALIDATING"):
            self._roll_back(deployment, "USER", "Rollback initiated by the user")
        elif deployment.state == "COMPLETE":
            completed = deployment.completed_at or deployment.started_at
            if not allow_revert:
                raise _bad("This deployment is complete; set AllowRevert to revert it")
            if datetime.now(UTC) - completed > REVERT_WINDOW:
                raise _bad("A deployment can be reverted only within 72 hours of completing")
            deployment.state = "REVERTED"
            deployment.event("REVERT_COMPLETED", "USER", "Deployment reverted by the user")
            self.environments[(deployment.application, deployment.environment)]["State"] = (
                "REVERTED"
            )
        elif deployment.state != "ROLLING_BACK":
            raise _bad(f"Deployment {deployment.number} is {deployment.state}")
        return deployment.as_dict()

    def _roll_back(self, deployment: Deployment, by: str, description: str) -> None:
        deployment.state = "ROLLING_BACK"
        deployment.event("ROLLBACK_STARTED", by, description)
        deployment.rollback_done = time.monotonic() + 0.2
        self.environments[(deployment.application, deployment.environment)]["State"] = (
            "ROLLING_BACK"
        )

    def current_version(self, application: str, environment: str, profile: str) -> str | None:
        """The version of `profile` that every client of the environment has (the last
        deployment of it that completed, or whose previous one if it was rolled back)."""
        with self._lock:
            for d in reversed(self.deployments.get((application, environment), [])):
                if d.profile != profile:
                    continue
                if d.state in ("COMPLETE", "BAKING"):
                    return d.version
                if d.state in ("ROLLED_BACK", "REVERTED", "ROLLING_BACK", "DEPLOYING"):
                    return d.previous
            return None

    def rollout(
        self, application: str, environment: str, profile: str
    ) -> tuple[str | None, str | None, float]:
        """(new version, previous version, percent of clients on the new one) of the profile's
        last deployment in the environment; (None, None, 0) before any."""
        with self._lock:
            for d in reversed(self.deployments.get((application, environment), [])):
                if d.profile == profile:
                    return d.served()
            return None, None, 0.0

    # -- the engine ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                with self._lock:
                    active = [d for h in self.deployments.values() for d in h if d.state in RUNNING]
                now = time.monotonic()
                for deployment in active:
                    if deployment.state in ("DEPLOYING", "BAKING") and self._alarmed(
                        deployment, now
                    ):
                        continue
                    with self._lock:
                        self._advance(deployment, now)
            except Exception as error:  # a loop that dies would freeze every deployment
                self._errors("deployments", error)

    def _advance(self, d: Deployment, now: float) -> None:
        env = self.environments[(d.application, d.environment)]
        if d.state == "ROLLING_BACK":
            if d.rollback_done is not None and now >= d.rollback_done:
                d.state = "ROLLED_BACK"
                d.event("ROLLBACK_COMPLETED", d.events[0]["TriggeredBy"], "Rollback completed")
                env["State"] = "ROLLED_BACK"
            return
        minutes = (now - d.started) / d.minute if d.minute > 0 else float("inf")
        if d.state == "DEPLOYING":
            reached = steps(d.duration, d.factor, d.growth)
            spacing = d.duration / (len(reached) + 1)
            done = len(reached) if spacing == 0 else min(len(reached), int(minutes / spacing))
            if done and reached[done - 1] > d.percentage:
                d.percentage = reached[done - 1]
                d.event(
                    "PERCENTAGE_UPDATED",
                    "APPCONFIG",
                    f"Configuration available to {d.percentage:.2f}% of clients",
                )
            if minutes >= d.duration and d.percentage >= 100:
                d.state = "BAKING"
                d.event("BAKE_TIME_STARTED", "APPCONFIG", "Deployment bake time started")
        if d.state == "BAKING" and minutes >= d.duration + d.bake:
            d.state = "COMPLETE"
            d.completed_at = datetime.now(UTC)
            d.event("DEPLOYMENT_COMPLETED", "APPCONFIG", "Deployment completed")
            env["State"] = "READY_FOR_DEPLOYMENT"

    def _alarmed(self, d: Deployment, now: float) -> bool:
        """Poll the environment's monitors; roll the deployment back if one is not OK."""
        if now - d.alarms_polled < ALARM_POLL_SECONDS:
            return False
        d.alarms_polled = now
        monitors = self.environments[(d.application, d.environment)]["Monitors"]
        if not monitors:
            return False
        names = [m["AlarmArn"].split(":alarm:", 1)[-1] for m in monitors]
        found = self._cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
        firing = [a for a in found if a["StateValue"] in ("ALARM", "INSUFFICIENT_DATA")]
        if not firing:
            return False
        with self._lock:
            if d.state in ("DEPLOYING", "BAKING"):
                self._roll_back(
                    d, "CLOUDWATCH_ALARM", f"Rollback initiated by alarm {firing[0]['AlarmArn']}"
                )
        return True

    # -- appconfigdata ----------------------------------------------------------------------

    def start_configuration_session(self, *, body: dict, **_: Any) -> dict[str, Any]:
        app = self._application(body.get("ApplicationIdentifier", ""))
        env = self._environment(app.id, body.get("EnvironmentIdentifier", ""))
        profile = self._profile(app, body.get("ConfigurationProfileIdentifier", ""))
        poll = body.get("RequiredMinimumPollIntervalInSeconds", 15)
        if not isinstance(poll, int) or not 15 <= poll <= 86400:
            raise _bad("RequiredMinimumPollIntervalInSeconds must be 15 to 86400")
        session_id = uuid.uuid4().hex
        place = (
            int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big") / 2**64 * 100
        )
        self.sessions[session_id] = Session(app.id, env["Id"], profile.id, place, poll)
        return {"InitialConfigurationToken": self._token(session_id)}

    def _token(self, session_id: str) -> str:
        token = uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens[token] = session_id
        return token

    def get_latest_configuration(self, *, query: dict, **_: Any) -> tuple[int, list, bytes]:
        session_id = self.tokens.pop(query.get("configuration_token", ""), None)
        if session_id is None:  # each token serves one call (API GetLatestConfiguration)
            raise _bad("The configuration token is not valid or was used already")
        session = self.sessions[session_id]
        new, previous, percent = self.rollout(
            session.application, session.environment, session.profile
        )
        version = new if new is not None and session.client_place < percent else previous
        headers = [
            ("Next-Poll-Configuration-Token", self._token(session_id)),
            ("Next-Poll-Interval-In-Seconds", str(session.minimum_poll)),
        ]
        if version is None or version == session.given:
            return 200, [*headers, ("Content-Type", "application/octet-stream")], b""
        content, content_type = self.content(session.application, session.profile, version)
        session.given = version
        label = self._version_label(session, version)
        return 200, [*headers, ("Content-Type", content_type), ("Version-Label", label)], content

    def _version_label(self, session: Session, version: str) -> str:
        app = self._application(session.application)
        hosted = self._profile(app, session.profile).config_versions[int(version)]
        return hosted.version_label or ""


def _strategy(
    sid: str, name: str, duration: int, factor: float, growth: str, bake: int, description: str
) -> dict[str, Any]:
    return {
        "Id": sid,
        "Name": name,
        "Description": description,
        "DeploymentDurationInMinutes": duration,
        "GrowthType": growth,
        "GrowthFactor": factor,
        "FinalBakeTimeInMinutes": bake,
        "ReplicateTo": "NONE",
    }


def _monitors(monitors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(monitors) > 5:
        raise _bad("An environment has at most 5 monitors")
    for monitor in monitors:
        if not monitor.get("AlarmArn"):
            raise _bad("A monitor needs an AlarmArn")
    return [dict(m) for m in monitors]


def valid_strategy_id(value: str) -> bool:
    """StartDeployment's DeploymentStrategyId pattern (botocore's model of the API)."""
    return bool(_ID.fullmatch(value) or re.fullmatch(r"AppConfig\.[A-Za-z0-9]{9,40}", value))
