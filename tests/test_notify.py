"""Notifications: SNS and webhook messages at a release's start, promotion, rollback and failure,
read back from an SQS queue subscribed to the sandbox's SNS topic, and from a webhook server on
loopback."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_runbook
from test_release import FakeSession, bad_green, healthy, make_release, run

import bgkit
from bgkit.errors import ParameterError
from bgkit.notify import RECORD_ENV


@pytest.fixture
def topic(sandbox):
    """An SNS topic with an SQS queue subscribed (raw delivery); yields (topic ARN, read)."""
    session = sandbox.session()
    sns, sqs = session.client("sns"), session.client("sqs")
    name = f"releases-{uuid.uuid4().hex[:8]}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )

    def read() -> list[dict]:
        got = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not batch.get("Messages"):
                return got
            got += [json.loads(m["Body"]) for m in batch["Messages"]]
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(batch["Messages"])
                ],
            )

    yield arn, read
    sns.delete_topic(TopicArn=arn)
    sqs.delete_queue(QueueUrl=queue)


class Webhook:
    """A webhook receiver on 127.0.0.1: keeps each POSTed JSON body; answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        # the path is the webhook's own secret, as in a chat's incoming-webhook URL
        self.secret_path = f"/hooks/{uuid.uuid4().hex}"
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.secret_path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch):
    hook = Webhook()
    monkeypatch.setenv("BGKIT_SECRET_NOTIFY_WEBHOOK", hook.url)
    yield hook
    hook.close()


class WithSns(FakeSession):
    """test_release's fake session (fake CloudWatch), with the sandbox's real SNS."""

    def __init__(self, fake: FakeSession, sandbox) -> None:
        super().__init__(fake._cloudwatch)
        self._sns = sandbox.session().client("sns")

    def client(self, name):
        return self._sns if name == "sns" else super().client(name)


def notifying_release(sandbox, traffic, topic_arn: str, **values):
    release, pattern, _clock = make_release(traffic, notify_topic_arn=topic_arn, **values)
    release.session = WithSns(release.session, sandbox)
    release._notifier.session = release.session
    return release, pattern


def test_a_promoted_release_says_so_at_its_start_and_end_on_both_channels(
    sandbox, topic, webhook, monkeypatch
):
    arn, read = topic
    monkeypatch.setenv(RECORD_ENV, "s3://records/releases/2026-11-27/alb_weighted-rel-1.ipynb")
    release, _ = notifying_release(sandbox, healthy, arn)
    record = run(release)
    assert record["outcome"] == "promoted"
    messages = read()
    assert [m["event"] for m in messages] == ["started", "promoted"]
    started, promoted = messages
    assert (started["runbook"], started["target_id"]) == ("alb_weighted", "fake-listener")
    assert started["operator"] == "arn:aws:sts::123456789012:assumed-role/release/alice"
    assert started["split"] == {"blue": 100, "green": 0} and started["outcome"] is None
    assert promoted["split"] == {"blue": 0, "green": 100} and promoted["outcome"] == "promoted"
    assert promoted["record"] == "s3://records/releases/2026-11-27/alb_weighted-rel-1.ipynb"
    assert promoted["text"].startswith(
        f"bgkit alb_weighted release {record['release']}: promoted: green has all traffic."
    )
    assert [b["event"] for b in webhook.bodies] == ["started", "promoted"]
    assert webhook.bodies[1]["text"] == promoted["text"]
    assert webhook.bodies[0]["path"] == webhook.secret_path
    sent = [e["message"] for e in record["events"] if e["kind"] == "notify"]
    assert sent == [
        f"started message sent to the SNS topic {arn}",
        "started message sent to the webhook",
        f"promoted message sent to the SNS topic {arn}",
        "promoted message sent to the webhook",
    ]


