"""The sandbox's call log and injected faults (bgkit.sandbox.calls): each call a release makes is
named as IAM names it, whatever the service's protocol, and a fault reaches boto3 as the AWS
error it stands for, in that protocol's wire format."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from bgkit.sandbox import Fault
from bgkit.sandbox.calls import identify

RUNBOOK = "alb_weighted"
LISTENER = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/"
    "50dc6c495c0c9188/f2f7dc8efc522ab2"
)
NOW = datetime.now(UTC)
QUERY = {
    "Id": "q",
    "MetricStat": {
        "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount"},
        "Period": 60,
        "Stat": "Sum",
    },
}
CHANGE = {
    "Changes": [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": "www.example.com",
                "Type": "A",
                "TTL": 60,
                "ResourceRecords": [{"Value": "127.0.0.1"}],
            },
        }
    ]
}

# (protocol, botocore service, method, kwargs, IAM action, API operation, mutating)
CASES = [
    ("query", "elbv2", "describe_listeners", {"ListenerArns": [LISTENER]},
     "elasticloadbalancing:DescribeListeners", "DescribeListeners", False),
    ("query", "elbv2", "modify_listener", {"ListenerArn": LISTENER},
     "elasticloadbalancing:ModifyListener", "ModifyListener", True),
    ("query", "sts", "get_caller_identity", {}, "sts:GetCallerIdentity", "GetCallerIdentity", False),
    ("ec2", "ec2", "describe_instances", {"InstanceIds": ["i-0123456789abcdef0"]},
     "ec2:DescribeInstances", "DescribeInstances", False),
    ("json", "dynamodb", "get_item", {"TableName": "t", "Key": {"k": {"S": "v"}}},
     "dynamodb:GetItem", "GetItem", False),
    ("json", "dynamodb", "put_item", {"TableName": "t", "Item": {"k": {"S": "v"}}},
     "dynamodb:PutItem", "PutItem", True),
    ("json", "ecs", "update_service", {"cluster": "c", "service": "s", "desiredCount": 1},
     "ecs:UpdateService", "UpdateService", True),
    ("rest-json", "lambda", "get_alias", {"FunctionName": "f", "Name": "live"},
     "lambda:GetAlias", "GetAlias", False),
    ("rest-json", "lambda", "update_alias", {"FunctionName": "f", "Name": "live", "FunctionVersion": "2"},
     "lambda:UpdateAlias", "UpdateAlias", True),
    ("rest-json", "lambda", "invoke", {"FunctionName": "f", "Payload": b"{}"},
     "lambda:InvokeFunction", "Invoke", True),
    ("rest-json", "apigateway", "get_stage", {"restApiId": "a1b2c3", "stageName": "prod"},
     "apigateway:GET", "GetStage", False),
    ("rest-json", "apigateway", "update_stage", {"restApiId": "a1b2c3", "stageName": "prod", "patchOperations": []},
     "apigateway:PATCH", "UpdateStage", True),
    ("rest-xml", "route53", "list_resource_record_sets", {"HostedZoneId": "Z123"},
     "route53:ListResourceRecordSets", "ListResourceRecordSets", False),
    ("rest-xml", "route53", "change_resource_record_sets", {"HostedZoneId": "Z123", "ChangeBatch": CHANGE},
     "route53:ChangeResourceRecordSets", "ChangeResourceRecordSets", True),
    ("smithy-rpc-v2-cbor", "cloudwatch", "get_metric_data",
     {"MetricDataQueries": [QUERY], "StartTime": NOW, "EndTime": NOW},
     "cloudwatch:GetMetricData", "GetMetricData", False),
    ("smithy-rpc-v2-cbor", "cloudwatch", "put_metric_data",
     {"Namespace": "bgkit/test", "MetricData": [{"MetricName": "m", "Value": 1.0}]},
     "cloudwatch:PutMetricData", "PutMetricData", True),
    ("smithy-rpc-v2-cbor", "codedeploy", "stop_deployment", {"deploymentId": "d-ABCDEF123"},
     "codedeploy:StopDeployment", "StopDeployment", True),
]  # fmt: skip


@pytest.fixture(scope="module")
def release_session(sandbox):
    """Clients whose calls the sandbox logs as a release of RUNBOOK makes them (made once:
    loading botocore's service models is most of a first call's time)."""
    return sandbox.session(RUNBOOK)


@pytest.mark.parametrize(
    ("protocol", "service", "method", "kwargs", "action", "operation", "mutating"),
    CASES,
    ids=[f"{c[0]}-{c[2]}" for c in CASES],
)
def test_a_call_is_named_as_iam_names_it_and_a_fault_reaches_boto3_in_its_protocol(
    release_session, calls, protocol, service, method, kwargs, action, operation, mutating
):
    client = release_session.client(service)
    assert client.meta.service_model.protocol == protocol  # the protocol botocore speaks
    message = f"injected into {operation}"
    calls.inject(Fault(action, "BgkitInjected", 400, times=1, message=message))
    mark = calls.mark()
    # The fault is taken only if the request is named `action`: moto never sees it.
    with pytest.raises(ClientError) as raised:
        getattr(client, method)(**kwargs)
    error = raised.value.response
    assert error["Error"]["Code"] == "BgkitInjected"
    assert error["Error"]["Message"] == message
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    logged = [c for c in calls.calls(mark, runbook=RUNBOOK) if c.action == action]
    assert [(c.operation, c.mutating, c.status, c.fault) for c in logged] == [
        (operation, mutating, 400, "BgkitInjected")
    ]


@pytest.mark.parametrize(
    ("service", "method", "kwargs", "action", "code", "status"),
    [
        ("sts", "get_caller_identity", {}, "sts:GetCallerIdentity", "Throttling", 400),
        ("dynamodb", "list_tables", {}, "dynamodb:ListTables", "ThrottlingException", 400),
        ("lambda", "list_functions", {}, "lambda:ListFunctions", "TooManyRequestsException", 429),
        ("route53", "list_hosted_zones", {}, "route53:ListHostedZones", "Throttling", 400),
        ("cloudwatch", "list_metrics", {}, "cloudwatch:ListMetrics", "InternalFailure", 503),
    ],
    ids=["query", "json", "rest-json", "rest-xml", "cbor"],
)
def test_a_throttled_or_failed_call_is_retried_by_botocore_until_it_succeeds(
    release_session, calls, service, method, kwargs, action, code, status
):
    calls.inject(Fault(action, code, status, times=1))
    mark = calls.mark()
    answer = getattr(release_session.client(service), method)(**kwargs)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    logged = [(c.status, c.fault) for c in calls.calls(mark, runbook=RUNBOOK) if c.action == action]
    assert logged == [(status, code), (200, "")]


def test_the_sandboxs_own_calls_are_neither_logged_nor_faulted(sandbox, release_session, calls):
    calls.inject(Fault("dynamodb:ListTables", "BgkitInjected", 400, times=1))
    mark = calls.mark()
    sandbox.session().client("dynamodb").list_tables()  # the sandbox's own: not faulted
    assert not [c for c in calls.calls(mark) if c.action == "dynamodb:ListTables"]
    with pytest.raises(ClientError, match="BgkitInjected"):  # the fault still waits for bgkit
        release_session.client("dynamodb").list_tables()
    assert [c.runbook for c in calls.calls(mark) if c.action == "dynamodb:ListTables"] == [RUNBOOK]


def test_a_fault_answers_only_its_next_times_calls_of_its_action(release_session, calls):
    sts = release_session.client("sts")
    calls.inject(Fault("sts:GetCallerIdentity", "BgkitInjected", 400, times=2))
    mark = calls.mark()
    release_session.client("dynamodb").list_tables()  # another action: not faulted
    for _ in range(2):
        with pytest.raises(ClientError, match="BgkitInjected"):
            sts.get_caller_identity()
    assert sts.get_caller_identity()["Arn"]
    logged = calls.calls(mark, runbook=RUNBOOK)
    assert [(c.action, c.fault) for c in logged] == [
        ("dynamodb:ListTables", ""),
        ("sts:GetCallerIdentity", "BgkitInjected"),
        ("sts:GetCallerIdentity", "BgkitInjected"),
        ("sts:GetCallerIdentity", ""),
    ]
    assert calls.calls(mark, runbook="another_runbook") == []


def _admin(sandbox, method: str, path: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{sandbox.admin_url}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_admin_api_injects_and_clears_faults_and_lists_calls_since_a_position(
    sandbox, release_session, calls
):
    fault = {"action": "sts:GetCallerIdentity", "code": "AccessDenied", "status": 403, "times": 5}
    status, _ = _admin(sandbox, "POST", "/faults", fault)
    assert status == 200
    _, before = _admin(sandbox, "GET", "/calls?since=0")
    sts = release_session.client("sts")
    with pytest.raises(ClientError, match="AccessDenied"):
        sts.get_caller_identity()
    assert _admin(sandbox, "DELETE", "/faults") == (200, {"cleared": True})
    sts.get_caller_identity()  # the four faults left were cleared
    _, after = _admin(sandbox, "GET", f"/calls?since={before['next']}")
    mine = [c for c in after["calls"] if c["action"] == "sts:GetCallerIdentity"]
    assert [(c["runbook"], c["status"], c["fault"], c["mutating"]) for c in mine] == [
        (RUNBOOK, 403, "AccessDenied", False),
        (RUNBOOK, 200, "", False),
    ]
    assert after["next"] >= before["next"] + 2
    status, answer = _admin(sandbox, "POST", "/faults", {"action": "sts:X", "kode": "typo"})
    assert status == 400 and "TypeError" in answer["error"]
    # refused when injected, not when a release's request meets it
    status, answer = _admin(sandbox, "POST", "/faults", {**fault, "status": "503"})
    assert status == 400 and "400-599" in answer["error"]


def test_a_long_message_reaches_boto3_whole_in_cbor(release_session, calls):
    message = "x" * 70_000  # longer than a two-byte CBOR length
    calls.inject(Fault("cloudwatch:ListMetrics", "BgkitInjected", 400, message=message))
    with pytest.raises(ClientError) as raised:
        release_session.client("cloudwatch").list_metrics()
    assert raised.value.response["Error"]["Message"] == message


def test_a_query_request_is_named_from_its_form_whatever_protocol_the_service_prefers():
    """CloudWatch also speaks the query protocol (botocore prefers CBOR): an older client's
    form-encoded request is named from its Action, and a fault answers it as query XML."""
    body = b"Action=GetMetricData&Version=2010-08-01"
    environ = {
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/monitoring/"
        "aws4_request, SignedHeaders=host, Signature=0",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    assert identify(environ) == ("GetMetricData", "cloudwatch:GetMetricData", "query")
    assert environ["wsgi.input"].read() == body  # still there for moto
