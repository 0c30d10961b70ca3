"""Swapping Auto Scaling groups: the sandbox's target health and drain through boto3, and the
runbook executed by papermill with the groups, target groups and listener read back."""

from __future__ import annotations

import time

import pytest
from conftest import (
    STEADY,
    Capture,
    assert_followed,
    assert_refused,
    planned_run,
    release_all,
    run_cells,
)

FAST = {"bake_seconds": 5, "plan": "50", **STEADY}


def states(elb, target_group: str) -> list[str]:
    return sorted(
        t["TargetHealth"]["State"]
        for t in elb.describe_target_health(TargetGroupArn=target_group)["TargetHealthDescriptions"]
    )


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def group(sandbox, name: str) -> dict:
    autoscaling = sandbox.session().client("autoscaling")
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ][0]


def weights(sandbox, p) -> dict[str, int]:
    elb = sandbox.session().client("elbv2")
    listener = elb.describe_listeners(ListenerArns=[p["listener_arn"]])["Listeners"][0]
    colour = {p["blue_target_group_arn"]: "blue", p["green_target_group_arn"]: "green"}
    return {
        colour[g["TargetGroupArn"]]: g["Weight"]
        for g in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    }


@pytest.fixture
def scenario(sandbox):
    scenario = sandbox.provision("asg_swap", minute_seconds=2.0, request_rate=20)
    yield scenario
    sandbox.release_scenario(scenario.id)


@pytest.fixture(scope="module")
def untouched(sandbox):
    """A scenario that the tests below only read (and refuse to change)."""
    scenario = sandbox.provision("asg_swap", minute_seconds=2.0, request_rate=5)
    yield scenario
    sandbox.release_scenario(scenario.id)