def test_a_rolled_back_release_says_why(sandbox, topic):
    arn, read = topic
    release, _pattern = notifying_release(sandbox, bad_green, arn)
    record = run(release)
    assert record["outcome"] == "rolled_back"
    _started, rolled_back = read()
    assert rolled_back["event"] == "rolled_back"
    assert rolled_back["reason"] == record["reason"] and "5xx" in rolled_back["reason"]
    assert rolled_back["split"] == {"blue": 100, "green": 0}
    assert "rolled back: blue has all traffic. " in rolled_back["text"]
    assert f"Why: {record['reason']}." in rolled_back["text"]


def test_a_message_that_cannot_be_sent_is_recorded_and_never_stops_the_release(sandbox, webhook):
    webhook.status = 500
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    release, pattern = notifying_release(sandbox, healthy, missing)
    record = run(release)
    assert record["outcome"] == "promoted" and pattern.read_split() == {"blue": 0, "green": 100}
    failures = [e["message"] for e in record["events"] if "not sent" in e["message"]]
    assert len(failures) == 4
    assert failures[0].startswith(f"started message not sent to the SNS topic {missing}: NotFound")
    assert failures[1] == "started message not sent to the webhook: HTTP 500 Internal Server Error"
    # the webhook URL is a secret: not in the record, nor in its parameters
    assert webhook.secret_path not in json.dumps(record)
    assert record["parameters"]["notify_webhook"] == "***redacted***"


def test_an_unreachable_webhook_is_recorded_without_its_url(sandbox, monkeypatch):
    closed = Webhook()
    closed.close()  # nothing listens on its port now
    monkeypatch.setenv("BGKIT_SECRET_NOTIFY_WEBHOOK", closed.url)
    release, _, _ = make_release(healthy)
    record = run(release)
    assert record["outcome"] == "promoted"
    (failure, *_) = [e["message"] for e in record["events"] if e["kind"] == "notify"]
    assert failure.startswith("started message not sent to the webhook: ConnectionRefusedError")
    assert closed.secret_path not in json.dumps(record)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("notify_topic_arn", "arn:aws:sqs:us-east-1:123456789012:q", "must be an SNS topic ARN"),
        ("notify_topic_arn", "releases", "must be an SNS topic ARN"),
        ("auto_promote", "yes", "must be True or False"),
    ],
)
def test_bad_notification_parameters_are_refused_naming_them(name, value, allowed):
    with pytest.raises(ParameterError) as refused:
        bgkit.validate_parameters("alb_weighted", {name: value})
    assert str(refused.value).startswith(f"{name}: {allowed}")


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/T000/secret-part",
        "ftp://h/x",
        "https:///x",
        "https://h/ x",
        "https://hookuser:secret-part@hooks.example.com/x",  # urllib would repeat part of it
    ],
)
def test_a_webhook_that_is_not_https_is_refused_without_repeating_it(url, monkeypatch):
    monkeypatch.setenv("BGKIT_SECRET_NOTIFY_WEBHOOK", url)
    with pytest.raises(ParameterError) as refused:
        bgkit.validate_parameters("alb_weighted", {})
    message = str(refused.value)
    assert message.startswith("notify_webhook: the value in BGKIT_SECRET_NOTIFY_WEBHOOK must be")
    assert url not in message and "secret-part" not in message


def test_a_runbook_notifies_its_topic_with_the_path_of_its_record(shared_sandbox, topic, tmp_path):
    """The whole path: papermill, bgkit's engine (which tells the kernel where the record goes),
    the runbook's parameter, the sandbox's SNS. Green fails its smoke test: a rollback."""
    arn, read = topic
    result = run_runbook(
        tmp_path, "alb_weighted", notify_topic_arn=arn, green_error_rate=0.5,
        sandbox_request_rate=5,
    )  # fmt: skip
    assert result.record["outcome"] == "rolled_back"
    messages = read()
    assert [m["event"] for m in messages] == ["started", "rolled_back"]
    assert all(m["record"] == str(result.path) for m in messages)
    assert "smoke test failed" in messages[1]["reason"]
