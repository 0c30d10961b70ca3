"""Release parameters: read from a runbook's parameters cell, validated before any AWS call.

Every refusal is a `ParameterError` that names the parameter and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from . import plans
from .errors import BgkitError, ParameterError

TARGETS = ("sandbox", "aws")
# What a release does when it finds that an earlier release of its target died mid-way (its lock
# item, with the step it had reached, is still there): put blue back, or carry on with it.
INTERRUPTED = ("rollback", "resume")
METRIC_PERIODS = (1, 5, 10, 20, 30, 60)  # CloudWatch high-resolution periods, and one minute
# What a metric parameter left at 0 means, per target: the sandbox publishes every second, about
# 0.07 s after it ends (at most 0.1 s measured with two cores busy), so 0.5 s; AWS publishes ALB
# and Lambda metrics per minute, a few minutes late. A bake left at 0 is the
# shortest CloudWatch period of at least five metric periods (default_bake_seconds): 5 s in the
# sandbox, 300 s on AWS. So every default is valid for every target.
TARGET_DEFAULTS = {
    "sandbox": {"metric_period_seconds": 1, "metric_lag_seconds": 0.5},
    "aws": {"metric_period_seconds": 60, "metric_lag_seconds": 180.0},
}
BAKE_PERIODS = 5
# Identifiers are checked with fullmatch (a `$` also matches before a trailing newline) and as
# ASCII (`\d` alone also matches other scripts' digits, such as "١٢٣").
RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", re.ASCII)
_EXPLICIT_PLAN = re.compile(r"[0-9]+( *, *[0-9]+)*", re.ASCII)
_URL_TEXT = re.compile(r"[\x21-\x7e]+", re.ASCII)  # printable ASCII: no space, control or other
# A parameter is a secret by its name; that is the one definition (bgkit run, the engine, the
# record, ReleaseParams' repr and the refusals all ask is_secret). Its value comes only from the
# environment variable secret_env(name), never from the notebook: papermill writes every notebook
# parameter into the executed notebook (the injected-parameters cell and metadata.papermill).
_SECRET_NAME = re.compile(
    r"(token|secret|password|passwd|webhook|api_?key|credential|database_url)", re.I
)
SECRET_ENV_PREFIX = "BGKIT_SECRET_"
_HEADER_VALUE = re.compile(r"[!-~]*", re.ASCII)
_SNS_TOPIC = re.compile(
    r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?", re.ASCII
)
REDACTED = "***redacted***"
# Shorter values are not searched for: replacing every "1234" would garble the record's numbers.
MIN_SCRUBBED_LENGTH = 8


@dataclass(frozen=True, repr=False)  # __repr__ below redacts secrets
class ReleaseParams:
    runbook: str
    target: str = "sandbox"
    region: str = "us-east-1"
    release: str = ""
    plan: str = "linear"
    step_percent: int = 25
    canary_percent: int = 10
    bake_seconds: float = 0.0  # 0: at least five metric periods (default_bake_seconds)
    smoke_url: str = ""
    smoke_requests: int = 10
    smoke_token: str = ""  # a secret: sent as "Authorization: Bearer <token>" by the smoke test
    min_requests: int = 20
    judge_alpha: float = 0.01
    slow_margin_ms: float = 10.0
    pass_margin: float = 0.0
    error_rate_slo: float = 0.0
    p99_slo_ms: float = 0.0
    lock_table: str = "bgkit-locks"
    lock_lease_seconds: float = 60.0
    on_interrupted: str = "rollback"  # a release of this target that died mid-way: see INTERRUPTED
    max_holds: int = 3
    auto_promote: bool = True  # headless runs: promote after the last step (False: roll back)
    gate_timeout_seconds: float = 3600.0  # in Jupyter: no click at the gate by then rolls back
    notify_topic_arn: str = ""  # SNS topic for start / promotion / rollback messages
    notify_webhook: str = ""  # a secret: a URL that takes the same messages as a JSON POST
    metric_period_seconds: int = 0  # 0: the target's resolution (see TARGET_DEFAULTS)
    metric_lag_seconds: float = 0.0  # 0: the target's typical delay (see TARGET_DEFAULTS)
    green_error_rate: float = 0.0
    green_added_latency_ms: float = 0.0
    sandbox_request_rate: float = 50.0
    sandbox_minute_seconds: float = 4.0
    # The schema step (bgkit.schema): green's migrations against blue before any traffic moves.
    migrations: str = ""  # a .sql file or a folder of them (name order), or s3://...; "": none
    database_url: str = ""  # a secret: postgresql://... of the database both colours use
    schema_check: str = "enforce"  # enforce (refuse what breaks blue), warn, off
    apply_migrations: bool = False  # after both checks pass: apply them to database_url
    # Plans (bgkit.planning): stop after the read-only checks and record every change the
    # release would make; or follow such a plan, refused if anything drifted since.
    dry_run: bool = False
    follow_plan: str = ""  # the plan's record: a .ipynb path or s3:// URL
    resources: Mapping[str, str] = field(default_factory=dict)
    # set by validate: `plan` names the service's own way of moving traffic (an AppConfig
    # deployment strategy), which the pattern runs; not a parameter of its own
    plan_by_service: bool = False

    @property
    def traffic_plan(self) -> plans.Plan:
        if self.plan_by_service:
            return plans.Plan(self.plan, ())
        return plans.from_parameters(
            self.plan,
            step_percent=self.step_percent,
            canary_percent=self.canary_percent,
            bake_seconds=self.bake_seconds,
        )

    def with_resources(self, **resources: str) -> ReleaseParams:
        merged = {**self.resources, **{k: v for k, v in resources.items() if v}}
        return replace(self, resources=merged)

    def as_record(self) -> dict[str, Any]:
        """The parameters as the record shows them: secrets redacted by name."""
        values = asdict(self)
        values.update(values.pop("resources"))
        return redact(values)

    def __repr__(self) -> str:
        shown = redact({f.name: getattr(self, f.name) for f in fields(self)})
        shown["resources"] = redact(self.resources)
        return f"ReleaseParams({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def is_secret(name: str) -> bool:
    """A parameter whose name says it holds a secret (token, password, webhook URL, ...)."""
    return bool(_SECRET_NAME.search(name))


def secret_env(name: str) -> str:
    """The environment variable that carries secret parameter `name`: BGKIT_SECRET_<NAME>."""
    return SECRET_ENV_PREFIX + name.upper()


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (REDACTED if is_secret(k) and v else v) for k, v in values.items()}


def secret_from_environment(name: str, given: Any, environ: Mapping[str, str] | None = None) -> str:
    """A secret parameter's value: from secret_env(name), or "" if unset.

    A value given in the notebook itself is refused whatever it is, and never repeated: papermill
    has already written it into the output notebook, and an error message is logged and shown.
    """
    variable = secret_env(name)
    if given != "":
        how = (
            "bgkit's papermill engine replaced it with " + REDACTED
            if given == REDACTED
            else "that notebook now holds it: delete the notebook and rotate the secret"
        )
        raise ParameterError(
            name,
            "is a secret and cannot be a notebook parameter, because papermill writes notebook "
            f"parameters into the executed notebook ({how}); leave it empty and pass it with "
            f"`bgkit run --secret {name}` or the environment variable {variable}",
            REDACTED,
        )
    value = (os.environ if environ is None else environ).get(variable, "")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ParameterError(
            name,
            f"the value in {variable} has a control character (a trailing newline?); "
            "a secret is sent as it is, in an HTTP header",
            REDACTED,
        )
    return value


def environment_secrets() -> list[str]:
    """The values of this process's BGKIT_SECRET_* variables (the kernel inherits them)."""
    return [v for k, v in os.environ.items() if k.startswith(SECRET_ENV_PREFIX)]


