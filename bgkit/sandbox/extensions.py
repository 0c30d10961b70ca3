"""AWS APIs that moto lacks or does not move, served by the sandbox behind the same HTTP endpoint.

An extension handles one JSON-protocol service (selected by the ``X-Amz-Target`` header);
every other request goes to moto. boto3 cannot tell the difference.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from typing import Any


class AwsError(Exception):
    """An error answered as AWS does for JSON protocols: HTTP 400 and a ``__type``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class JsonService:
    """Base for an extension: `target_prefix` selects requests; methods are the actions, in snake_case.

    An extension that fills gaps in a service moto does serve lists the moto actions it must
    also see in `observed`: those go to moto, with `before` called first (it may refuse the
    request) and `after` given moto's answer to complete. Every other action it has no method
    for goes to moto untouched (`partial`), or is refused as unknown.
    """

    target_prefix: str
    service_model: str  # botocore's name for the service: its operations are the only actions
    observed: frozenset[str] = frozenset()
    partial: bool = False  # True: moto serves the actions this extension does not

    def serves(self, action: str) -> bool:
        return not self.partial or (
            action not in self.observed and self._method(action) is not None
        )

    def handle(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        method = self._method(action)
        if method is None:
            raise AwsError("UnknownOperationException", f"the sandbox does not implement {action}")
        return method(body) or {}

    def _method(self, action: str) -> Callable | None:
        if action not in _operations(self.service_model):
            return None  # never an internal method (start, stop...) called by name
        return getattr(self, _snake(action), None)

    def before(self, action: str, body: dict[str, Any]) -> None:
        """Called before moto serves an observed action; raise AwsError to refuse it."""

    def after(self, action: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """Complete moto's successful answer to an observed action."""
        return answer

    def settled(self, action: str, body: dict[str, Any]) -> None:
        """Called once moto has answered an observed action that `before` let through, whatever
        the answer: to release what `before` reserved."""


@functools.cache
def _operations(service_model: str) -> frozenset[str]:
    import botocore.session

    return frozenset(
        botocore.session.get_session().get_service_model(service_model).operation_names
    )


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def middleware(app: Callable, services: list[JsonService]) -> Callable:
    def dispatch(environ: dict[str, Any], start_response: Callable) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        for service in services:
            if hasattr(service, "matches"):  # a REST-protocol operation, matched by method and path
                if service.matches(environ):
                    status, headers, data = service.respond(environ)
                    start_response(
                        f"{status} {'OK' if status == 200 else 'Error'}",
                        [*headers, ("Content-Length", str(len(data)))],
                    )
                    return [data]
                continue
            if not target.startswith(service.target_prefix):
                continue
            action = target[len(service.target_prefix) :]
            if action in service.observed:
                return _observed(app, service, action, environ, start_response)
            if service.serves(action):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                try:
                    return _answer(start_response, 200, service.handle(action, body))
                except AwsError as error:
                    return _error(start_response, error)
        return app(environ, start_response)

    return dispatch


def _observed(
    app: Callable, service: JsonService, action: str, environ: dict[str, Any], start_response
) -> list[bytes]:
    """Serve an observed action: the extension's `before`, moto, then the extension's `after`."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length)
    body = json.loads(raw or b"{}")
    try:
        service.before(action, body)
    except AwsError as error:
        return _error(start_response, error)
    environ["wsgi.input"] = io.BytesIO(raw)
    captured: dict[str, Any] = {}
    written: list[bytes] = []

    def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
        captured["status"], captured["headers"] = status, headers
        return written.append

    try:
        result = app(environ, capture)
        try:
            data = b"".join([*written, *result])
        finally:
            if hasattr(result, "close"):
                result.close()
        status = int(captured["status"].split()[0])
        if status != 200:
            start_response(captured["status"], captured["headers"])
            return [data]
        try:
            answer = service.after(action, body, json.loads(data or b"{}"))
        except AwsError as error:
            return _error(start_response, error)
        return _answer(start_response, 200, answer)
    finally:
        service.settled(action, body)


def _error(start_response: Callable, error: AwsError) -> list[bytes]:
    return _answer(start_response, error.status, {"__type": error.code, "message": error.message})


def _answer(start_response: Callable, status: int, payload: dict[str, Any]) -> list[bytes]:
    data = json.dumps(payload, default=_json_default).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Bad Request'}",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _json_default(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.timestamp()  # JSON protocols send timestamps as epoch seconds
    raise TypeError(f"cannot serialise {type(value).__name__}")


def distribution(
    base: dict[str, Any], name: str, unit: str, counts: dict[float, int]
) -> list[dict[str, Any]]:
    """PutMetricData datums for raw values with their counts, at most 150 values per datum
    (API Reference, MetricDatum.Values), so CloudWatch can compute percentiles."""
    values = sorted(counts.items())
    return [
        {
            **base,
            "MetricName": name,
            "Unit": unit,
            "Values": [v for v, _ in values[i : i + 150]],
            "Counts": [c for _, c in values[i : i + 150]],
        }
        for i in range(0, len(values), 150)
    ]
