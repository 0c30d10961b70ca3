"""Plans (bgkit.planning): `bgkit plan` changes nothing, `bgkit run --plan` refuses drift before
any change and makes exactly the plan's calls. Each runbook's plan-then-run is in its own test
module (`conftest.planned_run`); here: the command line, drift, and the plan's own logic."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import STEADY

from bgkit import cli, planning
from bgkit.errors import MutationRefused
from bgkit.record import load

ALB = "elasticloadbalancing:ModifyListener"
FAST = {"bake_seconds": 5, "plan": "canary", "canary_percent": 30, **STEADY}


def _weights(sandbox, resources: dict, blue: int, green: int) -> None:
    """Someone changes the listener by hand (the console, a script), as AWS lets them."""
    sandbox.session().client("elbv2").modify_listener(
        ListenerArn=resources["listener_arn"],
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": resources["blue_target_group_arn"], "Weight": blue},
                        {"TargetGroupArn": resources["green_target_group_arn"], "Weight": green},
                    ]
                },
            }
        ],
    )


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main([*argv, "--quiet"])
    return code, capsys.readouterr().out


def _refused_unchanged(sandbox, mark: int, out: str, *named: str) -> None:
    """Refused before any change: exit 4, the drift named, no changing call in the sandbox's log."""
    assert "outcome: failed" in out and "the release differs from its plan" in out, out
    for name in named:
        assert name in out, (name, out)
    changing = [c.action for c in sandbox.calls.calls(mark, runbook="alb_weighted") if c.mutating]
    assert changing == []  # not even the lock item


