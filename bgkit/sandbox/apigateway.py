"""API Gateway REST API canary releases for the sandbox: the control plane's canary model, a
stage data plane on loopback, and the `apigw_canary` scenario.

moto stores REST APIs, resources, integrations, deployments and stages but has no canary:
CreateDeployment ignores `canarySettings` and points the stage at the new deployment (with its
stage variables wiped), which turns a canary into a full cutover. `install_canary_model` fills
that in moto's API Gateway backend, in process, so boto3 sees AWS's HTTP API. What it follows,
each behaviour citing its page (API Gateway Developer Guide unless it says API Reference):

* A stage's `canarySettings` {deploymentId, percentTraffic, stageVariableOverrides,
  useStageCache}, returned by GetStage and GetStages ("Set up an API Gateway canary release
  deployment"; API Reference, Stage and CanarySettings).
* CreateDeployment with `canarySettings` on an existing stage leaves the stage's deploymentId and
  variables alone and sets the canary to the new deployment; on a stage that does not exist, or
  without a stage name, it is refused ("Create a canary release deployment").
* While a stage has a canary, a deployment without `canarySettings` to that stage is refused, and
  the stage's deploymentId can move only to the canary's ("Set up an API Gateway canary release
  deployment": the stage "cannot be associated with another non-canary release deployment until
  the canary release is disabled"; "Create a canary release deployment", REST API section).
* UpdateStage patch operations ("Update a canary release", "Promote a canary release", "Turn off
  a canary release"; API Reference, PatchOperation): `replace` of /canarySettings/percentTraffic
  (0.0-100.0 inclusive), /canarySettings/deploymentId, /canarySettings/useStageCache and
  /canarySettings/stageVariableOverrides/{name}; `remove` of an override and of /canarySettings;
  `copy` from /canarySettings/deploymentId to /deploymentId and from
  /canarySettings/stageVariableOverrides to /variables (promotion). A canary setting on a stage
  without a canary starts one on the stage's own deployment at 0 %. Operations apply in order
  and all or none.
* GetDeployment of an unknown id is NotFoundException (moto answers HTTP 500).

The data plane (`StageDataPlane`) serves every stage of one API on a loopback port at
/{stage}/{path}, as the invoke URL https://{api}.execute-api.{region}.amazonaws.com/{stage}/...
does. Each request goes to the canary with probability percentTraffic / 100 ("in a canary
release deployment, total API traffic is separated at random"), otherwise to the stage, with
the canary's stage variables overriding the stage's. The integration is found by resource
path and method (greedy {proxy+} paths, ANY methods); HTTP_PROXY integrations are served,
their URI's ${stageVariables.name} and {path parameters} filled in. Limitation: the sandbox does
not snapshot the API per deployment, so both the stage and its canary run the API's current
integrations and differ by their stage variables, which is how the scenario tells blue from
green.

Metrics: AWS/ApiGateway Count, 4XXError, 5XXError, Latency and IntegrationLatency (milliseconds)
per ApiName and Stage at 1-second resolution ("Amazon API Gateway dimensions and metrics"). As
on AWS, each request is one sample of Count (value 1) and of 4XXError and 5XXError (value 1 or
0), so Sum is the count and Average the error rate; latencies are sent as raw values so
percentiles work. Canary requests are published with the Stage dimension "{stage}/Canary",
and not also under the stage. The metrics page does not name the canary's dimension: "Set up an
API Gateway canary release deployment" says the canary has its own metrics and names its log
group `API-Gateway-Execution-Logs/{rest-api-id}/{stage-name}/Canary`; the sandbox (and the
pattern) assume the same `/Canary` suffix for its metrics.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..aws import AwsSession
from .calls import Changes
from .extensions import distribution
from .http import (
    KeepAliveHandler,
    LoopbackServer,
    LoopErrors,
    Upstreams,
    each_second,
    forwarded_headers,
    read_period,
    refresh,
)
from .loadgen import LoadGenerator
from .scenarios import Scenario, register

CANARY_SUFFIX = "/Canary"
# API Reference, CreateDeployment.variables: names alphanumeric and underscore, values this set.
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_VARIABLE_VALUE = re.compile(r"^[A-Za-z0-9\-._~:/?#&=,]+$")
_STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
INTEGRATION_TIMEOUT_SECONDS = 29.0  # the default integration timeout ("API Gateway quotas")

_installed = False
_install_lock = threading.Lock()
_update_lock = threading.Lock()


# -- control plane: the canary model in moto's backend -------------------------------------


def install_canary_model() -> None:
    """Patch moto's API Gateway backend in this process (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from moto.apigateway import exceptions, models, responses

        class DeploymentNotFound(exceptions.NotFoundException):
            code = 404

            def __init__(self) -> None:
                super().__init__("Invalid Deployment identifier specified")

        def bad(message: str) -> Exception:
            return exceptions.BadRequestException(message)

        original_to_json = models.Stage.to_json

        def stage_to_json(self) -> dict[str, Any]:  # type: ignore[no-untyped-def]
            with _update_lock:  # a stage is read whole, never halfway through an update
                answer = original_to_json(self)
                canary = getattr(self, "canary_settings", None)
            if canary is not None:
                answer["canarySettings"] = copy.deepcopy(canary)
            return answer

        def get_deployment(self, deployment_id: str):  # type: ignore[no-untyped-def]
            if deployment_id not in self.deployments:
                raise DeploymentNotFound()
            return self.deployments[deployment_id]

        def create_deployment(self) -> Any:  # type: ignore[no-untyped-def]
            function_id = self.path.replace("/restapis/", "", 1).split("/")[0]
            deployment = _create_deployment(
                self.backend,
                function_id,
                name=self._get_param("stageName"),
                description=self._get_param("description") or "",
                variables=self._get_param("variables"),
                canary=self._get_param("canarySettings"),
                bad=bad,
            )
            return 201, {"status": 201}, json.dumps(deployment.to_json())

        def update_stage(self, function_id, stage_name, patch_operations):  # type: ignore[no-untyped-def]
            api = self.get_rest_api(function_id)
            stage = self.get_stage(function_id, stage_name)
            with _update_lock:
                # Work on a copy and swap it in whole: readers (GetStage, from other server
                # threads) never see half an update, and a refused operation changes nothing.
                shadow = object.__new__(models.Stage)  # untracked by moto's instance registry
                shadow.__dict__.update(copy.deepcopy(stage.__dict__))
                for operation in patch_operations or []:
                    _apply_operation(api, shadow, operation, bad, DeploymentNotFound)
                stage.__dict__.update(shadow.__dict__)
            return stage

        models.Stage.to_json = stage_to_json
        models.RestAPI.get_deployment = get_deployment
        models.APIGatewayBackend.update_stage = update_stage
        responses.APIGatewayResponse.create_deployment = create_deployment
        _installed = True


