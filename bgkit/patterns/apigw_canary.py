"""API Gateway canary release: a REST API stage's `canarySettings` carry green.

AWS (API Gateway Developer Guide, "Set up an API Gateway canary release deployment" and its
pages "Create", "Update", "Promote" and "Turn off a canary release"; API Reference, Stage,
CanarySettings, CreateDeployment, UpdateStage):

* deploy: CreateDeployment on the existing stage with `canarySettings` (percentTraffic 0.0,
  green's `stageVariableOverrides`) makes a new deployment, the canary; the stage keeps its
  deployment (blue). With `canary_deployment_id`, an existing deployment becomes the canary
  through UpdateStage instead. useStageCache stays false: a canary answered from the stage's
  cache would be judged on blue's responses.
* shift: UpdateStage `replace /canarySettings/percentTraffic` (0.0-100.0). API Gateway sends each
  request to the canary at random with that probability.
* promote: one UpdateStage that points the stage at the canary's deployment, copies the canary's
  stage variables onto the stage's (what "Promote a canary release" does) and removes
  /canarySettings, so no request is served by a half-promoted stage.
* rollback: UpdateStage `remove /canarySettings` ("Turn off a canary release"); after a
  promotion, the stage's previous deployment and variables are restored.

Evidence: AWS/ApiGateway Count, 5XXError and Latency (milliseconds) per ApiName and Stage
("Amazon API Gateway dimensions and metrics": sent for every stage; only the per-method
dimensions need detailed metrics, so preflight asks for nothing). The canary has its own
metrics ("Set up an API Gateway canary release deployment"); that page names the canary's log
group `.../{stage-name}/Canary`, and bgkit reads the canary's metrics under the Stage value
"{stage}/Canary" (CANARY_SUFFIX: the one place to change if an account shows otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import AwsRefused, ParameterError, PreflightError, TrafficError
from ..metrics import MetricSource
from ..params import regex_checker
from ..planning import Change, later
from . import register
from .base import Split

CANARY_SUFFIX = "/Canary"
_REST_API = re.compile(r"^[a-z0-9]{10}$")
# "Stage names can only contain alphanumeric characters, hyphens, and underscores. Maximum
# length is 128 characters." (API Reference, CreateStage.stageName)
_STAGE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DEPLOYMENT = re.compile(r"^[a-z0-9]{1,64}$")
# API Reference, CreateDeployment.variables: names alphanumeric and underscore, values
# [A-Za-z0-9-._~:/?#&=,]+; here a comma separates pairs, so values cannot contain one.
_VARIABLE = re.compile(r"^([A-Za-z0-9_]+)=([A-Za-z0-9\-._~:/?#&=]+)$")
# green's deployment id before CreateDeployment has made it: a plan's placeholder
NEW_DEPLOYMENT = later("the id CreateDeployment returns")


def parse_stage_variables(text: str) -> dict[str, str]:
    """'backend=10.0.0.5:8080,version=v2' -> {'backend': '10.0.0.5:8080', 'version': 'v2'}."""
    variables: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        match = _VARIABLE.match(pair)
        if match is None:
            raise ValueError(pair)
        variables[match.group(1)] = match.group(2)
    return variables


def _stage_variables_checker(name: str, value: str) -> None:
    try:
        parse_stage_variables(value)
    except ValueError as bad:
        raise ParameterError(
            name,
            "must be name=value pairs separated by commas (names: letters, digits, '_'; values: "
            f"letters, digits and -._~:/?#&=), or empty; {str(bad)!r} is not one",
            value,
        ) from None


def _deployment_checker(name: str, value: str) -> None:
    if not _DEPLOYMENT.fullmatch(value):
        raise ParameterError(name, "must be a deployment id such as a6rox0, or empty", value)


_stage_variables_checker.optional = True  # type: ignore[attr-defined]
_deployment_checker.optional = True  # type: ignore[attr-defined]


def _api_name_dimension(name: str, api_id: str) -> str:
    """API Gateway removes non-ASCII characters from the ApiName dimension, and uses the API id
    when none is left ("Amazon API Gateway dimensions and metrics")."""
    return name.encode("ascii", "ignore").decode() or api_id


def _code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


@register
class ApiGatewayCanary:
    name: ClassVar[str] = "apigw_canary"
    title: ClassVar[str] = "API Gateway canary release"
    # API Gateway's management actions are named by HTTP method: GET (reads), POST (the canary's
    # deployment), PATCH (the stage's canarySettings and deployment). See bgkit.iam.
    iam_actions: ClassVar[tuple[str, ...]] = (
        "apigateway:GET",
        "apigateway:PATCH",
        "apigateway:POST",
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "rest_api_id": regex_checker(_REST_API, "must be a REST API id such as a1b2c3d4e5"),
        "stage_name": regex_checker(
            _STAGE, "must be a stage name: 1-128 letters, digits, hyphens or underscores"
        ),
        "green_stage_variables": _stage_variables_checker,
        "canary_deployment_id": _deployment_checker,
    }

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._apigw = session.client("apigateway")
        self.rest_api_id = resources["rest_api_id"]
        self.stage_name = resources["stage_name"]
        self.overrides = parse_stage_variables(resources.get("green_stage_variables", ""))
        self.given_deployment = resources.get("canary_deployment_id") or None
        self.canary_id: str | None = None  # green's deployment, once deploy_green made it
        self._blue: dict[str, Any] | None = None  # the stage as preflight found it
        self._api_name: str | None = None

    def target_id(self) -> str:
        return f"apigateway:{self.rest_api_id}/{self.stage_name}"

    # -- reads -------------------------------------------------------------------------

    def _api(self) -> dict[str, Any]:
        try:
            return self._apigw.get_rest_api(restApiId=self.rest_api_id)
        except ClientError as error:
            if _code(error) == "NotFoundException":
                raise PreflightError(
                    f"REST API {self.rest_api_id} does not exist in this region",
                    parameter="rest_api_id",
                ) from None
            raise

    def _stage(self) -> dict[str, Any]:
        try:
            return self._apigw.get_stage(restApiId=self.rest_api_id, stageName=self.stage_name)
        except ClientError as error:
            if _code(error) == "NotFoundException":
                raise PreflightError(
                    f"REST API {self.rest_api_id} has no stage {self.stage_name!r}",
                    parameter="stage_name",
                ) from None
            raise

    def read_split(self) -> Split:
        return self._split_of(self._stage())

    def _split_of(self, stage: dict[str, Any]) -> Split:
        canary = stage.get("canarySettings")
        if canary is None:
            # Promoted: the stage itself runs green's deployment.
            promoted = self.canary_id is not None and stage["deploymentId"] == self.canary_id
            return {"blue": 0, "green": 100} if promoted else {"blue": 100, "green": 0}
        percent = float(canary.get("percentTraffic", 0.0))
        green = round(percent)
        # 0 and 100 mean none at all: a 0.4 % canary is 1 %, a 99.6 % one is 99 %.
        green = min(max(green, 1 if percent > 0 else 0), 99 if percent < 100 else 100)
        return {"blue": 100 - green, "green": green}

    def preflight(self) -> Split:
        api = self._api()
        self._api_name = _api_name_dimension(api["name"], self.rest_api_id)
        namesakes = [
            a["id"]
            for page in self._apigw.get_paginator("get_rest_apis").paginate()
            for a in page["items"]
            if a["id"] != self.rest_api_id
            and _api_name_dimension(a["name"], a["id"]) == self._api_name
        ]
        if namesakes:
            # CloudWatch keys REST API metrics by ApiName: the evidence would mix both APIs.
            raise PreflightError(
                f"other REST APIs in this region share the name {api['name']!r} "
                f"({', '.join(namesakes)}), and API Gateway metrics are keyed by ApiName: the "
                "evidence would mix them; rename one",
                parameter="rest_api_id",
            )
        stage = self._stage()
        canary = stage.get("canarySettings")
        if canary is not None:
            raise PreflightError(
                f"stage {self.stage_name!r} already has a canary (deployment "
                f"{canary.get('deploymentId')}, {canary.get('percentTraffic', 0.0)}% of traffic): "
                "another release may be in flight; promote it or remove it first "
                f"(aws apigateway update-stage --rest-api-id {self.rest_api_id} --stage-name "
                f"{self.stage_name} --patch-operations op=remove,path=/canarySettings)",
                parameter="stage_name",
            )
        if self.given_deployment is not None:
            try:
                self._apigw.get_deployment(
                    restApiId=self.rest_api_id, deploymentId=self.given_deployment
                )
            except ClientError as error:
                if _code(error) == "NotFoundException":
                    raise PreflightError(
                        f"REST API {self.rest_api_id} has no deployment {self.given_deployment}",
                        parameter="canary_deployment_id",
                    ) from None
                raise
            if self.given_deployment == stage["deploymentId"]:
                raise PreflightError(
                    f"deployment {self.given_deployment} is already the stage's: nothing to release",
                    parameter="canary_deployment_id",
                )
        self._blue = {
            "deploymentId": stage["deploymentId"],
            "variables": stage.get("variables") or {},
        }
        return self._split_of(stage)

    def metric_source(self) -> MetricSource:
        if self._api_name is None:
            self._api_name = _api_name_dimension(self._api()["name"], self.rest_api_id)
        return MetricSource(
            namespace="AWS/ApiGateway",
            requests="Count",
            errors="5XXError",
            latency="Latency",
            latency_to_ms=1.0,
            dimensions={
                "blue": {"ApiName": self._api_name, "Stage": self.stage_name},
                "green": {"ApiName": self._api_name, "Stage": self.stage_name + CANARY_SUFFIX},
            },
        )

    def describe(self) -> dict[str, Any]:
        stage = self._stage()
        return {
            "rest_api_id": self.rest_api_id,
            "stage_name": self.stage_name,
            "deploymentId": stage["deploymentId"],
            "variables": stage.get("variables") or {},
            "canarySettings": stage.get("canarySettings"),
            "green_deployment": self.canary_id,
            # what a rollback after a promotion puts back
            "blue_deployment": (self._blue or {}).get("deploymentId"),
            "blue_variables": (self._blue or {}).get("variables"),
            "split": self._split_of(stage),
        }

    def versions(self) -> dict[str, str]:
        """Blue: the stage's deployment and variables. Green: the deployment to attach, or the
        new one CreateDeployment will make of the API as it is then."""
        stage = self._stage()
        variables = ", ".join(f"{k}={v}" for k, v in sorted((stage.get("variables") or {}).items()))
        blue = f"{self._deployment_text(stage['deploymentId'])}, variables {variables or 'none'}"
        if self.given_deployment is None:
            green = f"a new deployment of REST API {self.rest_api_id} (CreateDeployment)"
        else:
            green = self._deployment_text(self.given_deployment)
        return {"blue": blue, "green": green}

    def _deployment_text(self, deployment_id: str) -> str:
        deployment = self._apigw.get_deployment(
            restApiId=self.rest_api_id, deploymentId=deployment_id
        )
        return f"deployment {deployment_id} ({deployment.get('description') or 'no description'})"

    # -- writes ------------------------------------------------------------------------

    def deploy_green(self, release: str, note: Callable[[str], None]) -> str:
        overrides = ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "none"
        [change] = self.deploy_changes(release)
        if self.given_deployment is None:
            self.canary_id = change.send()["id"]
            done = f"canary deployment {self.canary_id} created"
        else:
            self.canary_id = self.given_deployment
            self._update(change)
            done = f"deployment {self.canary_id} attached as the canary"
        canary = self._stage().get("canarySettings") or {}
        if canary.get("deploymentId") != self.canary_id or canary.get("percentTraffic", 0.0) != 0.0:
            raise TrafficError(
                f"the canary on stage {self.stage_name!r} reads back as {canary or 'absent'}, "
                f"not deployment {self.canary_id} at 0%"
            )
        return (
            f"{done} on stage {self.stage_name!r} at 0% of traffic "
            f"(stage variable overrides: {overrides})"
        )

    def deploy_changes(self, release: str) -> list[Change]:
        """Green as the stage's canary at 0%: a new deployment (CreateDeployment), or the given
        one attached (UpdateStage)."""
        if self.given_deployment is None:
            return [self._new_canary(release)]
        return [self._attached_canary(self.given_deployment)]

    def set_split(self, green_percent: int) -> Split:
        stage = self._stage()
        canary = stage.get("canarySettings")
        if green_percent == 0:
            self._roll_back(stage)
        elif green_percent == 100:
            if canary is not None and canary.get("deploymentId") != self.canary_id:
                raise TrafficError(
                    f"stage {self.stage_name!r} has a canary of deployment "
                    f"{canary.get('deploymentId')}, not this release's {self.canary_id}: someone "
                    "deployed to the stage meanwhile; it is not promoted",
                    split=self._split_of(stage),
                )
            if canary is not None:
                variables = canary.get("stageVariableOverrides") or {}
                self._update(self._promotion(canary["deploymentId"], variables))
            elif self._split_of(stage)["green"] != 100:
                raise TrafficError(
                    f"stage {self.stage_name!r} has no canary to promote",
                    split=self._split_of(stage),
                )
        else:
            if canary is None or canary.get("deploymentId") != self.canary_id:
                raise TrafficError(
                    f"stage {self.stage_name!r} no longer has this release's canary "
                    f"({self.canary_id}); it reads {canary or 'no canary'}",
                    split=self._split_of(stage),
                )
            self._update(self._canary_share(green_percent))
        split = self.read_split()
        if split["green"] != green_percent:
            raise TrafficError(
                f"asked for green {green_percent}% but stage {self.stage_name!r} reads back",
                split=split,
            )
        return split

    def changes_to(self, green_percent: int) -> list[Change]:
        """What `set_split` sends with this release's canary on the stage: the canary's share,
        its promotion (100), or its removal (0)."""
        if green_percent == 0:
            return [self._canary_removal()]
        if green_percent == 100:
            green = self.canary_id or self.given_deployment or NEW_DEPLOYMENT
            return [self._promotion(green, self.overrides)]
        return [self._canary_share(green_percent)]

    def rollback_changes(self, green_percent: int) -> list[Change]:
        """Before the promotion the canary is removed; after it, the stage gets blue's
        deployment and variables back (the stage's variables then: blue's with green's
        overrides, as the promotion copied them)."""
        if green_percent < 100:
            return self.changes_to(0)
        promoted = {**(self._blue or {}).get("variables", {}), **self.overrides}
        return [self._blue_restored(promoted)]

    def _roll_back(self, stage: dict[str, Any]) -> None:
        canary = stage.get("canarySettings")
        if canary is not None:
            if canary.get("deploymentId") not in (self.canary_id, None) and self.canary_id:
                # Someone else's canary (a deploy meanwhile replaced bgkit's): never removed by
                # bgkit; the stage's own deployment is still blue's.
                raise TrafficError(
                    f"stage {self.stage_name!r} has a canary of deployment "
                    f"{canary.get('deploymentId')}, not this release's {self.canary_id}; bgkit "
                    "leaves it to whoever deployed it",
                    split=self._split_of(stage),
                )
            self._update(self._canary_removal())
            return
        if self._blue is None or stage["deploymentId"] == self._blue["deploymentId"]:
            return  # nothing of this release is on the stage
        # Promoted already: put blue's deployment and stage variables back.
        self._update(self._blue_restored(stage.get("variables") or {}))

    def _update(self, change: Change) -> None:
        try:
            change.send()
        except AwsRefused:
            raise  # access denied or invalid: it names the IAM action (apigateway:PATCH) and stage
        except ClientError as error:
            raise TrafficError(
                f"API Gateway refused the update of stage {self.stage_name!r} "
                f"({_code(error)}: {error.response['Error'].get('Message', '')})"
            ) from error

    # -- the changes, built once: sent by the methods above, listed by a plan -------------

    def _new_canary(self, release: str) -> Change:
        params = {
            "restApiId": self.rest_api_id,
            "stageName": self.stage_name,
            "description": f"bgkit release {release}",
            "canarySettings": {
                "percentTraffic": 0.0,
                "useStageCache": False,
                "stageVariableOverrides": self.overrides,
            },
        }
        means = f"a new deployment, the canary of stage {self.stage_name!r} at 0% of traffic"
        return Change(self._apigw, "CreateDeployment", params, means)

    def _attached_canary(self, deployment_id: str) -> Change:
        operations = [
            _replace("/canarySettings/deploymentId", deployment_id),
            _replace("/canarySettings/percentTraffic", "0.0"),
            _replace("/canarySettings/useStageCache", "false"),
            *(
                _replace(f"/canarySettings/stageVariableOverrides/{k}", v)
                for k, v in self.overrides.items()
            ),
        ]
        return self._stage_update(operations, f"deployment {deployment_id} the canary at 0%")

    def _canary_share(self, green_percent: int) -> Change:
        share = f"{float(green_percent):.1f}"
        operations = [_replace("/canarySettings/percentTraffic", share)]
        return self._stage_update(operations, f"the canary gets {share}% of traffic")

    def _promotion(self, deployment_id: str, variables: Mapping[str, str]) -> Change:
        """The stage runs the canary's deployment with its stage variables, and has no canary:
        one update, so no request meets a half-promoted stage. The variables are sorted: the
        stage's order and the parameter's may differ, the calls must not."""
        operations = [
            _replace("/deploymentId", deployment_id),
            *(_replace(f"/variables/{k}", v) for k, v in sorted(variables.items())),
            {"op": "remove", "path": "/canarySettings"},
        ]
        means = f"promote: the stage runs deployment {deployment_id}, its canary removed"
        return self._stage_update(operations, means)

    def _canary_removal(self) -> Change:
        operations = [{"op": "remove", "path": "/canarySettings"}]
        return self._stage_update(operations, "the canary removed: blue serves all traffic")

    def _blue_restored(self, variables_now: Mapping[str, str]) -> Change:
        """After a promotion: blue's deployment and variables back, from `variables_now` (the
        stage's, whose order AWS decides: the ones to remove are sorted)."""
        assert self._blue is not None  # read by preflight, before any change
        before = self._blue["variables"]
        operations = [
            _replace("/deploymentId", self._blue["deploymentId"]),
            *(
                _replace(f"/variables/{k}", v)
                for k, v in before.items()
                if variables_now.get(k) != v
            ),
            *(
                {"op": "remove", "path": f"/variables/{k}"}
                for k in sorted(variables_now)
                if k not in before
            ),
        ]
        means = f"blue's deployment {self._blue['deploymentId']} and variables back on the stage"
        return self._stage_update(operations, means)

    def _stage_update(self, operations: list[dict[str, str]], means: str) -> Change:
        params = {
            "restApiId": self.rest_api_id,
            "stageName": self.stage_name,
            "patchOperations": operations,
        }
        return Change(self._apigw, "UpdateStage", params, means)


def _replace(path: str, value: str) -> dict[str, str]:
    return {"op": "replace", "path": path, "value": value}
