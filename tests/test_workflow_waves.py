"""The wave release's workflows (.github/workflows/waves.yml, and wave.yml which it calls once a
wave) and their scripts (tools/ci_waves_manifest.sh, ci_wave_bake.sh, ci_wave_target.sh,
ci_waves_summary.sh): GitHub's workflow schema, zizmor, the workflows' shape, and each script's
command lines with a stand-in bgkit; the manifest script also on a real manifest, read by
bgkit.waves.manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_workflow import (
    BIN,
    ZIZMOR_CONFIG,
    broken_copy,
    cancel_script,
    check_jsonschema,
    run_script,
    zizmor,
)

ROOT = Path(__file__).resolve().parent.parent
WAVES = ROOT / ".github" / "workflows" / "waves.yml"
WAVE = ROOT / ".github" / "workflows" / "wave.yml"
TOOLS = ROOT / "tools"
MANIFEST_SCRIPT = TOOLS / "ci_waves_manifest.sh"
BAKE_SCRIPT = TOOLS / "ci_wave_bake.sh"
TARGET_SCRIPT = TOOLS / "ci_wave_target.sh"
SUMMARY_SCRIPT = TOOLS / "ci_waves_summary.sh"
MANIFEST = "releases/checkout-api.yaml"

# A stand-in for `bgkit waves ...`: appends each call's arguments to FAKE_ARGS (NUL-separated, a
# line a call); `check` exits FAKE_CHECK_EXIT, `info` prints FAKE_INFO, `matrix ... --wave N`
# prints FAKE_MATRIX_N; `target` and `summary` print record lines as bgkit does and exit FAKE_EXIT.
FAKE_WAVES_BGKIT = """#!/usr/bin/env bash
{ printf '%s\\0' "$@"; echo; } >> "$FAKE_ARGS"
case "$1 $2" in
    "waves check") exit "${FAKE_CHECK_EXIT:-0}" ;;
    "waves info") printf '%s\\n' "$FAKE_INFO" ;;
    "waves matrix") matrix="FAKE_MATRIX_$5"; printf '%s\\n' "${!matrix}" ;;
    *) echo "outcome: stand-in"; echo "record: outputs/stand-in.ipynb"; exit "${FAKE_EXIT:-0}" ;;
esac
"""

# The real bgkit, where a test reads a real manifest (`bgkit waves check | info | matrix`).
MANIFEST_BGKIT = f"""#!/bin/sh
exec {BIN / "bgkit"} "$@"
"""

# Four targets of the ALB runbook in three waves, in the sandbox.
CHECKOUT_API = """\
name: checkout-api
release: rel-1
runbook: alb_weighted
max_parallel: 2
bake_between_waves_seconds: 600
parameters: {plan: all_at_once}
targets:
  - {name: use1, region: us-east-1}
  - {name: euw1, region: eu-west-1}
  - {name: apse2, region: ap-southeast-2}
  - {name: sae1, region: sa-east-1}
waves:
  - [use1]
  - [euw1, apse2]
  - [sae1]
"""


def load_workflow(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def triggers(path: Path) -> dict[str, Any]:
    doc = load_workflow(path)
    return doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True


def jobs(path: Path) -> dict[str, Any]:
    return load_workflow(path)["jobs"]


def wave_jobs() -> dict[str, Any]:
    return {name: job for name, job in jobs(WAVES).items() if name.startswith("wave-")}


def steps(path: Path) -> list[dict[str, Any]]:
    return [s for job in jobs(path).values() for s in job.get("steps", [])]


def step(path: Path, uses_or_run: str) -> dict[str, Any]:
    (found,) = [s for s in steps(path) if uses_or_run in s.get("uses", "") + s.get("run", "")]
    return found


def max_waves() -> int:
    return int(step(WAVES, "tools/ci_waves_manifest.sh")["env"]["MAX_WAVES"])


def calls(tmp_path: Path) -> list[list[str]]:
    """The stand-in's calls, each its arguments."""
    lines = (tmp_path / "args").read_text().splitlines()
    return [line.split("\0")[:-1] for line in lines]


