"""CodeDeploy for AWS Lambda: an alias's traffic moved from the current version to the target
version by the deployment configuration (canary, linear or all at once).

AWS: "Deployments on an AWS Lambda compute platform", AppSpec "Resources" for Lambda
(Name, Alias, CurrentVersion, TargetVersion). A Lambda deployment has no test route and no
READY_WAIT, so bgkit smoke-tests the target version by invoking it directly (as a
BeforeAllowTraffic hook would) before it creates the deployment. Evidence: AWS/Lambda
Invocations, Errors and Duration per executed version of the alias.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import ParameterError, PreflightError
from ..metrics import MetricSource
from ..params import regex_checker
from ..planning import Change
from . import register
from .base import Split
from .codedeploy import (
    ManagedByCodeDeploy,
    config_checker,
    hook_function_checker,
    name_checker,
    require,
)

LAMBDA_CONFIGS = (
    "CodeDeployDefault.LambdaAllAtOnce",
    "CodeDeployDefault.LambdaCanary10Percent5Minutes",
    "CodeDeployDefault.LambdaCanary10Percent10Minutes",
    "CodeDeployDefault.LambdaCanary10Percent15Minutes",
    "CodeDeployDefault.LambdaCanary10Percent30Minutes",
    "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
    "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes",
    "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes",
    "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes",
)
_FUNCTION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALIAS = re.compile(r"^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$")
_VERSION = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)


def _version(name: str, value: str) -> None:
    # not str.isdigit(): that takes "²" (int() then fails) and "٧" (which int() reads as 7)
    if not _VERSION.fullmatch(value):
        raise ParameterError(
            name, "must be a published version number such as 7 (not $LATEST)", value
        )


@register
class LambdaCodeDeploy(ManagedByCodeDeploy):
    name: ClassVar[str] = "lambda_codedeploy"
    title: ClassVar[str] = "CodeDeploy for AWS Lambda (weighted alias)"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        *ManagedByCodeDeploy.iam_actions,
        "lambda:GetAlias",
        "lambda:InvokeFunction",  # the smoke test invokes the target version
    )
    ready_wait: bool = False
    termination_wait: ClassVar[bool] = False  # the deployment ends as the alias reaches green
    parameters: ClassVar[Mapping[str, Any]] = {
        "function_name": regex_checker(
            _FUNCTION, "must be a function name: 1-64 letters, digits, - or _"
        ),
        "alias_name": regex_checker(
            _ALIAS, "must be an alias name: 1-128 letters, digits, - or _, not all digits"
        ),
        "target_version": _version,
        "application_name": name_checker("application"),
        "deployment_group_name": name_checker("deployment group"),
        "deployment_config_name": config_checker("Lambda", LAMBDA_CONFIGS),
        "hook_function_name": hook_function_checker,
    }
    hook_event = "BeforeAllowTraffic"

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._lambda = session.client("lambda")
        self.function = resources["function_name"]
        self.alias = resources["alias_name"]
        self.target_version = resources["target_version"]
        self._use_codedeploy(session, resources)
        # With bgkit's relay as the BeforeAllowTraffic hook, the deployment starts first and
        # waits there for the smoke test; without it, the smoke test runs before the deployment.
        self.ready_wait = bool(self.hook_function)
        self.current_version: str | None = None

    def target_id(self) -> str:
        return f"lambda:{self.function}:{self.alias}"

    def preflight(self) -> Split:
        self.check_group("Lambda")
        self.check_hook_function(self._lambda)
        try:
            alias = self._lambda.get_alias(FunctionName=self.function, Name=self.alias)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise PreflightError(
                    f"alias {self.alias!r} of function {self.function!r} does not exist",
                    parameter="alias_name",
                ) from None
            raise
        try:
            self._lambda.get_function(FunctionName=self.function, Qualifier=self.target_version)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise PreflightError(
                    f"version {self.target_version} of {self.function!r} is not published",
                    parameter="target_version",
                ) from None
            raise
        self.current_version = str(alias["FunctionVersion"])
        require(
            self.current_version != self.target_version,
            f"alias {self.alias!r} already points to version {self.target_version}",
            "target_version",
        )
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        require(
            not weights,
            f"alias {self.alias!r} already splits traffic ({weights}); a deployment may have "
            "been left half-shifted: roll it back first",
            "alias_name",
        )
        return self.read_split()

    def read_split(self) -> Split:
        alias = self._lambda.get_alias(FunctionName=self.function, Name=self.alias)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        primary = str(alias["FunctionVersion"])
        if primary == self.target_version:
            green = 100 - round(100 * weights.get(self.current_version, 0.0))
        else:
            green = round(100 * weights.get(self.target_version, 0.0))
        return {"blue": 100 - green, "green": green}

    def metric_source(self) -> MetricSource:
        resource = f"{self.function}:{self.alias}"
        return MetricSource(
            namespace="AWS/Lambda",
            requests="Invocations",
            errors="Errors",
            latency="Duration",
            latency_to_ms=1.0,
            dimensions={
                colour: {
                    "FunctionName": self.function,
                    "Resource": resource,
                    "ExecutedVersion": version,
                }
                for colour, version in (
                    ("blue", self.current_version),
                    ("green", self.target_version),
                )
            },
        )

    def describe(self) -> dict[str, Any]:
        alias = self._lambda.get_alias(FunctionName=self.function, Name=self.alias)
        state: dict[str, Any] = {
            "alias": {k: alias.get(k) for k in ("Name", "FunctionVersion", "RoutingConfig")},
            "split": self.read_split(),
        }
        state.update(self.deployment_state())
        return state

    def smoke_target(self) -> str:
        return f"lambda:{self.function}:{self.target_version} (Invoke, by version)"

    def smoke_probe(self) -> dict[str, Any]:
        """One direct invocation of the target version, before it gets any alias traffic."""
        started = time.perf_counter()
        try:
            answer = self._lambda.invoke(
                FunctionName=self.function,
                Qualifier=self.target_version,
                Payload=json.dumps({"bgkit": "smoke"}).encode(),
            )
            answer["Payload"].read()
            failed = answer.get("FunctionError")
            status, error = (502, f"function error: {failed}") if failed else (200, None)
        except ClientError as exc:
            status, error = 0, f"{exc.response['Error']['Code']}: {exc}"
        return {"status": status, "ms": 1000 * (time.perf_counter() - started), "error": error}

    def _revision(self, current: str, target: str) -> dict[str, Any]:
        properties = {
            "Name": self.function,
            "Alias": self.alias,
            "CurrentVersion": current,
            "TargetVersion": target,
        }
        appspec: dict[str, Any] = {
            "version": 0.0,
            "Resources": [
                {self.function: {"Type": "AWS::Lambda::Function", "Properties": properties}}
            ],
        }
        if self.hooks() and target == self.target_version:  # not on the way back (revert)
            appspec["Hooks"] = self.hooks()
        return {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": json.dumps(appspec)},
        }

    def revert_completed(self, release: str) -> str:
        """CodeDeploy finished before the verdict: deploy the previous version back, all at once.

        The completed deployment cannot be stopped; a new deployment from the target version
        to the previous one is CodeDeploy's own way back (its rollbacks are deployments too).
        """
        return self.deployment.create_other(self.revert_creation(release))

    def revert_creation(self, release: str) -> Change:
        """The CreateDeployment of `revert_completed`: the alias back to blue's version."""
        return self.deployment.creation(
            self._revision(self.target_version, self.current_version),
            "CodeDeployDefault.LambdaAllAtOnce",
            f"bgkit rollback of release {release}",
            f"deploys {self.function}:{self.alias} back from version {self.target_version} to "
            f"{self.current_version}, all at once (the release's deployment had completed)",
        )

    def deployment_creation(self, release: str) -> Change:
        held = f"; green waits at {self.hook_event} for bgkit's smoke test" if self.hooks() else ""
        return self.deployment.creation(
            self._revision(self.current_version, self.target_version),
            self.config,
            f"bgkit release {release}",
            f"deploys {self.function}:{self.alias} from version {self.current_version} to "
            f"{self.target_version} by {self.config}{held}",
        )

    def rollback_after_shift_changes(self, release: str) -> list[Change]:
        """A rollback once CodeDeploy has completed the shift (a Lambda deployment has no
        termination wait): StopDeployment can no longer, `revert_completed` deploys blue back."""
        return [self.revert_creation(release)]

    def versions(self) -> dict[str, str]:
        """What blue and green run: the alias's version and the target version, with their code."""
        alias = self._lambda.get_alias(FunctionName=self.function, Name=self.alias)
        blue = str(alias["FunctionVersion"])
        return {"blue": self._version_code(blue), "green": self._version_code(self.target_version)}

    def _version_code(self, version: str) -> str:
        function = self._lambda.get_function(FunctionName=self.function, Qualifier=version)
        configuration = function["Configuration"]
        return f"{self.function}:{configuration['Version']} (code {configuration['CodeSha256']})"
