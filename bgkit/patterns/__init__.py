"""The pattern registry: runbooks, the CLI and tests find patterns here by name."""

from __future__ import annotations

from .base import Pattern, Split

_REGISTRY: dict[str, type[Pattern]] = {}


def register(cls: type[Pattern]) -> type[Pattern]:
    """Class decorator: make a pattern available by its `name`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"pattern {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Pattern]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"no pattern named {name!r}; known patterns: {known}") from None


def check_resources(pattern: type[Pattern], resources: dict[str, str]) -> None:
    """Checks across a pattern's resource parameters (e.g. blue differs from green), if it has any."""
    check = getattr(pattern, "check_resources", None)
    if check is not None:
        check(resources)


def names() -> list[str]:
    return sorted(_REGISTRY)


# Each pattern module registers itself when imported.
from . import (  # noqa: E402
    alb_weighted,  # noqa: F401
    apigw_canary,  # noqa: F401
    app_runner,  # noqa: F401
    asg_swap,  # noqa: F401
    ecs_codedeploy,  # noqa: F401
    ecs_native,  # noqa: F401
    feature_flag,  # noqa: F401
    lambda_codedeploy,  # noqa: F401
    route53_weighted,  # noqa: F401
)

__all__ = ["Pattern", "Split", "check_resources", "get", "names", "register"]