def outputs(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()]
    assert len({name for name, _ in pairs}) == len(pairs)  # each output written once
    return dict(pairs)


# -- linters --------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", [WAVES, WAVE], ids=lambda p: p.name)
def test_workflow_is_valid_by_githubs_schema(workflow):
    result = check_jsonschema(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("workflow", "old", "new", "named"),
    [
        (WAVE, "type: number", "type: integer", "integer"),
        (WAVES, "    uses: ./.github/workflows/wave.yml\n", "", "wave-1"),
    ],
    ids=["wave.yml", "waves.yml"],
)
def test_schema_check_refuses_a_broken_copy(tmp_path, workflow, old, new, named):
    result = check_jsonschema(broken_copy(tmp_path, old, new, workflow))
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


@pytest.mark.parametrize("workflow", [WAVES, WAVE], ids=lambda p: p.name)
def test_zizmor_reports_nothing(workflow):
    result = zizmor(workflow, "--config", str(ZIZMOR_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


@pytest.mark.parametrize(
    ("workflow", "script"),
    [(WAVES, "tools/ci_waves_manifest.sh"), (WAVE, "exec tools/ci_wave_target.sh")],
    ids=["waves.yml", "wave.yml"],
)
def test_zizmor_catches_an_input_interpolated_into_a_script(tmp_path, workflow, script):
    path = broken_copy(
        tmp_path, f"run: {script}", f'run: {script} "${{{{ inputs.manifest }}}}"', workflow
    )
    result = zizmor(path, "--config", str(ZIZMOR_CONFIG))
    assert result.returncode != 0
    assert "template-injection" in result.stdout


@pytest.mark.parametrize("workflow", [WAVES, WAVE], ids=lambda p: p.name)
def test_zizmor_config_accepts_only_the_tag_pinned_actions_and_the_local_calls(workflow):
    """Without .github/zizmor.yml the only findings are the actions pinned to a major version
    tag (release.yml's choice), one per `uses:` step, and the wave jobs' calls of
    ./.github/workflows/wave.yml (the config says why)."""
    result = zizmor(workflow, "--no-config", "--format", "json")
    found = [f["ident"] for f in json.loads(result.stdout)]
    assert set(found) <= {"unpinned-uses", "self-repository"}
    assert found.count("unpinned-uses") == sum("uses" in s for s in steps(workflow))
    local_calls = [j for j in jobs(workflow).values() if j.get("uses", "").startswith("./")]
    assert found.count("self-repository") == len(local_calls)


# -- the workflows' shape -------------------------------------------------------------------


def test_dispatch_takes_only_the_manifests_path():
    assert list(triggers(WAVES)) == ["workflow_dispatch"]
    (name,) = triggers(WAVES)["workflow_dispatch"]["inputs"]
    manifest = triggers(WAVES)["workflow_dispatch"]["inputs"]["manifest"]
    assert (name, manifest["type"], manifest["required"]) == ("manifest", "string", True)


def test_one_wave_job_for_each_wave_the_manifest_job_plans():
    manifest = jobs(WAVES)["manifest"]
    assert list(wave_jobs()) == [f"wave-{n}" for n in range(1, max_waves() + 1)]
    matrices = [name for name in manifest["outputs"] if name.startswith("matrix_")]
    assert matrices == [f"matrix_{n}" for n in range(1, max_waves() + 1)]
    for name, value in manifest["outputs"].items():
        assert value == f"${{{{ steps.manifest.outputs.{name} }}}}"
    assert step(WAVES, "tools/ci_waves_manifest.sh")["id"] == "manifest"


def test_each_wave_needs_the_one_before_and_runs_only_if_the_manifest_has_it():
    called = triggers(WAVE)["workflow_call"]
    for n, (name, job) in enumerate(wave_jobs().items(), 1):
        assert job["uses"] == "./.github/workflows/wave.yml"
        if n == 1:
            assert job["needs"] == "manifest"
            assert "if" not in job
        else:
            assert job["needs"] == ["manifest", f"wave-{n - 1}"]
            # No status function: GitHub adds success(), so a failed or skipped wave skips it.
            assert job["if"] == f"fromJSON(needs.manifest.outputs.waves) >= {n}"
        assert job["with"] == {
            "manifest": "${{ inputs.manifest }}",
            "wave": n,
            "matrix": f"${{{{ needs.manifest.outputs.matrix_{n} }}}}",
            "max_parallel": "${{ needs.manifest.outputs.max_parallel }}",
            "bake_seconds": "${{ needs.manifest.outputs.bake_seconds }}",
        }
        assert set(job["with"]) == set(called["inputs"]), name
        assert set(job["secrets"]) == set(called["secrets"]), name


def test_a_wave_bakes_then_releases_its_targets_fail_fast_at_most_max_parallel_at_once():
    targets = jobs(WAVE)["targets"]
    assert targets["needs"] == "bake"
    assert targets["strategy"] == {
        "fail-fast": True,
        "max-parallel": "${{ fromJSON(inputs.max_parallel) }}",
        "matrix": "${{ fromJSON(inputs.matrix) }}",
    }
    bake = step(WAVE, "tools/ci_wave_bake.sh")
    assert bake["env"] == {
        "WAVE": "${{ inputs.wave }}",
        "BAKE_SECONDS": "${{ inputs.bake_seconds }}",
    }
    # The bake's job outlasts the longest bake the scripts accept.
    limit = re.search(r"^MAX_BAKE_SECONDS=(\d+)$", (TOOLS / "ci_common.sh").read_text(), re.M)
    assert jobs(WAVE)["bake"]["timeout-minutes"] * 60 > int(limit[1])


def test_a_target_assumes_its_own_role_only_when_the_manifest_gives_one():
    credentials = step(WAVE, "aws-actions/configure-aws-credentials@")
    assert credentials["if"] == "matrix.role_arn != ''"
    assert credentials["with"]["role-to-assume"] == "${{ matrix.role_arn }}"
    assert (
        jobs(WAVE)["targets"]["environment"] == "${{ matrix.role_arn != '' && 'aws' || 'sandbox' }}"
    )
    release = step(WAVE, "tools/ci_wave_target.sh")
    assert release["env"]["TARGET"] == "${{ matrix.target }}"
    assert release["env"]["MANIFEST"] == "${{ inputs.manifest }}"
    assert (
        "matrix.role_arn != '' && secrets.SMOKE_TOKEN" in release["env"]["BGKIT_SECRET_SMOKE_TOKEN"]
    )


def test_summary_runs_whenever_the_manifest_was_read_on_every_targets_record():
    summary = jobs(WAVES)["summary"]
    assert summary["needs"] == ["manifest", *wave_jobs()]
    assert summary["if"] == "always() && needs.manifest.result == 'success'"
    download = step(WAVES, "actions/download-artifact@")
    assert download["with"]["merge-multiple"] is True
    assert download["with"]["path"] == step(WAVES, "tools/ci_waves_summary.sh")["env"]["RECORDS"]
    # The summary downloads what each target uploads, and not its own upload.
    record = step(WAVE, "actions/upload-artifact@")["with"]["name"]
    prefix = download["with"]["pattern"].removesuffix("*")
    assert record.startswith(prefix)
    assert not step(WAVES, "actions/upload-artifact@")["with"]["name"].startswith(prefix)
    assert "github.run_attempt" in record
    order = summary["steps"]
    assert order.index(download) < order.index(step(WAVES, "tools/ci_waves_summary.sh"))


@pytest.mark.parametrize("workflow", [WAVES, WAVE], ids=lambda p: p.name)
def test_records_are_uploaded_whatever_the_outcome(workflow):
    (upload,) = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-")]
    assert upload["if"] == "always()"
    assert set(upload["with"]["path"].split()) == {"outputs/**/*.ipynb", "outputs/**/*.html"}


def test_permissions_are_minimal():
    assert load_workflow(WAVES)["permissions"] == {}
    assert load_workflow(WAVE)["permissions"] == {}
    read, oidc = {"contents": "read"}, {"contents": "read", "id-token": "write"}
    expected = {"manifest": read, "summary": read} | dict.fromkeys(wave_jobs(), oidc)
    assert {name: job["permissions"] for name, job in jobs(WAVES).items()} == expected
    assert {name: job["permissions"] for name, job in jobs(WAVE).items()} == {
        "bake": read,
        "targets": oidc,
    }


def test_one_wave_release_of_a_manifest_at_a_time_never_cancelled():
    concurrency = load_workflow(WAVES)["concurrency"]
    assert concurrency == {"group": "waves-${{ inputs.manifest }}", "cancel-in-progress": False}


def test_every_job_that_runs_steps_has_a_timeout():
    for workflow in (WAVES, WAVE):
        for name, job in jobs(workflow).items():
            assert ("steps" in job) == ("timeout-minutes" in job), name


@pytest.mark.parametrize("workflow", [WAVES, WAVE], ids=lambda p: p.name)
def test_no_expression_inside_any_run_script(workflow):
    scripts = [s["run"] for s in steps(workflow) if "run" in s]
    assert scripts
    for script in scripts:
        assert "${{" not in script, script


@pytest.mark.parametrize("workflow", [WAVES, WAVE], ids=lambda p: p.name)
def test_actions_are_pinned_to_a_major_version_or_a_sha(workflow):
    for uses in (s["uses"] for s in steps(workflow) if "uses" in s):
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|[0-9a-f]{40})", uses), uses


def test_the_scripts_the_workflows_run_exist_and_are_executable():
    runs = {s["run"] for w in (WAVES, WAVE) for s in steps(w) if "tools/" in s.get("run", "")}
    # exec: the target's script is the step's process, so a cancelled job's signals reach it.
    assert runs == {
        "tools/ci_waves_manifest.sh", "tools/ci_wave_bake.sh", "exec tools/ci_wave_target.sh",
        "tools/ci_waves_summary.sh",
    }  # fmt: skip
    for run in runs:
        script = run.removeprefix("exec ")
        assert os.access(ROOT / script, os.X_OK), script


# -- tools/ci_waves_manifest.sh -------------------------------------------------------------


def matrix_of(*targets: str) -> str:
    """`bgkit waves matrix`'s line for a wave of these targets."""
    row = {"runbook": "alb_weighted", "region": "", "role_arn": ""}
    return json.dumps({"include": [row | {"target": t, "release": f"rel-1.{t}"} for t in targets]})


THREE_WAVES = {
    "FAKE_INFO": json.dumps(
        {
            "name": "checkout-api",
            "release": "rel-1",
            "waves": 3,
            "max_parallel": 2,
            "bake_between_waves_seconds": 600.0,
        }
    ),
    "FAKE_MATRIX_1": matrix_of("use1"),
    "FAKE_MATRIX_2": matrix_of("euw1", "apse2"),
    "FAKE_MATRIX_3": matrix_of("sae1"),
}


def run_manifest_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    env = {"MANIFEST": MANIFEST, "GITHUB_OUTPUT": str(tmp_path / "output")} | env
    return run_script(tmp_path, script=MANIFEST_SCRIPT, fake=FAKE_WAVES_BGKIT, **env)


def test_manifest_script_writes_each_waves_matrix_and_empty_ones_for_the_rest(tmp_path):
    summary = tmp_path / "summary.md"
    result = run_manifest_script(tmp_path, GITHUB_STEP_SUMMARY=str(summary), **THREE_WAVES)
    assert result.returncode == 0, result.stderr
    assert outputs(tmp_path / "output") == {
        "name": "checkout-api",
        "release": "rel-1",
        "waves": "3",
        "max_parallel": "2",
        "bake_seconds": "600",
        "matrix_1": THREE_WAVES["FAKE_MATRIX_1"],
        "matrix_2": THREE_WAVES["FAKE_MATRIX_2"],
        "matrix_3": THREE_WAVES["FAKE_MATRIX_3"],
        "matrix_4": "",
        "matrix_5": "",
        "matrix_6": "",
    }
    assert calls(tmp_path) == [
        ["waves", "check", MANIFEST],
        ["waves", "info", MANIFEST],
        *[["waves", "matrix", MANIFEST, "--wave", str(n)] for n in (1, 2, 3)],
    ]
    assert "| 2 | euw1, apse2 |" in summary.read_text()


def test_manifest_script_refuses_more_waves_than_the_workflow_has(tmp_path):
    info = json.loads(THREE_WAVES["FAKE_INFO"]) | {"waves": 7}
    result = run_manifest_script(tmp_path, **THREE_WAVES | {"FAKE_INFO": json.dumps(info)})
    assert result.returncode == 2
    assert f"{MANIFEST} has 7 waves; this workflow runs at most 6" in result.stderr
    assert not (tmp_path / "output").exists()
    assert [call[1] for call in calls(tmp_path)] == ["check", "info"]  # no matrix asked for


def test_manifest_script_stops_at_bgkits_refusal(tmp_path):
    result = run_manifest_script(tmp_path, FAKE_CHECK_EXIT="2", **THREE_WAVES)
    assert result.returncode == 2
    assert calls(tmp_path) == [["waves", "check", MANIFEST]]
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FAKE_INFO": "waves: 3"}, "bgkit waves info printed 'waves: 3'"),
        ({"FAKE_MATRIX_2": '{"include": []}'}, "bgkit waves matrix --wave 2 printed"),
        ({"FAKE_MATRIX_2": '{"include":\n[{"target": "x"}]}'}, "expected one line of JSON"),
        (
            {"FAKE_INFO": THREE_WAVES["FAKE_INFO"].replace("600.0", "86400")},
            "bake seconds '86400'",
        ),
    ],
)
def test_manifest_script_refuses_what_it_cannot_hand_to_the_wave_jobs(tmp_path, env, named):
    result = run_manifest_script(tmp_path, **THREE_WAVES | env)
    assert result.returncode == 2
    assert named in result.stderr
    assert not (tmp_path / "output").exists()


