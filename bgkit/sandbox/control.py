"""The sandbox's AWS control plane: moto in server mode on loopback, with the gaps filled.

Gaps filled here, behind the same HTTP API that boto3 calls:

* CloudWatch percentile statistics (``p50``, ``p99``, ``p99.9``...) in GetMetricData.
  moto stores every value sent with ``Values``/``Counts`` but answers only Sum, Average,
  Minimum, Maximum and SampleCount. CloudWatch computes percentiles over the raw values
  of the period ("CloudWatch statistics definitions", Percentile); this uses the
  nearest-rank percentile of the stored values.
* CloudWatch percentile-rank statistics (``PR(:0.05)``, ``PR(0.01:0.05)``) in GetMetricData:
  the percentage of the period's values above the lower bound and at or below the upper one
  ("CloudWatch statistics definitions", Percentile rank: the lower bound is exclusive, the
  upper inclusive; either may be left out). bgkit counts slow requests with it.
* GetMetricData start-time rounding (API Reference, GetMetricData.StartTime): with a period of
  5, 10, 20 or 30 s the start is rounded down to that division of the minute, with 60 s or
  more to the whole minute. moto uses the start as given; misaligned windows would then
  look right in the sandbox and wrong on AWS.
* ECS task set counts (API Reference, TaskSet: computedDesiredCount, runningCount,
  pendingCount): moto reports none. A task set's desired count is the service's desired
  count times its scale, rounded up; the sandbox's tasks start at once, so all of them run,
  and the service's runningCount is the sum over its task sets.
* Route 53 ChangeResourceRecordSets checks (API Reference, ChangeResourceRecordSets errors;
  ResourceRecordSet.Weight and SetIdentifier; "Weighted routing"): Weight is 0-255 and needs a
  SetIdentifier (and a SetIdentifier needs a routing policy); CREATE of a record that exists
  (same name, type and set identifier) and DELETE of one that does not are InvalidChangeBatch;
  a weighted record cannot share its name and type with a simple one. moto checks none of it.
* Target health and deregistration delay for the target groups of Auto Scaling instances that
  the sandbox runs (see instances.py): real health checks, `initial`, `unhealthy`, `draining`.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

from moto.cloudwatch import models as cloudwatch_models
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from ..clock import cloudwatch_alignment
from .calls import CallLog

_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?|100)$")
_NUMBER = r"(\d+(?:\.\d+)?)?"
_PERCENTILE_RANK = re.compile(rf"^PR\({_NUMBER}:{_NUMBER}\)$")
_installed = False
_install_lock = threading.Lock()


def _percentile(values: list[float], stat: str) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # nearest rank; rounded first, since 99.9 / 100 * 1000 is 999.0000000000001 in floats
    rank = max(1, math.ceil(round(float(stat[1:]) / 100 * len(ordered), 9)))
    return ordered[rank - 1]


def _percentile_rank(values: list[float], stat: str) -> float | None:
    match = _PERCENTILE_RANK.match(stat)
    if not values or match is None:
        return None
    low = float(match.group(1)) if match.group(1) else -math.inf
    high = float(match.group(2)) if match.group(2) else math.inf
    return 100.0 * sum(1 for v in values if low < v <= high) / len(values)


def round_start_time(start, period: int):  # type: ignore[no-untyped-def]
    """Round a GetMetricData start down as CloudWatch does for recent data."""
    start = start.replace(microsecond=0)
    return start.replace(second=start.second - start.second % cloudwatch_alignment(period))


def install_gap_fills() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        original = cloudwatch_models.Statistics.get_statistics_for_type

        def get_statistics_for_type(self, stat):  # type: ignore[no-untyped-def]
            if _PERCENTILE.match(stat):
                return _percentile(self.metric_single_values_list, stat)
            if _PERCENTILE_RANK.match(stat):
                return _percentile_rank(self.metric_single_values_list, stat)
            return original(self, stat)

        cloudwatch_models.Statistics.get_statistics_for_type = get_statistics_for_type

        original_get_metric_data = cloudwatch_models.CloudWatchBackend.get_metric_data

        def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):  # type: ignore[no-untyped-def]
            periods = [int(q["MetricStat"]["Period"]) for q in queries if "MetricStat" in q]
            if periods:
                start_time = round_start_time(start_time, min(periods))
            return original_get_metric_data(self, queries, start_time, end_time, scan_by)

        cloudwatch_models.CloudWatchBackend.get_metric_data = get_metric_data
        _install_task_set_counts()
        _install_route53_checks()
        _install_dispatch_cache()
        from .instances import install_target_health

        install_target_health()
        _installed = True


def _apigateway_on_first_use(app: Any) -> Any:
    """moto's API Gateway module takes a sandbox 1.4 s to import (its OpenAPI validator loads
    jsonschema, which compiles its URI grammars), and most scenarios never call API Gateway:
    the sandbox's canary model is installed (importing moto's) before the first API Gateway
    request is answered, rather than when the sandbox starts."""
    signed_for_apigateway = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/apigateway/")

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if signed_for_apigateway.search(environ.get("HTTP_AUTHORIZATION", "")):
            from .apigateway import install_canary_model

            install_canary_model()  # once; idempotent
        return app(environ, start_response)

    return dispatch


def _install_dispatch_cache() -> None:
    """moto's server finds the service of each request by matching its host against every
    backend's URL patterns, and by listing moto's modules, on every request: a quarter of the
    control plane's CPU in a running scenario. The answer depends on the host alone (the
    patterns are fixed at import), so it is kept per host."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    find = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, object] = {}

    def get_backend_for_host(self, host):  # type: ignore[no-untyped-def]
        if host not in found:
            found[host] = find(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


def _install_task_set_counts() -> None:
    from moto.ecs import models as ecs_models

    backend_class = ecs_models.EC2ContainerServiceBackend

    def recount(backend, cluster: str, service: str) -> None:  # type: ignore[no-untyped-def]
        key = f"{cluster.split('/')[-1]}:{service.split('/')[-1]}"
        owner = backend.services.get(key)
        if owner is None:
            return
        for task_set in owner.task_sets:
            scale = float((task_set.scale or {}).get("value", 100.0))
            task_set.computed_desired_count = math.ceil(owner.desired_count * scale / 100)
            task_set.running_count = task_set.computed_desired_count
            task_set.pending_count = 0
        if owner.deployment_controller.get("type") != "ECS":
            owner.running_count = sum(t.running_count for t in owner.task_sets)
            owner.pending_count = 0

    original_create, original_delete = backend_class.create_task_set, backend_class.delete_task_set

    def create_task_set(self, service, cluster_str, *args, **kwargs):  # type: ignore[no-untyped-def]
        task_set = original_create(self, service, cluster_str, *args, **kwargs)
        recount(self, cluster_str, service)
        return task_set

    def delete_task_set(self, cluster, service, task_set):  # type: ignore[no-untyped-def]
        deleted = original_delete(self, cluster, service, task_set)
        recount(self, cluster, service)
        return deleted

    backend_class.create_task_set = create_task_set

    backend_class.delete_task_set = delete_task_set


def _install_route53_checks() -> None:
    from moto.route53 import exceptions, models

    backend_class = models.Route53Backend
    original = backend_class.change_resource_record_sets

    def invalid(message: str) -> Exception:
        error = exceptions.Route53ClientError("InvalidChangeBatch", message)
        return error

    def key(record: dict) -> tuple[str, str, str | None]:  # type: ignore[type-arg]
        return (record["Name"].rstrip(".") + ".", record["Type"], record.get("SetIdentifier"))

    def change_resource_record_sets(self, zoneid, change_list):  # type: ignore[no-untyped-def]
        zone = self.get_hosted_zone(zoneid)
        existing = {(r.name.rstrip(".") + ".", r.type, r.set_identifier): r for r in zone.rrsets}
        for change in change_list:
            record = change["ResourceRecordSet"]
            name, kind, set_id = key(record)
            described = f"[name='{name}', type='{kind}'" + (
                f", set-identifier='{set_id}']" if set_id else "]"
            )
            routed = any(k in record for k in ("Weight", "Region", "Failover", "GeoLocation",
                                               "MultiValueAnswer"))  # fmt: skip
            if "Weight" in record:
                try:
                    weight = int(record["Weight"])
                except (TypeError, ValueError):
                    weight = -1
                if not 0 <= weight <= 255:
                    raise exceptions.InvalidInput(
                        f"Invalid request: Weight must be between 0 and 255 in {described}"
                    )
            if routed and not set_id:
                raise exceptions.InvalidInput(
                    f"Invalid request: Missing field 'SetIdentifier' in Change with {described}"
                )
            if set_id and not routed:
                raise exceptions.InvalidInput(
                    f"Invalid request: Unexpected field 'SetIdentifier' in Change with {described}"
                )
            if change["Action"] == "CREATE" and (name, kind, set_id) in existing:
                raise invalid(
                    f"Tried to create resource record set {described} but it already exists"
                )
            if change["Action"] == "DELETE" and (name, kind, set_id) not in existing:
                raise invalid(
                    f"Tried to delete resource record set {described} but it was not found"
                )
            if change["Action"] in ("CREATE", "UPSERT"):
                clash = [
                    k for k in existing if k[:2] == (name, kind) and bool(k[2]) != bool(set_id)
                ]
                if clash:
                    raise invalid(
                        f"RRSet {described} conflicts with another record of the same name and "
                        "type whose routing policy differs"
                    )
                existing[(name, kind, set_id)] = record
            else:  # the batch is one transaction: later changes see this one
                existing.pop((name, kind, set_id), None)
        return original(self, zoneid, change_list)

    backend_class.change_resource_record_sets = change_resource_record_sets


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code="-", size="-"):  # type: ignore[no-untyped-def]
        """The sandbox serves many requests a second; no access log."""


class ControlPlane:
    """moto's server in a thread of this process, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self._server = None
        self._thread: threading.Thread | None = None
        self.extensions: list = []  # JsonService instances served before moto (see extensions.py)
        self.calls = CallLog()  # what bgkit's releases asked, and faults to answer them with

    def start(self) -> ControlPlane:
        from .extensions import middleware

        install_gap_fills()
        app = self.calls.middleware(
            _apigateway_on_first_use(
                middleware(DomainDispatcherApplication(create_backend_app), self.extensions)
            )
        )
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True
        # A short poll interval: stop() returns at once instead of waiting up to 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="bgkit-moto", daemon=True
        )
        self._thread.start()
        return self

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
