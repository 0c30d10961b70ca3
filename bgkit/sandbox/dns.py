"""DNS for the sandbox's data plane: clients that resolve a weighted Route 53 name and cache
the answer for its TTL, as real resolvers and clients do.

What it follows ("Weighted routing" and "Choosing a routing policy", Route 53 Developer Guide):
each answer picks one record of the name with probability weight / sum of weights; records of
weight 0 answer only when every record has weight 0 (then all answer equally). A client keeps its
answer for the record's TTL, so after a weight change the measured split moves only as caches
expire. Health checks are created and associated with the records, but the sandbox does not
evaluate them: every record counts as healthy.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from ..aws import AwsSession

READ_EVERY_SECONDS = 0.2  # how often the resolver re-reads the records (a change lands within this)


class WeightedResolver:
    """Answers one name from the zone's records, read through boto3 like the router's rules."""

    def __init__(self, session: AwsSession, zone_id: str, name: str) -> None:
        self._route53 = session.client("route53")
        self.zone_id = zone_id
        self.name = name.rstrip(".") + "."
        self._records: list[dict[str, Any]] = []
        self._read_at = 0.0
        self._lock = threading.Lock()

    def _read(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._read_at > READ_EVERY_SECONDS:
                answer = self._route53.list_resource_record_sets(
                    HostedZoneId=self.zone_id, StartRecordName=self.name, MaxItems="20"
                )
                self._records = [r for r in answer["ResourceRecordSets"] if r["Name"] == self.name]
                self._read_at = time.monotonic()
            return self._records

    def resolve(self) -> tuple[str, int]:
        """One answer: (the record's value, its TTL)."""
        records = self._read()
        if not records:
            raise LookupError(f"NXDOMAIN: no record for {self.name}")
        weights = [int(r.get("Weight", 1)) for r in records]
        if sum(weights) == 0:
            weights = [1] * len(records)
        record = random.choices(records, weights=weights)[0]
        return record["ResourceRecords"][0]["Value"].rstrip("."), int(record.get("TTL", 60))


class CachingClients:
    """`count` clients, each caching its answer for the TTL. A request is made by the client
    `index % count`; `target(index)` is where it goes: the (host, port) its answer maps to."""

    def __init__(
        self, resolver: WeightedResolver, endpoints: dict[str, tuple[str, int]], count: int = 100
    ) -> None:
        self._resolver = resolver
        self._endpoints = {name.rstrip("."): address for name, address in endpoints.items()}
        self._cache: list[tuple[float, str] | None] = [None] * count
        self._lock = threading.Lock()

    def target(self, index: int) -> tuple[str, int]:
        slot = index % len(self._cache)
        now = time.monotonic()
        with self._lock:
            cached = self._cache[slot]
        if cached is None or cached[0] <= now:
            value, ttl = self._resolver.resolve()
            cached = (now + ttl, value)
            with self._lock:
                self._cache[slot] = cached
        return self._endpoints[cached[1]]