BAD_MANIFEST_PATHS = [
    "",
    "../checkout-api.yaml",
    "releases/../../etc/passwd.yaml",
    "releases/./checkout-api.yaml",
    "releases//checkout-api.yaml",
    "releases/.checkout-api.yaml",
    "/etc/releases/x.yaml",
    "releases/x.json",
    "examples/x.yaml",
    "releases/x y.yaml",
    "releases/$(touch pwned).yaml",
]


@pytest.mark.parametrize("path", BAD_MANIFEST_PATHS)
@pytest.mark.parametrize(
    "script", [MANIFEST_SCRIPT, TARGET_SCRIPT, SUMMARY_SCRIPT], ids=lambda p: p.name
)
def test_scripts_refuse_a_manifest_path_outside_the_release_folders(tmp_path, script, path):
    result = run_script(
        tmp_path, script=script, fake=FAKE_WAVES_BGKIT, MANIFEST=path, TARGET="use1"
    )
    assert result.returncode == 2
    assert f"MANIFEST {path!r}" in result.stderr  # bash's ${path@Q} quotes as repr does here
    assert "under releases/ or examples/waves/" in result.stderr
    assert not (tmp_path / "args").exists()  # bgkit never started
    assert not (tmp_path / "pwned").exists()


def real_manifest(tmp_path: Path, text: str) -> None:
    path = tmp_path / MANIFEST
    path.parent.mkdir()
    path.write_text(text)


