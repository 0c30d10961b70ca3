"""Exceptions raised by bgkit.

    BgkitError
    ├── ParameterError        a release parameter is invalid (raised before any AWS call)
    ├── PreflightError        the target is missing or not in a releasable state (before any mutation)
    ├── TrafficError          AWS refused or did not apply a traffic change
    │   ├── DeploymentStopped the service stopped green's deployment itself; blue serves
    │   └── RollbackFailed    traffic could not be returned to blue; carries where it is now
    ├── AwsRefused            AWS refused a call outright (access denied, invalid request): not
    │                         retried; names the IAM action and the resource (also a ClientError)
    ├── MutationRefused       a plan's read-only session refused a call that would change something
    ├── SandboxError          the embedded sandbox could not start or provision a scenario
    ├── SchemaError           green's migrations cannot be checked as given (a missing file, a
    │                         database that cannot be read); names the parameter
    └── NotebookError         a notebook a person runs cannot hold a release's record (a runbook
                              template, or the sealed record of an ended release)

Every error carries the state that explains it, so its message alone tells an engineer
at 2 pm what happened and what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError


class BgkitError(Exception):
    """Base class of every error bgkit raises on purpose."""


class ParameterError(BgkitError, ValueError):
    """A release parameter is invalid. Names the parameter and what is allowed."""

    def __init__(self, name: str, allowed: str, got: object) -> None:
        self.name = name
        self.allowed = allowed
        self.got = got
        super().__init__(f"{name}: {allowed}, got {_short(got)}")


class PreflightError(BgkitError):
    """The target cannot be released as it is; nothing has been changed."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}" if parameter else message)


class MutationRefused(BgkitError):
    """A call that would change something, refused before it was sent: the session is a
    plan's (bgkit.planning), which only reads."""


class TrafficError(BgkitError):
    """A traffic change was refused by AWS or did not read back as written."""

    def __init__(self, message: str, *, split: Mapping[str, int] | None = None) -> None:
        self.split = dict(split) if split is not None else None
        super().__init__(message if split is None else f"{message} (traffic now: {_fmt(split)})")


class SchemaError(BgkitError):
    """Green's migrations could not be checked (bad input, a database that cannot be read).
    Raised before any change; an incompatible migration is a refusal, not this error."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}" if parameter else message)


class DeploymentStopped(TrafficError):
    """The service stopped green's deployment by itself (e.g. App Runner rolled back a version
    that failed its health check) and blue serves: the release ends as rolled back."""


class RollbackFailed(TrafficError):
    """Traffic could not be returned to blue. The message says where it is and how to resume."""


class AwsRefused(BgkitError, ClientError):
    """AWS refused a call in a way no retry can change: the caller may not do it (access
    denied) or the request is invalid (validation). Raised at once by bgkit's clients (see
    bgkit.aws), after no retry; throttling and server errors are retried there instead.

    It is also botocore's ClientError, with the same `response` and `operation_name`, so code
    that tests ``error.response["Error"]["Code"]`` keeps working. `action` is the IAM action
    (``elasticloadbalancing:ModifyListener``), `resource` the identifiers the request named
    (``ListenerArn=arn:aws:...``, "" if none), `kind` "access denied" or "invalid request".
    """

    def __init__(
        self,
        response: dict[str, Any],
        operation_name: str,
        *,
        action: str,
        resource: str = "",
        kind: str,
    ) -> None:
        ClientError.__init__(self, response, operation_name)
        self.action = action
        self.resource = resource
        self.kind = kind
        error = response.get("Error", {})
        self.code = str(error.get("Code", "Unknown"))
        # the operation too where IAM names it otherwise (apigateway:PATCH is UpdateStage)
        what = action if action.endswith(f":{operation_name}") else f"{action} ({operation_name})"
        what += f" on {resource}" if resource else ""
        verb = "denied" if kind == "access denied" else "rejected"
        advice = (
            f"; the identity running the release needs permission for {action}"
            if kind == "access denied"
            else ""
        )
        message = _short(str(error.get("Message") or ""), 500, quote=False)
        retries = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        retried = f"after {retries} retries" if retries else "not retried"
        self.args = (f"AWS {verb} {what}: {self.code}: {message} ({retried}{advice})",)

    def __reduce__(self) -> Any:
        # ClientError pickles as a plain ClientError; keep the type and the explanation.
        return _refused, (self.response, self.operation_name, self.action, self.resource, self.kind)


def _refused(response: dict, operation: str, action: str, resource: str, kind: str) -> AwsRefused:
    return AwsRefused(response, operation, action=action, resource=resource, kind=kind)


class SandboxError(BgkitError):
    """The embedded sandbox could not start or provision what a runbook needs."""


class NotebookError(BgkitError):
    """A release run by a person in Jupyter would leave no record: the notebook is not one that
    `bgkit lab` prepared (a template in runbooks/), or it is already an ended release's record.
    Raised by the runbook's first step, before any AWS call."""


def _fmt(split: Mapping[str, int]) -> str:
    return ", ".join(f"{colour} {percent}%" for colour, percent in split.items())


def _short(value: object, limit: int = 80, *, quote: bool = True) -> str:
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
