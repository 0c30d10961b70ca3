"""AWS errors, injected by the sandbox's control plane in each service's wire protocol
(bgkit.sandbox.calls), so that what is tested is botocore's own handling of them with bgkit's
client configuration (bgkit.aws): throttling and server errors are retried by botocore's standard
retry mode and a release carries on; access denied and invalid requests fail at once, naming the
IAM action and the resource, and a release that had changed traffic puts it back on blue."""

from __future__ import annotations

import pickle
import time

import pytest
from botocore.exceptions import ClientError
from conftest import STEADY, Capture, release_all

import bgkit
from bgkit.aws import MAX_ATTEMPTS, resource_of
from bgkit.errors import AwsRefused, PreflightError
from bgkit.patterns.alb_weighted import AlbWeighted
from bgkit.patterns.ecs_codedeploy import require_task_definition
from bgkit.sandbox import Fault

RUNBOOK = "alb_weighted"
MODIFY_LISTENER = "elasticloadbalancing:ModifyListener"
GET_METRIC_DATA = "cloudwatch:GetMetricData"
FAST = {
    "plan": "50",
    "bake_seconds": 1,
    "min_requests": 5,
    "metric_period_seconds": 1,
    "metric_lag_seconds": 1.5,
    "lock_table": "bgkit-locks",
    **STEADY,
}


@pytest.fixture(scope="module")
def release_session(sandbox):
    """Clients whose calls the sandbox logs as a release of RUNBOOK makes them (made once:
    loading botocore's service models is most of a first call's time)."""
    return sandbox.session(RUNBOOK)


@pytest.fixture
def alb(shared_sandbox, calls):
    """An ALB scenario (blue serves, load at 50 requests/s) and a release of it, not started."""
    scenario = shared_sandbox.provision(RUNBOOK, request_rate=50)
    try:
        p = scenario.parameters
        params = bgkit.validate_parameters(
            RUNBOOK, {**FAST, "release": f"faults-{scenario.id}", "smoke_url": p["smoke_url"]}
        ).with_resources(**{name: p[name] for name in AlbWeighted.parameters})
        release = bgkit.Release(params, shared_sandbox.session(RUNBOOK), display=Capture())
        yield scenario, release
    finally:
        shared_sandbox.release_scenario(scenario.id)


def attempts(calls, mark: int, action: str) -> list[tuple[int, str]]:
    """(HTTP status, injected fault) of each attempt of `action` the release made since `mark`."""
    return [(c.status, c.fault) for c in calls.calls(mark, runbook=RUNBOOK) if c.action == action]


def green_weight(sandbox, scenario) -> int:
    """Green's weight as the listener says now (read by the sandbox itself, never faulted)."""
    listener = (
        sandbox.session()
        .client("elbv2")
        .describe_listeners(ListenerArns=[scenario.parameters["listener_arn"]])["Listeners"][0]
    )
    groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in groups}
    return weights.get(scenario.parameters["green_target_group_arn"], 0)


# -- a release in the sandbox ----------------------------------------------------------------


def test_throttling_and_server_errors_are_retried_and_the_release_still_promotes(
    shared_sandbox, calls, alb
):
    scenario, release = alb
    mark = calls.mark()
    calls.inject(Fault(MODIFY_LISTENER, "Throttling", 400, times=2, message="Rate exceeded"))
    calls.inject(Fault(GET_METRIC_DATA, "InternalFailure", 503, times=2))
    record = release_all(release)
    assert record["outcome"] == "promoted", record["reason"]
    assert green_weight(shared_sandbox, scenario) == 100
    # botocore retried each faulted call until it succeeded: nothing of bgkit's saw the faults
    modify = attempts(calls, mark, MODIFY_LISTENER)
    assert modify[:3] == [(400, "Throttling"), (400, "Throttling"), (200, "")]
    assert modify[3:] == [(200, "")]  # the promotion
    metrics = attempts(calls, mark, GET_METRIC_DATA)
    assert metrics[:3] == [(503, "InternalFailure"), (503, "InternalFailure"), (200, "")]
    assert all(fault == "" for _, fault in metrics[3:])
    assert not [e for e in record["events"] if e["kind"] == "error"]


