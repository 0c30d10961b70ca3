"""AWS APIs that moto lacks or does not move, served by the sandbox behind the same HTTP endpoint.

An extension handles one JSON-protocol service (selected by the ``X-Amz-Target`` header);
every other request goes to moto. boto3 cannot tell the difference.
"""

from __future__ import annotations

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
    """Base for an extension: `target_prefix` selects requests; methods are the actions, in snake_case."""

    target_prefix: str

    def handle(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self, _snake(action), None)
        if method is None:
            raise AwsError("UnknownOperationException", f"the sandbox does not implement {action}")
        return method(body) or {}


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
            if target.startswith(service.target_prefix):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                try:
                    status, payload = (
                        200,
                        service.handle(target[len(service.target_prefix) :], body),
                    )
                except AwsError as error:
                    status, payload = error.status, {"__type": error.code, "message": error.message}
                data = json.dumps(payload, default=_json_default).encode()
                reason = "OK" if status == 200 else "Bad Request"
                start_response(
                    f"{status} {reason}",
                    [
                        ("Content-Type", "application/x-amz-json-1.1"),
                        ("Content-Length", str(len(data))),
                    ],
                )
                return [data]
        return app(environ, start_response)

    return dispatch


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