def test_manifest_script_plans_a_real_manifest(tmp_path):
    """The manifest read by the real `bgkit waves`: four targets of the ALB runbook in three
    waves."""
    real_manifest(tmp_path, CHECKOUT_API)
    result = run_script(
        tmp_path,
        script=MANIFEST_SCRIPT,
        fake=MANIFEST_BGKIT,
        timeout=180,  # five bgkit commands, each reading the manifest and its runbook
        MANIFEST=MANIFEST,
        GITHUB_OUTPUT=str(tmp_path / "output"),
    )
    assert result.returncode == 0, result.stderr
    written = outputs(tmp_path / "output")
    assert (written["waves"], written["max_parallel"], written["bake_seconds"]) == ("3", "2", "600")
    waves = [json.loads(written[f"matrix_{n}"])["include"] for n in (1, 2, 3)]
    assert [[t["target"] for t in wave] for wave in waves] == [
        ["use1"],
        ["euw1", "apse2"],
        ["sae1"],
    ]
    assert waves[1][0] == {
        "target": "euw1",
        "runbook": "alb_weighted",
        "region": "eu-west-1",
        "role_arn": "",
        "release": "rel-1.euw1",
    }
    assert written["matrix_4"] == written["matrix_5"] == written["matrix_6"] == ""


