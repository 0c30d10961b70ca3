"""Exceptions raised by bgkit.

    BgkitError
    ├── ParameterError        a release parameter is invalid (raised before any AWS call)
    ├── PreflightError        the target is missing or not in a releasable state (before any mutation)
    ├── TrafficError          AWS refused or did not apply a traffic change
    │   ├── DeploymentStopped the service stopped green's deployment itself; blue serves
    │   └── RollbackFailed    traffic could not be returned to blue; carries where it is now
    └── SandboxError          the embedded sandbox could not start or provision a scenario

Every error carries the state that explains it, so its message alone tells an engineer
at 2 pm what happened and what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping


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


class TrafficError(BgkitError):
    """A traffic change was refused by AWS or did not read back as written."""

    def __init__(self, message: str, *, split: Mapping[str, int] | None = None) -> None:
        self.split = dict(split) if split is not None else None
        super().__init__(message if split is None else f"{message} (traffic now: {_fmt(split)})")


class DeploymentStopped(TrafficError):
    """The service stopped green's deployment by itself (e.g. App Runner rolled back a version
    that failed its health check) and blue serves: the release ends as rolled back."""


class RollbackFailed(TrafficError):
    """Traffic could not be returned to blue. The message says where it is and how to resume."""


class SandboxError(BgkitError):
    """The embedded sandbox could not start or provision what a runbook needs."""


def _fmt(split: Mapping[str, int]) -> str:
    return ", ".join(f"{colour} {percent}%" for colour, percent in split.items())


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
