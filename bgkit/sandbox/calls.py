"""What the sandbox's AWS endpoint was asked, and faults it answers instead, on request.

Every request to the control plane is named as IAM names it (``elasticloadbalancing:ModifyListener``,
``apigateway:PATCH``) from the request itself: the signing service in the Authorization header,
then the operation from ``X-Amz-Target``, the ``/service/…/operation/…`` path of the CBOR
protocol, the query protocols' ``Action``, or, for REST protocols, the method and path matched
against botocore's own model of the service. Requests whose User-Agent carries ``bgkit-runbook/``
(bgkit's releases, see bgkit.aws) are logged, so tests can check what a runbook called and that a
refused release changed nothing; the sandbox's own engines (``bgkit-sandbox/``) are not.

A fault makes the endpoint answer the next `times` requests of one IAM action with an AWS error
in that service's protocol (throttling, an internal error, access denied...), before moto sees
them: the client's retry policy and error handling are tested against the real wire format.
"""

from __future__ import annotations

import functools
import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from ..aws import READ_OPERATION as _READ
from ..aws import iam_action as aws_iam_action

RUNBOOK_AGENT = "bgkit-runbook/"
# signing name -> botocore service, where they differ (the IAM name is bgkit.aws.iam_action's)
_SERVICES = {"elasticloadbalancing": "elbv2", "monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Call:
    at: float
    action: str  # as IAM names it, e.g. "elasticloadbalancing:ModifyListener"
    operation: str  # the API operation, e.g. "ModifyListener" (apigateway: "UpdateStage")
    runbook: str  # from the User-Agent's bgkit-runbook/<name>
    mutating: bool
    status: int
    fault: str = ""  # the injected error code, if the sandbox answered with one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fault:
    action: str
    code: str
    status: int = 400
    times: int = 1
    message: str = ""

    def __post_init__(self) -> None:
        # Checked here, not while answering a request: a bad fault is refused when injected
        # (the admin API answers 400), instead of breaking the endpoint under a release.
        if ":" not in self.action or not self.code:
            raise ValueError(
                f"a fault needs an IAM action (service:Operation) and an error code: {self}"
            )
        if (
            isinstance(self.status, bool)
            or not isinstance(self.status, int)
            or not 400 <= self.status <= 599
        ):
            raise ValueError(
                f"a fault's status is an HTTP error status (400-599), got {self.status!r}"
            )
        if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
            raise ValueError(f"a fault answers at least one call (times >= 1), got {self.times!r}")


# Writes that no data plane follows: metrics, the release's lock, records and messages.
_UNFOLLOWED = re.compile(r"^(cloudwatch|logs|dynamodb|sts|s3|sns|sqs|ecr):")


class Changes:
    """A count of the control plane's writes that data planes follow (weights, rules, targets,
    stages, aliases): a data plane's refresh loop waits on it (bgkit.sandbox.http.refresh), so
    that it serves a change at once, as AWS does within moments, and otherwise reads the
    control plane only every few seconds. Polling every 0.2 s instead cost most of a
    scenario's CPU (benchmarks/sandbox_cpu.py)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.count = 0

    def bump(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """The count once it differs from `seen`, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.count != seen, timeout)
            return self.count


class CallLog:
    def __init__(self) -> None:
        self.changes = Changes()
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: list[Fault] = []

    def calls(self, since: int = 0, runbook: str | None = None) -> list[Call]:
        with self._lock:
            calls = self._calls[since:]
        return [c for c in calls if runbook is None or c.runbook == runbook]

    def mark(self) -> int:
        """A position in the log: calls(since=mark()) are the calls made after it."""
        with self._lock:
            return len(self._calls)

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, action: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.action == action and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:  # spent: a long-lived sandbox keeps no dead faults
                        self._faults.remove(fault)
                    return fault
        return None

    def middleware(self, app: Callable) -> Callable:
        def dispatch(environ: dict[str, Any], start_response: Callable) -> Any:
            agent = environ.get("HTTP_USER_AGENT", "")
            runbook = agent.split(RUNBOOK_AGENT, 1)[1].split()[0] if RUNBOOK_AGENT in agent else ""
            identified = identify(environ)
            if identified is None:
                return app(environ, start_response)
            operation, iam_action, protocol = identified
            fault = self._take_fault(iam_action) if runbook else None  # faults meet bgkit only
            status: list[int] = []

            def capture(line: str, headers: list, exc_info: Any = None) -> Callable:
                status.append(int(line.split()[0]))
                return start_response(line, headers, exc_info)

            if fault is not None:
                result = _fault_response(protocol, fault, capture)
            else:
                result = app(environ, capture)
            if (
                not _READ.match(operation)
                and not _UNFOLLOWED.match(iam_action)
                and (not status or status[0] < 400)
            ):
                self.changes.bump()
            if runbook:
                call = Call(
                    at=time.time(),
                    action=iam_action,
                    operation=operation,
                    runbook=runbook,
                    mutating=not _READ.match(operation),
                    status=status[0] if status else 0,
                    fault=fault.code if fault else "",
                )
                with self._lock:
                    self._calls.append(call)
            return result

        return dispatch