def scrub(node: Any, values: list[str]) -> Any:
    """Replace each of `values` (long enough to be one) by REDACTED in every string of `node`."""
    values = sorted({v for v in values if len(v) >= MIN_SCRUBBED_LENGTH}, key=len, reverse=True)
    return _scrub(node, values) if values and isinstance(node, dict | list) else node


def _scrub(node: Any, values: list[str]) -> Any:
    """Scrub, in place, the strings inside the dicts and lists of `node`."""
    pairs = node.items() if isinstance(node, dict) else enumerate(node)
    for key, item in list(pairs):
        if isinstance(item, str):
            cleaned = item
            for value in values:
                cleaned = cleaned.replace(value, REDACTED)
            if cleaned != item:
                node[key] = cleaned
        elif isinstance(item, dict | list):
            _scrub(item, values)
    return node


def default_release_id(now: datetime | None = None) -> str:
    return "rel-" + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def validate(
    runbook: str,
    namespace: Mapping[str, Any],
    resource_checks: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    service_plan: Any = None,
) -> ReleaseParams:
    """Validate the runbook's parameters. `resource_checks` maps pattern parameter → checker;
    `service_plan(plan)`, where the pattern has one, says whether `plan` names the service's
    own way of moving traffic (allowed besides bgkit's plans).

    Only names declared by ReleaseParams or the pattern are read from `namespace`; secret ones
    (is_secret) must be empty there and are read from `environ` (default os.environ) instead.
    """
    defaults = ReleaseParams(runbook=runbook)
    got = {name: namespace.get(name, getattr(defaults, name)) for name in _COMMON}
    for name in got:
        if is_secret(name):
            got[name] = secret_from_environment(name, got[name], environ)
    if not _HEADER_VALUE.fullmatch(got["smoke_token"]):  # else http.client's error repeats it
        raise ParameterError(
            "smoke_token",
            f"the value in {secret_env('smoke_token')} must be printable ASCII without spaces, "
            "as a bearer token is (RFC 6750)",
            REDACTED,
        )

    _choice("target", got["target"], TARGETS)
    if not isinstance(got["region"], str) or not _REGION.fullmatch(got["region"]):
        raise ParameterError(
            "region", "must be an AWS region name such as us-east-1", got["region"]
        )
    if not isinstance(got["release"], str):  # e.g. papermill's `-p release None`
        raise ParameterError(
            "release", "must be a string (empty: rel-<UTC timestamp>)", got["release"]
        )
    release = got["release"] or default_release_id()
    if not RELEASE_ID.fullmatch(release):
        raise ParameterError(
            "release",
            "must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit",
            release,
        )
    got["release"] = release
    _integer("step_percent", got["step_percent"], 1, 99)
    _integer("canary_percent", got["canary_percent"], 1, 99)
    for name, default in TARGET_DEFAULTS[got["target"]].items():
        if got[name] == 0 and not isinstance(got[name], bool):
            got[name] = default
    period = got["metric_period_seconds"]
    # an int: CloudWatch's Period is an integer and botocore refuses 60.0, at the first judgement
    if isinstance(period, bool) or not isinstance(period, int) or period not in METRIC_PERIODS:
        raise ParameterError(
            "metric_period_seconds",
            f"must be 0 (the target's resolution) or one of {', '.join(map(str, METRIC_PERIODS))}",
            got["metric_period_seconds"],
        )
    if got["bake_seconds"] == 0 and not isinstance(got["bake_seconds"], bool):
        got["bake_seconds"] = default_bake_seconds(period)
    _number("bake_seconds", got["bake_seconds"], plans.MIN_BAKE_SECONDS, plans.MAX_BAKE_SECONDS)
    if isinstance(got["plan"], int) and not isinstance(got["plan"], bool):
        got["plan"] = str(
            got["plan"]
        )  # papermill's -p turns a one-step plan such as 50 into an int
    if not isinstance(got["plan"], str):
        raise ParameterError("plan", "must be a string", got["plan"])
    by_service = (
        got["plan"] not in plans.PLAN_NAMES
        and service_plan is not None
        and service_plan.check(got["plan"])
    )
    if not by_service:
        if got["plan"] not in plans.PLAN_NAMES and not _EXPLICIT_PLAN.fullmatch(got["plan"]):
            raise ParameterError(
                "plan",
                'must be linear, canary, all_at_once, or green percentages like "5,25,50" '
                "(ASCII digits and commas)"
                + (f", or {service_plan.allowed}" if service_plan is not None else ""),
                got["plan"],
            )
        plans.from_parameters(
            got["plan"],
            step_percent=got["step_percent"],
            canary_percent=got["canary_percent"],
            bake_seconds=got["bake_seconds"],
        )
    _url("smoke_url", got["smoke_url"])
    _integer("smoke_requests", got["smoke_requests"], 1, 1000)
    _integer("min_requests", got["min_requests"], 1, 1_000_000)
    _number("judge_alpha", got["judge_alpha"], 0.0001, 0.2)
    _number("slow_margin_ms", got["slow_margin_ms"], 0.0, 60_000.0)
    try:
        _number("pass_margin", got["pass_margin"], 1.0, 100.0, low_open=True)
    except ParameterError:
        if got["pass_margin"] != 0 or isinstance(got["pass_margin"], bool):
            raise ParameterError(
                "pass_margin",
                "must be 0 (no PASS verdicts) or an odds ratio greater than 1 up to 100",
                got["pass_margin"],
            ) from None
    _number("error_rate_slo", got["error_rate_slo"], 0.0, 1.0)
    _number("p99_slo_ms", got["p99_slo_ms"], 0.0, 600_000.0)
    if not isinstance(got["lock_table"], str) or not (
        got["lock_table"] == "" or _TABLE.fullmatch(got["lock_table"])
    ):
        raise ParameterError(
            "lock_table",
            "must be a DynamoDB table name (3-255 letters, digits, '_', '-' or '.'), or empty for "
            "no lock",
            got["lock_table"],
        )
    _number("lock_lease_seconds", got["lock_lease_seconds"], 10.0, 3600.0)
    _choice("on_interrupted", got["on_interrupted"], INTERRUPTED)
    _integer("max_holds", got["max_holds"], 0, 100)
    if not isinstance(got["auto_promote"], bool):
        raise ParameterError(
            "auto_promote", "must be True or False (a boolean, not text)", got["auto_promote"]
        )
    _number("gate_timeout_seconds", got["gate_timeout_seconds"], 1.0, 86_400.0)
    if got["notify_topic_arn"] != "" and not (
        isinstance(got["notify_topic_arn"], str) and _SNS_TOPIC.fullmatch(got["notify_topic_arn"])
    ):
        raise ParameterError(
            "notify_topic_arn",
            "must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:releases, or "
            "empty for no SNS message",
            got["notify_topic_arn"],
        )
    if got["notify_webhook"] and not _webhook_ok(got["notify_webhook"]):
        raise ParameterError(
            "notify_webhook",
            f"the value in {secret_env('notify_webhook')} must be an https:// URL without a user "
            "or password in it (http:// only to this machine: 127.0.0.1, ::1 or localhost), as "
            "it carries its own secret",
            REDACTED,
        )
    if not is_cloudwatch_period(got["bake_seconds"], got["metric_period_seconds"]):
        raise ParameterError(
            "bake_seconds",
            "must be a CloudWatch period, so that the whole bake is judged as one window: "
            f"1, 5, 10, 20, 30 or a multiple of 60 seconds, and a multiple of metric_period_seconds "
            f"({got['metric_period_seconds']})",
            got["bake_seconds"],
        )
    _number("metric_lag_seconds", got["metric_lag_seconds"], 0.0, 600.0)
    _number("green_error_rate", got["green_error_rate"], 0.0, 1.0)
    _number("green_added_latency_ms", got["green_added_latency_ms"], 0.0, 60_000.0)
    _number("sandbox_request_rate", got["sandbox_request_rate"], 1.0, 1000.0)
    _number("sandbox_minute_seconds", got["sandbox_minute_seconds"], 0.1, 60.0)
    _schema(got)
    if not isinstance(got["dry_run"], bool):
        raise ParameterError(
            "dry_run", "must be True or False (a boolean, not text)", got["dry_run"]
        )
    if not isinstance(got["follow_plan"], str) or (
        got["follow_plan"] and not got["follow_plan"].endswith(".ipynb")
    ):
        raise ParameterError(
            "follow_plan",
            "must be a plan's record (a .ipynb path or s3:// URL), or empty",
            got["follow_plan"],
        )
    if got["dry_run"] and got["follow_plan"]:
        raise ParameterError(
            "follow_plan",
            "must be empty when dry_run is True (a plan follows no plan)",
            got["follow_plan"],
        )

    resources: dict[str, str] = {}
    for name, check in resource_checks.items():
        value = namespace.get(name, "")
        if is_secret(name):
            value = secret_from_environment(name, value, environ)
            check = _redacting(check)
        if not isinstance(value, str):
            raise ParameterError(name, "must be a string", value)
        if value:
            check(name, value)
        elif got["target"] == "aws" and not getattr(check, "optional", False):
            raise ParameterError(name, "is required when target is 'aws'", value)
        resources[name] = value
    return ReleaseParams(runbook=runbook, resources=resources, plan_by_service=by_service, **got)


