"""Blue and green: real HTTP services on loopback, with fault knobs for green.

``GET /health`` answers 200 while the service is up (as a load balancer health check
expects); every other path does a little work (a few milliseconds) and answers 200, or 500
with probability `error_rate`, after `added_latency_ms` more. With a `shop` (the scenario's
database, bgkit.sandbox.database), each request also reads it (and one in ten writes it); a
query that fails is a 500.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from .http import KeepAliveHandler, LoopbackServer


class ColourService:
    def __init__(
        self,
        colour: str,
        version: str,
        *,
        error_rate: float = 0.0,
        added_latency_ms: float = 0.0,
        work_ms: tuple[float, float] = (2.0, 6.0),
        seed: int | None = None,
        shop: Any = None,
    ) -> None:
        self.colour = colour
        self.version = version
        self.error_rate = error_rate
        self.added_latency_ms = added_latency_ms
        self.work_ms = work_ms
        self._random = random.Random(seed)
        self.shop = shop
        self._server = LoopbackServer(self._handler(), name=f"bgkit-{colour}")

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> ColourService:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self.shop is not None:
            self.shop.close()

    def _handler(self) -> type[KeepAliveHandler]:
        service = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/health":
                    self.reply(200, b'{"status": "ok"}')
                    return
                low, high = service.work_ms
                time.sleep((service._random.uniform(low, high) + service.added_latency_ms) / 1000)
                failed = service._query()
                if failed:
                    self.reply(
                        500, json.dumps({"error": failed, "colour": service.colour}).encode()
                    )
                elif service._random.random() < service.error_rate:
                    self.reply(
                        500,
                        json.dumps({"error": "injected fault", "colour": service.colour}).encode(),
                    )
                else:
                    body = {"colour": service.colour, "version": service.version}
                    self.reply(200, json.dumps(body).encode())

            do_HEAD = do_GET

        return Handler

    def _query(self) -> str:
        """The request's queries to the shop, if any; what failed, or ""."""
        if self.shop is None:
            return ""
        try:
            self.shop.serve()
        except Exception as error:  # the answer is the request's 500, as in production
            return f"database: {type(error).__name__}"
        return ""
