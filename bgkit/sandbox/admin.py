"""A small JSON API over a running sandbox, so runbook kernels can share one sandbox.

POST   /scenarios        {"pattern": ..., "green_error_rate": ..., ...} -> scenario parameters
                         ("release": ... : that release's scenario if it runs, for a plan's run)
DELETE /scenarios/<id>   stop that scenario's data plane (its AWS resources stay for inspection)
GET    /health
GET    /calls?since=N    the calls releases made (calls.py); since: a position from a previous answer
POST   /faults           {"action": "elasticloadbalancing:ModifyListener", "code": ..., "status": ..., "times": ...}
DELETE /faults           no more injected faults
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlsplit

from ..errors import BgkitError
from .calls import Fault
from .http import KeepAliveHandler, LoopbackServer

_OPTIONS = (
    "database",
    "green_error_rate",
    "green_added_latency_ms",
    "request_rate",
    "minute_seconds",
    "plan",
    "step_percent",
    "canary_percent",
    "release",
)


class AdminServer:
    def __init__(self, sandbox) -> None:  # type: ignore[no-untyped-def]
        self._sandbox = sandbox
        self._server = LoopbackServer(self._handler(), name="bgkit-sandbox-admin")

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> AdminServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _handler(self) -> type[KeepAliveHandler]:
        sandbox = self._sandbox

        class Handler(KeepAliveHandler):
            def _json(self, status: int, body: object) -> None:
                self.reply(status, json.dumps(body).encode())

            def do_GET(self) -> None:
                if self.path.startswith("/calls"):
                    since = int(parse_qs(urlsplit(self.path).query).get("since", ["0"])[0])
                    got = sandbox.calls.calls(since)  # next: a call made meanwhile comes once
                    self._json(200, {"next": since + len(got), "calls": [c.as_dict() for c in got]})
                elif self.path == "/health":
                    self._json(
                        200,
                        {
                            "endpoint_url": sandbox.endpoint_url,
                            "region": sandbox.region,
                            "pid": os.getpid(),  # a shared sandbox's state file names it
                        },
                    )
                else:
                    self._json(404, {"error": f"no such path {self.path}"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if self.path == "/faults":
                        sandbox.calls.inject(Fault(**body))
                        self._json(200, {"injected": body})
                        return
                    options = {k: body[k] for k in _OPTIONS if k in body}
                    scenario = sandbox.provision(body["pattern"], **options)
                except (KeyError, ValueError, TypeError, BgkitError) as error:
                    self._json(400, {"error": f"{type(error).__name__}: {error}"})
                    return
                self._json(
                    200,
                    {
                        "scenario_id": scenario.id,
                        "endpoint_url": sandbox.endpoint_url,
                        "region": sandbox.region,
                        "parameters": scenario.parameters,
                    },
                )

            def do_DELETE(self) -> None:
                if self.path == "/faults":
                    sandbox.calls.clear_faults()
                    self._json(200, {"cleared": True})
                    return
                scenario_id = self.path.rsplit("/", 1)[-1]
                found = sandbox.release_scenario(scenario_id)
                self._json(200 if found else 404, {"released": found})

        return Handler