_COMMON = [
    name
    for name in ReleaseParams.__dataclass_fields__
    if name not in ("runbook", "resources", "plan_by_service")
]


def default_bake_seconds(metric_period: int) -> float:
    """The shortest CloudWatch period that holds BAKE_PERIODS metric periods (1 s: 5 s; 60 s:
    300 s), so that each bake is judged on a few periods and is one window."""
    for seconds in (1, 5, 10, 20, 30, *range(60, int(plans.MAX_BAKE_SECONDS) + 1, 60)):
        if seconds >= BAKE_PERIODS * metric_period and is_cloudwatch_period(seconds, metric_period):
            return float(seconds)
    return plans.MAX_BAKE_SECONDS


def is_cloudwatch_period(seconds: float, metric_period: int) -> bool:
    """CloudWatch accepts periods of 1, 5, 10, 20, 30 or a multiple of 60 s for high-resolution
    metrics (API Reference, MetricStat.Period)."""
    if seconds != int(seconds):
        return False
    whole = int(seconds)
    return (whole in (1, 5, 10, 20, 30) or whole % 60 == 0) and whole % metric_period == 0


def _webhook_ok(url: str) -> bool:
    if not _URL_TEXT.fullmatch(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return False  # user:password@ would reach error messages in part (urllib's own)
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    )