def test_access_denied_on_the_first_shift_fails_at_once_and_traffic_ends_on_blue(
    shared_sandbox, calls, alb
):
    scenario, release = alb
    listener = scenario.parameters["listener_arn"]
    release.preflight()
    release.deploy()
    release.smoke_test()
    mark = calls.mark()
    calls.inject(
        Fault(
            MODIFY_LISTENER,
            "AccessDenied",
            403,
            times=1,
            message="User: arn:aws:sts::123456789012:assumed-role/release/alice is not "
            f"authorized to perform: {MODIFY_LISTENER} on resource: {listener}",
        )
    )
    with pytest.raises(AwsRefused) as raised:
        release.shift()
    refused = raised.value
    assert (refused.action, refused.code, refused.kind) == (
        MODIFY_LISTENER,
        "AccessDenied",
        "access denied",
    )
    assert refused.response["ResponseMetadata"]["RetryAttempts"] == 0
    # one refused attempt, not retried; the next ModifyListener is the rollback to blue
    assert attempts(calls, mark, MODIFY_LISTENER) == [(403, "AccessDenied"), (200, "")]
    assert green_weight(shared_sandbox, scenario) == 0
    record = release.finish(plot=False)
    assert record["outcome"] == "failed"
    assert record["final_split"] == {"blue": 100, "green": 0}
    reason = record["reason"]
    assert reason.startswith("shift failed: AwsRefused: AWS denied ")
    assert MODIFY_LISTENER in reason and f"ListenerArn={listener}" in reason
    assert "AccessDenied" in reason
    assert [e["split"] for e in record["events"] if e["kind"] == "rollback"] == [
        {"blue": 100, "green": 0}
    ]


def test_an_invalid_request_in_preflight_fails_before_any_change(shared_sandbox, calls, alb):
    scenario, release = alb
    green = scenario.parameters["green_target_group_arn"]
    mark = calls.mark()
    action = "elasticloadbalancing:DescribeTargetHealth"
    calls.inject(Fault(action, "ValidationError", 400, message="'TargetGroupArn' is not valid"))
    with pytest.raises(AwsRefused, match=f"AWS rejected {action} on TargetGroupArn={green}"):
        release.preflight()
    made = calls.calls(mark, runbook=RUNBOOK)
    assert [(c.status, c.fault) for c in made if c.action == action] == [(400, "ValidationError")]
    assert [c.action for c in made if c.mutating] == []  # not even the lock was taken
    record = release.finish(plot=False)
    assert record["outcome"] == "failed"
    assert record["reason"].startswith(f"preflight failed: AwsRefused: AWS rejected {action}")
    assert green_weight(shared_sandbox, scenario) == 0


# -- bgkit's clients, without a release --------------------------------------------------------


ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/p/0123456789abcdef/0123"


