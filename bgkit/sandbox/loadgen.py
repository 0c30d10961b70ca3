"""A load generator: a steady rate of real HTTP requests for the whole release."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit


class LoadGenerator:
    """Open-loop load: request i is due at start + i / rate, whatever the latency of others."""

    def __init__(
        self,
        url: str,
        rate: float,
        *,
        workers: int = 16,
        path: str = "/",
        target: Callable[[int], tuple[str, int]] | None = None,
        headers: Callable[[int], dict[str, str]] | None = None,
    ) -> None:
        """`target`, if given, says where request i goes (e.g. as DNS clients resolve it);
        `headers`, what request i carries (e.g. the user it comes from)."""
        parts = urlsplit(url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._target = target or (lambda index: address)
        self.rate = rate
        self.path = path
        self._headers = headers or (lambda index: {})
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"bgkit-load-{i}", daemon=True)
            for i in range(workers)
        ]
        self._started = 0.0

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _work(self) -> None:
        # One keep-alive connection per address, as a client keeps one per host it talks to.
        connections: dict[tuple[str, int], http.client.HTTPConnection] = {}
        try:
            while not self._stop.is_set():
                with self._lock:
                    index = self._next
                    due = self._started + index / self.rate
                    self._next += 1
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                try:
                    address = self._target(index)
                except LookupError:
                    with self._lock:
                        self.statuses[0] += 1  # the name did not resolve
                    continue
                connection = connections.get(address)
                if connection is None:
                    connection = connections[address] = http.client.HTTPConnection(
                        *address, timeout=10
                    )
                try:
                    connection.request("GET", self.path, headers=self._headers(index))
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                    if response.will_close:
                        connections.pop(address).close()
                except (OSError, http.client.HTTPException):
                    status = 0  # connection-level failure, counted apart from HTTP statuses
                    connections.pop(address).close()
                with self._lock:
                    self.statuses[status] += 1
        finally:
            for connection in connections.values():
                connection.close()
