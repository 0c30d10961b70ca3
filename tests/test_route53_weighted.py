"""Route 53 weighted records: the sandbox's checks and DNS clients through boto3, and the runbook
executed by papermill with assertions on the records read back."""

from __future__ import annotations

import itertools
import time

import pytest
from botocore.exceptions import ClientError
from conftest import (
    STEADY,
    Capture,
    assert_followed,
    assert_refused,
    planned_run,
    run_cells,
)

from bgkit.sandbox.dns import CachingClients, WeightedResolver

FAST = {"bake_seconds": 5, **STEADY}


@pytest.fixture
def zone(sandbox):
    route53 = sandbox.session().client("route53")
    zone_id = route53.create_hosted_zone(Name="checks.test", CallerReference=str(time.time()))[
        "HostedZone"
    ]["Id"].rsplit("/", 1)[-1]
    return route53, zone_id


def record(set_id, weight, ttl=1, value=None, name="www.checks.test"):
    answer = {
        "Name": name,
        "Type": "CNAME",
        "TTL": ttl,
        "ResourceRecords": [{"Value": value or f"{set_id}.checks.test"}],
    }
    if set_id is not None:
        answer["SetIdentifier"] = set_id
    if weight is not None:
        answer["Weight"] = weight
    return answer


def change(route53, zone_id, action, rrset):
    return route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": rrset}]},
    )


@pytest.mark.parametrize(
    ("action", "rrset", "code", "says"),
    [
        ("CREATE", record("blue", 10), "InvalidChangeBatch", "already exists"),
        ("DELETE", record("purple", 10), "InvalidChangeBatch", "was not found"),
        ("UPSERT", record("blue", 256), "InvalidInput", "between 0 and 255"),
        ("UPSERT", record(None, 10), "InvalidInput", "Missing field 'SetIdentifier'"),
        ("UPSERT", record("blue", None), "InvalidInput", "Unexpected field 'SetIdentifier'"),
        ("CREATE", record(None, None), "InvalidChangeBatch", "routing policy differs"),
    ],
)
def test_record_changes_moto_accepts_are_refused_as_route53_does(zone, action, rrset, code, says):
    route53, zone_id = zone
    change(route53, zone_id, "CREATE", record("blue", 10))
    with pytest.raises(ClientError) as refused:
        change(route53, zone_id, action, rrset)
    assert refused.value.response["Error"]["Code"] == code
    assert says in refused.value.response["Error"]["Message"]


def test_clients_keep_their_answer_for_the_ttl(sandbox, zone):
    route53, zone_id = zone
    for set_id, weight in (("blue", 100), ("green", 0)):
        change(route53, zone_id, "CREATE", record(set_id, weight, ttl=2))
    endpoints = {"blue.checks.test": ("127.0.0.1", 1), "green.checks.test": ("127.0.0.1", 2)}
    clients = CachingClients(
        WeightedResolver(sandbox.session(), zone_id, "www.checks.test"), endpoints, count=40
    )
    assert {clients.target(i)[1] for i in range(40)} == {1}
    for set_id, weight in (("blue", 50), ("green", 50)):
        change(route53, zone_id, "UPSERT", record(set_id, weight, ttl=2))
    time.sleep(0.3)  # past the resolver's re-read, within the TTL: the clients' answers stand
    assert {clients.target(i)[1] for i in range(40)} == {1}
    time.sleep(2.0)  # the TTL has passed: each client asks again, and the weights decide
    ports = [clients.target(i)[1] for i in range(40)]
    assert 5 <= ports.count(2) <= 35  # about half; 40 draws of a fair coin


def records_of(sandbox, record):
    p = record["parameters"]
    answer = (
        sandbox.session()
        .client("route53")
        .list_resource_record_sets(
            HostedZoneId=p["hosted_zone_id"], StartRecordName=p["record_name"]
        )["ResourceRecordSets"]
    )
    return {r["SetIdentifier"]: r["Weight"] for r in answer if "SetIdentifier" in r}


def test_healthy_green_is_promoted_with_bakes_after_the_ttl(shared_sandbox, tmp_path):
    # planned first, then run following the plan; two steps: chained
    _, run = planned_run(shared_sandbox, tmp_path, "route53_weighted", plan="25,50", **FAST)
    assert run.error is None
    assert_followed(run, "promoted")
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    assert records_of(shared_sandbox, record) == {"blue": 0, "green": 100}
    shifts = [e for e in record["events"] if e["kind"] == "shift"]
    assert [e["green_percent"] for e in shifts] == [25, 50]
    assert all("effective after the 5 s TTL" in e["message"] for e in shifts)
    verdicts = record["verdicts"]
    assert [v["decision"] for v in verdicts] == ["CONTINUE"] * 2
    # the first judged window starts after the first shift plus the TTL; each later one where
    # the one before ended (every period judged once), and ends after its step's TTL
    assert verdicts[0]["window"]["start"] >= _plus(shifts[0]["at"], 5)
    for before, after in itertools.pairwise(verdicts):
        assert after["window"]["start"] == before["window"]["end"]
    for shift, verdict in zip(shifts, verdicts, strict=True):
        assert verdict["window"]["end"] >= _plus(shift["at"], 5)


def _plus(iso: str, seconds: float) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(iso) + timedelta(seconds=seconds)).isoformat()


