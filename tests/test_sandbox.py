"""The sandbox, tested directly with boto3 as a user of AWS would see it."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bgkit.sandbox import Sandbox


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    import json
    import urllib.error

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def set_weights(elb, listener, blue, green, blue_weight, green_weight):
    elb.modify_listener(
        ListenerArn=listener,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": blue, "Weight": blue_weight},
                        {"TargetGroupArn": green, "Weight": green_weight},
                    ]
                },
            }
        ],
    )


@pytest.fixture
def scenario(sandbox):
    scenario = sandbox.provision("alb_weighted", request_rate=20)
    yield scenario
    sandbox.release_scenario(scenario.id)


def test_scenario_is_production_with_all_traffic_on_blue(sandbox, scenario):
    elb = sandbox.session().client("elbv2")
    listener = elb.describe_listeners(ListenerArns=[scenario.parameters["listener_arn"]])[
        "Listeners"
    ][0]
    weights = {
        g["TargetGroupArn"]: g["Weight"]
        for g in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    }
    assert weights == {
        scenario.parameters["blue_target_group_arn"]: 100,
        scenario.parameters["green_target_group_arn"]: 0,
    }
    production = scenario.parameters["production_url"]
    assert {get(production)[1]["colour"] for _ in range(10)} == {"blue"}
    # the test listener reaches green only
    assert {get(scenario.parameters["smoke_url"])[1]["colour"] for _ in range(5)} == {"green"}


def test_router_follows_listener_weights_read_through_boto3(sandbox, scenario):
    elb = sandbox.session().client("elbv2")
    p = scenario.parameters
    set_weights(
        elb, p["listener_arn"], p["blue_target_group_arn"], p["green_target_group_arn"], 0, 100
    )
    time.sleep(0.5)  # the router re-reads the listener at once after a write
    assert {get(p["production_url"])[1]["colour"] for _ in range(10)} == {"green"}
    set_weights(
        elb, p["listener_arn"], p["blue_target_group_arn"], p["green_target_group_arn"], 50, 50
    )
    time.sleep(0.5)
    seen = Counter(get(p["production_url"])[1]["colour"] for _ in range(200))
    assert 60 < seen["green"] < 140, seen


def test_router_serves_a_write_at_once_and_reads_the_control_plane_rarely_at_rest(
    sandbox, scenario
):
    """A router that follows the control plane's writes (Changes) serves a weight change at
    once, though its own read of the rules comes only every 30 s here; the scenario's routers
    read every 2 s at rest instead of every 0.2 s."""
    from bgkit.sandbox.router import AlbRouter
    from bgkit.sandbox.scenarios import PRODUCTION_PORT

    assert scenario.router.refresh_seconds == 2.0
    elb = sandbox.session().client("elbv2")
    p = scenario.parameters
    router = AlbRouter(
        sandbox.session(), p["load_balancer_arn"], refresh_seconds=30.0,
        changes=sandbox.calls.changes,
    ).start()  # fmt: skip
    try:
        url = router.url(PRODUCTION_PORT) + "/"
        assert {get(url)[1]["colour"] for _ in range(3)} == {"blue"}
        set_weights(
            elb, p["listener_arn"], p["blue_target_group_arn"], p["green_target_group_arn"], 0, 100
        )
        changed = time.monotonic()
        while get(url)[1]["colour"] != "green":
            assert time.monotonic() - changed < 10, "the router did not follow the write"
            time.sleep(0.05)
        assert {get(url)[1]["colour"] for _ in range(5)} == {"green"}
    finally:
        router.stop()


def test_router_publishes_host_counts_at_the_second_they_were_seen_though_it_publishes_late(
    sandbox, scenario
):
    """On a busy machine the publisher can run seconds late: each refresh's HealthyHostCount
    is still published at the second it was read (a 3 s drain must not vanish from the plot)."""
    from bgkit.sandbox.router import AlbRouter

    class Sent:
        def __init__(self):
            self.data = []

        def put_metric_data(self, Namespace, MetricData):
            self.data.extend(MetricData)

    p = scenario.parameters
    router = AlbRouter(sandbox.session(), p["load_balancer_arn"])  # not started: no loops
    router._cloudwatch = sent = Sent()
    router._refresh_targets()
    seen = int(time.time())
    time.sleep(2.2 - (time.time() % 1.0))  # the publisher wakes two seconds later
    router._publish()
    healthy = {
        (d["Dimensions"][1]["Value"], d["Timestamp"].timestamp()): d["Value"]
        for d in sent.data
        if d["MetricName"] == "HealthyHostCount"
    }
    blue = p["blue_target_group_arn"].split(":", 5)[5]
    assert healthy[(blue, seen)] >= 1  # the refresh's own second
    assert (blue, int(time.time()) - 1) in healthy  # and the last second, as before


def test_router_honours_http_header_rules(sandbox, scenario):
    elb = sandbox.session().client("elbv2")
    p = scenario.parameters
    elb.create_rule(
        ListenerArn=p["listener_arn"],
        Priority=5,
        Conditions=[
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "X-Canary", "Values": ["yes"]},
            }
        ],
        Actions=[{"Type": "forward", "TargetGroupArn": p["green_target_group_arn"]}],
    )
    time.sleep(0.5)
    assert get(p["production_url"], {"X-Canary": "yes"})[1]["colour"] == "green"
    assert get(p["production_url"])[1]["colour"] == "blue"


def test_alb_metrics_with_percentiles_come_back_through_cloudwatch(sandbox, scenario):
    p = scenario.parameters
    start = datetime.now(UTC).replace(microsecond=0)
    time.sleep(3.2)
    end = start + timedelta(seconds=2)
    lb = p["load_balancer_arn"].split(":loadbalancer/", 1)[1]
    tg = p["blue_target_group_arn"].split(":", 5)[5]
    dims = [{"Name": "LoadBalancer", "Value": lb}, {"Name": "TargetGroup", "Value": tg}]

    def query(qid, name, stat):
        metric = {"Namespace": "AWS/ApplicationELB", "MetricName": name, "Dimensions": dims}
        return {"Id": qid, "MetricStat": {"Metric": metric, "Period": 2, "Stat": stat}}

    cloudwatch = sandbox.session().client("cloudwatch")
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[
            query("n", "RequestCount", "Sum"),
            query("p50", "TargetResponseTime", "p50"),
            query("p99", "TargetResponseTime", "p99"),
        ],
        StartTime=start,
        EndTime=end,
    )["MetricDataResults"]
    values = {r["Id"]: r["Values"] for r in result}
    requests = values["n"][0]
    assert 20 <= requests <= 60  # 20 requests/s for 2 s, measured by the router
    p50, p99 = values["p50"][0], values["p99"][0]
    assert 0.001 < p50 <= p99 < 1.0  # seconds, as ALB reports TargetResponseTime


def test_percentile_rank_counts_values_above_and_at_or_under_a_threshold(sandbox):
    """CloudWatch's PR(low:high): the percentage of the period's values in (low, high]."""
    cloudwatch = sandbox.session().client("cloudwatch")
    now = datetime.now(UTC).replace(microsecond=0)
    metric = {"Namespace": "bgkit/test", "MetricName": "Latency"}
    cloudwatch.put_metric_data(
        Namespace="bgkit/test",
        MetricData=[
            {
                "MetricName": "Latency",
                "Timestamp": now,
                "Values": [0.005, 0.010, 0.030],
                "Counts": [5, 3, 2],
                "StorageResolution": 1,
            }
        ],
    )
    stats = {
        "under": "PR(:0.01)",
        "above": "PR(0.01:)",
        "between": "PR(0.005:0.03)",
        "n": "SampleCount",
    }
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": qid, "MetricStat": {"Metric": metric, "Period": 1, "Stat": stat}}
            for qid, stat in stats.items()
        ],
        StartTime=now - timedelta(seconds=2),
        EndTime=now + timedelta(seconds=2),
    )["MetricDataResults"]
    values = {r["Id"]: r["Values"] for r in result}
    # 8 of 10 values are at or under 10 ms (the upper bound is inclusive), 2 above it;
    # the lower bound is exclusive: (5 ms, 30 ms] holds the 3 at 10 ms and the 2 at 30 ms
    assert values == {"under": [80.0], "above": [20.0], "between": [50.0], "n": [10.0]}


def test_green_fault_knobs_are_real_http_errors_and_latency():
    with Sandbox() as box:
        scenario = box.provision(
            "alb_weighted", green_error_rate=0.5, green_added_latency_ms=40, request_rate=5
        )
        root = scenario.parameters["smoke_url"]
        started = time.perf_counter()
        statuses = Counter(get(root)[0] for _ in range(40))
        per_request_ms = 1000 * (time.perf_counter() - started) / 40
        assert 8 <= statuses[500] <= 32 and statuses[500] + statuses[200] == 40
        assert per_request_ms >= 40
        assert get(root + "health")[0] == 200  # health checks stay up: faults hit real traffic


def test_stop_leaves_no_thread_or_port(no_leaked_threads):
    box = Sandbox().start()
    scenario = box.provision("alb_weighted", request_rate=50)
    ports = [
        int(url.rsplit(":", 1)[1].split("/")[0])
        for url in (
            scenario.parameters["production_url"],
            scenario.parameters["smoke_url"],
            box.endpoint_url,
        )
    ]
    time.sleep(0.5)
    box.stop()
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, (
                f"port {port} still accepts connections"
            )


def test_cloudwatch_rounds_the_start_of_a_query_as_aws_does():
    from datetime import datetime

    from bgkit.sandbox.control import round_start_time

    at = datetime(2026, 1, 1, 12, 32, 34, 500000, tzinfo=UTC)
    assert round_start_time(at, 1) == datetime(2026, 1, 1, 12, 32, 34, tzinfo=UTC)
    assert round_start_time(at, 10) == datetime(2026, 1, 1, 12, 32, 30, tzinfo=UTC)
    assert round_start_time(at, 5) == datetime(2026, 1, 1, 12, 32, 30, tzinfo=UTC)
    assert round_start_time(at, 60) == datetime(2026, 1, 1, 12, 32, 0, tzinfo=UTC)


def test_an_upstream_timeout_is_the_answer_and_the_request_is_sent_once():
    from bgkit.sandbox.http import KeepAliveHandler, LoopbackServer, Upstreams

    received, gave_up = [], threading.Event()

    class Slow(KeepAliveHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            gave_up.wait(5)  # the client has timed out: never answer
            self.close_connection = True

    server = LoopbackServer(Slow, name="bgkit-test-slow").start()
    upstreams = Upstreams(timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            upstreams.request(("127.0.0.1", server.port), "POST", "/", {}, b"once")
        assert time.monotonic() - started < 0.4  # not retried: one timeout, not two
        assert received == [b"once"]
    finally:
        gave_up.set()
        upstreams.close()
        server.stop()