def identify(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(operation, IAM action, protocol) of a request, or None if it is not signed."""
    match = re.search(
        r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", "")
    )
    if match is None:
        return None
    signing = match.group(1)
    try:
        model = _model(_SERVICES.get(signing, signing))
    except Exception:  # a service botocore does not know: log it by its signing name only
        return "?", f"{signing}:?", "json"
    operation = _operation(environ, model)
    try:
        iam_action = aws_iam_action(model.operation_model(operation))
    except Exception:  # an operation the model does not have: named as the request names it
        iam_action = f"{signing}:{operation}"
    # the protocol the client spoke (a service may offer several: CloudWatch CBOR, JSON, query)
    if environ.get("HTTP_SMITHY_PROTOCOL"):
        protocol = "smithy-rpc-v2-cbor"
    elif environ.get("HTTP_X_AMZ_TARGET"):
        protocol = "json"
    elif _form_encoded(environ):
        protocol = "ec2" if model.protocol == "ec2" else "query"
    else:
        protocol = model.protocol
    return operation, iam_action, protocol


@functools.cache
def _model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _operation(environ: dict[str, Any], model: Any) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    path = environ.get("PATH_INFO", "")
    rpc = re.match(r"^/service/[^/]+/operation/([^/]+)$", path)
    if rpc:
        return rpc.group(1)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if model.protocol in ("query", "ec2") or _form_encoded(environ):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        form = parse_qs(body.decode("utf-8", "replace"))
        return form.get("Action", ["?"])[0]
    return _rest_operation(model, environ["REQUEST_METHOD"], path, query) or "?"


def _form_encoded(environ: dict[str, Any]) -> bool:
    """A query-protocol request (its Action in a form body), whatever the service's model
    prefers: without this, a service modelled as CBOR would match it against REST routes."""
    content_type = environ.get("CONTENT_TYPE", "")
    return content_type.startswith("application/x-www-form-urlencoded")


def _rest_operation(model: Any, method: str, path: str, query: dict[str, list[str]]) -> str | None:
    best: tuple[int, str] | None = None
    for name, regex, needs, literal in _rest_routes(model.service_name):
        if _methods(model.service_name)[name] != method or not regex.match(path):
            continue
        if any(key not in query for key in needs):
            continue
        if best is None or literal > best[0]:
            best = (literal, name)
    return best[1] if best else None


@functools.cache
def _methods(service: str) -> dict[str, str]:
    model = _model(service)
    return {n: model.operation_model(n).http["method"] for n in model.operation_names}


@functools.cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern, list[str], int]]:
    model = _model(service)
    routes = []
    for name in model.operation_names:
        uri = model.operation_model(name).http["requestUri"]
        path, _, fixed_query = uri.partition("?")
        pattern = ""
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{"):
                pattern += ".+" if part.endswith("+}") else "[^/]+"
            else:
                pattern += re.escape(part)
        needs = [q.split("=")[0] for q in fixed_query.split("&") if q]
        literal = len(re.sub(r"\{[^}]+\}", "", path))
        routes.append((name, re.compile(f"^{pattern.rstrip('/')}/?$"), needs, literal))
    return routes


def _fault_response(protocol: str, fault: Fault, start_response: Callable) -> list[bytes]:
    message = fault.message or f"injected by the bgkit sandbox: {fault.code}"
    reason = "Error"
    if protocol == "json":
        headers = [("Content-Type", "application/x-amz-json-1.1")]
        body = json.dumps({"__type": fault.code, "message": message}).encode()
    elif protocol == "rest-json":
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", fault.code)]
        body = json.dumps({"message": message}).encode()
    elif protocol == "smithy-rpc-v2-cbor":
        headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        body = _cbor_map({"__type": fault.code, "message": message})
    elif protocol == "ec2":
        headers = [("Content-Type", "text/xml")]
        body = (
            f"<Response><Errors><Error><Code>{fault.code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>bgkit-sandbox-fault</RequestID></Response>"
        ).encode()
    else:  # query, rest-xml
        headers = [("Content-Type", "text/xml")]
        kind = "Receiver" if fault.status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{fault.code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>bgkit-sandbox-fault</RequestId>"
            "</ErrorResponse>"
        ).encode()
    start_response(f"{fault.status} {reason}", [*headers, ("Content-Length", str(len(body)))])
    return [body]


def _cbor_map(values: dict[str, str]) -> bytes:
    """A CBOR map of text to text (RFC 8949), enough for an rpc-v2-cbor error body."""

    def text(value: str) -> bytes:
        data = value.encode()
        n = len(data)
        if n < 24:
            head = bytes([0x60 | n])
        elif n < 0x100:
            head = bytes([0x78, n])
        elif n < 0x10000:
            head = bytes([0x79]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x7A]) + n.to_bytes(4, "big")
        return head + data

    return bytes([0xA0 | len(values)]) + b"".join(text(k) + text(v) for k, v in values.items())