def test_manifest_script_refuses_a_real_manifest_of_seven_waves(tmp_path):
    names = [f"t{n}" for n in range(1, 8)]
    targets = "".join(f"  - {{name: {name}}}\n" for name in names)
    waves = "".join(f"  - [{name}]\n" for name in names)
    text = f"name: checkout-api\nrelease: rel-1\nrunbook: alb_weighted\ntargets:\n{targets}waves:\n{waves}"
    real_manifest(tmp_path, text)
    result = run_script(
        tmp_path, script=MANIFEST_SCRIPT, fake=MANIFEST_BGKIT, timeout=120, MANIFEST=MANIFEST
    )
    assert result.returncode == 2
    assert "has 7 waves; this workflow runs at most 6" in result.stderr


def test_manifest_script_passes_on_bgkits_message_for_a_manifest_that_cannot_run(tmp_path):
    real_manifest(tmp_path, CHECKOUT_API.replace("plan: all_at_once", "plan: sideways"))
    result = run_script(
        tmp_path, script=MANIFEST_SCRIPT, fake=MANIFEST_BGKIT, timeout=120, MANIFEST=MANIFEST
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"bgkit: {MANIFEST}: parameters.plan: ")


# -- tools/ci_wave_bake.sh ------------------------------------------------------------------


