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


def probe(url: str, token: str = "") -> dict[str, Any]:
    """One GET of `url`; with a token, "Authorization: Bearer <token>" (never after a redirect,
    which could lead to another host, and never in the result)."""
    request = urllib.request.Request(url)
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            status, error = response.status, None
    except urllib.error.HTTPError as http_error:
        status, error = http_error.code, None
    except (urllib.error.URLError, OSError) as network_error:
        status, error = 0, f"{type(network_error).__name__}: {network_error}"
    return {"status": status, "ms": 1000 * (time.perf_counter() - started), "error": error}