def _check_overrides(overrides: Any, bad) -> dict[str, str]:  # type: ignore[no-untyped-def]
    if not isinstance(overrides, dict):
        raise bad("Invalid canary settings: stageVariableOverrides must be a map")
    for name, value in overrides.items():
        _check_variable(name, value, bad)
    return dict(overrides)


def _check_variable(name: Any, value: Any, bad) -> None:  # type: ignore[no-untyped-def]
    if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
        raise bad(f"Invalid stage variable name {name!r}: alphanumeric and underscore characters")
    if not isinstance(value, str) or not _VARIABLE_VALUE.match(value):
        raise bad(
            f"Invalid stage variable value {value!r} for {name}: must match [A-Za-z0-9-._~:/?#&=,]+"
        )


def _percent(value: Any, bad) -> float:  # type: ignore[no-untyped-def]
    try:
        percent = float(value)
    except (TypeError, ValueError):
        percent = math.nan
    if not 0.0 <= percent <= 100.0:  # also refuses NaN
        raise bad(
            f"Invalid canary percentTraffic {value!r}: must be between 0.0 and 100.0 inclusive"
        )
    return percent


def _create_deployment(backend, function_id, *, name, description, variables, canary, bad):  # type: ignore[no-untyped-def]
    api = backend.get_rest_api(function_id)
    stage = api.stages.get(name) if name else None
    if canary is not None:
        if not name:
            raise bad(
                "Invalid deployment content specified.Non null and non empty stageName must be "
                "provided for canary deployment. Provided value is null"
            )
        if stage is None:
            raise bad(
                f"Invalid deployment content specified.Stage {name} must already be created "
                "before making a canary release deployment"
            )
        settings: dict[str, Any] = {
            "percentTraffic": _percent(canary.get("percentTraffic", 0.0), bad),
            "useStageCache": bool(canary.get("useStageCache", False)),
        }
        if canary.get("stageVariableOverrides"):
            settings["stageVariableOverrides"] = _check_overrides(
                canary["stageVariableOverrides"], bad
            )
    elif stage is not None and getattr(stage, "canary_settings", None) is not None:
        raise bad(
            f"Stage {name} has a canary release: a deployment to it must specify canarySettings "
            "until the canary is removed"
        )
    # moto's own checks (the API has methods with integrations) and id; without a stage name it
    # touches no stage, which the sandbox then updates as AWS does.
    deployment = backend.create_deployment(function_id, "", description, {})
    deployment.stage_name = name or ""
    if stage is None and name:
        api.create_stage(name, deployment.id, dict(variables or {}), "", False, None, None, None)
        return deployment
    if stage is None:
        return deployment
    with _update_lock:
        if canary is not None:
            stage.canary_settings = {"deploymentId": deployment.id, **settings}
        else:
            stage.deployment_id = deployment.id
            if variables:
                stage.variables = {**stage.variables, **variables}
    return deployment


