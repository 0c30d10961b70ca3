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

    def _write(self, rule: str, description: str) -> str:
        """A new hosted version: the live document with `on`'s rule set to `rule`."""
        assert self.live_version is not None, "preflight reads the live version first"
        document = flagdoc.with_rule(self._document(self.live_version), self.flag, rule)
        answer = self._appconfig.create_hosted_configuration_version(
            ApplicationId=self.application,
            ConfigurationProfileId=self.profile,
            Content=flagdoc.dumps(document),
            ContentType="application/json",
            Description=description[:1024],
        )
        version = str(answer["VersionNumber"])
        self._documents[version] = document
        return version

    def _start(self, version: str, strategy: str, description: str) -> int:
        self._wait_idle()
        answer = self._appconfig.start_deployment(
            ApplicationId=self.application,
            EnvironmentId=self.environment,
            DeploymentStrategyId=strategy,
            ConfigurationProfileId=self.profile,
            ConfigurationVersion=version,
            Description=description[:1024],
        )
        return int(answer["DeploymentNumber"])

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
        rule = split_rule(percent, self.split_by, self.seed)
        version = self._write(rule, f"bgkit {self.seed}: {why}")
        number = self._start(version, self.step_strategy, f"bgkit {self.seed}: {why}")
        self.main_number = number
        self._wait_everyone(number)
        return number

    def deploy_green(self, release: str, note: Callable[[str], None]) -> str:
        """The smoke version: `on` for the smoke user only, deployed to every client."""
        self.seed = release
        rule = f'(eq ${self.split_by} "{self.smoke_user}")'
        version = self._write(rule, f"bgkit {release}: on for the smoke test's user only")
        self.smoke_number = self._start(version, self.step_strategy, f"bgkit {release}: smoke test")
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
            self._step(green_percent, f"on for {green_percent}% of users")
        split = self.read_split()
        if split["green"] != green_percent:
            raise TrafficError(f"asked for `on` at {green_percent}% but AppConfig has", split=split)
        return split

    def _back_to_live(self, note: Callable[[str], None]) -> None:
        """Stop what is in flight, then deploy the version that was live before the release."""
        for item in self._deployments():
            if item["ConfigurationProfileId"] != self.profile:
                continue
            if item["State"] in ("DEPLOYING", "BAKING", "VALIDATING"):
                self._appconfig.stop_deployment(
                    ApplicationId=self.application,
                    EnvironmentId=self.environment,
                    DeploymentNumber=item["DeploymentNumber"],
                )
                note(f"deployment {item['DeploymentNumber']} stopped ({item['State']})")
            break
        self._wait_idle()
        number = self._start(self.live_version, self.step_strategy, f"bgkit {self.seed}: rollback")
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
        version = self._write(
            split_rule(100, self.split_by, self.seed), f"bgkit {self.seed}: on for everyone"
        )
        self.main_number = self._start(
            version, self.strategy, f"bgkit {self.seed}: {self.strategy}"
        )
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
                self._appconfig.stop_deployment(
                    ApplicationId=self.application,
                    EnvironmentId=self.environment,
                    DeploymentNumber=number,
                    AllowRevert=True,
                )
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


def _why(deployment: dict[str, Any]) -> str:
    """Who stopped it and why: the rollback's start event (it names the alarm), or the revert."""
    events = deployment.get("EventLog") or []
    for kind in ("ROLLBACK_STARTED", "REVERT_COMPLETED"):
        for event in events:  # newest first
            if event["EventType"] == kind:
                return f"{event['Description']} (by {event['TriggeredBy']})"
    return deployment.get("State", "")
