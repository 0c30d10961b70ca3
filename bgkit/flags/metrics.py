"""The evidence contract of a feature-flag release, and a helper that keeps it.

A service whose code path depends on a flag publishes, per request, to CloudWatch in one
namespace (the runbook's `metric_namespace`) with the dimensions `Flag` (the flag's key) and
`Variant` (the variant the request was served, e.g. `on` or `off`):

* `Requests` (Count): one per request; bgkit reads its Sum.
* `Errors` (Count): one per request answered 5xx; bgkit reads its Sum (zero may be omitted).
* `Latency` (Milliseconds): the request's duration, as raw values (`Values`/`Counts`), so
  that CloudWatch can answer percentiles and percentile ranks; bgkit reads p50/p90/p99,
  SampleCount and PR(:threshold).

bgkit judges `on` (green) against `off` (blue) with these numbers, exactly as it judges two
target groups. `VariantMetrics` aggregates requests per second and variant, and publishes
them with PutMetricData (timestamps at the second the requests were served); a service may
as well write the same metrics in CloudWatch's embedded metric format.

    metrics = VariantMetrics(boto3.client("cloudwatch"), "MyShop/Flags", "new_checkout")
    metrics.observe(variant, status, elapsed_ms)   # in each request
    metrics.publish()                              # every second or so, and at exit with
    metrics.publish(flush_all=True)
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

REQUESTS, ERRORS, LATENCY = "Requests", "Errors", "Latency"
MAX_VALUES = 150  # values per datum (PutMetricData, MetricDatum.Values)
MAX_DATA = 1000  # datums per PutMetricData call


@dataclass
class _Second:
    requests: int = 0
    errors: int = 0
    latencies: Counter = field(default_factory=Counter)


class VariantMetrics:
    """Per-request evidence of one flag's variants, published a second at a time."""

    def __init__(self, cloudwatch: Any, namespace: str, flag: str) -> None:
        self._cloudwatch, self.namespace, self.flag = cloudwatch, namespace, flag
        self._seconds: dict[tuple[int, str], _Second] = defaultdict(_Second)
        self._lock = threading.Lock()

    def observe(
        self, variant: str, status: int, elapsed_ms: float, at: float | None = None
    ) -> None:
        second = int(at if at is not None else time.time())
        with self._lock:
            bucket = self._seconds[(second, variant)]
            bucket.requests += 1
            bucket.errors += 500 <= status < 600
            bucket.latencies[round(elapsed_ms, 1)] += 1

    def publish(self, flush_all: bool = False) -> int:
        """Publish every finished second (all of them with flush_all); returns datums sent."""
        now = int(time.time())
        with self._lock:
            done = sorted(key for key in self._seconds if flush_all or key[0] < now)
            buckets = [(key, self._seconds.pop(key)) for key in done]
        data: list[dict[str, Any]] = []
        for (second, variant), bucket in buckets:
            base = {
                "Dimensions": [
                    {"Name": "Flag", "Value": self.flag},
                    {"Name": "Variant", "Value": variant},
                ],
                "Timestamp": datetime.fromtimestamp(second, UTC),
            }
            data.append({**base, "MetricName": REQUESTS, "Unit": "Count", "Value": bucket.requests})
            if bucket.errors:
                data.append({**base, "MetricName": ERRORS, "Unit": "Count", "Value": bucket.errors})
            values = sorted(bucket.latencies.items())
            for i in range(0, len(values), MAX_VALUES):
                chunk = values[i : i + MAX_VALUES]
                data.append(
                    {
                        **base,
                        "MetricName": LATENCY,
                        "Unit": "Milliseconds",
                        "Values": [v for v, _ in chunk],
                        "Counts": [float(c) for _, c in chunk],
                    }
                )
        for i in range(0, len(data), MAX_DATA):
            self._cloudwatch.put_metric_data(
                Namespace=self.namespace, MetricData=data[i : i + MAX_DATA]
            )
        return len(data)