@pytest.mark.parametrize(
    ("service", "call", "action", "resource"),
    [
        ("elbv2", lambda c: c.modify_listener(ListenerArn=ARN), MODIFY_LISTENER,
         f"ListenerArn={ARN}"),
        ("cloudwatch", lambda c: list(c.get_paginator("get_metric_data").paginate(
            MetricDataQueries=[], StartTime=0, EndTime=1)), GET_METRIC_DATA, ""),
        ("dynamodb", lambda c: c.put_item(TableName="bgkit-locks", Item={}),
         "dynamodb:PutItem", "TableName=bgkit-locks"),
        ("lambda", lambda c: c.invoke(FunctionName="web", Qualifier="7"),
         "lambda:InvokeFunction", "FunctionName=web, Qualifier=7"),
        ("apigateway", lambda c: c.update_stage(restApiId="a1b2c3", stageName="prod"),
         "apigateway:PATCH", "restApiId=a1b2c3, stageName=prod"),
        ("route53", lambda c: c.list_resource_record_sets(HostedZoneId="Z123"),
         "route53:ListResourceRecordSets", "HostedZoneId=Z123"),
        ("codedeploy", lambda c: c.stop_deployment(deploymentId="d-ABCDEF123"),
         "codedeploy:StopDeployment", "deploymentId=d-ABCDEF123"),
        ("ecs", lambda c: c.update_service(cluster="prod", service="web"),
         "ecs:UpdateService", "cluster=prod, service=web"),
        ("autoscaling", lambda c: c.update_auto_scaling_group(AutoScalingGroupName="web-green"),
         "autoscaling:UpdateAutoScalingGroup", "AutoScalingGroupName=web-green"),
        ("apprunner", lambda c: c.start_deployment(ServiceArn="arn:aws:apprunner:us-east-1:1:service/web/0a"),
         "apprunner:StartDeployment", "ServiceArn=arn:aws:apprunner:us-east-1:1:service/web/0a"),
    ],
    ids=["query", "cbor-paginator", "json", "rest-json", "apigateway", "rest-xml", "cbor",
         "ecs", "autoscaling", "apprunner"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("code", "status"), [("AccessDeniedException", 403), ("ValidationException", 400)]
)
def test_a_refusal_is_raised_at_once_naming_the_iam_action_and_the_resource(
    release_session, calls, service, call, action, resource, code, status
):
    """In every protocol, through methods and paginators alike; the action is the one the
    sandbox logged (IAM's name for it, not the API operation's)."""
    calls.inject(Fault(action, code, status, message="refused by the test"))
    mark = calls.mark()
    with pytest.raises(AwsRefused) as raised:
        call(release_session.client(service))
    refused = raised.value
    assert isinstance(refused, ClientError) and isinstance(refused, bgkit.BgkitError)
    assert refused.response["Error"]["Code"] == code  # for callers that test the code
    assert refused.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert (refused.action, refused.resource) == (action, resource)
    assert f"{action}" in str(refused) and resource in str(refused)
    assert f"{code}: refused by the test" in str(refused)
    assert [c.action for c in calls.calls(mark, runbook=RUNBOOK)] == [action]


def test_callers_that_test_an_error_code_still_see_it(release_session, calls):
    """ECS answers InvalidParameterException for a task definition that does not exist: the
    ecs_codedeploy preflight turns that code into a PreflightError, as before."""
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:42"
    calls.inject(Fault("ecs:DescribeTaskDefinition", "InvalidParameterException", 400))
    with pytest.raises(PreflightError, match="task_definition_arn: task definition .* not exist"):
        require_task_definition(release_session.client("ecs"), arn)


def test_other_errors_stay_botocores_and_retries_stop_after_max_attempts(sandbox, calls):
    calls.inject(Fault("sts:GetCallerIdentity", "InternalFailure", 503, times=MAX_ATTEMPTS))
    mark = calls.mark()
    started = time.monotonic()
    with pytest.raises(ClientError) as raised:
        sandbox.session(RUNBOOK).client("sts").get_caller_identity()
    assert time.monotonic() - started < 5  # server errors back off from 50 ms, not seconds
    assert not isinstance(raised.value, AwsRefused)
    metadata = raised.value.response["ResponseMetadata"]
    assert (metadata["RetryAttempts"], metadata["MaxAttemptsReached"]) == (MAX_ATTEMPTS - 1, True)
    assert attempts(calls, mark, "sts:GetCallerIdentity") == [(503, "InternalFailure")] * 6


def test_a_refusal_names_identifiers_only_never_secrets_or_bodies():
    params = {
        "FunctionName": "web",
        "SecretId": "prod/db",
        "AccessKeyId": "AKIAEXAMPLE",
        "SessionToken": "token",
        "ClientRequestToken": "idempotency",
        "Payload": b'{"password": "hunter2"}',
        "ChangeBatch": {"Changes": [{"Name": "www.example.com"}]},
        "TargetGroupArns": ["arn:a", "arn:b", "arn:c", "arn:d"],
        "DryRun": True,
    }
    assert resource_of(params) == (
        "FunctionName=web, TargetGroupArns=arn:a,arn:b,arn:c,... (4 in all)"
    )


def test_a_refusal_survives_pickling_with_its_explanation():
    response = {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {}}
    refused = AwsRefused(
        response,
        "ModifyListener",
        action=MODIFY_LISTENER,
        resource=f"ListenerArn={ARN}",
        kind="access denied",
    )
    copy = pickle.loads(pickle.dumps(refused))
    assert type(copy) is AwsRefused and str(copy) == str(refused)
    assert copy.response == response and copy.operation_name == "ModifyListener"


def test_access_denied_to_a_managed_deployment_fails_at_once_and_starts_nothing(
    shared_sandbox, calls
):
    """CodeDeploy (CBOR on the wire) refuses CreateDeployment: no deployment, blue serves."""
    from bgkit.patterns.lambda_codedeploy import LambdaCodeDeploy

    runbook = "lambda_codedeploy"
    scenario = shared_sandbox.provision(runbook, minute_seconds=0.2, request_rate=20)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in LambdaCodeDeploy.parameters if k in p}
        resources["deployment_config_name"] = "CodeDeployDefault.LambdaAllAtOnce"
        params = bgkit.validate_parameters(runbook, {**resources, **FAST, "target": "aws"})
        release = bgkit.Release(params, shared_sandbox.session(runbook), display=Capture())
        release.preflight()
        mark = calls.mark()
        action = "codedeploy:CreateDeployment"
        calls.inject(Fault(action, "AccessDeniedException", 400))
        with pytest.raises(AwsRefused) as raised:
            release.deploy()
        assert raised.value.action == action
        made = calls.calls(mark, runbook=runbook)
        assert [(c.status, c.fault) for c in made if c.action == action] == [
            (400, "AccessDeniedException")
        ]
        record = release.finish(plot=False)
        assert record["outcome"] == "failed"
        assert record["final_split"] == {"blue": 100, "green": 0}
        group = f"applicationName={p['application_name']}, "
        group += f"deploymentGroupName={p['deployment_group_name']}"
        assert f"AWS denied {action} on {group}" in record["reason"]
        codedeploy = shared_sandbox.session().client("codedeploy")
        assert not codedeploy.list_deployments(
            applicationName=p["application_name"], deploymentGroupName=p["deployment_group_name"]
        )["deployments"]
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_access_denied_to_an_api_gateway_canary_step_names_the_action_and_the_stage(
    shared_sandbox, calls
):
    """UpdateStage (IAM: apigateway:PATCH) denied at a canary step: the release's error names
    the action and the stage, and the release puts the stage back on blue (no canary)."""
    from bgkit.patterns.apigw_canary import ApiGatewayCanary

    runbook = "apigw_canary"
    scenario = shared_sandbox.provision(runbook, request_rate=20)
    try:
        p = scenario.parameters
        resources = {k: p[k] for k in ApiGatewayCanary.parameters if k in p}
        params = bgkit.validate_parameters(runbook, {**resources, **FAST, "target": "aws"})
        release = bgkit.Release(params, shared_sandbox.session(runbook), display=Capture())
        release.preflight()
        release.deploy()  # the canary deployment, at 0 %
        release.smoke_test()
        action = "apigateway:PATCH"
        calls.inject(Fault(action, "AccessDeniedException", 403))
        with pytest.raises(AwsRefused) as raised:
            release.shift()
        assert raised.value.action == action
        stage = f"restApiId={p['rest_api_id']}, stageName={p['stage_name']}"
        assert f"AWS denied {action} (UpdateStage) on {stage}" in str(raised.value)
        record = release.finish(plot=False)
        assert record["outcome"] == "failed"
        assert f"AWS denied {action} (UpdateStage) on {stage}" in record["reason"]
        assert record["final_split"] == {"blue": 100, "green": 0}
        apigw = shared_sandbox.session().client("apigateway")
        assert "canarySettings" not in apigw.get_stage(
            restApiId=p["rest_api_id"], stageName=p["stage_name"]
        )
    finally:
        shared_sandbox.release_scenario(scenario.id)