def _schema(got: dict[str, Any]) -> None:
    """The schema step's parameters; a local migrations path is read now (s3:// at the step)."""
    from .schema import MODES
    from .schema.lint import lint
    from .schema.migrations import load

    _choice("schema_check", got["schema_check"], MODES)
    if not isinstance(got["apply_migrations"], bool):
        raise ParameterError(
            "apply_migrations", "must be True or False (a boolean)", got["apply_migrations"]
        )
    if not isinstance(got["migrations"], str):
        raise ParameterError(
            "migrations", "must be a path or s3:// URL, or empty", got["migrations"]
        )
    if got["database_url"] and not got["database_url"].startswith(("postgresql://", "postgres://")):
        raise ParameterError(
            "database_url",
            f"the value in {secret_env('database_url')} must be a postgresql:// URL",
            REDACTED,
        )
    if not got["migrations"] or (got["schema_check"] == "off" and not got["apply_migrations"]):
        return
    if not got["migrations"].startswith("s3://"):
        try:
            lint(load(got["migrations"]))  # a syntax error is bad input, refused now
        except BgkitError as error:
            raise ParameterError(
                "migrations", str(error).split(": ", 1)[-1], got["migrations"]
            ) from None
    if got["apply_migrations"] and got["schema_check"] == "off":
        raise ParameterError(
            "apply_migrations",
            "needs the checks first: schema_check 'enforce' or 'warn', not 'off'",
            True,
        )
    if got["target"] == "aws" and not got["database_url"]:
        raise ParameterError(
            "database_url",
            f"is required with migrations (target 'aws'): the PostgreSQL database both colours "
            f"use, in {secret_env('database_url')} or `bgkit run --secret database_url`",
            "",
        )


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParameterError(name, "must be one of " + ", ".join(repr(a) for a in allowed), value)


