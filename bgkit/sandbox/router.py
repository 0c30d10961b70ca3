"""The sandbox's Application Load Balancer data plane.

One loopback port per listener of the load balancer. Each request is routed as an ALB
would (Elastic Load Balancing User Guide, "Listener rules for your Application Load
Balancer"): rules in priority order, conditions `http-header`, `path-pattern` and
`host-header` (values may use * and ?), then the default action; a forward action picks a
target group by weight and a registered, healthy target of it round-robin. The routing
table is read through boto3 from the control plane: the rules (weights) at once after a write
to the control plane (`changes`, see bgkit.sandbox.calls.Changes) and else every
`refresh_seconds` (2 s; 0.2 s without `changes`), the targets and their health every
`target_refresh_seconds` (1 s, for health checks, which are not writes; each read is three API
calls, and a scenario's polling was most of its CPU). A group with no
healthy target in the table is read again at once, so a target that turns healthy is routable
then, as on AWS; one that starts draining gets requests for up to a second more.

It publishes the metrics an ALB publishes per target group, at 1-second resolution
(namespace AWS/ApplicationELB, dimensions LoadBalancer and TargetGroup; "CloudWatch
metrics for your Application Load Balancer"): RequestCount, HTTPCode_Target_5XX_Count
(only when non-zero, as ALB does), TargetResponseTime in seconds, sent as raw values
so CloudWatch can compute percentiles, and HealthyHostCount and UnHealthyHostCount.
"""

from __future__ import annotations

import fnmatch
import http.client
import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..aws import AwsSession
from .calls import Changes
from .extensions import distribution
from .http import (
    KeepAliveHandler,
    LoopbackServer,
    LoopErrors,
    Upstreams,
    each_second,
    forwarded_headers,
    read_period,
    refresh,
)


@dataclass
class _Second:
    requests: int = 0
    target_5xx: int = 0
    latencies: dict[float, int] = field(default_factory=lambda: defaultdict(int))


