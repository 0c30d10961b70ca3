"""Connecting a runbook to its target: real AWS, or the embedded sandbox.

This is the only module that knows the difference, and the difference is only the endpoint
and credentials of the boto3 clients, plus who provides the resource parameters: a user
against AWS, the sandbox's scenario in the sandbox.
"""

from __future__ import annotations

import atexit
import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import patterns
from .aws import AwsSession, release_agent
from .params import ReleaseParams

SANDBOX_URL_ENV = "BGKIT_SANDBOX_URL"


@dataclass
class Connection:
    params: ReleaseParams
    session: AwsSession
    sandbox: dict[str, Any] | None = None
    _close: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        """Stop what this connection started (the sandbox's data plane). Safe to call twice."""
        if self._close is not None:
            close, self._close = self._close, None
            close()


def connect(params: ReleaseParams) -> Connection:
    if params.target == "aws":
        return Connection(params, AwsSession(params.region, agent=release_agent(params.runbook)))
    options = {
        "green_error_rate": params.green_error_rate,
        "green_added_latency_ms": params.green_added_latency_ms,
        "request_rate": params.sandbox_request_rate,
        "minute_seconds": params.sandbox_minute_seconds,
        "plan": params.plan,
        "step_percent": params.step_percent,
        "canary_percent": params.canary_percent,
        # a release with migrations: the scenario's colours use a real database of their own
        "database": bool(params.migrations),
    }
    shared = _sandbox_url()
    if shared:
        # A plan and the release that follows it must see one target: the plan's scenario is
        # kept for its release, which attaches to it, and ends it once it has run (a release
        # refused for drift, say, leaves it for the next try).
        keep = "always" if params.dry_run else "unless ran" if params.follow_plan else ""
        if keep:
            options["release"] = params.release
        info, close = _attach(shared, params.runbook, options, keep=keep)
    else:
        info, close = _start_local(params.runbook, options)
    from .sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY

    session = AwsSession(
        info["region"],
        endpoint_url=info["endpoint_url"],
        access_key_id=SANDBOX_ACCESS_KEY_ID,
        secret_access_key=SANDBOX_SECRET_ACCESS_KEY,
        agent=release_agent(params.runbook),
    )
    scenario = info["parameters"]
    pattern = patterns.get(params.runbook)
    # Parameters the user gave win over the scenario's; the rest come from the scenario.
    resources = {
        name: params.resources.get(name) or scenario.get(name, "") for name in pattern.parameters
    }
    completed = replace(
        params,
        region=info["region"],
        smoke_url=params.smoke_url or scenario["smoke_url"],
        database_url=params.database_url or scenario.get("database_url", ""),
    )
    completed = completed.with_resources(**resources)
    try:
        patterns.check_resources(pattern, completed.resources)
    except Exception:
        close()  # the scenario just provisioned (its load generator) stops with the refusal
        raise
    return Connection(completed, session, sandbox=info, _close=close)


def sandbox_endpoint() -> dict[str, str] | None:
    """The AWS endpoint and region of a sandbox in another process (BGKIT_SANDBOX_URL, or
    `bgkit sandbox up`), for what outlives a run there: records written to its S3."""
    url = _sandbox_url()
    if not url:
        return None
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        health = json.loads(response.read())
    return {"endpoint_url": health["endpoint_url"], "region": health["region"]}


def _sandbox_url() -> str | None:
    """A sandbox in another process: named by the environment (tests), or `bgkit sandbox up`."""
    return os.environ.get(SANDBOX_URL_ENV) or _shared_sandbox_url()


def _shared_sandbox_url() -> str | None:
    from .sandbox.shared import running

    state = running()
    return state["admin_url"] if state else None


def _attach(
    url: str, pattern: str, options: dict[str, Any], *, keep: str = ""
) -> tuple[dict[str, Any], Callable[[], None]]:
    body = json.dumps({"pattern": pattern, **options}).encode()
    request = urllib.request.Request(f"{url}/scenarios", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        info = json.loads(response.read())

    def close(ran: bool = True) -> None:
        atexit.unregister(stopped)
        if keep == "always" or (keep == "unless ran" and not ran):
            return  # a plan's scenario: its release will run on it
        delete = urllib.request.Request(f"{url}/scenarios/{info['scenario_id']}", method="DELETE")
        with urllib.request.urlopen(delete, timeout=60) as response:
            response.read()

    def stopped() -> None:  # the runbook stopped before its last cell closed the connection
        close(ran=False)

    # a failed cell must not leave the scenario's load running in the sandbox
    atexit.register(stopped)
    return info, close


def _start_local(
    pattern: str, options: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[], None]]:
    from .sandbox import Sandbox

    sandbox = Sandbox().start()
    try:
        scenario = sandbox.provision(pattern, **options)
    except Exception:
        sandbox.stop()
        raise
    atexit.register(sandbox.stop)  # a failed cell must not leave servers behind the kernel

    def close() -> None:
        atexit.unregister(sandbox.stop)
        sandbox.stop()

    info = {
        "endpoint_url": sandbox.endpoint_url,
        "region": sandbox.region,
        "parameters": scenario.parameters,
        "scenario_id": scenario.id,
    }
    return info, close
