import pytest
from test_bad_input import ABSENT, runbook_defaults

import bgkit
from bgkit import ParameterError
from bgkit.params import REDACTED

LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
BLUE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/prod-blue/73e2d6bc24d8a067"
GREEN = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/prod-green/83e2d6bc24d8a067"
)


def validate(**values):
    return bgkit.validate_parameters("alb_weighted", values)


def test_defaults_are_valid_for_the_sandbox():
    params = validate()
    assert params.target == "sandbox"
    assert params.release.startswith("rel-")
    assert params.traffic_plan.percentages == [25, 50, 75]


def test_aws_target_requires_the_resources():
    with pytest.raises(ParameterError, match="^listener_arn: is required when target is 'aws'"):
        validate(target="aws", bake_seconds=300)
    params = validate(
        target="aws",
        listener_arn=LISTENER,
        blue_target_group_arn=BLUE,
        green_target_group_arn=GREEN,
        bake_seconds=300,
    )
    assert params.resources["listener_arn"] == LISTENER


@pytest.mark.parametrize(
    ("values", "parameter", "allowed"),
    [
        ({"target": "prod"}, "target", "must be one of 'sandbox', 'aws'"),
        ({"canary_percent": 150, "plan": "canary"}, "canary_percent", "integer from 1 to 99"),
        ({"step_percent": 0}, "step_percent", "integer from 1 to 99"),
        ({"plan": "yolo"}, "plan", "must be linear, canary, all_at_once"),
        ({"bake_seconds": -5}, "bake_seconds", "from 1"),
        ({"bake_seconds": 7}, "bake_seconds", "1, 5, 10, 20, 30 or a multiple of 60"),
        ({"bake_seconds": 1e9}, "bake_seconds", "up to 3600"),
        ({"bake_seconds": float("nan")}, "bake_seconds", "must be a number"),
        ({"release": "../../etc/passwd"}, "release", "letters, digits"),
        ({"release": "x" * 65}, "release", "1-64 characters"),
        ({"release": "rélease"}, "release", "letters, digits"),
        ({"region": "moon-1"}, "region", "AWS region"),
        ({"smoke_url": "file:///etc/passwd"}, "smoke_url", "http:// or https://"),
        ({"green_error_rate": 1.5}, "green_error_rate", "up to 1"),
        ({"min_requests": 0}, "min_requests", "integer from 1"),
        ({"metric_period_seconds": 2}, "metric_period_seconds", "or one of 1, 5, 10, 20, 30, 60"),
        ({"judge_alpha": 0}, "judge_alpha", "from 0.0001 up to 0.2"),
        ({"judge_alpha": 0.5}, "judge_alpha", "up to 0.2"),
        ({"pass_margin": 1}, "pass_margin", "0 (no PASS verdicts) or an odds ratio greater than 1"),
        ({"pass_margin": True}, "pass_margin", "odds ratio"),
        ({"slow_margin_ms": -1}, "slow_margin_ms", "from 0"),
        ({"error_rate_slo": 1.5}, "error_rate_slo", "up to 1"),
        ({"p99_slo_ms": "300"}, "p99_slo_ms", "number"),
        (
            {"listener_arn": "arn:aws:elasticloadbalancing:us-east-1:123:listener/x"},
            "listener_arn",
            "must be an ARN",
        ),
        (
            {"blue_target_group_arn": BLUE, "green_target_group_arn": BLUE},
            "green_target_group_arn",
            "must differ",
        ),
        ({"smoke_requests": "10"}, "smoke_requests", "integer"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(values, parameter, allowed):
    with pytest.raises(ParameterError) as caught:
        validate(**values)
    assert caught.value.name == parameter
    assert str(caught.value).startswith(f"{parameter}: ")
    assert allowed in str(caught.value)


def test_secret_like_parameters_are_redacted_in_the_record():
    from bgkit.params import redact

    shown = redact(
        {"webhook_url": "https://hooks.example/T0/B0/xyz", "api_token": "s3cr3t", "plan": "linear"}
    )
    assert shown == {"webhook_url": REDACTED, "api_token": REDACTED, "plan": "linear"}


def test_a_one_step_plan_given_as_a_number_is_accepted():
    # papermill's -p plan 50 passes an int
    assert validate(plan=50).traffic_plan.percentages == [50]


def test_metric_period_and_lag_default_to_the_targets():
    assert (validate().metric_period_seconds, validate().metric_lag_seconds) == (1, 0.5)
    aws = validate(
        target="aws",
        listener_arn=LISTENER,
        blue_target_group_arn=BLUE,
        green_target_group_arn=GREEN,
        bake_seconds=300,
    )
    assert (aws.metric_period_seconds, aws.metric_lag_seconds) == (60, 180.0)
    with pytest.raises(
        ParameterError, match="bake_seconds: .*multiple of metric_period_seconds .60."
    ):
        validate(
            target="aws",
            listener_arn=LISTENER,
            blue_target_group_arn=BLUE,
            green_target_group_arn=GREEN,
            bake_seconds=5,
        )


@pytest.mark.parametrize("runbook", sorted(ABSENT))
def test_every_runbook_default_is_valid_for_every_target(runbook):
    """A runbook's parameters cell as it is, with only the target and its resources named."""
    defaults = runbook_defaults(runbook)
    sandbox = bgkit.validate_parameters(runbook, defaults)
    aws = bgkit.validate_parameters(runbook, {**defaults, "target": "aws", **ABSENT[runbook]})
    assert (sandbox.bake_seconds, sandbox.metric_period_seconds) == (5.0, 1)
    assert (aws.bake_seconds, aws.metric_period_seconds, aws.metric_lag_seconds) == (300, 60, 180)
    assert aws.traffic_plan.bake_total_seconds == 300 * len(aws.traffic_plan.steps)


@pytest.mark.parametrize(("period", "bake"), [(1, 5), (5, 30), (10, 60), (20, 120), (60, 300)])
def test_the_default_bake_is_the_shortest_cloudwatch_period_of_five_metric_periods(period, bake):
    aws = {"target": "aws", "listener_arn": LISTENER, "blue_target_group_arn": BLUE,
           "green_target_group_arn": GREEN}  # fmt: skip
    assert validate(**aws, metric_period_seconds=period).bake_seconds == bake


def test_the_default_table_covers_every_runbook():
    assert sorted(ABSENT) == bgkit.patterns.names()
