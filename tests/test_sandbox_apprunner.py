"""The sandbox's App Runner, tested with boto3 as against AWS."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from bgkit.sandbox import Sandbox
from bgkit.sandbox.apprunner import REPOSITORY
from bgkit.sandbox.services import ColourService

V1, V2 = f"{REPOSITORY}:v1", f"{REPOSITORY}:v2"
ROLE = "arn:aws:iam::123456789012:role/service-role/AppRunnerECRAccessRole"
DONE = ("SUCCEEDED", "FAILED", "ROLLBACK_SUCCEEDED", "ROLLBACK_FAILED")


@pytest.fixture
def app(sandbox):
    scenario = sandbox.provision("app_runner", minute_seconds=1.5, request_rate=10)
    yield scenario, sandbox.session().client("apprunner")
    sandbox.release_scenario(scenario.id)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # a non-2xx answer is an answer: return it
        return error.code, json.loads(error.read() or b"{}")


def operations(client, arn: str) -> list[dict]:
    return client.list_operations(ServiceArn=arn)["OperationSummaryList"]


def wait_for(
    client, arn: str, operation_id: str, timeout: float = 15.0, on_status=None
) -> list[str]:
    """Poll the operation until it ends; returns every status seen, in order (calling
    `on_status` with each new one)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = next(o for o in operations(client, arn) if o["Id"] == operation_id)["Status"]
        if not seen or seen[-1] != status:
            seen.append(status)
            if on_status is not None:
                on_status(status)
        if status in DONE:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"operation {operation_id} stayed {seen[-1]}")


