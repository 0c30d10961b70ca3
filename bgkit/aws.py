"""The one place bgkit creates boto3 clients.

Against real AWS, credentials and endpoint come from the standard boto3 chain (profile,
environment, instance role; ``AWS_ENDPOINT_URL`` is honoured by botocore itself). The
sandbox differs only by passing its loopback endpoint and throwaway credentials here.

How AWS errors reach a release:

- throttling and server errors (``Throttling``, ``ThrottlingException``, HTTP 500/502/503/504,
  ``RequestTimeout``...) are retried by botocore's *standard* retry mode, configured below:
  up to `MAX_ATTEMPTS` attempts in all, with jittered exponential backoff (from 1 s for
  throttling, 50 ms for server errors, at most 20 s) and a per-client retry quota. No loop of
  bgkit's own retries anything.
- refusals that no retry can change (botocore's standard mode does not retry them either) —
  access denied (`ACCESS_DENIED`) and invalid requests (`INVALID_REQUEST`) — are raised at
  once as `AwsRefused`, whose message names the IAM action, the resource the request was
  about, AWS's code and message. It is a ClientError too, so ``error.response["Error"]["Code"]``
  tests keep working; every other error is botocore's own ClientError, unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from .errors import AwsRefused, MutationRefused

# Throttling and 5xx are retried by botocore's standard retry mode, not by hand-written loops.
# total_max_attempts counts the first attempt (botocore's client `max_attempts` counts only
# retries): 6 is the first and up to five retries, as `max_attempts: 5` meant before.
MAX_ATTEMPTS = 6
_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    connect_timeout=5,
    read_timeout=30,
)
VERSION = "0.1.0"

# Error codes that mean the caller may not make this call: IAM denied it, or its credentials
# are not valid (AWS services name these differently).
ACCESS_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "AuthorizationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "NotAuthorized",
        "SignatureDoesNotMatch",
        "UnauthorizedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
    }
)
# Error codes that mean the request itself is invalid: the same request fails the same way.
INVALID_REQUEST = frozenset(
    {
        "BadRequestException",
        "InvalidInput",
        "InvalidInputException",
        "InvalidParameter",
        "InvalidParameterCombination",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidRequestException",
        "MissingParameter",
        "SerializationException",
        "ValidationError",
        "ValidationException",
    }
)

# IAM service prefixes that differ from the signing name, and actions that differ from the API
# operation (Service Authorization Reference). API Gateway's management actions are HTTP methods.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
_IAM_ACTION = {("lambda", "Invoke"): "InvokeFunction"}
# Request parameters that name the resource a call is about: ARNs, ids and names
# (ListenerArn, TargetGroupArns, restApiId, stageName, HostedZoneId, deploymentId, TableName,
# FunctionName...), and ECS's bare ones. Never anything that could hold a secret.
_RESOURCE_KEY = re.compile(r"(Arn|ARN|Arns|ARNs|Id|ID|Ids|Name|Names|Identifier)$")
_RESOURCE_KEYS = frozenset({"cluster", "service", "taskSet", "taskDefinition", "Qualifier"})
_SECRET_KEY = re.compile(r"(key|token|secret|password|credential)", re.I)
_PARAMS = "bgkit_api_params"  # where the request context keeps the call's parameters
# Operations that only read (the sandbox's call log and a plan's read-only session use it too).
READ_OPERATION = re.compile(r"^(Get|Describe|List|BatchGet|Query|Scan|Search|Lookup)[A-Z]")


def release_agent(runbook: str) -> str:
    """The User-Agent suffix of a release's calls: CloudTrail (and the sandbox) see which
    runbook made each call."""
    return f"bgkit/{VERSION} bgkit-runbook/{runbook}"


@dataclass
class AwsSession:
    region: str
    endpoint_url: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    agent: str = f"bgkit/{VERSION}"  # appended to botocore's User-Agent (see release_agent)
    # A plan's session (bgkit.planning): any call that is not a read is refused before it is
    # sent, whichever code makes it, so a plan cannot change anything.
    read_only: bool = False
    # Every call that changes something, as made (after botocore's retries), in order: what a
    # release following a plan is held to (bgkit.planning.compare).
    changes: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                self._session = boto3_session(
                    self.region, self.access_key_id, self.secret_access_key
                )
            client = self._session.client(
                service,
                endpoint_url=self.endpoint_url,
                config=_CONFIG.merge(Config(user_agent_extra=self.agent)),
            )
            raise_refusals(client)
            client.meta.events.register("before-call", self._before_call)
            client.meta.events.register("after-call", self._after_call)
            self._clients[service] = client
        return self._clients[service]

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.read_only and not READ_OPERATION.match(model.name):
            raise MutationRefused(
                f"{iam_action(model)} refused: this session only reads (a plan changes nothing)"
            )

    def _after_call(
        self, http_response: Any, model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if READ_OPERATION.match(model.name):
            return
        self.changes.append(
            {
                "action": iam_action(model),
                "operation": model.name,
                "resource": resource_of(context.get(_PARAMS) or {}),
                "digest": params_digest(context.get(_PARAMS) or {}, model),
                "status": http_response.status_code,
            }
        )

    def caller_arn(self) -> str:
        """The STS caller identity: who is running this release."""
        return self.client("sts").get_caller_identity()["Arn"]


def boto3_session(region: str, access_key_id: str | None, secret: str | None) -> Any:
    """A boto3 session that reads botocore's data (endpoints, service models) through the one
    loader of this process: a new session would parse that JSON again, about 0.15 s of CPU
    for a session and four clients, and the sandbox, the tests and a kernel make many."""
    import botocore.session

    core = botocore.session.get_session()
    loader = _data_loader()
    core.register_component("data_loader", loader)
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        region_name=region,
        botocore_session=core,
    )
    # boto3 adds its own data folder to the loader's search paths for each session: once is enough
    loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return session


@functools.cache
def _data_loader() -> Any:
    from botocore.loaders import create_loader

    return create_loader()


def raise_refusals(client: Any) -> None:
    """Make `client` raise `AwsRefused` for access-denied and invalid-request errors.

    Two of botocore's documented client events, on this client only: ``before-parameter-build``
    keeps the call's parameters in its request context, and ``after-call`` — emitted once per
    API call with the final response, after botocore's retries — raises AwsRefused in place of
    the ClientError botocore would raise next. Being events, they cover every way a call is
    made: methods, paginators and waiters (a waiter sees AwsRefused as the ClientError it is).
    """
    events = client.meta.events
    events.register("before-parameter-build", _keep_params, unique_id="bgkit-keep-params")
    events.register_last("after-call", _raise_refusal, unique_id="bgkit-raise-refusal")


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[_PARAMS] = params


def _raise_refusal(
    http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
) -> None:
    if http_response.status_code < 300:
        return
    code = context.get("error_code_override") or parsed.get("Error", {}).get("Code")
    if code in ACCESS_DENIED:
        kind = "access denied"
    elif code in INVALID_REQUEST:
        kind = "invalid request"
    else:
        return  # botocore raises its own ClientError (after its retries, if it retries it)
    raise AwsRefused(
        parsed,
        model.name,
        action=iam_action(model),
        resource=resource_of(context.get(_PARAMS) or {}),
        kind=kind,
    )


def iam_action(operation: Any) -> str:
    """The IAM action of a botocore operation model, e.g. ``elasticloadbalancing:ModifyListener``
    (API Gateway's management actions are HTTP methods: ``apigateway:PATCH``)."""
    service = operation.service_model
    prefix = _IAM_PREFIX.get(service.signing_name, service.signing_name)
    if service.service_name == "apigateway":
        return f"apigateway:{operation.http['method']}"
    return f"{prefix}:{_IAM_ACTION.get((service.service_name, operation.name), operation.name)}"


def params_digest(params: Mapping[str, Any], operation: Any) -> str:
    """A short hash of a call's parameters: a plan's call and the release's are the same call
    if their hashes are (the parameters themselves may hold what no record should). Tokens
    that botocore fills in itself (idempotency) are left out."""
    own = {k: v for k, v in params.items() if k not in operation.idempotent_members}
    canonical = json.dumps(own, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resource_of(params: dict[str, Any]) -> str:
    """The identifiers a call's parameters name, e.g. ``ListenerArn=arn:aws:...``: top-level
    ARNs, ids and names only; never values of keys that could hold a secret, nor bodies."""
    named = []
    for key, value in params.items():
        if not (_RESOURCE_KEY.search(key) or key in _RESOURCE_KEYS) or _SECRET_KEY.search(key):
            continue
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            text = ",".join(value[:3]) + (f",... ({len(value)} in all)" if len(value) > 3 else "")
        else:
            continue
        named.append(f"{key}={text if len(text) <= 300 else text[:297] + '...'}")
    return ", ".join(named)