def test_plan_then_run_the_plan_refusing_drift_from_the_command_line(
    shared_sandbox, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    sandbox = shared_sandbox
    parameters = [item for name, value in FAST.items() for item in ("-p", name, str(value))]
    mark = sandbox.calls.mark()
    code, out = _run(["plan", "alb_weighted", *parameters], capsys)
    assert code == cli.EXIT_PROMOTED and "outcome: planned" in out, out
    plan_path = Path(out.split("record: ", 1)[1].splitlines()[0])
    assert plan_path.name.startswith("alb_weighted-rel-") and "-plan-" in plan_path.name
    assert [c for c in sandbox.calls.calls(mark, runbook="alb_weighted") if c.mutating] == []
    plan = load(plan_path)
    resources = plan["planned"]["state"]["resources"]
    promote = planning.paths(plan["planned"])["promoted"]
    assert [c["IAM action"] for c in promote] == [ALB] * 2  # 30 %, then 100 %
    run_plan = ["run", "alb_weighted", "--plan", str(plan_path)]

    # a parameter that is not the plan's: refused by the command line, nothing run
    assert cli.main([*run_plan, "-p", "bake_seconds", "10"]) == cli.EXIT_USAGE
    assert "-p bake_seconds 10.0: the plan has 5" in capsys.readouterr().err

    # the listener's weights changed by hand, and a different green (another target registered
    # in green's target group), between the plan and the run
    _weights(sandbox, resources, 90, 10)
    elb = sandbox.session().client("elbv2")
    green = resources["green_target_group_arn"]
    extra = {"Id": "127.0.0.2", "Port": 9}  # a second green, never given traffic here
    elb.register_targets(TargetGroupArn=green, Targets=[extra])
    mark = sandbox.calls.mark()
    code, out = _run(run_plan, capsys)
    assert code == cli.EXIT_FAILED
    _refused_unchanged(
        sandbox,
        mark,
        out,
        "traffic blue: the plan read 100, now 90",
        "versions green: the plan read",
    )
    _weights(sandbox, resources, 100, 0)
    elb.deregister_targets(TargetGroupArn=green, Targets=[extra])

    # the world as planned again: the release runs, exactly as planned, and links the plan
    code, out = _run(run_plan, capsys)
    assert code == cli.EXIT_PROMOTED and "outcome: promoted" in out, out
    record_path = Path(out.split("record: ", 1)[1].splitlines()[0])
    assert record_path.is_file() and record_path.parts[0] == "outputs"
    record = load(record_path)
    assert record["outcome"] == "promoted"
    assert record["release"] == plan["release"]  # the plan's release, by the plan's parameters
    followed = record["followed_plan"]
    assert followed["followed"] and followed["path"] == "promoted"
    from bgkit import audit

    plan_chain = audit.chain_of(audit.read(str(plan_path)))
    assert followed["hash"] == plan_chain["hash"]  # the approved plan, as its chain holds it
    assert any(e["kind"] == "plan" and "exactly the plan's 2" in e["message"]
               for e in record["events"])  # fmt: skip


def test_the_command_line_refuses_what_is_not_a_plan_to_follow(tmp_path, capsys):
    missing = tmp_path / "nothing.ipynb"
    assert cli.main(["run", "alb_weighted", "--plan", str(missing)]) == cli.EXIT_USAGE
    assert "--plan: cannot read" in capsys.readouterr().err
    assert cli.main(["run", "alb_weighted", "-p", "dry_run", "True"]) == cli.EXIT_USAGE
    assert "-p dry_run: set by `bgkit plan`" in capsys.readouterr().err
    assert cli.main(["plan", "alb_weighted", "-p", "follow_plan", "x.ipynb"]) == cli.EXIT_USAGE


def test_bad_input_is_refused_by_a_plan_as_by_a_run(shared_sandbox, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mark = shared_sandbox.calls.mark()
    code, out = _run(["plan", "alb_weighted", "-p", "step_percent", "500"], capsys)
    assert code == cli.EXIT_FAILED
    assert "error: ParameterError: step_percent:" in out
    assert shared_sandbox.calls.calls(mark, runbook="alb_weighted") == []  # not even a read


def test_a_plans_session_refuses_any_change_before_sending_it(sandbox):
    session = sandbox.session("alb_weighted")
    session.read_only = True
    elb = session.client("elbv2")
    mark = sandbox.calls.mark()
    assert "LoadBalancers" in elb.describe_load_balancers()  # reads go through
    with pytest.raises(MutationRefused, match="elasticloadbalancing:ModifyListener refused"):
        elb.modify_listener(ListenerArn="arn:aws:elasticloadbalancing:x", DefaultActions=[])
    assert [c.action for c in sandbox.calls.calls(mark)] == [
        "elasticloadbalancing:DescribeLoadBalancers"
    ]
    assert session.changes == []


PLAN = {
    "points": [
        {"point": "step 1", "calls": [{"IAM action": ALB, "resource": "L", "digest": "a"}],
         "rollback": [{"IAM action": ALB, "resource": "L", "digest": "b"}]},
        {"point": "promote", "calls": [{"IAM action": ALB, "resource": "L", "digest": "c"}],
         "rollback": [{"IAM action": ALB, "resource": "L", "digest": "b"}]},
        {"point": "after", "calls": [{"IAM action": "", "resource": "", "digest": ""}],
         "rollback": []},
    ]
}  # fmt: skip


def _calls(*digests: str) -> list[dict[str, str]]:
    return [{"IAM action": ALB, "resource": "L", "digest": d} for d in digests]


def test_a_release_is_matched_to_the_plan_path_its_calls_and_outcome_are():
    assert planning.compare(PLAN, _calls("a", "c"), "promoted")["path"] == "promoted"
    assert planning.compare(PLAN, _calls("a", "b"), "rolled_back")["path"] == (
        "rolled back from step 1"
    )
    assert planning.compare(PLAN, _calls("a", "c", "b"), "rolled_back")["path"] == (
        "rolled back from promote"
    )
    assert planning.compare(PLAN, [], "rolled_back")["path"] == "rolled back before any change"
    # the same calls with other weights, or one call too many, follow no path of the plan
    assert not planning.compare(PLAN, _calls("a", "b"), "promoted")["followed"]
    assert not planning.compare(PLAN, _calls("a", "d"), "promoted")["followed"]
    assert not planning.compare(PLAN, _calls("a", "c", "c"), "promoted")["followed"]


def test_a_value_only_aws_knows_matches_whatever_the_release_sent():
    later = {"IAM action": "codedeploy:ContinueDeployment", "resource": "deploymentId=<id>",
             "digest": ""}  # fmt: skip
    plan = {"points": [{"point": "go", "calls": [later], "rollback": []}]}
    sent = [{"IAM action": "codedeploy:ContinueDeployment", "resource": "deploymentId=d-1",
             "digest": "x"}]  # fmt: skip
    assert planning.compare(plan, sent, "promoted")["followed"]


def test_drift_names_each_parameter_and_each_piece_of_state_that_changed():
    plan = {
        "parameters": {"bake_seconds": 5.0, "release": "rel-1", "dry_run": True},
        "planned": {"state": {"target_id": "L", "resources": {"listener_arn": "L"},
                              "split": {"blue": 100, "green": 0}, "versions": {"green": "v1"}}},
    }  # fmt: skip
    same = {"target_id": "L", "resources": {"listener_arn": "L"},
            "split": {"blue": 100, "green": 0}, "versions": {"green": "v1"}}  # fmt: skip
    parameters = {"bake_seconds": 5.0, "release": "rel-2", "follow_plan": "p.ipynb"}
    assert planning.drift(plan, parameters, same) == []  # the release id and plan may differ
    drifted = planning.drift(
        plan, {**parameters, "bake_seconds": 10.0}, {**same, "versions": {"green": "v2"}}
    )
    assert drifted == [
        "parameter bake_seconds: the plan has 5.0, this release 10.0",
        'versions green: the plan read "v1", now "v2"',
    ]