def test_targets_pass_real_health_checks_and_drain_for_the_delay(sandbox, scenario):
    session, p = sandbox.session(), scenario.parameters
    elb, autoscaling = session.client("elbv2"), session.client("autoscaling")
    assert states(elb, p["blue_target_group_arn"]) == ["healthy"] * 3
    blue = group(sandbox, p["blue_asg_name"])
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=p["green_asg_name"],
        LaunchTemplate={"LaunchTemplateId": blue["LaunchTemplate"]["LaunchTemplateId"], "Version": "2"},
        MinSize=2, MaxSize=2, DesiredCapacity=2, VPCZoneIdentifier=blue["VPCZoneIdentifier"],
        TargetGroupARNs=[p["green_target_group_arn"]],
    )  # fmt: skip
    # registered before its process listens: initial, then healthy after two passing checks
    assert states(elb, p["green_target_group_arn"]) == ["initial"] * 2
    wait_for(lambda: states(elb, p["green_target_group_arn"]) == ["healthy"] * 2)
    # 150 s of AWS time, 5 s at 2 s per minute: wider than a loaded machine's API round trip
    # (at the scenario's 30 s, 1 s, two reads under CI load saw the targets already gone)
    elb.modify_target_group_attributes(
        TargetGroupArn=p["blue_target_group_arn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "150"}],
    )
    autoscaling.detach_load_balancer_target_groups(
        AutoScalingGroupName=p["blue_asg_name"], TargetGroupARNs=[p["blue_target_group_arn"]]
    )
    detached = time.monotonic()
    # still listed while draining, then gone
    draining = elb.describe_target_health(TargetGroupArn=p["blue_target_group_arn"])
    descriptions = draining["TargetHealthDescriptions"]
    assert [t["TargetHealth"]["State"] for t in descriptions] == ["draining"] * 3
    assert {t["TargetHealth"].get("Reason") for t in descriptions} == {
        "Target.DeregistrationInProgress"
    }
    wait_for(lambda: states(elb, p["blue_target_group_arn"]) == [], timeout=30)
    assert time.monotonic() - detached >= 4.0  # the delay, less the time to read the states


def test_an_instance_that_never_answers_becomes_unhealthy(sandbox, scenario):
    session, p = sandbox.session(), scenario.parameters
    ec2, elb = session.client("ec2"), session.client("elbv2")
    subnet = group(sandbox, p["blue_asg_name"])["VPCZoneIdentifier"].split(",")[0]
    silent = ec2.run_instances(  # an image the sandbox runs nothing for
        ImageId="ami-0000000000000dead", MinCount=1, MaxCount=1, SubnetId=subnet
    )["Instances"][0]["InstanceId"]
    elb.register_targets(TargetGroupArn=p["green_target_group_arn"], Targets=[{"Id": silent}])
    answer = wait_for(
        lambda: [
            t
            for t in elb.describe_target_health(TargetGroupArn=p["green_target_group_arn"])[
                "TargetHealthDescriptions"
            ]
            if t["TargetHealth"]["State"] == "unhealthy"
        ]
    )
    assert answer[0]["TargetHealth"]["Reason"] == "Target.FailedHealthChecks"
    elb.deregister_targets(TargetGroupArn=p["green_target_group_arn"], Targets=[{"Id": silent}])


def test_a_blue_target_that_is_not_blue_groups_instance_is_refused(sandbox, scenario):
    import bgkit
    from bgkit.errors import PreflightError

    session, p = sandbox.session(), scenario.parameters
    ec2, elb = session.client("ec2"), session.client("elbv2")
    subnet = group(sandbox, p["blue_asg_name"])["VPCZoneIdentifier"].split(",")[0]
    stray = ec2.run_instances(
        ImageId="ami-0000000000000beef", MinCount=1, MaxCount=1, SubnetId=subnet
    )
    stray_id = stray["Instances"][0]["InstanceId"]
    elb.register_targets(TargetGroupArn=p["blue_target_group_arn"], Targets=[{"Id": stray_id}])
    pattern = bgkit.patterns.get("asg_swap")(session, dict(p))
    with pytest.raises(PreflightError, match="would keep serving") as refused:
        pattern.preflight()
    assert refused.value.parameter == "blue_target_group_arn"
    assert stray_id in str(refused.value)


def test_healthy_green_is_promoted_and_blue_detached_after_its_drain(shared_sandbox, tmp_path):
    # planned first, then run following the plan
    _, run = planned_run(shared_sandbox, tmp_path, "asg_swap", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    p = record["parameters"]
    assert weights(shared_sandbox, p) == {"blue": 0, "green": 100}
    blue, green = (
        group(shared_sandbox, p["blue_asg_name"]),
        group(shared_sandbox, p["green_asg_name"]),
    )
    assert blue["TargetGroupARNs"] == [] and blue["DesiredCapacity"] == 3  # kept for a rollback
    assert green["TargetGroupARNs"] == [p["green_target_group_arn"]]
    assert {i["LaunchTemplate"]["Version"] for i in green["Instances"]} == {"2"}
    elb = shared_sandbox.session().client("elbv2")
    assert states(elb, p["blue_target_group_arn"]) == []  # drained
    # read back before the scenario's processes stopped with the run
    assert record["final_state"]["groups"]["green"]["targets"] == {"healthy": 3}
    # the load balancer's own count, as plotted: green 0 -> 3 while it deployed, blue 3 -> 0
    hosts = healthy_hosts(shared_sandbox, record)
    assert hosts["green"][0] == 0 and max(hosts["green"]) == 3
    assert hosts["blue"][0] == 3 and hosts["blue"][-1] == 0
    messages = [e["message"] for e in record["events"]]
    assert any("InService and healthy in green's target group" in m for m in messages)
    assert any(m.startswith("blue's targets drained in") for m in messages)
    assert [v["decision"] for v in record["verdicts"]] == ["CONTINUE"]


def healthy_hosts(sandbox, record) -> dict[str, list[float]]:
    """HealthyHostCount per colour over the run, second by second (Minimum), as published."""
    from datetime import datetime, timedelta

    p = record["parameters"]
    lb = p["listener_arn"].split(":listener/", 1)[1].rsplit("/", 1)[0]
    start = datetime.fromisoformat(record["started_at"]) - timedelta(seconds=2)
    end = datetime.fromisoformat(record["finished_at"])
    queries = [
        {
            "Id": colour,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/ApplicationELB",
                    "MetricName": "HealthyHostCount",
                    "Dimensions": [
                        {"Name": "LoadBalancer", "Value": lb},
                        {"Name": "TargetGroup", "Value": p[f"{colour}_target_group_arn"].split(":", 5)[5]},
                    ],
                },
                "Period": 1,
                "Stat": "Minimum",
            },
        }
        for colour in ("blue", "green")
    ]  # fmt: skip
    answer = (
        sandbox.session()
        .client("cloudwatch")
        .get_metric_data(
            MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending"
        )
    )
    return {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}


