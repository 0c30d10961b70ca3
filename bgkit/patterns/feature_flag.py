"""AWS AppConfig feature flag: new code turned on for a growing share of users, judged like a canary.

The flag (in a configuration profile of type `AWS.AppConfig.FeatureFlags`) has two variants,
`on` (green: the new code path) and `off` (blue, the default). Before the release it is `off`
for everyone. Two ways to move it, chosen by the release's `plan`:

* bgkit's steps (`linear`, `canary`, explicit percentages): each step writes a new hosted
  configuration version whose `on` rule is `(split by::$userId pct::N seed::"<release>")` and
  deploys it with `step_strategy` (every client at once). The split is nested: users who got
  `on` at 10 % keep it at 25 %. The judge gates each step.
* AppConfig's strategy (`plan` = a deployment strategy id, e.g.
  `AppConfig.Linear20PercentEvery6Minutes` or a custom one's id): bgkit writes one version
  with `on` for every user and AppConfig deploys it to a growing share of clients (with
  entity-based gradual deployment in the agent, a growing share of users); bgkit watches
  GetDeployment and judges while it moves, like the CodeDeploy runbooks.

Before either, green's smoke test: a version whose `on` rule is `(eq $userId "<smoke_user>")`,
so the smoke test's requests (which carry that user in `user_header`) take the new path and
nobody else does. Rollback (UG "Reverting a configuration"; API StopDeployment): stop the
deployment in flight (AllowRevert once it is complete), then deploy the version that was live
before the release, read back as `off` for everyone.

Evidence: the service's own per-variant metrics (bgkit.flags.metrics: `Requests`, `Errors`,
`Latency` with dimensions `Flag` and `Variant`). Since the service splits requests itself,
each verdict also checks that `on` got the share it was configured to get
(bgkit.sample_ratio).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import DeploymentStopped, ParameterError, PreflightError, TrafficError
from ..flags import document as flagdoc
from ..flags.rules import split_rule
from ..metrics import MetricSource
from ..params import regex_checker
from ..planning import Change, Item, Wait, later
from . import register
from .base import Progress, ServicePlan, Split

_APP_ID = re.compile(r"^[a-z0-9]{4,7}$")
_STRATEGY = re.compile(r"^([a-z0-9]{4,7}|AppConfig\.[A-Za-z0-9]{9,40})$")
_FLAG = re.compile(r"^[a-z][a-zA-Z\d_-]{0,63}$")  # UG, type reference: a flag's key
_CONTEXT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9./#:_ -]{1,255}$")  # CloudWatch: no leading colon
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SMOKE_USER = re.compile(r"^[A-Za-z0-9@._:-]{1,128}$")
FEATURE_FLAGS = "AWS.AppConfig.FeatureFlags"
RUNNING = ("DEPLOYING", "BAKING", "VALIDATING", "ROLLING_BACK")
STOPPED = ("ROLLED_BACK", "REVERTED", "ROLLING_BACK")
IN_FLIGHT = ("DEPLOYING", "BAKING", "VALIDATING")  # what a rollback stops first
NEW_VERSION = later("the new version's number")
SMOKE = "on for the smoke test's user only"
APPLY_WAIT_SECONDS = 600.0  # a step strategy's deployment reaches every client in this time


def _seconds(name: str, value: str) -> None:
    try:
        ok = 0 <= float(value) <= 3600
    except ValueError:
        ok = False
    if not ok:
        raise ParameterError(name, "must be a number of seconds from 0 to 3600", value)


def _optional(check: Callable[[str, str], None]) -> Callable[[str, str], None]:
    """A parameter with a default (said in the runbook): not required on AWS."""
    check.optional = True  # type: ignore[attr-defined]
    return check


@register
class FeatureFlag:
    name: ClassVar[str] = "feature_flag"
    title: ClassVar[str] = "AWS AppConfig feature flag (on/off variants)"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        "appconfig:CreateHostedConfigurationVersion",
        "appconfig:GetConfigurationProfile",
        "appconfig:GetDeployment",
        "appconfig:GetDeploymentStrategy",
        "appconfig:GetEnvironment",
        "appconfig:GetHostedConfigurationVersion",
        "appconfig:ListDeployments",
        "appconfig:StartDeployment",
        "appconfig:StopDeployment",
        "cloudwatch:DescribeAlarms",
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "application_id": regex_checker(_APP_ID, "must be an AppConfig application id (4-7 lower-case letters or digits)"),
        "environment_id": regex_checker(_APP_ID, "must be an AppConfig environment id (4-7 lower-case letters or digits)"),
        "configuration_profile_id": regex_checker(_APP_ID, "must be a configuration profile id (4-7 lower-case letters or digits)"),
        "flag_key": regex_checker(_FLAG, "must be a flag key: a lower-case letter, then up to 63 letters, digits, _ or -"),
        "step_strategy": _optional(regex_checker(_STRATEGY, "must be a deployment strategy id: AppConfig.AllAtOnce or a custom strategy's id")),
        "split_by": _optional(regex_checker(_CONTEXT_KEY, "must be a context key such as userId")),
        "metric_namespace": _optional(regex_checker(_NAMESPACE, "must be a CloudWatch namespace such as MyShop/Flags")),
        "user_header": _optional(regex_checker(_HEADER, "must be an HTTP header name such as X-User-Id")),
        "smoke_user": _optional(regex_checker(_SMOKE_USER, "must be a user id: 1-128 letters, digits, @ . _ : -")),
        "agent_poll_seconds": _optional(_seconds),
    }  # fmt: skip
    service_plan: ClassVar[ServicePlan] = ServicePlan(
        check=lambda plan: bool(_STRATEGY.fullmatch(plan)),
        allowed="an AppConfig deployment strategy id (AppConfig.Linear20PercentEvery6Minutes, "
        "or a custom strategy's id) for AppConfig to move the flag",
    )
    checks_sample_ratio: ClassVar[bool] = True
    effective_after: ClassVar[str] = "poll interval of the agents"

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._appconfig = session.client("appconfig")
        self._cloudwatch = session.client("cloudwatch")
        self.application = resources["application_id"]
        self.environment = resources["environment_id"]
        self.profile = resources["configuration_profile_id"]
        self.flag = resources["flag_key"]
        self.step_strategy = resources.get("step_strategy") or "AppConfig.AllAtOnce"
        self.split_by = resources.get("split_by") or "userId"
        self.namespace = resources.get("metric_namespace") or "bgkit/FeatureFlags"
        self.user_header = resources.get("user_header") or "X-User-Id"
        self.smoke_user = resources.get("smoke_user") or "bgkit-smoke-test"
        self.agent_poll_seconds = float(resources.get("agent_poll_seconds") or 45)
        self.strategy = resources.get("service_plan") or ""  # AppConfig moves it (managed)
        self.managed = bool(self.strategy)
        self.ready_wait = True  # the smoke version waits for the smoke test
        self.judge_seconds = 0.0  # set by the release
        # state (kept with the lock, see base.checkpoint)
        self.live_version: str | None = None  # `off` for everyone, before the release
        self.seed = ""  # the release id: the split's seed, so steps are nested
        self.smoke_number: int | None = None  # the smoke version's deployment
        self.main_number: int | None = None  # the deployment of the current step or strategy
        self.smoke_ready_at: str | None = None  # when the agent had the smoke version (ISO)
        self._documents: dict[str, dict[str, Any]] = {}

    def target_id(self) -> str:
        # AppConfig runs one deployment at a time per environment, whatever the profile
        return f"appconfig:{self.application}/{self.environment}"

    # -- reads ---------------------------------------------------------------------------

    def _call(self, parameter: str, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ClientError as error:
            if error.response["Error"]["Code"] in (
                "ResourceNotFoundException",
                "NotFoundException",
            ):
                raise PreflightError(f"{what} does not exist", parameter=parameter) from None
            raise

    def _deployments(self) -> list[dict[str, Any]]:
        """The environment's deployments, newest first."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs = {"NextToken": token} if token else {}
            page = self._appconfig.list_deployments(
                ApplicationId=self.application, EnvironmentId=self.environment, **kwargs
            )
            items.extend(page["Items"])
            token = page.get("NextToken")
            if not token:
                return items

    def _deployment(self, number: int) -> dict[str, Any]:
        return self._appconfig.get_deployment(
            ApplicationId=self.application, EnvironmentId=self.environment, DeploymentNumber=number
        )

    def _document(self, version: str) -> dict[str, Any]:
        if version not in self._documents:
            answer = self._appconfig.get_hosted_configuration_version(
                ApplicationId=self.application,
                ConfigurationProfileId=self.profile,
                VersionNumber=int(version),
            )
            self._documents[version] = flagdoc.load(answer["Content"].read())
        return self._documents[version]

    def _live_before(self, items: list[dict[str, Any]]) -> str | None:
        """The profile's version every client had after the newest finished deployment in
        `items` (newest first): a complete one's, or for a stopped one, the one before it."""
        reverted = 0
        for item in items:
            if item["ConfigurationProfileId"] != self.profile or item["State"] in RUNNING:
                continue
            if item["State"] == "ROLLED_BACK":
                continue
            if item["State"] == "REVERTED":
                reverted += 1
                continue
            if reverted:
                reverted -= 1
                continue
            return str(item["ConfigurationVersion"])
        return None

    def _share(self, version: str | None) -> float:
        if version is None:
            return 0.0
        share = flagdoc.on_share(self._document(version), self.flag, self.split_by)
        if share is None:
            raise TrafficError(
                f"version {version} of the profile has a rule bgkit cannot put a share on for "
                f"flag {self.flag!r}"
            )
        return share

    def read_split(self) -> Split:
        """The share of users `on`, as AppConfig has it deployed now: the newest deployment of
        the profile, its new version's share for its PercentageComplete of clients and the
        previous version's for the rest (0 % once stopped)."""
        items = [i for i in self._deployments() if i["ConfigurationProfileId"] == self.profile]
        if not items:
            return {"blue": 100, "green": 0}
        newest = items[0]
        before = self._live_before(items[1:])
        if newest["State"] in STOPPED:
            share = self._share(before)
        elif newest["State"] == "DEPLOYING":
            percent = float(newest.get("PercentageComplete") or 0)
            new = self._share(str(newest["ConfigurationVersion"]))
            share = percent / 100 * new + (1 - percent / 100) * self._share(before)
        else:
            share = self._share(str(newest["ConfigurationVersion"]))
        green = round(share)
        green = min(max(green, 1 if share > 0 else 0), 99 if share < 100 else 100)
        return {"blue": 100 - green, "green": green}

    def preflight(self) -> Split:
        profile = self._call(
            "configuration_profile_id",
            f"configuration profile {self.profile} of application {self.application}",
            lambda: self._appconfig.get_configuration_profile(
                ApplicationId=self.application, ConfigurationProfileId=self.profile
            ),
        )
        if profile.get("Type") != FEATURE_FLAGS:
            raise PreflightError(
                f"configuration profile {profile.get('Name', self.profile)!r} is of type "
                f"{profile.get('Type') or 'freeform'}, not {FEATURE_FLAGS}",
                parameter="configuration_profile_id",
            )
        environment = self._call(
            "environment_id",
            f"environment {self.environment} of application {self.application}",
            lambda: self._appconfig.get_environment(
                ApplicationId=self.application, EnvironmentId=self.environment
            ),
        )
        for strategy, parameter in ((self.step_strategy, "step_strategy"), (self.strategy, "plan")):
            if strategy:
                self._call(
                    parameter,
                    f"deployment strategy {strategy}",
                    lambda s=strategy: self._appconfig.get_deployment_strategy(
                        DeploymentStrategyId=s
                    ),
                )
        items = self._deployments()
        running = [i for i in items if i["State"] in RUNNING]
        if running:
            raise PreflightError(
                f"deployment {running[0]['DeploymentNumber']} of environment "
                f"{environment['Name']!r} is {running[0]['State']}: AppConfig runs one "
                "deployment at a time per environment; wait for it or stop it",
                parameter="environment_id",
            )
        self._refuse_alarms(environment)
        self.live_version = self._live_before(items)
        if self.live_version is None:
            raise PreflightError(
                f"no version of profile {self.profile} is deployed to environment "
                f"{environment['Name']!r}: deploy the flag `off` first",
                parameter="configuration_profile_id",
            )
        try:
            share = flagdoc.on_share(self._document(self.live_version), self.flag, self.split_by)
        except flagdoc.FlagDocumentError as error:
            raise PreflightError(
                f"version {self.live_version} of the profile {error}", parameter="flag_key"
            ) from None
        if share is None:
            raise PreflightError(
                f"flag {self.flag!r}: its `on` variant's rule (or a variant before it) is not a "
                f"split by ${self.split_by} that bgkit can put a share on",
                parameter="flag_key",
            )
        if share:
            raise PreflightError(
                f"flag {self.flag!r} is already `on` for {share:g}% of users (version "
                f"{self.live_version}): a release starts from `off` for everyone",
                parameter="flag_key",
            )
        return {"blue": 100, "green": 0}

    def _refuse_alarms(self, environment: dict[str, Any]) -> None:
        names = [m["AlarmArn"].split(":alarm:", 1)[-1] for m in environment.get("Monitors") or []]
        if not names:
            return
        found = self._cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
        firing = [a["AlarmName"] for a in found if a["StateValue"] == "ALARM"]
        if firing:
            raise PreflightError(
                f"the environment's monitor alarm(s) {', '.join(firing)} are in ALARM: AppConfig "
                "would roll back any deployment at once",
                parameter="environment_id",
            )

    def metric_source(self) -> MetricSource:
        return MetricSource(
            namespace=self.namespace,
            requests="Requests",
            errors="Errors",
            latency="Latency",
            latency_to_ms=1.0,
            dimensions={
                "blue": {"Flag": self.flag, "Variant": flagdoc.OFF},
                "green": {"Flag": self.flag, "Variant": flagdoc.ON},
            },
        )

    def describe(self) -> dict[str, Any]:
        items = [i for i in self._deployments() if i["ConfigurationProfileId"] == self.profile]
        newest = items[0] if items else {}
        variants = []
        version = str(newest.get("ConfigurationVersion", "")) if newest else ""
        if version:
            for v in flagdoc.variants(self._document(version), self.flag):
                variants.append(
                    {"name": v["name"], "enabled": v.get("enabled"), "rule": v.get("rule")}
                )
        return {
            "deployment": {
                k: newest.get(k)
                for k in ("DeploymentNumber", "ConfigurationVersion", "State", "PercentageComplete")
            },
            "flag": self.flag,
            "variants": variants,
            "split": self.read_split(),
        }

    # -- writes --------------------------------------------------------------------------

    def _write(self, document: dict[str, Any], why: str) -> str:
        """A new hosted version holding `document`; its number."""
        answer = self._write_change(document, why).send()
        version = str(answer["VersionNumber"])
        self._documents[version] = document
        return version

    def _start(self, version: str, strategy: str, why: str) -> int:
        return self._deploy(self._start_change(version, strategy, why))

    def _deploy(self, start: Change) -> int:
        """Send a StartDeployment once the environment is idle; the deployment's number."""
        self._wait_idle()
        return int(start.send()["DeploymentNumber"])

    def _wait_idle(self) -> None:
        """Wait for the environment's deployment in flight (a step strategy's bake) to end."""
        deadline = self.clock.now() + timedelta(seconds=APPLY_WAIT_SECONDS)
        while True:
            running = [i for i in self._deployments() if i["State"] in RUNNING]
            if not running:
                return
            if self.clock.now() > deadline:
                raise TrafficError(
                    f"deployment {running[0]['DeploymentNumber']} stayed {running[0]['State']} "
                    "too long for the next one to start"
                )
            self.clock.sleep(0.5)

    def _wait_everyone(self, number: int) -> dict[str, Any]:
        """Wait until deployment `number` has reached every client (or stopped)."""
        deadline = self.clock.now() + timedelta(seconds=APPLY_WAIT_SECONDS)
        while True:
            deployment = self._deployment(number)
            if deployment["State"] in STOPPED:
                raise DeploymentStopped(
                    f"deployment {number} was {deployment['State']}: " + _why(deployment)
                )
            if deployment["State"] in ("BAKING", "COMPLETE"):
                return deployment
            if self.clock.now() > deadline:
                raise TrafficError(
                    f"deployment {number} reached only {deployment['PercentageComplete']:g}% of clients in time"
                )
            self.clock.sleep(0.25)

    def _step(self, percent: float, why: str) -> int:
        version = self._write(self._with_rule(self._split(percent)), why)
        number = self._start(version, self.step_strategy, why)
        self.main_number = number
        self._wait_everyone(number)
        return number

    def deploy_green(self, release: str, note: Callable[[str], None]) -> str:
        """The smoke version: `on` for the smoke user only, deployed to every client."""
        self.seed = release
        version = self._write(self._with_rule(self._smoke_rule()), SMOKE)
        self.smoke_number = self._start(version, self.step_strategy, "smoke test")
        note(
            f"version {version} (on for {self.smoke_user} only) deploying as deployment {self.smoke_number}"
        )
        self._wait_everyone(self.smoke_number)
        self.clock.sleep(self.agent_poll_seconds)  # the agents poll before the smoke test asks
        return (
            f"deployment {self.smoke_number}: version {version} is `on` for the smoke test's user "
            f"{self.smoke_user} only, waited {self.agent_poll_seconds:g} s for agents to poll"
        )

    def change_applied(self) -> bool:
        if self.main_number is None:
            return True
        return self._deployment(self.main_number)["State"] in ("BAKING", "COMPLETE")

    def effective_after_seconds(self) -> float:
        """Agents poll AppConfig every agent_poll_seconds: a step reaches the service then."""
        return self.agent_poll_seconds

    def set_split(self, green_percent: int) -> Split:
        if green_percent == 0:
            self._back_to_live(lambda message: None)
        else:
            self._step(green_percent, _on_for(green_percent))
        split = self.read_split()
        if split["green"] != green_percent:
            raise TrafficError(f"asked for `on` at {green_percent}% but AppConfig has", split=split)
        return split

    def _back_to_live(self, note: Callable[[str], None]) -> None:
        """Stop what is in flight, then deploy the version that was live before the release."""
        in_flight = self._in_flight()
        for stop in self._stops_of(in_flight):
            stop.send()
            note(f"deployment {in_flight['DeploymentNumber']} stopped ({in_flight['State']})")
        self._wait_idle()
        number = self._deploy(self._redeploy_live_change())
        self.main_number = number
        self._wait_everyone(number)
        note(
            f"deployment {number}: version {self.live_version} (off for everyone) reached every client"
        )

    def smoke_headers(self) -> dict[str, str]:
        """The smoke test's requests come from the smoke user, the one user `on` then."""
        return {self.user_header: self.smoke_user}

    def smoke_served_by_green(self, headers: Mapping[str, str]) -> str:
        """ "" if a 2xx answer came from the `on` path as far as the service says (its
        X-Flag-Variant header), else why not."""
        variant = headers.get("X-Flag-Variant")
        if variant is not None and variant != flagdoc.ON:
            return f"served variant {variant!r}, not `on`"
        return ""

    # -- AppConfig's strategy (managed) -----------------------------------------------------

    def plan_description(self) -> str:
        if not self.managed:
            return ""
        try:
            s = self._appconfig.get_deployment_strategy(DeploymentStrategyId=self.strategy)
        except ClientError:
            return f"AppConfig deployment strategy {self.strategy}"
        return (
            f"AppConfig deployment strategy {s['Id']} ({s.get('Name', s['Id'])}): "
            f"{s['GrowthType']} by {s['GrowthFactor']:g}% over {s['DeploymentDurationInMinutes']} "
            f"min, then {s['FinalBakeTimeInMinutes']} min of bake"
        )

    def _strategy(self) -> dict[str, Any]:
        return self._appconfig.get_deployment_strategy(DeploymentStrategyId=self.strategy)

    def start_deployment(self, release: str) -> str:
        self.deploy_green(release, lambda message: None)
        self.smoke_ready_at = self.clock.now().isoformat()
        return str(self.smoke_number)

    def continue_after_smoke(self) -> str:
        version = self._write(self._with_rule(self._split(100)), "on for everyone")
        self.main_number = self._start(version, self.strategy, self.strategy)
        return f"deployment {self.main_number} of version {version} (on for every user) with strategy {self.strategy}"

    def progress(self) -> Progress:
        if self.main_number is None:
            number = self.smoke_number or 0
            if not number:
                return Progress("", "deploying", "NONE")
            d = self._deployment(number)
            phase = (
                "ready"
                if d["State"] in ("BAKING", "COMPLETE") and self.smoke_ready_at
                else "deploying"
            )
            if d["State"] in STOPPED:
                phase = "stopped"
            return Progress(str(number), phase, d["State"], _why(d) if phase == "stopped" else "")
        d = self._deployment(self.main_number)
        phase = {
            "DEPLOYING": "shifting",
            "VALIDATING": "shifting",
            "BAKING": "shifted",
            "COMPLETE": "succeeded",
        }.get(d["State"], "stopped")
        return Progress(
            str(self.main_number), phase, d["State"], _why(d) if phase == "stopped" else ""
        )

    def end_wait_after_shift(self) -> None:
        """AppConfig's bake is its own alarm watch: it cannot be ended early, bgkit waits."""

    def stop_and_roll_back(self, clock: Any, release: str, note: Callable[[str], None]) -> None:
        for number in (self.main_number, self.smoke_number):
            if number is None:
                continue
            d = self._deployment(number)
            if d["State"] == "COMPLETE" and number == self.main_number:
                self._stop_change(number, d["State"], allow_revert=True).send()
                note(f"deployment {number} was complete: reverted (AllowRevert)")
            break
        self._back_to_live(note)

    def max_shift_seconds(self) -> float:
        s = self._strategy()
        return 60.0 * s["DeploymentDurationInMinutes"]

    def wait_after_shift_seconds(self) -> float:
        return 60.0 * self._strategy()["FinalBakeTimeInMinutes"]

    def all_at_once(self) -> bool:
        return self._strategy()["DeploymentDurationInMinutes"] == 0

    # -- the calls it sends, built once (bgkit.planning): sent above, listed by a plan ------

    def _with_rule(self, rule: str) -> dict[str, Any]:
        """The live document with `on`'s rule set to `rule`."""
        assert self.live_version is not None, "preflight reads the live version first"
        return flagdoc.with_rule(self._document(self.live_version), self.flag, rule)

    def _split(self, percent: float) -> str:
        return split_rule(percent, self.split_by, self.seed)

    def _smoke_rule(self) -> str:
        return f'(eq ${self.split_by} "{self.smoke_user}")'

    def _write_change(self, document: dict[str, Any], why: str) -> Change:
        params = {
            "ApplicationId": self.application,
            "ConfigurationProfileId": self.profile,
            "Content": flagdoc.dumps(document),
            "ContentType": "application/json",
            "Description": f"bgkit {self.seed}: {why}"[:1024],
        }
        means = f"a new version of profile {self.profile}: flag {self.flag} {why}"
        return Change(self._appconfig, "CreateHostedConfigurationVersion", params, means)

    def _start_change(self, version: str, strategy: str, why: str) -> Change:
        params = {
            "ApplicationId": self.application,
            "EnvironmentId": self.environment,
            "DeploymentStrategyId": strategy,
            "ConfigurationProfileId": self.profile,
            "ConfigurationVersion": version,
            "Description": f"bgkit {self.seed}: {why}"[:1024],
        }
        means = f"deploy version {version} to environment {self.environment} with {strategy}"
        return Change(self._appconfig, "StartDeployment", params, means)

    def _stop_change(self, number: Any, state: str, allow_revert: bool = False) -> Change:
        params: dict[str, Any] = {
            "ApplicationId": self.application,
            "EnvironmentId": self.environment,
            "DeploymentNumber": number,
        }
        if allow_revert:  # a complete deployment is stopped only so (UG "Reverting")
            params["AllowRevert"] = True
        means = f"stop deployment {number} ({state}): its clients go back to the version before"
        return Change(self._appconfig, "StopDeployment", params, means)

    def _redeploy_live_change(self) -> Change:
        assert self.live_version is not None, "preflight reads the live version first"
        return self._start_change(self.live_version, self.step_strategy, "rollback")

    def _stops_of(self, in_flight: Mapping[str, Any] | None) -> list[Change]:
        if in_flight is None:
            return []
        return [self._stop_change(in_flight["DeploymentNumber"], in_flight["State"])]

    def _in_flight(self) -> dict[str, Any] | None:
        """The profile's newest deployment if it has not ended (a rollback stops it first)."""
        for item in self._deployments():
            if item["ConfigurationProfileId"] == self.profile:
                return item if item["State"] in IN_FLIGHT else None
        return None

    def _rollout_changes(self, rule: str, why: str, strategy: str, started: str) -> list[Item]:
        """A new version with `rule`, deployed with `strategy` (its number is AWS's answer)."""
        return [
            self._write_change(self._with_rule(rule), why),
            self._start_change(NEW_VERSION, strategy, started),
        ]

    def _reached(self, what: str) -> Wait:
        return Wait(f"{what} reaches every client (BAKING or COMPLETE)")

    def deploy_changes(self, release: str) -> list[Item]:
        """deploy_green's calls: the smoke version, deployed with the step strategy."""
        self.seed = release  # as deploy_green sets it: every version after it names it
        return [
            *self._rollout_changes(self._smoke_rule(), SMOKE, self.step_strategy, "smoke test"),
            self._reached("the smoke version"),
            Wait(f"{self.agent_poll_seconds:g} s for the agents to poll"),
        ]

    def changes_to(self, green_percent: int) -> list[Item]:
        """set_split's calls: a version `on` for that share of users, deployed with the step
        strategy; for 0, the rollback's (`rollback_changes`)."""
        if green_percent == 0:
            return self.rollback_changes(0)
        why = _on_for(green_percent)
        rule = self._split(green_percent)
        return [
            *self._rollout_changes(rule, why, self.step_strategy, why),
            self._reached(f"the version {why}"),
        ]

    def rollback_changes(self, green_percent: int) -> list[Item]:
        """A rollback's calls from any point of bgkit's steps, whatever the share: the last
        deployment bgkit started has reached every client, so it is stopped first only if
        the step strategy still bakes it (assumed: a verdict comes within that bake)."""
        return self._back_to_live_changes(
            self._planned_in_flight("the last step's", self._step_baking())
        )

    def _back_to_live_changes(self, in_flight: Mapping[str, Any] | None) -> list[Item]:
        return [
            *self._stops_of(in_flight),
            self._redeploy_live_change(),
            self._reached(f"version {self.live_version} (off for everyone)"),
        ]

    def _planned_in_flight(self, which: str, state: str | None) -> dict[str, Any] | None:
        """The deployment a rollback will find in flight (None: it will have ended)."""
        if state is None:
            return None
        return {"DeploymentNumber": later(f"{which} deployment number"), "State": state}

    def _step_baking(self) -> str | None:
        """A step's deployment once it has reached every client: BAKING for the step strategy's
        final bake, if it has one, else ended (COMPLETE)."""
        strategy = self._appconfig.get_deployment_strategy(DeploymentStrategyId=self.step_strategy)
        return "BAKING" if strategy["FinalBakeTimeInMinutes"] > 0 else None

    # AppConfig's strategy (Managed)

    def start_changes(self, release: str) -> list[Item]:
        return self.deploy_changes(release)  # start_deployment is deploy_green

    def continue_changes(self) -> list[Item]:
        """continue_after_smoke's: a version `on` for everyone, deployed with the strategy."""
        return self._rollout_changes(
            self._split(100), "on for everyone", self.strategy, self.strategy
        )

    def promote_changes(self) -> list[Item]:
        return []  # AppConfig's bake cannot be ended early (end_wait_after_shift)

    def stop_changes(self) -> list[Item]:
        return self.stop_changes_at("shifting")

    def stop_changes_at(self, phase: str) -> list[Item]:
        """stop_and_roll_back's calls with the deployment at `phase` (bgkit.release.managed):
        while green waits for its smoke test, the smoke version's deployment is in flight only
        if the step strategy still bakes it; later, the strategy's shifts or bakes."""
        if phase == "ready":
            in_flight = self._planned_in_flight("the smoke version's", self._step_baking())
        else:
            in_flight = self._planned_in_flight("the strategy's", "DEPLOYING or BAKING")
        return self._back_to_live_changes(in_flight)

    def versions(self) -> dict[str, str]:
        """What each colour gets, in the version live before the release (read at preflight):
        blue the `off` variant's values, green the `on` variant's (its share's rule apart)."""
        assert self.live_version is not None, "preflight reads the live version first"
        found = {"configuration version": self.live_version}
        for variant in flagdoc.variants(self._document(self.live_version), self.flag):
            colour = {flagdoc.ON: "green", flagdoc.OFF: "blue"}.get(variant["name"])
            if colour is not None:
                values = {k: v for k, v in variant.items() if k not in ("name", "rule")}
                found[colour] = json.dumps(values, sort_keys=True, default=str)
        return found


def _on_for(percent: int) -> str:
    return f"on for {percent}% of users"


def _why(deployment: dict[str, Any]) -> str:
    """Who stopped it and why: the rollback's start event (it names the alarm), or the revert."""
    events = deployment.get("EventLog") or []
    for kind in ("ROLLBACK_STARTED", "REVERT_COMPLETED"):
        for event in events:  # newest first
            if event["EventType"] == kind:
                return f"{event['Description']} (by {event['TriggeredBy']})"
    return deployment.get("State", "")