def run_bake(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run_script(tmp_path, script=BAKE_SCRIPT, **env)
    return result, time.monotonic() - started


def test_bake_waits_before_a_later_wave(tmp_path):
    result, elapsed = run_bake(tmp_path, WAVE="2", BAKE_SECONDS="0.3")
    assert result.returncode == 0, result.stderr
    assert elapsed >= 0.3
    assert "wave 2: baking 0.3 s after wave 1 was promoted" in result.stdout


def test_bake_does_not_wait_before_the_first_wave(tmp_path):
    result, elapsed = run_bake(tmp_path, WAVE="1", BAKE_SECONDS="600")
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    assert "no bake before the first wave" in result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WAVE": "0", "BAKE_SECONDS": "1"}, "WAVE '0'"),
        ({"WAVE": "two", "BAKE_SECONDS": "1"}, "WAVE 'two'"),
        ({"WAVE": "2", "BAKE_SECONDS": ""}, "bake seconds ''"),
        ({"WAVE": "2", "BAKE_SECONDS": "-1"}, "bake seconds '-1'"),
        ({"WAVE": "2", "BAKE_SECONDS": "1e3"}, "bake seconds '1e3'"),
        ({"WAVE": "2", "BAKE_SECONDS": "18000"}, "under 18000"),
        ({"WAVE": "2", "BAKE_SECONDS": "$(touch pwned)"}, "bake seconds"),
    ],
)
def test_bake_refuses_a_malformed_wave_or_bake(tmp_path, env, named):
    result, _ = run_bake(tmp_path, **env)
    assert result.returncode == 2
    assert named in result.stderr
    assert not (tmp_path / "pwned").exists()


# -- tools/ci_wave_target.sh and tools/ci_waves_summary.sh ----------------------------------