def _apply_operation(api, stage, operation, bad, not_found) -> None:  # type: ignore[no-untyped-def]
    op, path = operation.get("op"), operation.get("path", "")
    canary = getattr(stage, "canary_settings", None)

    def deployment(value: Any) -> str:
        if value not in api.deployments:
            raise not_found()
        return value

    def started() -> dict[str, Any]:
        # "Create a canary release deployment" (by stage update): the canary starts on the
        # stage's own deployment, at 0 %.
        if stage.canary_settings is None:
            stage.canary_settings = {
                "deploymentId": stage.deployment_id,
                "percentTraffic": 0.0,
                "useStageCache": False,
            }
        return stage.canary_settings

    stage.canary_settings = canary
    if op == "copy":
        source = operation.get("from", "")
        if canary is None or not source.startswith("/canarySettings/"):
            raise bad(f"Invalid copy operation from {source or 'nothing'} to {path}")
        if (source, path) == ("/canarySettings/deploymentId", "/deploymentId"):
            stage.deployment_id = canary["deploymentId"]
        elif (source, path) == ("/canarySettings/stageVariableOverrides", "/variables"):
            stage.variables = {**stage.variables, **canary.get("stageVariableOverrides", {})}
        else:
            raise bad(f"Invalid copy operation from {source} to {path}")
        return
    if path == "/canarySettings" and op == "remove":
        # "Turn off a canary release": canarySettings becomes null and leaves the stage.
        stage.canary_settings = None
        return
    if path.startswith("/canarySettings/"):
        setting = path[len("/canarySettings/") :]
        if op not in ("replace", "remove"):
            raise bad(f"Invalid {op} operation with path: {path}")
        if setting.startswith("stageVariableOverrides/"):
            name = setting.split("/", 1)[1]
            overrides = dict(started().get("stageVariableOverrides", {}))
            if op == "replace":
                _check_variable(name, operation.get("value"), bad)
                overrides[name] = operation["value"]
            else:
                overrides.pop(name, None)
            stage.canary_settings = {**stage.canary_settings, "stageVariableOverrides": overrides}
            return
        if op == "remove":
            raise bad(
                f"Cannot remove method setting canarySettings/{setting} because there is no "
                "method setting for this method "
            )
        value = operation.get("value")
        if setting == "percentTraffic":
            stage.canary_settings = {**started(), "percentTraffic": _percent(value, bad)}
        elif setting == "deploymentId":
            stage.canary_settings = {**started(), "deploymentId": deployment(value)}
        elif setting == "useStageCache":
            if str(value).lower() not in ("true", "false"):
                raise bad(f"Invalid useStageCache {value!r}: must be true or false")
            stage.canary_settings = {**started(), "useStageCache": str(value).lower() == "true"}
        else:
            raise bad(f"Invalid method setting path: {path}")
        return
    if path == "/deploymentId" and op == "replace":
        target = deployment(operation.get("value"))
        if canary is not None and target not in (canary["deploymentId"], stage.deployment_id):
            raise bad(
                f"Stage {stage.name} has a canary release: its deployment can move only to the "
                f"canary's ({canary['deploymentId']}) until the canary is removed"
            )
        stage.deployment_id = target
        return
    type(stage).apply_operations(stage, [operation])  # moto serves every other path


