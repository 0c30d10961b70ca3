"""Small HTTP building blocks for the sandbox's data plane: servers that stop cleanly."""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .calls import Changes

# How often a refresh loop that waits for the control plane's writes looks at its stop event,
# and how often it reads the control plane with no write.
STOP_CHECK_SECONDS = 0.25
FOLLOWING_SECONDS = 2.0
RETRY_SECONDS = 0.2  # after a failed read


def read_period(given: float | None, changes: Changes | None) -> float:
    """How often a data plane reads what it follows with no write: `given`, else every
    FOLLOWING_SECONDS when it hears of the control plane's writes (`changes`), else 0.2 s."""
    return given or (FOLLOWING_SECONDS if changes is not None else 0.2)


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 and a free port, run in a background thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.name = name
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name=name, daemon=True
        )

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # idle keep-alive connections end, so no handler thread outlives a stop for long

    def log_message(self, format: str, *args: object) -> None:
        """No access log: the sandbox serves dozens of requests a second."""

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def forwarded_headers(request: BaseHTTPRequestHandler) -> dict[str, str]:
    """A request's end-to-end headers, plus X-Forwarded-For, as a proxy passes them on."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["X-Forwarded-For"] = request.client_address[0]
    return headers


class Upstreams:
    """A data plane's keep-alive connections to the servers behind it (targets, integrations,
    versions): one pool per handler thread, so a connection is used by one thread at a time; a
    connection the server closed meanwhile is retried once on a new one."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[http.client.HTTPConnection] = []

    def request(
        self,
        address: tuple[str, int],
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> tuple[int, bytes, str]:
        """(status, body, content type); OSError or HTTPException when the server cannot answer."""
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        while True:
            connection = pool.get(address)
            reused = connection is not None
            if connection is None:
                connection = pool[address] = http.client.HTTPConnection(
                    *address, timeout=self.timeout
                )
                with self._lock:
                    self._opened.append(connection)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                content_type = response.getheader("Content-Type", "application/octet-stream")
                return response.status, data, content_type
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                del pool[address]
                # Only a kept-alive connection the server has closed meanwhile is retried (on a
                # new one); a timeout or a failure of a new connection is the answer.
                closed = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                if not (reused and isinstance(error, closed)):
                    raise

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()


class LoopErrors:
    """Failures of a data plane's background loops (refresh, metrics): each loop keeps going on
    its last good state; a failure is counted and shown on stderr at the 1st, 10th and 100th
    time, so a broken loop is visible without flooding the output."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.counts: dict[str, int] = {}

    def __call__(self, loop: str, error: Exception) -> None:
        self.counts[loop] = count = self.counts.get(loop, 0) + 1
        if count in (1, 10, 100):
            print(
                f"bgkit sandbox {self.owner}: {loop} failed ({count}x): "
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
                flush=True,
            )


def refresh(
    stop: threading.Event,
    errors: LoopErrors,
    fast: tuple[Callable[[], None], float],
    slow: tuple[Callable[[], None], float],
    changes: Changes | None = None,
) -> None:
    """A data plane's view of the control plane, kept fresh until `stop`: the `fast` read every
    its period (say, a listener's rules), the `slow` one every its own (its targets), and both
    at once after any write to the control plane that data planes follow (`changes`, when the
    data plane runs beside it). Each read's next time is its period after it starts. A failed
    read is counted and shown, the last view stays, and both are read again after
    RETRY_SECONDS."""
    (read_fast, fast_period), (read_slow, slow_period) = fast, slow
    next_fast = next_slow = time.monotonic()
    seen = changes.count if changes is not None else 0
    while not stop.is_set():
        due = min(next_fast, next_slow)
        wait = max(0.0, due - time.monotonic())
        changed = False
        if changes is None:
            if stop.wait(wait):
                return
        else:
            count = changes.wait(seen, min(wait, STOP_CHECK_SECONDS))
            changed, seen = count != seen, count
            if not changed and time.monotonic() < due:
                continue  # neither a write nor a read's time yet: look at stop again
        now = time.monotonic()
        try:
            if changed or now >= next_fast:
                next_fast = now + fast_period
                read_fast()
            if changed or now >= next_slow:
                next_slow = now + slow_period
                read_slow()
        except Exception as error:  # counted and shown; read again soon
            errors("refresh", error)
            next_fast = next_slow = time.monotonic() + min(fast_period, RETRY_SECONDS)


def each_second(stop: threading.Event, errors: LoopErrors, publish: Callable[[], None]) -> None:
    """Run `publish` just after each second ends (the second's metrics are complete), until
    `stop`; a failure is counted and shown, and the next second's run retries."""
    while not stop.wait(1.0 - (time.time() % 1.0) + 0.05):
        try:
            publish()
        except Exception as error:  # counted and shown; the next second retries
            errors("metrics", error)
