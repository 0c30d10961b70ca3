"""A wave release's manifest (bgkit.waves.manifest): every refusal names its entry, before
anything runs; what a valid one gives `bgkit run` and GitHub Actions' matrix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bgkit import cli
from bgkit.waves.manifest import ManifestError, load, parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "waves"

MANIFEST = {
    "name": "shop",
    "release": "rel-1",
    "runbook": "alb_weighted",
    "max_parallel": 2,
    "bake_between_waves_seconds": 30,
    "parameters": {"plan": "50", "bake_seconds": 5},
    "secrets": ["smoke_token"],
    "targets": [
        {"name": "use1", "region": "us-east-1"},
        {"name": "euw1", "region": "eu-west-1", "parameters": {"plan": "canary"}},
        {"name": "apse2", "region": "ap-southeast-2", "runbook": "route53_weighted"},
    ],
    "waves": [["use1"], ["euw1", "apse2"]],
}


def refused(change) -> str:
    document = copy.deepcopy(MANIFEST)
    change(document)
    with pytest.raises(ManifestError) as caught:
        parse(document, "m.yaml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["waves"][1].append("sae1"),
            "m.yaml: waves[1]: unknown target 'sae1'; the targets: use1, euw1, apse2",
        ),
        (
            lambda d: d["waves"][1].append("use1"),
            "m.yaml: waves[1]: target 'use1' is also in waves[0]; a target is released once",
        ),
        (lambda d: d["waves"].pop(), "m.yaml: waves: target(s) in no wave: euw1, apse2"),
        (
            lambda d: d["targets"][1]["parameters"].update(bake_secs=5),
            "m.yaml: targets[1] (euw1).parameters.bake_secs: alb_weighted has no parameter "
            "'bake_secs'; its parameters: target, region",
        ),
        (
            lambda d: d["parameters"].update(smoke_token="s3cr3t-value"),
            "m.yaml: parameters.smoke_token: smoke_token is a secret: never a value in a manifest",
        ),
        (
            lambda d: d["targets"][0].update(parameters={"notify_webhook": "https://x"}),
            "m.yaml: targets[0] (use1).parameters.notify_webhook: notify_webhook is a secret",
        ),
        (
            lambda d: d["targets"][1]["parameters"].update(step_percent=500),
            "m.yaml: targets[1] (euw1).parameters.step_percent: step_percent: must be an integer "
            "from 1 to 99, got 500",
        ),
        (
            lambda d: d["targets"][0].update(region="mars-1"),
            "m.yaml: targets[0] (use1).region: region: must be an AWS region name",
        ),
        (
            lambda d: d["targets"][2].update(runbook="dns"),
            "m.yaml: targets[2] (apse2).runbook: no runbook named 'dns'; known runbooks:",
        ),
        (
            lambda d: d["parameters"].update(release="rel-2"),
            "m.yaml: parameters.release: set per target by bgkit: <release>.<target name>",
        ),
        (
            lambda d: d["parameters"].update(dry_run=True),
            "m.yaml: parameters.dry_run: set by `bgkit plan` and `bgkit run --plan`",
        ),
        (lambda d: d.update(wave_bake=3), "m.yaml: wave_bake: unknown key; allowed: name,"),
        (
            lambda d: d["targets"][0].update(account="1234"),
            "m.yaml: targets[0].account: unknown key; allowed: name, region, role_arn,",
        ),
        (
            lambda d: d["targets"].append({"name": "use1"}),
            "m.yaml: targets[3] (use1).name: 'use1' is also targets[0] (use1)",
        ),
        (
            lambda d: d["targets"][0].update(role_arn="arn:aws:iam::123456789012:role/r"),
            "m.yaml: targets[0] (use1).role_arn: a role is assumed only for target aws",
        ),
        (
            lambda d: d["targets"][0].update(role_arn="admin"),
            "m.yaml: targets[0] (use1).role_arn: must be an IAM role ARN",
        ),
        (lambda d: d.update(max_parallel=0), "m.yaml: max_parallel: must be a whole number"),
        (lambda d: d["secrets"].append("plan"), "m.yaml: secrets[1]: 'plan' is not a secret"),
        (lambda d: d.update(release="rel 1"), "m.yaml: release: the release id, e.g."),
        (
            lambda d: d["waves"].append([["nested"]]),
            "m.yaml: waves[2]: a target name, got ['nested']",
        ),
        (
            lambda d: d["targets"][1]["parameters"].update(plan=50),
            "m.yaml: targets[1] (euw1).parameters.plan: alb_weighted takes text here; quote it "
            '(plan: "50")',
        ),
        (
            lambda d: d["parameters"].update(smoke_url="--output=/etc"),
            "m.yaml: parameters.smoke_url: a value starting with '-' would be read as an option",
        ),
    ],
)
def test_a_manifest_that_cannot_run_is_refused_naming_the_entry(change, message):
    assert refused(change).startswith(message)


def test_a_valid_manifest_gives_each_target_its_own_release_and_parameters():
    manifest = parse(copy.deepcopy(MANIFEST), "m.yaml")
    assert [[t.name for t in wave] for wave in manifest.waves] == [["use1"], ["euw1", "apse2"]]
    euw1 = manifest.target("euw1")
    assert manifest.release_of(euw1) == "rel-1.euw1"
    assert euw1.parameters == {"plan": "canary", "bake_seconds": 5}  # its own over the shared
    assert manifest.run_arguments(euw1, "out/") == [
        "run", "alb_weighted", "-p", "plan", "canary", "-p", "bake_seconds", "5",
        "-p", "region", "eu-west-1", "-p", "release", "rel-1.euw1", "--html", "--quiet",
        "--output", "out/",
    ]  # fmt: skip
    # what bgkit run itself does with them: the runbook's declared types
    path = cli.runbook_path("alb_weighted")
    assert cli.coerce_parameters(path, [("bake_seconds", "5")]) == {"bake_seconds": 5.0}
    assert manifest.matrix(2) == {
        "include": [
            {"target": "euw1", "runbook": "alb_weighted", "region": "eu-west-1",
             "role_arn": "", "release": "rel-1.euw1"},
            {"target": "apse2", "runbook": "route53_weighted", "region": "ap-southeast-2",
             "role_arn": "", "release": "rel-1.apse2"},
        ]
    }  # fmt: skip


def test_the_command_line_checks_and_gives_the_matrix(capsys):
    path = str(EXAMPLES / "sandbox.yaml")
    assert cli.main(["waves", "check", path]) == 0
    assert "4 targets in 3 waves (wave 1: pilot; wave 2: cell-a, cell-b; wave 3: cell-c)" in (
        capsys.readouterr().out
    )
    assert cli.main(["waves", "matrix", path, "--wave", "2"]) == 0
    matrix = json.loads(capsys.readouterr().out)
    assert [row["target"] for row in matrix["include"]] == ["cell-a", "cell-b"]
    assert cli.main(["waves", "info", path]) == 0
    assert json.loads(capsys.readouterr().out)["waves"] == 3
    assert cli.main(["waves", "matrix", path, "--wave", "4"]) == cli.EXIT_USAGE
    assert "--wave: must be 1 to 3 (its waves), got 4" in capsys.readouterr().err


def test_a_manifest_that_is_not_yaml_or_not_there_is_a_usage_error(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert cli.main(["waves", "check", str(broken)]) == cli.EXIT_USAGE
    assert f"{broken}: manifest: is not YAML" in capsys.readouterr().err
    assert cli.main(["waves", str(tmp_path / "none.yaml")]) == cli.EXIT_USAGE
    assert "manifest: cannot be read: No such file or directory" in capsys.readouterr().err


def test_the_examples_are_valid_and_differ_only_by_the_faulty_target():
    good, faulty = load(EXAMPLES / "sandbox.yaml"), load(EXAMPLES / "sandbox-faulty.yaml")
    assert [t.name for t in good.targets] == [t.name for t in faulty.targets]
    changed = [t.name for t, f in zip(good.targets, faulty.targets, strict=True) if t != f]
    assert changed == ["cell-b"] and faulty.target("cell-b").parameters["green_error_rate"] == 0.3
    assert faulty.target("cell-b").wave == 2 and len(faulty.waves) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: shop\nname: shop2\n",
            "m.yaml: manifest: is not YAML: 'name' is given twice",
        ),
        (
            "a: &x [1, 2]\nb: [*x, *x, *x]\n",
            "m.yaml: manifest: is not YAML: aliases (*name) are not allowed in a manifest",
        ),
    ],
)
def test_yaml_that_could_hide_or_multiply_entries_is_refused(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load(path)
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(message)


def test_waves_refuses_one_record_file_for_many_targets_and_a_missing_secret(
    tmp_path, capsys, monkeypatch
):
    path = str(EXAMPLES / "sandbox.yaml")
    assert cli.main(["waves", path, "--output", "x.ipynb"]) == cli.EXIT_USAGE
    assert "--output x.ipynb: a folder or an s3:// prefix" in capsys.readouterr().err
    secretive = tmp_path / "m.yaml"
    secretive.write_text(
        (EXAMPLES / "sandbox.yaml")
        .read_text()
        .replace("\ntargets:", "\nsecrets: [smoke_token]\ntargets:", 1)
    )
    monkeypatch.delenv("BGKIT_SECRET_SMOKE_TOKEN", raising=False)
    for command in (["waves", str(secretive)], ["waves", "target", str(secretive), "pilot"]):
        assert cli.main(command) == cli.EXIT_USAGE  # before any target starts
        assert "secrets[0]: smoke_token: set BGKIT_SECRET_SMOKE_TOKEN" in capsys.readouterr().err


def test_a_summary_shows_reasons_and_output_as_text_never_as_markup():
    from bgkit.waves.summary import _cell

    shown = _cell("exit 4; its last line: <img src=x onerror=alert(1)> | done")
    assert "<img" not in shown and "&lt;img src=x onerror=alert(1)&gt; \\| done" in shown