def test_a_rollback_after_the_promotion_re_attaches_blue_first(sandbox, scenario):
    import bgkit

    p = scenario.parameters
    names = bgkit.patterns.get("asg_swap").parameters
    params = bgkit.validate_parameters(
        "asg_swap",
        {"target": "aws", "metric_period_seconds": 1, "plan": "all_at_once", "smoke_url": p["smoke_url"], **{k: p[k] for k in names}},
    )  # fmt: skip
    release = bgkit.Release(params, sandbox.session(), display=Capture())
    release_all(release)
    assert release.state == "promoted"
    assert group(sandbox, p["blue_asg_name"])["TargetGroupARNs"] == []
    assert release.pattern.set_split(0) == {"blue": 100, "green": 0}
    assert group(sandbox, p["blue_asg_name"])["TargetGroupARNs"] == [p["blue_target_group_arn"]]
    assert group(sandbox, p["green_asg_name"])["TargetGroupARNs"] == []
    elb = sandbox.session().client("elbv2")
    assert "healthy" in states(elb, p["blue_target_group_arn"])
    assert weights(sandbox, p) == {"blue": 100, "green": 0}


def test_green_with_errors_is_rolled_back_and_detached(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox, tmp_path, "asg_swap", green_error_rate=0.2, smoke_requests=1, **FAST
    )
    assert run.error is None
    assert_followed(run, "rolled back")  # by the smoke test (deploy green) or step 1
    record = run.record
    assert record["outcome"] == "rolled_back", record["reason"]
    p = record["parameters"]
    assert weights(shared_sandbox, p) == {"blue": 100, "green": 0}
    assert group(shared_sandbox, p["blue_asg_name"])["TargetGroupARNs"] == [
        p["blue_target_group_arn"]
    ]
    assert group(shared_sandbox, p["green_asg_name"])["TargetGroupARNs"] == []
    assert record["final_state"]["groups"]["green"]["target_group_attached"] is False


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        ({"launch_template_version": "latest"}, "ParameterError", "launch_template_version"),
        ({"launch_template_version": "99"}, "PreflightError", "launch_template_version"),
        ({"blue_asg_name": "no-such-group"}, "PreflightError", "blue_asg_name"),
    ],
)
def test_bad_parameters_are_refused_by_the_runbook_before_any_change(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "asg_swap", **parameters, **FAST)
    assert_refused(run, error, name)


@pytest.mark.parametrize(
    ("change", "error", "name", "says"),
    [
        ({"launch_template_version": "1"}, "PreflightError", "launch_template_version", "already runs"),
        ({"green_asg_name": "same"}, "ParameterError", "green_asg_name", "must differ"),
        ({"green_target_group_arn": "blue"}, "ParameterError", "green_target_group_arn", "must differ"),
        ({"green_asg_name": "existing"}, "PreflightError", "green_asg_name", "already exists"),
        ({"blue_target_group_arn": "green", "green_target_group_arn": "blue"}, "PreflightError", "blue_asg_name", "not attached"),
        ({"green_asg_name": "bad\tname"}, "ParameterError", "green_asg_name", "printable"),
    ],
)  # fmt: skip
def test_bad_parameters_are_refused_before_any_change(
    sandbox, untouched, change, error, name, says
):
    import bgkit
    from bgkit.errors import ParameterError, PreflightError

    p = dict(untouched.parameters)
    stand_ins = {
        "same": p["blue_asg_name"],
        "blue": untouched.parameters["blue_target_group_arn"],
        "green": untouched.parameters["green_target_group_arn"],
    }
    for key, value in change.items():
        p[key] = _another_group(sandbox, p) if value == "existing" else stand_ins.get(value, value)
    names = bgkit.patterns.get("asg_swap").parameters
    before = weights(sandbox, untouched.parameters)
    with pytest.raises((ParameterError, PreflightError)) as refused:
        params = bgkit.validate_parameters(
            "asg_swap", {"target": "aws", "metric_period_seconds": 1, **{k: p[k] for k in names}}
        )
        bgkit.Release(params, sandbox.session(), display=Capture()).preflight()
    assert type(refused.value).__name__ == error
    assert getattr(refused.value, "parameter", getattr(refused.value, "name", None)) == name
    assert says in str(refused.value)
    assert weights(sandbox, untouched.parameters) == before
    autoscaling = sandbox.session().client("autoscaling")
    assert not autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[untouched.parameters["green_asg_name"]]
    )["AutoScalingGroups"]


def _another_group(sandbox, p) -> str:
    """An Auto Scaling group that exists and is not blue (green's name is taken)."""
    blue = group(sandbox, p["blue_asg_name"])
    name = p["blue_asg_name"] + "-taken"
    sandbox.session().client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=1,
        LaunchTemplate={"LaunchTemplateId": blue["LaunchTemplate"]["LaunchTemplateId"]},
        DesiredCapacity=0, VPCZoneIdentifier=blue["VPCZoneIdentifier"],
    )  # fmt: skip
    return name


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("asg_swap")