# -- data plane: the stage's invoke URL ----------------------------------------------------


def api_name_dimension(name: str, api_id: str) -> str:
    """ApiName as API Gateway sends it: non-ASCII characters removed, the API id if none is left
    ("Amazon API Gateway dimensions and metrics", note on the ApiName dimension)."""
    ascii_only = name.encode("ascii", "ignore").decode()
    return ascii_only or api_id


@dataclass
class _Second:
    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latencies: dict[float, int] = field(default_factory=lambda: defaultdict(int))
    integration: dict[float, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern
    methods: dict[str, dict[str, Any]]  # HTTP method (or ANY) -> the method with its integration
    specificity: tuple[int, int, int]


def _route(resource: dict[str, Any]) -> _Route:
    parts, greedy, params = [], 0, 0
    for part in resource["path"].strip("/").split("/") if resource["path"] != "/" else []:
        if part.startswith("{") and part.endswith("+}"):
            parts.append(f"(?P<{part[1:-2]}>.+)")
            greedy += 1
        elif part.startswith("{") and part.endswith("}"):
            parts.append(f"(?P<{part[1:-1]}>[^/]+)")
            params += 1
        else:
            parts.append(re.escape(part))
    pattern = re.compile("^/" + "/".join(parts) + "$")
    # The most specific resource wins: literal paths, then {param}, then greedy {proxy+}.
    return _Route(pattern, resource.get("resourceMethods") or {}, (greedy, params, -len(parts)))


class StageDataPlane:
    """The invoke URL of one REST API's stages, routing by the stage as read through boto3."""

    def __init__(
        self,
        session: AwsSession,
        rest_api_id: str,
        *,
        refresh_seconds: float | None = None,
        api_refresh_seconds: float = 2.0,
        seed: int | None = None,
        changes: Changes | None = None,
    ) -> None:
        self._apigw = session.client("apigateway")
        self._cloudwatch = session.client("cloudwatch")
        self.rest_api_id = rest_api_id
        # stages at once after a write to the control plane, else every 2 s (0.2 s without one)
        self._changes = changes
        self.refresh_seconds = read_period(refresh_seconds, changes)
        self.api_refresh_seconds = api_refresh_seconds
        self._random = random.Random(seed)
        self._server = LoopbackServer(self._handler(), name=f"bgkit-apigw-{rest_api_id}")
        self._stages: dict[str, dict[str, Any]] = {}
        self._routes: list[_Route] = []
        self._api_dimension = rest_api_id
        self._seconds: dict[tuple[str, int], _Second] = defaultdict(_Second)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._upstreams = Upstreams(timeout=INTEGRATION_TIMEOUT_SECONDS)
        self.served: dict[str, int] = defaultdict(int)  # Stage dimension -> requests
        self._loop_error = LoopErrors("API Gateway")

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> StageDataPlane:
        self._refresh_api()
        self._refresh_stages()
        self._server.start()
        loops = {
            "refresh": lambda: refresh(
                self._stop, self._loop_error,
                (self._refresh_stages, self.refresh_seconds),
                (self._refresh_api, self.api_refresh_seconds),
                self._changes,
            ),
            "metrics": lambda: each_second(self._stop, self._loop_error, self._publish),
        }  # fmt: skip
        for name, target in loops.items():
            thread = threading.Thread(target=target, name=f"bgkit-apigw-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._server.stop()
        self._upstreams.close()
        self._publish(flush_all=True)

    # -- control plane -----------------------------------------------------------------

    def _refresh_api(self) -> None:
        api = self._apigw.get_rest_api(restApiId=self.rest_api_id)
        resources = self._apigw.get_resources(
            restApiId=self.rest_api_id, embed=["methods"], limit=500
        )["items"]
        routes = sorted((_route(r) for r in resources), key=lambda r: r.specificity)
        with self._lock:
            self._api_dimension = api_name_dimension(api["name"], self.rest_api_id)
            self._routes = routes

    def _refresh_stages(self) -> None:
        stages = self._apigw.get_stages(restApiId=self.rest_api_id)["item"]
        with self._lock:
            self._stages = {s["stageName"]: s for s in stages}

    # -- serving -----------------------------------------------------------------------

    def choose(self, stage: dict[str, Any]) -> tuple[bool, dict[str, str]]:
        """Whether a request goes to the canary, and the stage variables it runs with."""
        variables = dict(stage.get("variables") or {})
        canary = stage.get("canarySettings")
        if canary is None:
            return False, variables
        if self._random.random() * 100.0 < float(canary.get("percentTraffic", 0.0)):
            variables.update(canary.get("stageVariableOverrides") or {})
            return True, variables
        return False, variables

    def _handler(self) -> type[KeepAliveHandler]:
        plane = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                plane._serve(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

        return Handler

    def _serve(self, request: KeepAliveHandler) -> None:
        started = time.perf_counter()
        path, _, query = request.path.partition("?")
        stage_name, _, rest = path.lstrip("/").partition("/")
        with self._lock:
            stage = self._stages.get(stage_name)
            routes = self._routes
        if stage is None:
            request.reply(403, b'{"message":"Forbidden"}')
            return
        is_canary, variables = self.choose(stage)
        dimension = stage_name + CANARY_SUFFIX if is_canary else stage_name
        status, body, content_type, integration_seconds = self._invoke(
            request, routes, "/" + rest, query, variables
        )
        request.reply(status, body, content_type)
        self._count(dimension, status, time.perf_counter() - started, integration_seconds)

    def _invoke(
        self,
        request: KeepAliveHandler,
        routes: list[_Route],
        path: str,
        query: str,
        variables: dict[str, str],
    ) -> tuple[int, bytes, str, float | None]:
        for route in routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            method = route.methods.get(request.command) or route.methods.get("ANY")
            if method is None:
                break
            integration = method.get("methodIntegration") or {}
            if integration.get("type") != "HTTP_PROXY":
                return 500, b'{"message":"Internal server error"}', "application/json", None
            target = _integration_uri(integration, match.groupdict(), variables)
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                return 500, b'{"message":"Internal server error"}', "application/json", None
            upstream = parts.path or "/"
            if query:
                upstream += "?" + query
            length = int(request.headers.get("Content-Length") or 0)
            payload = request.rfile.read(length) if length else None
            headers = forwarded_headers(request)
            sent = time.perf_counter()
            try:
                status, body, content_type = self._upstreams.request(
                    (parts.hostname, parts.port or 80), request.command, upstream, headers, payload
                )
            except TimeoutError:
                return 504, b'{"message":"Endpoint request timed out"}', "application/json", None
            except (OSError, http.client.HTTPException):
                return 502, b'{"message":"Internal server error"}', "application/json", None
            return status, body, content_type, time.perf_counter() - sent
        # An unmatched path or method: REST APIs answer 403 Missing Authentication Token.
        return 403, b'{"message":"Missing Authentication Token"}', "application/json", None

    # -- metrics -----------------------------------------------------------------------

    def _count(
        self, dimension: str, status: int, seconds: float, integration: float | None
    ) -> None:
        second = int(time.time())
        with self._lock:
            bucket = self._seconds[(dimension, second)]
            bucket.requests += 1
            bucket.errors_4xx += 400 <= status < 500
            bucket.errors_5xx += 500 <= status < 600
            bucket.latencies[round(1000 * seconds, 2)] += 1
            if integration is not None:
                bucket.integration[round(1000 * integration, 2)] += 1
            self.served[dimension] += 1

    def _publish(self, flush_all: bool = False) -> None:
        now = int(time.time())
        with self._lock:
            done = [key for key in self._seconds if flush_all or key[1] < now]
            buckets = {key: self._seconds.pop(key) for key in done}
            api = self._api_dimension
        data: list[dict[str, Any]] = []
        for (dimension, second), bucket in buckets.items():
            base = {
                "Dimensions": [
                    {"Name": "ApiName", "Value": api},
                    {"Name": "Stage", "Value": dimension},
                ],
                "Timestamp": datetime.fromtimestamp(second, UTC),
                "StorageResolution": 1,
            }
            data.extend(distribution(base, "Count", "Count", {1.0: bucket.requests}))
            for name, errors in (("4XXError", bucket.errors_4xx), ("5XXError", bucket.errors_5xx)):
                samples = {0.0: bucket.requests - errors, 1.0: errors}
                data.extend(
                    distribution(base, name, "Count", {v: n for v, n in samples.items() if n})
                )
            data.extend(distribution(base, "Latency", "Milliseconds", bucket.latencies))
            if bucket.integration:
                data.extend(
                    distribution(base, "IntegrationLatency", "Milliseconds", bucket.integration)
                )
        for chunk in range(0, len(data), 500):
            self._cloudwatch.put_metric_data(
                Namespace="AWS/ApiGateway", MetricData=data[chunk : chunk + 500]
            )


def _integration_uri(
    integration: dict[str, Any], path_values: dict[str, str], variables: dict[str, str]
) -> str:
    """The integration's URI for one request: stage variables, then the path parameters that
    the integration maps from the method request ("Set up stage variables for REST APIs";
    "Set up a proxy integration with a proxy resource")."""
    uri = _STAGE_VARIABLE.sub(lambda m: variables.get(m.group(1), ""), integration.get("uri", ""))
    for target, source in (integration.get("requestParameters") or {}).items():
        if target.startswith("integration.request.path.") and source.startswith(
            "method.request.path."
        ):
            value = path_values.get(source.rsplit(".", 1)[1], "")
            uri = uri.replace("{" + target.rsplit(".", 1)[1] + "}", value)
    return uri


# -- the scenario --------------------------------------------------------------------------


@register
class ApiGatewayCanaryScenario(Scenario):
    """A REST API with one `{proxy+}` resource (method ANY, HTTP_PROXY integration to
    http://${stageVariables.backend}/{proxy}) deployed to stage `prod` with `backend` = blue.
    Green runs beside it; the release's canary overrides `backend` with green's address."""

    pattern = "apigw_canary"
    STAGE = "prod"

    def start(self) -> ApiGatewayCanaryScenario:
        apigw = self.session.client("apigateway")
        blue = self._started(self._blue_service())
        green = self._started(self._green_service())
        name = f"bgkit-{self.id}"
        api_id = apigw.create_rest_api(name=name, endpointConfiguration={"types": ["REGIONAL"]})[
            "id"
        ]
        root = next(
            r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/"
        )
        proxy = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="{proxy+}")["id"]
        apigw.put_method(
            restApiId=api_id,
            resourceId=proxy,
            httpMethod="ANY",
            authorizationType="NONE",
            requestParameters={"method.request.path.proxy": True},
        )
        apigw.put_integration(
            restApiId=api_id,
            resourceId=proxy,
            httpMethod="ANY",
            type="HTTP_PROXY",
            integrationHttpMethod="ANY",
            uri="http://${stageVariables.backend}/{proxy}",
            requestParameters={"integration.request.path.proxy": "method.request.path.proxy"},
        )
        apigw.create_deployment(
            restApiId=api_id,
            stageName=self.STAGE,
            description="v1",
            variables={"backend": f"127.0.0.1:{blue.port}"},
        )
        plane = self._started(StageDataPlane(self.session, api_id, changes=self.changes))
        self._started(LoadGenerator(plane.url, self.request_rate, path=f"/{self.STAGE}/orders"))
        self.parameters = {
            "rest_api_id": api_id,
            "stage_name": self.STAGE,
            "green_stage_variables": f"backend=127.0.0.1:{green.port}",
            "smoke_url": green.url + "/orders",  # green's own endpoint, before any canary traffic
            "production_url": f"{plane.url}/{self.STAGE}/orders",
        }
        return self