@pytest.mark.parametrize("code", [0, 3, 4])
@pytest.mark.parametrize(
    ("script", "env", "call", "title"),
    [
        (
            TARGET_SCRIPT,
            {"TARGET": "eu-west_1"},
            ["waves", "target", MANIFEST, "eu-west_1"],
            f"eu-west_1 ({MANIFEST})",
        ),
        (
            SUMMARY_SCRIPT,
            {},
            ["waves", "summary", MANIFEST, "--records", "records", "--output", "outputs"],
            f"wave release {MANIFEST}",
        ),
    ],
    ids=["target", "summary"],
)
def test_script_runs_bgkit_and_exits_with_its_code(tmp_path, script, env, call, title, code):
    """0 promoted, 3 rolled back, 4 failed: the job fails unless promoted; bgkit's lines go to
    the job's summary page."""
    summary = tmp_path / "summary.md"
    result = run_script(
        tmp_path,
        fake_exit=code,
        script=script,
        fake=FAKE_WAVES_BGKIT,
        MANIFEST=MANIFEST,
        GITHUB_STEP_SUMMARY=str(summary),
        **env,
    )
    assert result.returncode == code
    assert calls(tmp_path) == [call]
    assert "record: outputs/stand-in.ipynb" in result.stdout
    assert f"### {title}: exit {code}" in summary.read_text()
    assert "    record: outputs/stand-in.ipynb" in summary.read_text()


def test_a_cancelled_targets_signals_reach_bgkit_once_as_sigint(tmp_path):
    """fail-fast cancels the wave's other targets: GitHub sends SIGINT to the step's process,
    then SIGTERM; `bgkit waves target` gets the SIGINT only (a second one would interrupt its
    rollback), and the script exits with its code, the record's line shown and summarized."""
    summary = tmp_path / "summary.md"
    result, caught = cancel_script(
        tmp_path,
        script=TARGET_SCRIPT,
        MANIFEST=MANIFEST,
        TARGET="use1",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert caught == ["INT"]
    assert result.returncode == 4, result.stderr
    assert "record: outputs/x.ipynb" in result.stdout
    assert f"### use1 ({MANIFEST}): exit 4" in summary.read_text()
    assert "    outcome: failed" in summary.read_text()


def test_target_script_passes_an_output_folder(tmp_path):
    result = run_script(
        tmp_path,
        script=TARGET_SCRIPT,
        fake=FAKE_WAVES_BGKIT,
        MANIFEST="examples/waves/eu/sandbox.v2.yml",
        TARGET="use1",
        OUTPUT="s3://records/waves/",
    )
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == [
        [
            "waves",
            "target",
            "examples/waves/eu/sandbox.v2.yml",
            "use1",
            "--output",
            "s3://records/waves/",
        ]
    ]


@pytest.mark.parametrize("target", ["", "-p", "../use1", "use 1", "use1;ls", "x" * 41, "_use1"])
def test_target_script_refuses_a_malformed_target(tmp_path, target):
    result = run_script(
        tmp_path, script=TARGET_SCRIPT, fake=FAKE_WAVES_BGKIT, MANIFEST=MANIFEST, TARGET=target
    )
    assert result.returncode == 2
    assert f"TARGET {target!r}" in result.stderr
    assert not (tmp_path / "args").exists()


def test_summary_script_gives_bgkit_a_records_folder_when_no_record_was_downloaded(tmp_path):
    """No target uploaded a record (every one failed before bgkit ran): bgkit still summarizes,
    each record missing, rather than failing on a folder that is not there."""
    result = run_script(tmp_path, script=SUMMARY_SCRIPT, fake=FAKE_WAVES_BGKIT, MANIFEST=MANIFEST)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "records").is_dir()


@pytest.mark.parametrize("env", [{"RECORDS": "-x"}, {"OUTPUT": "out puts"}])
def test_summary_script_refuses_a_malformed_folder(tmp_path, env):
    result = run_script(
        tmp_path, script=SUMMARY_SCRIPT, fake=FAKE_WAVES_BGKIT, MANIFEST=MANIFEST, **env
    )
    assert result.returncode == 2
    assert "expected a folder such as records or outputs" in result.stderr
    assert not (tmp_path / "args").exists()
