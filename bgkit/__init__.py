"""bgkit: release runbooks for blue/green and canary deployments on AWS.

A runbook (a notebook in ``runbooks/``) validates its parameters, connects to its target,
and drives a `Release` through preflight, smoke test, stepwise shift judged by an anytime-valid test of green against blue,
promotion or rollback, and the record.
"""

from . import patterns, plans
from .aws import AwsSession
from .clock import Clock, FakeClock, SystemClock
from .connect import Connection, connect
from .errors import (
    BgkitError,
    ParameterError,
    PreflightError,
    RollbackFailed,
    SandboxError,
    TrafficError,
)
from .gate import PromotionGate, promotion_gate
from .judge import Counts, Decision, Judge, Verdict
from .params import ReleaseParams
from .record import RECORD_MIME, Record
from .release import Release

__version__ = "0.1.0"


def validate_parameters(runbook: str, namespace: dict) -> ReleaseParams:
    """Validate a runbook's parameters (its notebook namespace) before any AWS call."""
    from .lab_record import begin
    from .params import validate

    begin(runbook)  # in a notebook a person runs: its kernel keeps the record (bgkit.lab_record)
    pattern = patterns.get(runbook)
    params = validate(
        runbook, namespace, pattern.parameters, service_plan=getattr(pattern, "service_plan", None)
    )
    allowed = getattr(pattern, "plans", None)
    if allowed is not None and params.plan not in allowed:
        raise ParameterError(
            "plan", f"must be one of {', '.join(allowed)} for {pattern.title}", params.plan
        )
    patterns.check_resources(pattern, params.resources)
    if params.plan_by_service:  # the pattern runs the service's plan (see params.validate)
        params = params.with_resources(service_plan=params.plan)
    return params


__all__ = [
    "RECORD_MIME",
    "AwsSession",
    "BgkitError",
    "Clock",
    "Connection",
    "Counts",
    "Decision",
    "FakeClock",
    "Judge",
    "ParameterError",
    "PreflightError",
    "PromotionGate",
    "Record",
    "Release",
    "ReleaseParams",
    "RollbackFailed",
    "SandboxError",
    "SystemClock",
    "TrafficError",
    "Verdict",
    "connect",
    "patterns",
    "plans",
    "promotion_gate",
    "validate_parameters",
]