def _integer(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(name, f"must be an integer from {low} to {high}", value)


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bound = f"greater than {low:g}" if low_open else f"from {low:g}"
        raise ParameterError(name, f"must be a number {bound} up to {high:g}", value)


def _url(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ParameterError(name, "must be a string URL", value)
    if value:
        # urlsplit drops tabs and newlines, but http.client refuses them when the smoke test
        # runs, which for some patterns is after green was deployed: refuse them now.
        parts = urlsplit(value) if _URL_TEXT.fullmatch(value) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ParameterError(
                name,
                "must be an http:// or https:// URL of printable ASCII with no spaces "
                "(percent-encode others), or empty",
                value,
            )


def _redacting(check):
    """A checker for a secret parameter: its refusal says what is wrong, not the value."""

    def checked(name: str, value: str) -> None:
        try:
            check(name, value)
        except ParameterError as error:
            raise ParameterError(name, error.allowed, REDACTED) from None

    checked.optional = getattr(check, "optional", False)
    return checked


def regex_checker(regex: re.Pattern, allowed: str):
    """A checker for a pattern parameter that must match `regex`; `allowed` says what may."""

    def check(name: str, value: str) -> None:
        if not regex.fullmatch(value):  # not .match: "$" also matches before a final newline
            raise ParameterError(name, allowed, value)

    return check


def arn_checker(service: str, resource_pattern: str, example: str):
    """A checker for a pattern parameter holding an ARN of `service` matching `resource_pattern`."""
    regex = re.compile(
        rf"arn:aws(-[a-z]+)*:{re.escape(service)}:[a-z0-9-]+:\d{{12}}:(?:{resource_pattern})",
        re.ASCII,  # an account id of twelve ASCII digits, not "١٢٣٤٥٦٧٨٩٠١٢"
    )

    def check(name: str, value: str) -> None:
        if not regex.fullmatch(value):
            raise ParameterError(name, f"must be an ARN like {example}", value)

    return check


__all__ = [
    "ReleaseParams",
    "arn_checker",
    "default_release_id",
    "is_secret",
    "redact",
    "regex_checker",
    "scrub",
    "secret_env",
    "secret_from_environment",
    "validate",
]