def image(client, arn: str) -> str:
    service = client.describe_service(ServiceArn=arn)["Service"]
    return service["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]


def update_image(client, arn: str, identifier: str) -> dict:
    return client.update_service(
        ServiceArn=arn,
        SourceConfiguration={
            "ImageRepository": {"ImageIdentifier": identifier, "ImageRepositoryType": "ECR"}
        },
    )


def refused(call, code: str) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code
    return caught.value.response["Error"]["Message"]


class Sampler:
    """One client sending requests one after another: the colours it sees, in order."""

    def __init__(self, url: str) -> None:
        self._address = ("127.0.0.1", int(url.split(":")[2].rstrip("/")))
        self.seen: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-sampler")

    def __enter__(self) -> Sampler:
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self.seen:  # it has seen what serves before anything changes
            assert time.monotonic() < deadline, "the sampler got no answer"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = http.client.HTTPConnection(*self._address, timeout=5)
        try:
            while not self._stop.wait(0.005):
                connection.request("GET", "/")
                response = connection.getresponse()
                body = json.loads(response.read())
                self.seen.append((response.status, body.get("colour", "")))
        finally:
            connection.close()


def test_scenario_service_is_running_blue_as_described_and_listed(app):
    scenario, client = app
    p = scenario.parameters
    service = client.describe_service(ServiceArn=p["service_arn"])["Service"]
    assert re.fullmatch(
        r"arn:aws:apprunner:us-east-1:123456789012:service/bgkit-[0-9a-f]{8}/[0-9a-f]{32}",
        service["ServiceArn"],
    )
    assert service["ServiceArn"].endswith("/" + service["ServiceId"])
    assert f"http://{service['ServiceUrl']}/" == p["smoke_url"] == p["production_url"]
    assert service["Status"] == "RUNNING"
    source = service["SourceConfiguration"]
    assert source["ImageRepository"]["ImageIdentifier"] == V1
    assert source["ImageRepository"]["ImageRepositoryType"] == "ECR"
    assert source["AutoDeploymentsEnabled"] is False
    assert service["HealthCheckConfiguration"] == {
        "Protocol": "HTTP", "Path": "/health", "Interval": 5, "Timeout": 2,
        "HealthyThreshold": 1, "UnhealthyThreshold": 5,
    }  # fmt: skip
    assert service["InstanceConfiguration"] == {"Cpu": "1024", "Memory": "2048"}
    assert p["image_identifier"] == V2

    listed = {s["ServiceArn"]: s for s in client.list_services()["ServiceSummaryList"]}
    assert listed[p["service_arn"]]["Status"] == "RUNNING"
    assert listed[p["service_arn"]]["ServiceUrl"] == service["ServiceUrl"]

    (created,) = operations(client, p["service_arn"])
    assert (created["Type"], created["Status"]) == ("CREATE_SERVICE", "SUCCEEDED")
    assert created["TargetArn"] == p["service_arn"]
    assert created["StartedAt"] <= created["EndedAt"]
    assert get(p["smoke_url"]) == (200, {"colour": "blue", "version": "v1"})


def test_update_deploys_v2_after_its_health_check_and_moves_all_traffic_at_once(app):
    scenario, client = app
    arn = scenario.parameters["service_arn"]
    with Sampler(scenario.parameters["smoke_url"]) as sampler:
        time.sleep(0.2)
        answer = update_image(client, arn, V2)
        assert answer["Service"]["Status"] == "OPERATION_IN_PROGRESS"
        assert image(client, arn) == V2  # the configuration being applied
        latest = operations(client, arn)[0]
        assert (latest["Id"], latest["Type"], latest["Status"]) == (
            answer["OperationId"], "UPDATE_SERVICE", "IN_PROGRESS",
        )  # fmt: skip
        # One operation at a time: each refusal as App Runner answers it.
        refused(lambda: update_image(client, arn, V1), "InvalidStateException")
        refused(lambda: client.pause_service(ServiceArn=arn), "InvalidStateException")
        refused(lambda: client.start_deployment(ServiceArn=arn), "InvalidRequestException")
        assert get(scenario.parameters["smoke_url"])[1]["colour"] == "blue"  # still starting
        assert wait_for(client, arn, answer["OperationId"]) == ["IN_PROGRESS", "SUCCEEDED"]
        time.sleep(0.2)
    service = client.describe_service(ServiceArn=arn)["Service"]
    assert service["Status"] == "RUNNING"
    assert get(scenario.parameters["smoke_url"]) == (200, {"colour": "green", "version": "v2"})

    statuses = {status for status, _ in sampler.seen}
    colours = [colour for _, colour in sampler.seen]
    assert statuses == {200}
    first_green = colours.index("green")
    assert first_green > 0  # blue served until the switch...
    assert colours == ["blue"] * first_green + ["green"] * (
        len(colours) - first_green
    )  # ...then never again

    first = client.list_operations(ServiceArn=arn, MaxResults=1)
    assert [o["Type"] for o in first["OperationSummaryList"]] == ["UPDATE_SERVICE"]
    rest = client.list_operations(ServiceArn=arn, MaxResults=1, NextToken=first["NextToken"])
    assert [o["Type"] for o in rest["OperationSummaryList"]] == ["CREATE_SERVICE"]
    assert "NextToken" not in rest


def test_an_image_that_cannot_start_is_rolled_back_while_blue_serves(app):
    scenario, client = app
    arn = scenario.parameters["service_arn"]
    during: dict[str, tuple] = {}

    def look(status: str) -> None:  # what serves, and the service's status, at each step
        service_status = client.describe_service(ServiceArn=arn)["Service"]["Status"]
        during[status] = (service_status, get(scenario.parameters["smoke_url"]))

    with Sampler(scenario.parameters["smoke_url"]) as sampler:
        answer = update_image(client, arn, f"{REPOSITORY}:v3-never-pushed")
        seen = wait_for(client, arn, answer["OperationId"], on_status=look)
    assert seen == ["IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCEEDED"]
    blue = (200, {"colour": "blue", "version": "v1"})
    assert during["IN_PROGRESS"] == ("OPERATION_IN_PROGRESS", blue)
    assert during["ROLLBACK_IN_PROGRESS"][1] == blue
    assert during["ROLLBACK_SUCCEEDED"] == ("RUNNING", blue)
    assert image(client, arn) == V1  # the previous configuration is back
    assert set(sampler.seen) == {(200, "blue")}  # one client's every answer, throughout
    assert get(scenario.parameters["smoke_url"])[1]["colour"] == "blue"


def test_start_deployment_pulls_the_newest_image_behind_the_tag(sandbox, app):
    scenario, client = app
    arn = scenario.parameters["service_arn"]
    name = arn.split("/")[1]
    rebuilt = ColourService("green", "v1-rebuilt").start()
    try:
        # A push to the v1 tag: automatic deployments are off, so nothing deploys it...
        sandbox.apprunner.push_image(V1, ("127.0.0.1", rebuilt.port), service_name=name)
        time.sleep(0.3)
        assert [o["Type"] for o in operations(client, arn)] == ["CREATE_SERVICE"]
        # ...until a manual deployment, which pulls the tag's newest image.
        operation = client.start_deployment(ServiceArn=arn)["OperationId"]
        assert operations(client, arn)[0]["Type"] == "START_DEPLOYMENT"
        assert wait_for(client, arn, operation) == ["IN_PROGRESS", "SUCCEEDED"]
        assert image(client, arn) == V1
        assert get(scenario.parameters["smoke_url"])[1] == {
            "colour": "green",
            "version": "v1-rebuilt",
        }
    finally:
        sandbox.release_scenario(scenario.id)
        rebuilt.stop()


def test_pause_and_resume(app):
    scenario, client = app
    arn, url = scenario.parameters["service_arn"], scenario.parameters["smoke_url"]
    pause = client.pause_service(ServiceArn=arn)
    assert pause["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    assert wait_for(client, arn, pause["OperationId"]) == ["IN_PROGRESS", "SUCCEEDED"]
    assert client.describe_service(ServiceArn=arn)["Service"]["Status"] == "PAUSED"
    assert get(url)[0] == 503  # no instance runs
    refused(lambda: update_image(client, arn, V2), "InvalidStateException")
    refused(lambda: client.start_deployment(ServiceArn=arn), "InvalidRequestException")
    resume = client.resume_service(ServiceArn=arn)["OperationId"]
    assert wait_for(client, arn, resume) == ["IN_PROGRESS", "SUCCEEDED"]
    assert client.describe_service(ServiceArn=arn)["Service"]["Status"] == "RUNNING"
    assert get(url)[1]["colour"] == "blue"
    assert [(o["Type"], o["Status"]) for o in operations(client, arn)] == [
        ("RESUME_SERVICE", "SUCCEEDED"),
        ("PAUSE_SERVICE", "SUCCEEDED"),
        ("CREATE_SERVICE", "SUCCEEDED"),
    ]


def test_create_service_runs_after_its_health_check_or_fails_and_can_be_deleted(sandbox):
    client, engine = sandbox.session().client("apprunner"), sandbox.apprunner
    suffix = uuid.uuid4().hex[:8]
    good, bad = f"t-good-{suffix}", f"t-bad-{suffix}"
    blue = ColourService("blue", "v1").start()
    green = ColourService("green", "v2").start()
    try:
        for name in (good, bad):
            engine.minute_seconds[name] = 0.3
        engine.serve_image(V1, ("127.0.0.1", blue.port), service_name=good)

        def create(name: str) -> dict:
            return client.create_service(
                ServiceName=name,
                SourceConfiguration={
                    "ImageRepository": {"ImageIdentifier": V1, "ImageRepositoryType": "ECR"},
                    "AuthenticationConfiguration": {"AccessRoleArn": ROLE},
                },
            )

        answer = create(good)
        service = answer["Service"]
        assert service["Status"] == "OPERATION_IN_PROGRESS"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", service["ServiceUrl"])
        assert service["HealthCheckConfiguration"]["Protocol"] == "TCP"  # the default
        assert service["SourceConfiguration"]["AutoDeploymentsEnabled"] is True  # same-account ECR
        url = f"http://{service['ServiceUrl']}/"
        assert get(url)[0] == 503  # no instance yet
        assert operations(client, service["ServiceArn"])[0]["Id"] == answer["OperationId"]
        assert wait_for(client, service["ServiceArn"], answer["OperationId"])[-1] == "SUCCEEDED"
        assert get(url)[1]["colour"] == "blue"
        refused(lambda: create(good), "InvalidRequestException")  # the name is taken

        # Automatic deployments: a push to the running tag deploys it.
        engine.push_image(V1, ("127.0.0.1", green.port), service_name=good)
        deadline = time.monotonic() + 5
        while operations(client, service["ServiceArn"])[0]["Type"] != "START_DEPLOYMENT":
            assert time.monotonic() < deadline, "the push started no deployment"
            time.sleep(0.02)
        deployment = operations(client, service["ServiceArn"])[0]["Id"]
        assert wait_for(client, service["ServiceArn"], deployment)[-1] == "SUCCEEDED"
        assert get(url)[1]["colour"] == "green"

        # No process serves the bad service's image: its first deployment fails.
        failed = create(bad)
        assert wait_for(client, failed["Service"]["ServiceArn"], failed["OperationId"]) == [
            "IN_PROGRESS",
            "FAILED",
        ]
        described = client.describe_service(ServiceArn=failed["Service"]["ServiceArn"])
        assert described["Service"]["Status"] == "CREATE_FAILED"

        for arn in (service["ServiceArn"], failed["Service"]["ServiceArn"]):
            deletion = client.delete_service(ServiceArn=arn)
            assert deletion["Service"]["Status"] == "OPERATION_IN_PROGRESS"
            refused(lambda a=arn: client.delete_service(ServiceArn=a), "InvalidStateException")
            assert wait_for(client, arn, deletion["OperationId"]) == ["IN_PROGRESS", "SUCCEEDED"]
            gone = client.describe_service(ServiceArn=arn)["Service"]
            assert gone["Status"] == "DELETED" and "DeletedAt" in gone
        listed = [s["ServiceName"] for s in client.list_services()["ServiceSummaryList"]]
        assert good not in listed and bad not in listed
        port = int(service["ServiceUrl"].rsplit(":", 1)[1])
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # the URL went with the service
    finally:
        blue.stop()
        green.stop()


def test_bad_input_is_refused_as_app_runner_refuses_it(sandbox):
    client = sandbox.session().client("apprunner")
    unknown = "arn:aws:apprunner:us-east-1:123456789012:service/nobody/" + "0" * 32
    for call in (
        lambda: client.describe_service(ServiceArn=unknown),
        lambda: update_image(client, unknown, V2),
        lambda: client.start_deployment(ServiceArn=unknown),
        lambda: client.list_operations(ServiceArn=unknown),
        lambda: client.delete_service(ServiceArn=unknown),
    ):
        assert unknown in refused(call, "ResourceNotFoundException")
    refused(
        lambda: client.describe_service(
            ServiceArn="arn:aws:apprunner:us-east-1:123456789012:service/web"
        ),
        "InvalidRequestException",
    )

    def create(image=None, health=None, **source):
        repository = {"ImageIdentifier": V1, "ImageRepositoryType": "ECR", **(image or {})}
        return lambda: client.create_service(
            ServiceName=f"t-bad-input-{uuid.uuid4().hex[:8]}",
            SourceConfiguration={
                "ImageRepository": repository,
                "AuthenticationConfiguration": {"AccessRoleArn": ROLE},
                **source,
            },
            HealthCheckConfiguration=health or {},
        )

    for call in (
        create({"ImageIdentifier": "docker.io/library/nginx:latest"}),  # not an ECR image
        create({"ImageRepositoryType": "ECR_PUBLIC"}),  # a private ECR image
        create({"ImageRepositoryType": "GITHUB"}),
        create(health={"Interval": 25}),  # 1-20
        create(health={"Protocol": "UDP"}),
        create(AuthenticationConfiguration={}),  # ECR needs an access role
        create(
            {
                "ImageIdentifier": "public.ecr.aws/nginx/nginx:latest",
                "ImageRepositoryType": "ECR_PUBLIC",
            },
            AutoDeploymentsEnabled=True,
        ),  # no automatic deployments from ECR Public
    ):
        refused(call, "InvalidRequestException")
    refused(lambda: client.list_services(MaxResults=50), "InvalidRequestException")
    refused(lambda: client.list_services(NextToken="not-a-token"), "InvalidRequestException")


def test_metrics_per_service_come_back_with_percentiles(sandbox):
    scenario = sandbox.provision(
        "app_runner",
        minute_seconds=0.5,
        request_rate=20,
        green_error_rate=0.3,
        green_added_latency_ms=30,
    )
    try:
        client = sandbox.session().client("apprunner")
        arn = scenario.parameters["service_arn"]
        operation = update_image(client, arn, V2)["OperationId"]
        assert wait_for(client, arn, operation)[-1] == "SUCCEEDED"
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        time.sleep(3.4)
        end = start + timedelta(seconds=2)
        service = client.describe_service(ServiceArn=arn)["Service"]
        dims = [
            {"Name": "ServiceName", "Value": service["ServiceName"]},
            {"Name": "ServiceID", "Value": service["ServiceId"]},
        ]

        def query(qid, name, stat):
            metric = {"Namespace": "AWS/AppRunner", "MetricName": name, "Dimensions": dims}
            return {"Id": qid, "MetricStat": {"Metric": metric, "Period": 2, "Stat": stat}}

        results = (
            sandbox.session()
            .client("cloudwatch")
            .get_metric_data(
                MetricDataQueries=[
                    query("requests", "Requests", "Sum"),
                    query("ok", "2xxStatusResponses", "Sum"),
                    query("errors", "5xxStatusResponses", "Sum"),
                    query("p50", "RequestLatency", "p50"),
                    query("p99", "RequestLatency", "p99"),
                    query("instances", "ActiveInstances", "Maximum"),
                ],
                StartTime=start,
                EndTime=end,
            )["MetricDataResults"]
        )
        values = {r["Id"]: r["Values"][0] for r in results}
        assert 20 <= values["requests"] <= 60  # 20 requests/s for 2 s, all on green by now
        assert values["ok"] + values["errors"] == values["requests"]
        assert values["errors"] >= 1  # green's 30 % injected faults, as 5xx
        assert 30 <= values["p50"] <= values["p99"] < 1000  # milliseconds, green's added 30 ms
        assert values["instances"] == 1
    finally:
        sandbox.release_scenario(scenario.id)


def test_stopping_mid_deployment_leaves_no_thread_or_port(no_leaked_threads):
    box = Sandbox().start()
    try:
        scenario = box.provision("app_runner", minute_seconds=0.5, request_rate=20)
        client = box.session().client("apprunner")
        update_image(client, scenario.parameters["service_arn"], V2)
        url = scenario.parameters["smoke_url"]
        ports = [int(url.split(":")[2].rstrip("/")), int(box.endpoint_url.rsplit(":", 1)[1])]
        time.sleep(0.2)
    finally:
        box.stop()
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