class AlbRouter:
    def __init__(
        self,
        session: AwsSession,
        load_balancer_arn: str,
        *,
        refresh_seconds: float | None = None,
        target_refresh_seconds: float = 1.0,
        resolve: Callable[[str], tuple[str, int] | None] | None = None,
        changes: Changes | None = None,
    ) -> None:
        # A target's address: its Id and port (ip targets), or where the sandbox runs an
        # instance target's process (`resolve`, from the instance runtime).
        self._resolve = resolve
        self._host_counts: dict[str, tuple[int, int]] = {}  # target group -> (healthy, unhealthy)
        # Counts as each refresh saw them, by the second it saw them in, until published: a
        # publisher that runs late (a busy machine) still reports a drain in its own second.
        self._seen_counts: list[tuple[int, dict[str, tuple[int, int]]]] = []
        self._empty_refresh = 0.0
        self._elb = session.client("elbv2")
        self._cloudwatch = session.client("cloudwatch")
        self.load_balancer_arn = load_balancer_arn
        self._lb_dimension = load_balancer_arn.split(":loadbalancer/", 1)[1]
        self._changes = changes
        self.refresh_seconds = read_period(refresh_seconds, changes)
        self.target_refresh_seconds = target_refresh_seconds
        self._servers: dict[int, LoopbackServer] = {}  # listener port -> local server
        self._rules: dict[int, list[dict[str, Any]]] = {}  # listener port -> rules by priority
        self._targets: dict[str, list[tuple[str, int]]] = {}
        self._round_robin: dict[str, itertools.count] = defaultdict(itertools.count)
        self._seconds: dict[tuple[str, int], _Second] = defaultdict(_Second)
        self._elb_5xx: dict[int, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._upstreams = Upstreams()
        self.refreshes = 0
        self._loop_error = LoopErrors("router")

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AlbRouter:
        listeners = self._elb.describe_listeners(LoadBalancerArn=self.load_balancer_arn)[
            "Listeners"
        ]
        for listener in listeners:
            server = LoopbackServer(
                self._handler(listener["Port"]), name=f"bgkit-alb-{listener['Port']}"
            )
            self._servers[listener["Port"]] = server
        self._refresh_rules()
        self._refresh_targets()
        for server in self._servers.values():
            server.start()
        loops = {
            "refresh": lambda: refresh(
                self._stop, self._loop_error,
                (self._refresh_rules, self.refresh_seconds),
                (self._refresh_targets, self.target_refresh_seconds),
                self._changes,
            ),
            "metrics": lambda: each_second(self._stop, self._loop_error, self._publish),
        }  # fmt: skip
        for name, target in loops.items():
            thread = threading.Thread(target=target, name=f"bgkit-alb-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def url(self, listener_port: int) -> str:
        return self._servers[listener_port].url

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for server in self._servers.values():
            server.stop()
        self._upstreams.close()
        self._publish(flush_all=True)

    # -- control plane -----------------------------------------------------------------

    def _refresh_rules(self) -> None:
        listeners = self._elb.describe_listeners(LoadBalancerArn=self.load_balancer_arn)[
            "Listeners"
        ]
        table = {}
        for listener in listeners:
            rules = self._elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
            rules.sort(key=lambda r: float("inf") if r["IsDefault"] else int(r["Priority"]))
            table[listener["Port"]] = rules
        with self._lock:
            self._rules = table
        self.refreshes += 1

    def _refresh_targets(self) -> None:
        groups = self._elb.describe_target_groups(LoadBalancerArn=self.load_balancer_arn)[
            "TargetGroups"
        ]
        targets, counts = {}, {}
        for group in groups:
            health = self._elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
            states = [t["TargetHealth"]["State"] for t in health["TargetHealthDescriptions"]]
            counts[group["TargetGroupArn"]] = (states.count("healthy"), states.count("unhealthy"))
            addresses = []
            for t in health["TargetHealthDescriptions"]:
                if t["TargetHealth"]["State"] != "healthy":
                    continue  # initial, unhealthy and draining targets get no new requests
                address = (t["Target"]["Id"], t["Target"].get("Port", group["Port"]))
                if self._resolve is not None:
                    address = self._resolve(t["Target"]["Id"])
                if address is not None:
                    addresses.append(address)
            targets[group["TargetGroupArn"]] = addresses
        with self._lock:
            self._targets = targets
            self._host_counts = counts
            self._seen_counts.append((int(time.time()), counts))

    # -- routing -----------------------------------------------------------------------

    def route(self, listener_port: int, path: str, headers: Any) -> dict[str, Any]:
        """The action for a request, by the listener's rules as last read from the control plane."""
        with self._lock:
            rules = self._rules.get(listener_port, [])
        for rule in rules:
            if all(_matches(condition, path, headers) for condition in rule["Conditions"]):
                return rule["Actions"][0]
        return {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}

    @staticmethod
    def choose_target_group(action: dict[str, Any]) -> str | None:
        if "ForwardConfig" in action:
            groups = action["ForwardConfig"]["TargetGroups"]
            weights = [g.get("Weight", 1) for g in groups]
            if sum(weights) == 0:
                return None
            return random.choices([g["TargetGroupArn"] for g in groups], weights=weights)[0]
        return action.get("TargetGroupArn")

    def _handler(self, listener_port: int) -> type[KeepAliveHandler]:
        router = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                router._serve(self, listener_port)

            do_HEAD = do_GET

        return Handler

    def _serve(self, request: KeepAliveHandler, listener_port: int) -> None:
        action = self.route(listener_port, request.path, request.headers)
        if action["Type"] == "fixed-response":
            config = action.get("FixedResponseConfig", {})
            request.reply(
                int(config.get("StatusCode", 200)),
                config.get("MessageBody", "").encode(),
                "text/plain",
            )
            return
        group = self.choose_target_group(action) if action["Type"] == "forward" else None
        with self._lock:
            targets = self._targets.get(group, []) if group else []
        if group and not targets and time.monotonic() - self._empty_refresh > 0.05:
            # A target the control plane reports healthy is routable at once, as on AWS: read
            # the table now rather than answer 503 for up to target_refresh_seconds (at most
            # every 50 ms, so a group with no healthy target does not cost two reads a request).
            self._empty_refresh = time.monotonic()
            self._refresh_targets()
            with self._lock:
                targets = self._targets.get(group, [])
        if not targets:
            self._count_elb_5xx()
            request.reply(503, b'{"error": "no healthy targets"}')
            return
        host, port = targets[next(self._round_robin[group]) % len(targets)]
        started = time.perf_counter()
        try:
            status, body, content_type = self._upstreams.request(
                (host, port), request.command, request.path, forwarded_headers(request)
            )
        except (OSError, http.client.HTTPException):
            self._count_elb_5xx()
            request.reply(502, b'{"error": "bad gateway"}')
            return
        elapsed = time.perf_counter() - started
        self._count(group, status, elapsed)
        request.reply(status, body, content_type)

    # -- metrics -----------------------------------------------------------------------

    def _count(self, group: str, status: int, elapsed: float) -> None:
        second = int(time.time())
        with self._lock:
            bucket = self._seconds[(group, second)]
            bucket.requests += 1
            if 500 <= status < 600:
                bucket.target_5xx += 1
            bucket.latencies[round(elapsed, 4)] += 1

    def _count_elb_5xx(self) -> None:
        with self._lock:
            self._elb_5xx[int(time.time())] += 1

    def _publish(self, flush_all: bool = False) -> None:
        now = int(time.time())
        with self._lock:
            done = [key for key in self._seconds if flush_all or key[1] < now]
            buckets = {key: self._seconds.pop(key) for key in done}
            elb = {s: self._elb_5xx.pop(s) for s in list(self._elb_5xx) if flush_all or s < now}
        data: list[dict[str, Any]] = []
        for (group, second), bucket in buckets.items():
            dims = [
                {"Name": "LoadBalancer", "Value": self._lb_dimension},
                {"Name": "TargetGroup", "Value": group.split(":", 5)[5]},
            ]
            at = datetime.fromtimestamp(second, UTC)
            base = {"Dimensions": dims, "Timestamp": at, "StorageResolution": 1}
            data.append(
                {**base, "MetricName": "RequestCount", "Value": bucket.requests, "Unit": "Count"}
            )
            if bucket.target_5xx:
                data.append(
                    {
                        **base,
                        "MetricName": "HTTPCode_Target_5XX_Count",
                        "Value": bucket.target_5xx,
                        "Unit": "Count",
                    }
                )
            data.extend(distribution(base, "TargetResponseTime", "Seconds", bucket.latencies))
        for second, count in elb.items():
            data.append(
                {
                    "MetricName": "HTTPCode_ELB_5XX_Count",
                    "Value": count,
                    "Unit": "Count",
                    "Timestamp": datetime.fromtimestamp(second, UTC),
                    "StorageResolution": 1,
                    "Dimensions": [{"Name": "LoadBalancer", "Value": self._lb_dimension}],
                }
            )
        data.extend(self._host_count_data(now, flush_all))
        for chunk in range(0, len(data), 500):
            self._cloudwatch.put_metric_data(
                Namespace="AWS/ApplicationELB", MetricData=data[chunk : chunk + 500]
            )

    def _host_count_data(self, now: int, flush_all: bool) -> list[dict[str, Any]]:
        """HealthyHostCount and UnHealthyHostCount per target group: the counts each refresh saw
        in a second that has ended (all of them at `flush_all`), each at its own second, and the
        current counts for the last second (which the statistic Minimum keeps if lower)."""
        with self._lock:
            ended = [flush_all or second < now for second, _ in self._seen_counts]
            seen = [entry for entry, done in zip(self._seen_counts, ended, strict=True) if done]
            self._seen_counts = [
                e for e, done in zip(self._seen_counts, ended, strict=True) if not done
            ]
            if not flush_all:
                seen.append((now - 1, dict(self._host_counts)))
        data = []
        for second, counts in seen:
            at = datetime.fromtimestamp(second, UTC)
            for group, (healthy, unhealthy) in counts.items():
                dims = [
                    {"Name": "LoadBalancer", "Value": self._lb_dimension},
                    {"Name": "TargetGroup", "Value": group.split(":", 5)[5]},
                ]
                for name, value in (
                    ("HealthyHostCount", healthy),
                    ("UnHealthyHostCount", unhealthy),
                ):
                    data.append(
                        {"MetricName": name, "Value": value, "Unit": "Count", "Dimensions": dims,
                         "Timestamp": at, "StorageResolution": 1}
                    )  # fmt: skip
        return data


def _matches(condition: dict[str, Any], path: str, headers: Any) -> bool:
    field_name = condition["Field"]
    if field_name == "http-header":
        config = condition["HttpHeaderConfig"]
        value = headers.get(config["HttpHeaderName"])
        return value is not None and any(
            fnmatch.fnmatchcase(value.lower(), v.lower()) for v in config["Values"]
        )
    if field_name == "path-pattern":
        values = condition.get("PathPatternConfig", {}).get("Values") or condition.get("Values", [])
        return any(fnmatch.fnmatchcase(path.split("?", 1)[0], v) for v in values)
    if field_name == "host-header":
        values = condition.get("HostHeaderConfig", {}).get("Values") or condition.get("Values", [])
        host = (headers.get("Host") or "").split(":", 1)[0].lower()
        return any(fnmatch.fnmatchcase(host, v.lower()) for v in values)
    return False  # a condition the sandbox does not model never matches
