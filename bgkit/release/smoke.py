"""The smoke test: requests to green on its test route before green gets production traffic,
and what the record keeps of them."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def smoke(request: Callable[[], dict[str, Any]], url: str, count: int) -> dict[str, Any]:
    """`count` requests (each `request()`: status, ms, error), summed up for the record."""
    results = [request() for _ in range(count)]
    failures = [r for r in results if not 200 <= r["status"] < 300]
    latencies = sorted(r["ms"] for r in results)
    return {
        "url": url,
        "requests": count,
        "failures": len(failures),
        "statuses": sorted({r["status"] for r in results}),
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "max_ms": round(latencies[-1], 2),
        "errors": sorted({r["error"] for r in failures if r["error"]})[:3],
    }


def probe(
    url: str,
    token: str = "",
    headers: dict[str, str] | None = None,
    from_green: Callable[[Any], str] | None = None,
) -> dict[str, Any]:
    """One GET of `url`; with a token, "Authorization: Bearer <token>" (never after a redirect,
    which could lead to another host, and never in the result). A pattern's `headers` mark the
    request (a feature flag's smoke user); its `from_green(response headers)` says why a 2xx
    answer did not come from green ("" if it did), which fails the request."""
    request = urllib.request.Request(url, headers=headers or {})
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            status, error = response.status, None
            wrong = from_green(response.headers) if from_green is not None else ""
            if wrong:
                status, error = 0, wrong
    except urllib.error.HTTPError as http_error:
        status, error = http_error.code, None
    except (urllib.error.URLError, OSError) as network_error:
        status, error = 0, f"{type(network_error).__name__}: {network_error}"
    return {"status": status, "ms": 1000 * (time.perf_counter() - started), "error": error}
