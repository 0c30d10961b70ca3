"""A wave release in the sandbox, end to end: `bgkit waves` starts one `bgkit run` process per
target (in this test's sandbox, shared through BGKIT_SANDBOX_URL), a faulty target of wave 2
stops the waves, and the summary record says so; then CI's way, the same summary from the
records alone (`bgkit waves summary --records`). Where traffic ended is read back through boto3.
The runner's order, parallelism and stopping are tested with a stand-in in test_waves_runner.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bgkit import audit, cli
from bgkit.record import from_notebook

# Quick releases: one-second bakes and metrics (see test_interruption.QUICK). cell-a has many
# steps, so that it is still shifting when cell-b's smoke test fails beside it.
MANIFEST = {
    "name": "shop",
    "release": "rel-w",
    "runbook": "alb_weighted",
    "max_parallel": 2,
    "bake_between_waves_seconds": 1,
    "parameters": {
        "plan": "50",
        "bake_seconds": 1,
        "metric_period_seconds": 1,
        "metric_lag_seconds": 1.5,
        "min_requests": 5,
        "smoke_requests": 3,
        "slow_margin_ms": 25,
        "sandbox_request_rate": 20,
    },
    "targets": [
        {"name": "pilot"},
        {"name": "cell-a", "parameters": {"plan": "10,20,30,40,50,60,70,80,90"}},
        {"name": "cell-b", "parameters": {"green_error_rate": 1.0}},
        {"name": "cell-c"},
    ],
    "waves": [["pilot"], ["cell-a", "cell-b"], ["cell-c"]],
}


def listener_weights(sandbox, listener_arn: str) -> list[int]:
    (listener,) = (
        sandbox.session().client("elbv2").describe_listeners(ListenerArns=[listener_arn])
    )["Listeners"]
    (forward,) = listener["DefaultActions"]
    return [g["Weight"] for g in forward["ForwardConfig"]["TargetGroups"]]


def test_a_faulty_wave_2_target_stops_the_waves_before_wave_3(shared_sandbox, tmp_path, capsys):
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST, sort_keys=False))
    out = str(tmp_path / "records") + "/"
    assert cli.main(["waves", str(manifest), "--output", out]) == cli.EXIT_ROLLED_BACK
    printed = capsys.readouterr()
    (summary_path,) = re.findall(r"^record: (.+waves-shop-rel-w-.+\.ipynb)$", printed.out, re.M)
    summary = from_notebook(audit.read(summary_path))
    assert summary["kind"] == "waves" and summary["outcome"] == "rolled_back"
    targets = {t["name"]: t for t in summary["targets"]}
    assert {n: t["outcome"] for n, t in targets.items()} == {
        "pilot": "promoted",
        "cell-a": "failed",  # stopped beside cell-b: its release put blue back
        "cell-b": "rolled_back",
        "cell-c": "not started",
    }
    assert (
        "stopped by the waves (cell-b (wave 2) was not promoted): shift interrupted"
        in (targets["cell-a"]["reason"])
    )
    assert "waves stop: cell-b (wave 2) was rolled back; no later target starts" in printed.err
    assert summary["stopped_by"]["name"] == "cell-b"
    assert summary["reason"].startswith("wave 2: target cell-b rolled back (smoke test failed")
    assert "wave 3 (cell-c) not started; promoted and left promoted: pilot" in summary["reason"]
    assert [b["after_wave"] for b in summary["bakes"]] == [1]  # none before wave 3

    # Where each target's traffic is, read back from the sandbox by its record's target
    records = {n: from_notebook(audit.read(t["record"])) for n, t in targets.items() if t["record"]}
    assert listener_weights(shared_sandbox, records["pilot"]["target_id"]) == [0, 100]
    for name in ("cell-a", "cell-b"):
        assert listener_weights(shared_sandbox, records[name]["target_id"]) == [100, 0], name
    for name, record in records.items():  # each target's record names its release and hash
        assert record["release"] == f"rel-w.{name}"
        assert (
            targets[name]["record_hash"]
            == audit.read(targets[name]["record"]).metadata["bgkit_chain"]["hash"]
        )
    assert Path(summary_path.removesuffix(".ipynb") + ".html").is_file()

    # CI's summary job: the same outcomes from the records alone, chained after the first
    assert (
        cli.main(["waves", "summary", str(manifest), "--records", out, "--output", out])
        == cli.EXIT_ROLLED_BACK
    )
    (again,) = re.findall(r"^record: (.+\.ipynb)$", capsys.readouterr().out, re.M)
    from_records = from_notebook(audit.read(again))
    assert {t["name"]: t["outcome"] for t in from_records["targets"]} == {
        n: t["outcome"] for n, t in targets.items()
    }
    assert audit.read(again).metadata["bgkit_chain"]["sequence"] == 2
    assert cli.main(["audit", "verify", out]) == 0
    assert cli.main(["audit", out, "--kind", "waves"]) == 0
    assert capsys.readouterr().out.count(" waves ") >= 2


def test_a_targets_role_is_assumed_with_the_standard_credential_chain(sandbox, monkeypatch):
    """`bgkit waves` runs a target with a role_arn under that role: AssumeRole through boto3's
    standard chain (here pointed at the sandbox's STS by AWS_ENDPOINT_URL, as real AWS would be
    by the environment), and the target's process gets the role's temporary credentials."""
    from bgkit.sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY
    from bgkit.waves.manifest import parse
    from bgkit.waves.runner import credentials_for

    iam = sandbox.session().client("iam")
    role = iam.create_role(RoleName="bgkit-release", AssumeRolePolicyDocument="{}")["Role"]
    for name, value in {
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET_ACCESS_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    document = {
        "name": "shop", "release": "rel-r", "runbook": "alb_weighted",
        "targets": [{"name": "euw1", "region": "eu-west-1", "role_arn": role["Arn"],
                     "parameters": {"target": "aws", "listener_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2",
                                    "blue_target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/blue/50dc6c495c0c9188",
                                    "green_target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/green/60dc6c495c0c9188",
                                    "bake_seconds": 60}}],
        "waves": [["euw1"]],
    }  # fmt: skip
    manifest = parse(document, "m.yaml")
    found = credentials_for(manifest.target("euw1"), manifest)
    assert set(found) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert found["AWS_ACCESS_KEY_ID"] != SANDBOX_ACCESS_KEY_ID  # the role's, not the caller's
    # who those credentials are, asked with them
    import boto3

    identity = boto3.client(
        "sts",
        region_name="eu-west-1",
        aws_access_key_id=found["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=found["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=found["AWS_SESSION_TOKEN"],
    ).get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/bgkit-release/")
    assert identity["Arn"].endswith("/bgkit-rel-r.euw1")  # the session names the release
