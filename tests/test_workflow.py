"""The release workflow (.github/workflows/release.yml) and the script it runs
(tools/ci_release.sh): GitHub's workflow schema, zizmor, the workflow's shape, the script's
command line and how a cancelled job's signals reach bgkit (with a stand-in bgkit), and one real
release in the sandbox through the script."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgkit import patterns
from bgkit.record import load

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"
SCRIPT = ROOT / "tools" / "ci_release.sh"
BIN = Path(sys.executable).parent  # the virtualenv's bin: bgkit, check-jsonschema, zizmor

# A stand-in for bgkit: records its arguments (NUL-separated), prints a record line as bgkit
# does, and exits with FAKE_EXIT.
FAKE_BGKIT = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_ARGS"
echo "outcome: stand-in"
echo "record: outputs/stand-in.ipynb"
exit "${FAKE_EXIT:-0}"
"""

# A stand-in for a release that a cancelled job interrupts: it touches FAKE_STARTED once its
# traps are set, appends the name of each INT, TERM or HUP it gets to FAKE_SIGNALS, and a moment
# after the first INT (its rollback) prints its outcome and record and exits 4, as bgkit does.
# Never interrupted, it gives up after 10 s (exit 9).
CANCELLED_BGKIT = """#!/usr/bin/env bash
caught() {
    echo "$1" >> "$FAKE_SIGNALS"
    [[ $1 != INT ]] || interrupted=1
}
for name in INT TERM HUP; do trap "caught $name" "$name"; done
touch "$FAKE_STARTED"
for _ in {1..200}; do
    [[ -z ${interrupted:-} ]] || break
    sleep 0.05
done
[[ -n ${interrupted:-} ]] || exit 9
sleep 1 # the rollback: GitHub's SIGTERM comes meanwhile
echo "outcome: failed"
echo "record: outputs/x.ipynb"
exit 4
"""


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def triggers() -> dict[str, Any]:
    doc = workflow()
    return doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True


def job() -> dict[str, Any]:
    (only,) = workflow()["jobs"].values()
    return only


def step(uses_or_run: str) -> dict[str, Any]:
    (found,) = [s for s in job()["steps"] if uses_or_run in s.get("uses", "") + s.get("run", "")]
    return found


def broken_copy(tmp_path: Path, old: str, new: str, workflow: Path = WORKFLOW) -> Path:
    """The workflow with one change, where zizmor would look for it (.github/workflows)."""
    text = workflow.read_text()
    assert old in text
    path = tmp_path / ".github" / "workflows" / workflow.name
    path.parent.mkdir(parents=True)
    path.write_text(text.replace(old, new, 1))
    return path


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path],
        capture_output=True,
        text=True,
        timeout=60,
    )


