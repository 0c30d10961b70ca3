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