def test_green_with_errors_is_rolled_back_to_blue(shared_sandbox, tmp_path):
    _, run = planned_run(
        shared_sandbox,
        tmp_path,
        "route53_weighted",
        green_error_rate=0.2,
        smoke_requests=1,
        **FAST,
    )
    assert_followed(run, "rolled back")
    record = run.record
    assert record["outcome"] == "rolled_back"
    assert records_of(shared_sandbox, record) == {"blue": 100, "green": 0}


@pytest.mark.parametrize(
    ("parameters", "error", "name"),
    [
        ({"green_set_identifier": "blue"}, "ParameterError", "green_set_identifier"),
        ({"green_set_identifier": "purple"}, "PreflightError", "green_set_identifier"),
        ({"hosted_zone_id": "not-a-zone"}, "ParameterError", "hosted_zone_id"),
        ({"hosted_zone_id": "ZNOSUCHZONE123"}, "PreflightError", "hosted_zone_id"),
        ({"record_name": "nothing.example.test"}, "PreflightError", "blue_set_identifier"),
        ({"record_name": "bad name"}, "ParameterError", "record_name"),
    ],
)
def test_bad_parameters_are_refused_before_any_change(
    shared_sandbox, tmp_path, parameters, error, name
):
    run = run_cells(tmp_path, "route53_weighted", **parameters, **FAST)
    assert_refused(run, error, name, step="shift")


def test_a_batch_is_one_transaction(zone):
    """Route 53's own example: delete a record and create it anew in one batch."""
    route53, zone_id = zone
    change(route53, zone_id, "CREATE", record("blue", 10))
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {"Action": "DELETE", "ResourceRecordSet": record("blue", 10)},
                {"Action": "CREATE", "ResourceRecordSet": record("blue", 20)},
            ]
        },
    )
    with pytest.raises(ClientError, match="already exists"):
        route53.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={
                "Changes": [
                    {"Action": "CREATE", "ResourceRecordSet": record("green", 1)},
                    {"Action": "CREATE", "ResourceRecordSet": record("green", 2)},
                ]
            },
        )


def test_a_name_with_several_record_types_per_colour_is_refused(sandbox, zone):
    from bgkit.errors import PreflightError
    from bgkit.patterns.route53_weighted import Route53Weighted

    route53, zone_id = zone
    for kind, value in (("A", "10.0.0.1"), ("AAAA", "fd00::1")):
        for set_id, weight in (("blue", 100), ("green", 0)):
            rrset = {
                "Name": "dual.checks.test", "Type": kind, "TTL": 5, "SetIdentifier": set_id,
                "Weight": weight, "ResourceRecords": [{"Value": value}],
            }  # fmt: skip
            change(route53, zone_id, "CREATE", rrset)
    tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/0123456789abcdef"
    pattern = Route53Weighted(
        sandbox.session(),
        {
            "hosted_zone_id": zone_id,
            "record_name": "DUAL.checks.test.",  # case and trailing dot do not matter
            "blue_set_identifier": "blue",
            "green_set_identifier": "green",
            "blue_target_group_arn": tg,
            "green_target_group_arn": tg.replace("/x/", "/y/"),
        },
    )
    with pytest.raises(PreflightError, match="several types") as refused:
        pattern.preflight()
    assert refused.value.parameter == "record_name"


def test_swapped_target_groups_are_refused_before_any_change(shared_sandbox):
    """The evidence must come from the endpoint each colour's record answers."""
    import bgkit
    from bgkit.errors import PreflightError

    scenario = shared_sandbox.provision("route53_weighted", request_rate=5)
    try:
        p = dict(scenario.parameters)
        p["blue_target_group_arn"], p["green_target_group_arn"] = (
            p["green_target_group_arn"],
            p["blue_target_group_arn"],
        )
        names = bgkit.patterns.get("route53_weighted").parameters
        params = bgkit.validate_parameters(
            "route53_weighted",
            {"target": "aws", "metric_period_seconds": 1, **{k: p[k] for k in names}},
        )
        release = bgkit.Release(params, shared_sandbox.session(), display=Capture())
        with pytest.raises(PreflightError, match="evidence would be swapped") as refused:
            release.preflight()
        assert refused.value.parameter == "blue_target_group_arn"
        assert release.mutated is False
    finally:
        shared_sandbox.release_scenario(scenario.id)


def test_the_release_waits_for_the_change_to_be_insync_before_the_ttl():
    from bgkit.clock import FakeClock
    from bgkit.patterns.route53_weighted import Route53Weighted
    from bgkit.release import Release

    class Route53:
        def __init__(self):
            self.asked = 0

        def get_change(self, Id):
            self.asked += 1
            return {"ChangeInfo": {"Id": Id, "Status": "INSYNC" if self.asked >= 3 else "PENDING"}}

    pattern = Route53Weighted.__new__(Route53Weighted)
    pattern._route53, pattern._change_id = Route53(), "/change/C1"
    release = Release.__new__(Release)
    release.pattern, release.clock, release.split = pattern, FakeClock(), None
    release._await_applied()
    assert pattern._route53.asked == 3
    assert release.clock.slept == [1.0, 1.0]


def test_bgkit_iam_policy_allows_exactly_what_this_modules_releases_called(iam_calls):
    # Last in the module: its runs above (a promotion and a rollback among them) are the truth.
    iam_calls.assert_least_privilege("route53_weighted")