def zizmor(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", "--color", "never", *options, path],
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- linters --------------------------------------------------------------------------------


def test_workflow_is_valid_by_githubs_schema():
    result = check_jsonschema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_refuses_a_job_without_runs_on(tmp_path):
    result = check_jsonschema(broken_copy(tmp_path, "    runs-on: ubuntu-24.04\n", ""))
    assert result.returncode != 0
    assert "runs-on" in result.stdout + result.stderr


def test_zizmor_reports_nothing():
    result = zizmor(WORKFLOW, "--config", str(ZIZMOR_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


def test_zizmor_catches_an_input_interpolated_into_a_script(tmp_path):
    path = broken_copy(
        tmp_path,
        "run: exec tools/ci_release.sh",
        'run: exec tools/ci_release.sh "${{ inputs.release }}"',
    )
    result = zizmor(path, "--config", str(ZIZMOR_CONFIG))
    assert result.returncode != 0
    assert "template-injection" in result.stdout


def test_zizmor_config_accepts_only_the_tag_pinned_actions():
    """Without .github/zizmor.yml the only findings are the actions pinned to a major version
    tag (a choice its comment explains), one per `uses:`."""
    result = zizmor(WORKFLOW, "--no-config", "--format", "json")
    findings = json.loads(result.stdout)
    assert {f["ident"] for f in findings} == {"unpinned-uses"}
    assert len(findings) == sum("uses" in s for s in job()["steps"])


# -- the workflow's shape -------------------------------------------------------------------


def test_dispatch_inputs():
    inputs = triggers()["workflow_dispatch"]["inputs"]
    assert inputs["runbook"]["type"] == "choice"
    assert inputs["runbook"]["options"] == patterns.names()  # every runbook, and only those
    assert inputs["runbook"]["default"] == "alb_weighted"
    assert inputs["target"]["options"] == ["sandbox", "aws"]
    assert inputs["target"]["default"] == "sandbox"
    assert inputs["auto_promote"]["type"] == "boolean"
    for name in ("region", "release", "parameters"):
        assert inputs[name]["type"] == "string"


def test_nightly_schedule_releases_in_the_sandbox_by_default():
    (schedule,) = triggers()["schedule"]
    assert len(schedule["cron"].split()) == 5
    env = step("tools/ci_release.sh")["env"]
    # A scheduled run has no inputs: every expression falls back to a sandbox default.
    assert env["TARGET"] == "${{ inputs.target || 'sandbox' }}"
    assert env["RUNBOOK"] == "${{ inputs.runbook || 'alb_weighted' }}"
    assert "github.event_name == 'schedule'" in env["AUTO_PROMOTE"]


def test_permissions_are_minimal():
    assert workflow()["permissions"] == {}
    assert job()["permissions"] == {"contents": "read", "id-token": "write"}


def test_releases_of_one_runbook_on_one_target_never_overlap():
    concurrency = job()["concurrency"]
    assert "inputs.runbook" in concurrency["group"]
    assert "inputs.target" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_aws_credentials_only_for_target_aws():
    credentials = step("aws-actions/configure-aws-credentials@")
    assert credentials["if"] == "inputs.target == 'aws'"
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    assert "secrets.SMOKE_TOKEN" in step("tools/ci_release.sh")["env"]["BGKIT_SECRET_SMOKE_TOKEN"]


def test_release_step_runs_the_script_with_inputs_in_its_environment():
    release = step("tools/ci_release.sh")
    # exec: the script is the step's process, so a cancelled job's signals reach it.
    assert release["run"] == "exec tools/ci_release.sh"
    assert {"RUNBOOK", "TARGET", "REGION", "RELEASE", "AUTO_PROMOTE", "PARAMETERS"} <= set(
        release["env"]
    )
    assert os.access(SCRIPT, os.X_OK)


def test_no_expression_inside_any_run_script():
    scripts = [s["run"] for s in job()["steps"] if "run" in s]
    assert scripts
    for script in scripts:
        assert "${{" not in script, script


def test_record_and_page_are_uploaded_whatever_the_outcome():
    upload = step("actions/upload-artifact@")
    assert upload["if"] == "always()"
    assert set(upload["with"]["path"].split()) == {"outputs/**/*.ipynb", "outputs/**/*.html"}
    steps = job()["steps"]
    assert steps.index(upload) > steps.index(step("tools/ci_release.sh"))


def test_actions_are_pinned_to_a_major_version_or_a_sha():
    for uses in (s["uses"] for s in job()["steps"] if "uses" in s):
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|[0-9a-f]{40})", uses), uses


# -- tools/ci_release.sh with a stand-in bgkit ----------------------------------------------


def stand_in_env(tmp_path: Path, fake: str, fake_exit: int = 0, **env: str) -> dict[str, str]:
    """The environment of a script run in tmp_path with `fake` as its bgkit."""
    fake_path = tmp_path / "fake-bgkit"
    fake_path.write_text(fake)
    fake_path.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "BGKIT": str(fake_path), "FAKE_EXIT": str(fake_exit)}
    base["FAKE_ARGS"] = str(tmp_path / "args")
    return base | env


def run_script(
    tmp_path: Path,
    fake_exit: int = 0,
    script: Path = SCRIPT,
    fake: str = FAKE_BGKIT,
    timeout: float = 30,
    **env: str,
) -> subprocess.CompletedProcess:
    """`script` in tmp_path with `fake` as its bgkit (FAKE_BGKIT unless given)."""
    return subprocess.run(
        [script],
        cwd=tmp_path,
        env=stand_in_env(tmp_path, fake, fake_exit, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cancel_script(
    tmp_path: Path,
    script: Path = SCRIPT,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
    to_group: bool = False,
    **env: str,
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`script` with CANCELLED_BGKIT as its bgkit, cancelled once the stand-in has started as
    GitHub cancels a job: each of `signals`, 0.3 s apart, to the script's process only (with
    `to_group`, to its whole process group instead, as a terminal's Ctrl-C). Returns the
    script's result and the names of the signals the stand-in got."""
    started, caught = tmp_path / "started", tmp_path / "signals"
    env = stand_in_env(
        tmp_path, CANCELLED_BGKIT, FAKE_STARTED=str(started), FAKE_SIGNALS=str(caught), **env
    )
    process = subprocess.Popen(
        [script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a runner's step has
        # As the runner starts a step: SIGINT not ignored (which bash would pass on to the script).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 10
        while not started.exists():
            assert process.poll() is None and time.monotonic() < deadline, "no stand-in started"
            time.sleep(0.02)
        for signum in signals:
            (os.killpg if to_group else os.kill)(process.pid, signum)
            time.sleep(0.3)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    result = subprocess.CompletedProcess([script], process.returncode, stdout, stderr)
    return result, caught.read_text().split() if caught.exists() else []


def bgkit_args(tmp_path: Path) -> list[str]:
    return (tmp_path / "args").read_text().split("\0")[:-1]


def test_script_passes_each_parameter_as_arguments_without_expanding_them(tmp_path):
    result = run_script(
        tmp_path,
        RUNBOOK="ecs_native",
        TARGET="aws",
        REGION="eu-west-1",
        RELEASE="r-7",
        AUTO_PROMOTE="false",
        PARAMETERS="plan=canary  bake_seconds=60\n\tlisteners=* smoke_url=$(touch${IFS}pwned) x=a=b y=",
    )
    assert result.returncode == 0, result.stderr
    assert bgkit_args(tmp_path) == [
        "run", "ecs_native", "-p", "target", "aws", "-p", "region", "eu-west-1",
        "-p", "release", "r-7", "-p", "auto_promote", "false", "-p", "plan", "canary",
        "-p", "bake_seconds", "60", "-p", "listeners", "*", "-p", "smoke_url", "$(touch${IFS}pwned)",
        "-p", "x", "a=b", "-p", "y", "", "--html", "--quiet",
    ]  # fmt: skip
    assert not (tmp_path / "pwned").exists()


def test_script_defaults_to_the_sandbox_and_a_release_named_after_the_run(tmp_path):
    result = run_script(tmp_path, GITHUB_RUN_ID="123", GITHUB_RUN_ATTEMPT="2", HTML="0")
    assert result.returncode == 0, result.stderr
    assert bgkit_args(tmp_path) == [
        "run", "alb_weighted", "-p", "target", "sandbox", "-p", "release", "gh-123-2", "--quiet",
    ]  # fmt: skip


@pytest.mark.parametrize("code", [0, 3, 4])
def test_script_exits_with_bgkits_exit_code_and_summarizes(tmp_path, code):
    summary = tmp_path / "summary.md"
    result = run_script(tmp_path, fake_exit=code, GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == code
    assert "record: outputs/stand-in.ipynb" in result.stdout
    assert f"alb_weighted on sandbox: exit {code}" in summary.read_text()
    assert "    record: outputs/stand-in.ipynb" in summary.read_text()


def test_summary_has_the_last_line_of_output_however_late_it_comes(tmp_path):
    """The summary is written once the copy of bgkit's output has ended, not only bgkit: here a
    process it started prints the record's line after bgkit has exited."""
    late = '#!/usr/bin/env bash\n{ sleep 0.5; echo "record: outputs/late.ipynb"; } &\nexit 3\n'
    summary = tmp_path / "summary.md"
    result = run_script(tmp_path, fake=late, GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == 3
    assert "    record: outputs/late.ipynb" in summary.read_text()


def test_a_cancelled_jobs_signals_reach_bgkit_once_as_sigint(tmp_path):
    """GitHub cancels a job with SIGINT to the step's process, then SIGTERM: bgkit gets the SIGINT
    only (a second one would interrupt its rollback), the script waits for it to end and exits
    with its code, and the record's line is shown and summarized."""
    summary = tmp_path / "summary.md"
    result, caught = cancel_script(tmp_path, GITHUB_STEP_SUMMARY=str(summary))
    assert caught == ["INT"]
    assert result.returncode == 4, result.stderr
    assert "record: outputs/x.ipynb" in result.stdout
    assert "### alb_weighted on sandbox: exit 4" in summary.read_text()
    assert "    outcome: failed" in summary.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_first_sigterm_or_sighup_reaches_bgkit_as_sigint(tmp_path, signum):
    result, caught = cancel_script(tmp_path, signals=(signum, signal.SIGINT))
    assert caught == ["INT"]
    assert result.returncode == 4, result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_whole_group_reaches_bgkit_once_and_its_output_goes_on(tmp_path, signum):
    """A terminal's Ctrl-C or hang-up, `timeout` or `kill -- -PGID` signal the script's whole
    process group: bgkit, in a group of its own, gets SIGINT once (from the script), and the
    copy of its output, which ignores them, goes on to its last line."""
    result, caught = cancel_script(tmp_path, signals=(signum,), to_group=True)
    assert caught == ["INT"]
    assert result.returncode == 4, result.stderr
    assert "record: outputs/x.ipynb" in result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PARAMETERS": "plan=canary bake_seconds:60"}, "'bake_seconds:60' is not name=value"),
        ({"PARAMETERS": "=60"}, "'=60' is not name=value"),
        ({"PARAMETERS": "-p=x"}, "'-p=x' is not name=value"),
        ({"PARAMETERS": "target=aws"}, "target has an input of its own"),
        ({"PARAMETERS": "plan=canary plan=linear"}, "plan is given twice"),
        ({"TARGET": "prod"}, "TARGET 'prod'"),
        ({"RUNBOOK": "../x.ipynb"}, "RUNBOOK '../x.ipynb'"),
        ({"AUTO_PROMOTE": "yes"}, "AUTO_PROMOTE 'yes'"),
    ],
)
def test_script_refuses_bad_input_before_running_bgkit(tmp_path, env, named):
    result = run_script(tmp_path, **env)
    assert result.returncode == 2
    assert named in result.stderr
    assert not (tmp_path / "args").exists()  # bgkit never started


# -- one real release ---------------------------------------------------------------------


def test_script_releases_in_the_sandbox(tmp_path):
    """The script runs the real bgkit: a release in the sandbox, promoted, its record and HTML
    page written under the working directory's outputs/ (the folder the workflow uploads)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BGKIT_SECRET_"))}
    env |= {
        "BGKIT": str(BIN / "bgkit"),
        "RUNBOOK": "alb_weighted",
        "TARGET": "sandbox",
        "RELEASE": "ci-script-test",
        "AUTO_PROMOTE": "true",  # as the nightly run passes it
        "PARAMETERS": "plan=all_at_once\nsmoke_requests=3",
    }
    result = subprocess.run(
        [SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("record: ")]
    record_path = tmp_path / line.removeprefix("record: ")
    assert record_path.is_file()
    assert record_path.parent.parent == tmp_path / "outputs"
    assert record_path.name.startswith("alb_weighted-ci-script-test-")
    assert record_path.with_suffix(".html").is_file()
    record = load(record_path)
    assert record["outcome"] == "promoted"
    (gate,) = [e for e in record["events"] if e["kind"] == "gate"]
    assert (gate["mode"], gate["auto_promote"], gate["decision"]) == ("headless", True, "approve")
