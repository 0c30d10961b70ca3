"""A wave release's summary record (bgkit.waves.summary), and `bgkit audit` of it.

The target records here are synthetic but built as `bgkit run` leaves them: the release's own
`bgkit.record.Record(...).to_dict()` in a notebook's metadata["bgkit"], written where `bgkit run`
puts a record (cli.record_location) and chained with the same `audit.link`. One test, the last,
runs a real target release (`bgkit run` with the manifest's arguments for the target, in an
embedded sandbox: about a minute, mostly the sandbox starting) and summarises its real record.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from bgkit import audit, cli
from bgkit.record import Record
from bgkit.waves import manifest as waves_manifest
from bgkit.waves import summary
from bgkit.waves.summary import COLOURS, TargetResult

BGKIT = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "bgkit"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OPERATOR = "arn:aws:sts::123456789012:assumed-role/release/alice"
LISTENER = "arn:aws:elasticloadbalancing:{}:123456789012:listener/app/web/1/2"
ROLLED_BACK = "green 5xx above blue's at step 2"


@pytest.fixture(scope="module")
def manifest() -> waves_manifest.Manifest:
    return waves_manifest.parse(
        {
            "name": "checkout-api",
            "release": "rel-2026-12-07-a",
            "runbook": "alb_weighted",
            "bake_between_waves_seconds": 600,
            "parameters": {"plan": "all_at_once"},
            "targets": [
                {"name": n, "region": n}
                for n in ("us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2")
            ],
            "waves": [["us-east-1"], ["eu-west-1", "eu-central-1"], ["ap-southeast-2"]],
        },
        "waves/checkout-api.yaml",
    )


def result(manifest, name: str, outcome: str, start: float, finish: float, reason: str = ""):
    """A target's result as the runner measured it: seconds after T0."""
    target = manifest.target(name)
    return TargetResult(
        name, target.wave, target.runbook, target.region, manifest.release_of(target), outcome,
        reason or "every step passed", T0 + timedelta(seconds=start),
        T0 + timedelta(seconds=finish), exit_code={"promoted": 0, "rolled_back": 3}.get(outcome, 4),
    )  # fmt: skip


def rolled_back_in_wave_2(manifest) -> dict:
    """Wave 1 promoted; wave 2: eu-west-1 rolled back, eu-central-1 promoted; then it stopped."""
    results = [
        result(manifest, "us-east-1", "promoted", 0, 300),
        result(manifest, "eu-west-1", "rolled_back", 900, 1100, ROLLED_BACK),
        result(manifest, "eu-central-1", "promoted", 905, 1300),
    ]  # ap-southeast-2: no result, not started
    return summary.summary_record(
        manifest, results, started_at=T0, finished_at=T0 + timedelta(seconds=1310),
        started_by=OPERATOR, bakes=[{"after_wave": 1, "started_at": T0 + timedelta(seconds=300),
                                     "finished_at": T0 + timedelta(seconds=900)}],
    )  # fmt: skip


def target_record(folder: Path, manifest, name: str, outcome: str, start: float, **extra) -> str:
    """A target's record where `bgkit run --output FOLDER` puts it, chained as it chains it."""
    target = manifest.target(name)
    record = Record(
        runbook=target.runbook,
        release=extra.pop("release", manifest.release_of(target)),
        target="sandbox",
        parameters={**target.parameters, "region": target.region},
        plan="all_at_once",
        started_at=T0 + timedelta(seconds=start),
        operator=OPERATOR,
        target_id=LISTENER.format(target.region),
        outcome=outcome,
        reason=extra.pop("reason", "every step passed"),
        finished_at=T0 + timedelta(seconds=start + 120),
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## 6. Shift traffic"),
                nbformat.v4.new_code_cell("release.shift()")]  # fmt: skip
    nb.metadata["bgkit"] = record.to_dict()
    path, root = cli.record_location(f"{folder}/", target.runbook, record.release)
    nbformat.write(nb, path)
    audit.link(path, root)
    return path


def pixels(png_base64: str):
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(base64.b64decode(png_base64)), format="png")
    return {tuple(round(255 * c) for c in px[:3]) for px in image.reshape(-1, image.shape[-1])}


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


# -- outcome, reason, stopped_by ---------------------------------------------------------------


def test_every_target_promoted_is_a_promoted_wave_release(manifest):
    results = [
        result(manifest, "us-east-1", "promoted", 0, 300),
        result(manifest, "eu-west-1", "promoted", 900, 1100),
        result(manifest, "eu-central-1", "promoted", 905, 1200),
        result(manifest, "ap-southeast-2", "promoted", 1800, 2000),
    ]
    record = summary.summary_record(
        manifest, results, started_at=T0, finished_at=T0 + timedelta(seconds=2001),
        started_by=OPERATOR,
    )  # fmt: skip
    assert record["outcome"] == "promoted"
    assert record["reason"] == "every target promoted: 4 in 3 waves"
    assert record["stopped_by"] is None
    assert [w["outcome"] for w in record["waves"]] == ["promoted"] * 3
    assert record["waves"][1] == {
        "wave": 2, "targets": ["eu-west-1", "eu-central-1"],
        "started_at": "2026-12-07T12:15:00+00:00", "finished_at": "2026-12-07T12:20:00+00:00",
        "outcome": "promoted",
    }  # fmt: skip
    # the fields the audit index reads, as a release record has them
    assert {k: record[k] for k in ("runbook", "release", "target", "target_id", "operator",
                                   "mode", "kind", "duration_seconds")} == {
        "runbook": "waves", "release": "rel-2026-12-07-a", "target": "waves",
        "target_id": "waves:checkout-api", "operator": OPERATOR, "mode": "headless",
        "kind": "waves", "duration_seconds": 2001.0,
    }  # fmt: skip
    assert record["targets"][0]["started_at"] == T0.isoformat()
    assert record["targets"][0]["duration_seconds"] == 300.0


def test_a_rollback_in_wave_2_stops_the_waves_and_wave_3_is_not_started(manifest):
    record = rolled_back_in_wave_2(manifest)
    assert record["outcome"] == "rolled_back"
    assert record["reason"] == (
        f"wave 2: target eu-west-1 rolled back ({ROLLED_BACK}); wave 3 (ap-southeast-2) not "
        "started; promoted and left promoted: us-east-1, eu-central-1"
    )
    assert record["stopped_by"] == {
        "name": "eu-west-1", "wave": 2, "outcome": "rolled_back", "reason": ROLLED_BACK
    }  # fmt: skip
    assert [w["outcome"] for w in record["waves"]] == ["promoted", "rolled_back", "not started"]
    last = record["targets"][-1]
    assert (last["name"], last["outcome"], last["started_at"], last["finished_at"]) == (
        "ap-southeast-2", "not started", None, None
    )  # fmt: skip
    assert record["bakes"] == [{"after_wave": 1, "started_at": "2026-12-07T12:05:00+00:00",
                                "finished_at": "2026-12-07T12:15:00+00:00"}]  # fmt: skip


def test_the_first_target_to_end_badly_decides_a_failure(manifest):
    """In wave 2, eu-central-1 failed before eu-west-1 was rolled back: the waves failed."""
    results = [
        result(manifest, "us-east-1", "promoted", 0, 300),
        result(manifest, "eu-west-1", "rolled_back", 900, 1100, ROLLED_BACK),
        result(manifest, "eu-central-1", "failed", 905, 1000, "PreflightError: no listener"),
    ]
    record = summary.summary_record(
        manifest, results, started_at=T0, finished_at=T0 + timedelta(seconds=1101),
        started_by=OPERATOR, stopped_by="interrupted by the operator (SIGINT)",
    )  # fmt: skip
    assert record["outcome"] == "failed"
    assert record["stopped_by"]["name"] == "eu-central-1"
    assert record["reason"] == (
        "stopped: interrupted by the operator (SIGINT); wave 2: target eu-central-1 failed "
        f"(PreflightError: no listener); wave 2: target eu-west-1 rolled back ({ROLLED_BACK}); "
        "wave 3 (ap-southeast-2) not started; promoted and left promoted: us-east-1"
    )
    assert record["runner_stopped"] == "interrupted by the operator (SIGINT)"
    with pytest.raises(ValueError, match="not in waves/checkout-api.yaml: nowhere"):
        summary.summary_record(manifest, [replace(results[0], name="nowhere")], started_at=T0,
                               finished_at=T0, started_by=OPERATOR)  # fmt: skip


# -- results from the records CI downloaded --------------------------------------------------


def test_results_from_records_take_each_targets_newest_release_and_skip_plans(manifest, tmp_path):
    old = target_record(tmp_path, manifest, "us-east-1", "rolled_back", 0, reason=ROLLED_BACK)
    new = target_record(tmp_path, manifest, "us-east-1", "promoted", 3600)
    plan = target_record(tmp_path, manifest, "eu-west-1", "planned", 7200)
    west = target_record(tmp_path, manifest, "eu-west-1", "rolled_back", 900, reason=ROLLED_BACK)
    central = target_record(tmp_path, manifest, "eu-central-1", "failed", 905, reason="boom")
    target_record(tmp_path, manifest, "ap-southeast-2", "promoted", 99, release="rel-other.x")
    results = summary.results_from_records(manifest, str(tmp_path))
    assert [(r.name, r.outcome, r.record) for r in results] == [
        ("us-east-1", "promoted", new),
        ("eu-west-1", "rolled_back", west),
        ("eu-central-1", "failed", central),
        ("ap-southeast-2", "not started", ""),
    ]
    assert old not in {r.record for r in results} and plan not in {r.record for r in results}
    first = results[0]
    assert first.record_hash == audit.read(new).metadata[audit.CHAIN_KEY]["hash"]
    assert (first.started_at, first.finished_at, first.duration_seconds) == (
        T0 + timedelta(seconds=3600), T0 + timedelta(seconds=3720), 120.0
    )  # fmt: skip
    assert (first.release, first.region, first.exit_code) == (
        "rel-2026-12-07-a.us-east-1", "us-east-1", None
    )  # fmt: skip
    assert results[3].reason == (
        f"no record was found for release rel-2026-12-07-a.ap-southeast-2 under {tmp_path}"
    )


def test_a_run_that_stopped_before_its_record_failed_with_its_error(manifest, tmp_path):
    """No metadata["bgkit"] (papermill's failing cell): failed, the error as its reason, its
    times the runner's measure of the process, else papermill's of the notebook."""
    target = manifest.target("eu-west-1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("release = bgkit.Release(...)", outputs=[
        nbformat.v4.new_output("error", ename="ParameterError", evalue="step_percent: 500",
                               traceback=[])])]  # fmt: skip
    nb.metadata["papermill"] = {
        "parameters": {"release": manifest.release_of(target)},
        "input_path": "runbooks/alb_weighted.ipynb",
        "start_time": "2026-12-07T12:15:00.5", "end_time": "2026-12-07T12:15:09.5",
    }  # fmt: skip
    path = str(tmp_path / "stopped.ipynb")
    found = summary.result_of_record(target, manifest, path, nb, exit_code=4)
    assert (found.outcome, found.exit_code, found.duration_seconds) == ("failed", 4, 9.0)
    assert found.reason == (
        "no release record: the run stopped before recording its outcome "
        "(ParameterError: step_percent: 500)"
    )
    assert found.started_at == T0 + timedelta(seconds=900.5)
    process = summary.result_of_record(
        target, manifest, path, nb, started_at=T0, finished_at=T0 + timedelta(seconds=12)
    )
    assert process.duration_seconds == 12.0
    with pytest.raises(ValueError, match="a record of release rel-2026-12-07-a.eu-west-1, not"):
        summary.result_of_record(manifest.target("us-east-1"), manifest, path, nb)


# -- the notebook ----------------------------------------------------------------------------


def test_the_notebook_shows_the_targets_wave_by_wave(manifest):
    record = rolled_back_in_wave_2(manifest)
    nb = summary.notebook(record)
    heading, code = nb.cells
    assert heading.source.startswith(
        "# Wave release rel-2026-12-07-a of checkout-api: ↩ rolled back\n"
    )
    assert f"| Started by | `{OPERATOR}` |" in heading.source
    assert "| Manifest | `waves/checkout-api.yaml` |" in heading.source
    assert "show(record, at=None, root=None)" in code.source
    table = code.outputs[0].data["text/markdown"]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[:6] for row in rows] == [
        ["| 1", "us-east-1", "us-east-1", "alb_weighted", "✓ promoted", "300.0 s"],
        ["| 2", "eu-west-1", "eu-west-1", "alb_weighted", "↩ rolled back", "200.0 s"],
        ["| 2", "eu-central-1", "eu-central-1", "alb_weighted", "✓ promoted", "395.0 s"],
        ["| 3", "ap-southeast-2", "ap-southeast-2", "alb_weighted", "not started", ""],
    ]
    assert ROLLED_BACK in rows[1] and "every step passed" not in rows[0]
    assert nb.metadata["bgkit"] == json.loads(json.dumps(record))
    assert code.outputs[-1].data["application/vnd.bgkit.record+json"]["outcome"] == "rolled_back"
    nbformat.validate(nb)


def test_the_timeline_has_a_bar_per_measured_target_coloured_by_outcome(manifest):
    record = rolled_back_in_wave_2(manifest)
    image = summary.outputs(record)[2]["image/png"]
    seen = pixels(image)
    assert rgb(COLOURS["promoted"]) in seen and rgb(COLOURS["rolled_back"]) in seen
    assert rgb(COLOURS["failed"]) not in seen  # nothing failed
    # three bars: the target not started is listed, with no bar, and said not started
    figure = summary.timeline_figure(record)
    (axes,) = figure.axes
    assert len(axes.containers) == 3  # one barh each
    assert [t.get_text() for t in axes.get_yticklabels()][-1] == "wave 3 · ap-southeast-2"
    assert "not started" in [t.get_text() for t in axes.texts]
    # nothing measured at all: no bar, no time axis
    nothing = summary.summary_record(manifest, [], started_at=None, finished_at=None,
                                     started_by=OPERATOR)  # fmt: skip
    assert nothing["duration_seconds"] is None and nothing["outcome"] == "failed"
    (axes,) = summary.timeline_figure(nothing).axes
    assert not axes.containers
    seen = pixels(summary.outputs(nothing)[2]["image/png"])
    assert not {rgb(c) for c in COLOURS.values()} & seen


def test_show_in_a_kernel_displays_the_notebooks_outputs(manifest, tmp_path):
    """The code cell's source is honest: run in a kernel, it displays what it was built with."""
    from nbclient import NotebookClient

    nb = summary.notebook(rolled_back_in_wave_2(manifest))
    built = [dict(out.data) for out in nb.cells[1].outputs]
    nb.cells.insert(1, nbformat.v4.new_code_cell(
        f"import json\nrecord = json.loads({json.dumps(json.dumps(nb.metadata['bgkit']))})"
    ))  # fmt: skip
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(
        tmp_path)}}).execute()  # fmt: skip
    shown = [dict(out.data) for out in nb.cells[2].outputs if out.output_type == "display_data"]
    assert [sorted(o) for o in shown] == [sorted(o) for o in built]
    for made, ran in zip(built, shown, strict=True):
        for mime in made:
            if mime != "image/png":
                assert ran[mime] == made[mime], mime
    assert pixels(shown[2]["image/png"]) == pixels(built[2]["image/png"])


# -- written, chained, listed, verified, and its page ----------------------------------------


def test_write_chains_the_summary_where_bgkit_run_puts_records(manifest, tmp_path, capsys):
    west = target_record(tmp_path, manifest, "eu-west-1", "rolled_back", 900, reason=ROLLED_BACK)
    target_record(tmp_path, manifest, "us-east-1", "promoted", 0)
    target_record(tmp_path, manifest, "eu-central-1", "promoted", 905)
    results = summary.results_from_records(manifest, str(tmp_path))
    record = summary.summary_record(manifest, results, started_at=None, finished_at=None,
                                    started_by=OPERATOR)  # fmt: skip
    assert (record["started_at"], record["finished_at"]) == (
        T0.isoformat(), (T0 + timedelta(seconds=1025)).isoformat()
    )  # fmt: skip
    path, chain = summary.write(manifest, record, str(tmp_path))
    assert re.fullmatch(
        rf"{tmp_path}/\d{{4}}-\d\d-\d\d/waves-checkout-api-rel-2026-12-07-a-\d{{6}}\.ipynb", path
    )
    assert (chain["target"], chain["sequence"], chain["previous"]) == (
        "waves:checkout-api",
        1,
        None,
    )
    assert audit.read(path).metadata[audit.CHAIN_KEY] == chain
    # the record's link: relative to the summary, in the same tree
    table = audit.read(path).cells[1].outputs[0].data["text/markdown"]
    (link,) = re.findall(r"\[[^]]+\]\(([^)]+)\)", table.split("eu-west-1 |", 1)[1].splitlines()[0])
    assert not link.startswith("/") and (Path(path).parent / link).resolve() == Path(west)
    west_hash = audit.read(west).metadata[audit.CHAIN_KEY]["hash"]
    assert f"`{west_hash[:16]}`" in table

    again = {**record, "started_at": (T0 + timedelta(days=1)).isoformat()}  # a second try
    second, chain2 = summary.write(manifest, again, str(tmp_path))
    assert second != path and (chain2["sequence"], chain2["previous"]) == (2, chain["hash"])
    assert cli.main(["audit", "verify", str(tmp_path)]) == 0
    assert "5 records in" in capsys.readouterr().out
    assert cli.main(["audit", str(tmp_path), "--format", "json", "--kind", "waves"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["runbook"], r["release"], r["target"], r["outcome"], r["path"])
            for r in rows] == [
        ("waves", "waves", "rel-2026-12-07-a", "waves:checkout-api", "rolled_back", p)
        for p in (path, second)
    ]  # fmt: skip
    assert cli.main(["audit", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["started", "(UTC)", "kind", "runbook"]
    kinds = [line.split()[2] for line in table[1:6]]
    assert sorted(kinds) == ["release"] * 3 + ["waves"] * 2


def test_the_reviewers_page_is_titled_and_shows_the_table_first(manifest, tmp_path):
    path, _ = summary.write(manifest, rolled_back_in_wave_2(manifest), str(tmp_path))
    page = Path(path).with_suffix(".html").read_text(encoding="utf-8")
    assert "<title>waves: checkout-api release rel-2026-12-07-a: rolled_back</title>" in page
    front = page.split("The summary notebook", 1)[0]
    assert front.index("Targets, wave by wave") < front.index('src="data:image/png;base64,')
    assert re.search(r"<td[^>]*>eu-west-1</td>", front)
    assert 'class="bgkit-banner bgkit-rolled_back"' in front
    assert "application/vnd.bgkit.record+json" not in page


def test_no_secret_reaches_the_summary(manifest, tmp_path, monkeypatch):
    """A secret in the shared parameters (read as a value: a manifest refuses one) is redacted
    by name; a secret of this process's environment is scrubbed wherever it appears."""
    token = "s3cr3t-smoke-token-0f9a"
    monkeypatch.setenv("BGKIT_SECRET_SMOKE_TOKEN", token)
    leaky = replace(manifest, parameters={**manifest.parameters, "smoke_token": token})
    results = [result(manifest, "us-east-1", "failed", 0, 10, f"smoke: 401 with {token}")]
    record = summary.summary_record(leaky, results, started_at=T0, finished_at=T0,
                                    started_by=OPERATOR)  # fmt: skip
    assert record["parameters"]["smoke_token"] != token
    path, _ = summary.write(leaky, record, str(tmp_path))
    for written in (Path(path), Path(path).with_suffix(".html")):
        assert token not in written.read_text(encoding="utf-8"), written
    assert cli.main(["audit", "verify", str(tmp_path)]) == 0


def test_written_and_found_under_an_s3_prefix(manifest, sandbox, tmp_path):
    from papermill.s3 import S3

    from bgkit.sandbox import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY

    sandbox.session().client("s3").create_bucket(Bucket="bgkit-waves")
    prefix = "s3://bgkit-waves/records/"
    audit.use_s3_endpoint(sandbox.endpoint_url, "us-east-1", SANDBOX_ACCESS_KEY_ID,
                          SANDBOX_SECRET_ACCESS_KEY)  # fmt: skip
    try:
        local = target_record(tmp_path, manifest, "us-east-1", "promoted", 0)
        url = prefix + "targets/" + Path(local).name
        audit.write(audit.read(local), url)
        audit.link(url, prefix)
        results = summary.results_from_records(manifest, prefix)
        assert (results[0].name, results[0].outcome, results[0].record) == (
            "us-east-1", "promoted", url
        )  # fmt: skip
        record = summary.summary_record(manifest, results, started_at=T0,
                                        finished_at=T0 + timedelta(seconds=200),
                                        started_by=OPERATOR)  # fmt: skip
        path, chain = summary.write(manifest, record, prefix)
        assert path.startswith(prefix + "20") and chain["target"] == "waves:checkout-api"
        table = audit.read(path).cells[1].outputs[0].data["text/markdown"]
        assert f"](../targets/{Path(local).name})" in table  # under the same prefix: relative
        page = "".join(S3().read(path.removesuffix(".ipynb") + ".html"))
        assert "<title>waves: checkout-api release rel-2026-12-07-a: failed</title>" in page
        assert audit.verify(prefix) == (2, [])
    finally:
        S3.s3_session = (None, None, None)  # papermill's S3 session pointed at the sandbox


# -- a real target release -------------------------------------------------------------------


def test_a_real_target_release_is_summarised_from_its_record(manifest, tmp_path, capsys):
    """`bgkit run` with the manifest's arguments for one target (as the runner and CI run it),
    then the summary of that folder: the real record's outcome, times and chain hash."""
    target = manifest.target("us-east-1")
    command = [str(BGKIT), *manifest.run_arguments(target, output=f"{tmp_path}/")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    path = done.stdout.split("record: ", 1)[1].splitlines()[0]
    results = summary.results_from_records(manifest, str(tmp_path))
    first = results[0]
    real = audit.read(path)
    assert (first.outcome, first.record, first.reason) == (
        "promoted", path, real.metadata["bgkit"]["reason"]
    )  # fmt: skip
    assert first.started_at == datetime.fromisoformat(real.metadata["bgkit"]["started_at"])
    assert first.duration_seconds == real.metadata["bgkit"]["duration_seconds"]
    assert first.record_hash == real.metadata[audit.CHAIN_KEY]["hash"]
    assert [r.outcome for r in results[1:]] == ["not started"] * 3
    record = summary.summary_record(manifest, results, started_at=None, finished_at=None,
                                    started_by=OPERATOR)  # fmt: skip
    assert record["outcome"] == "failed"  # the other targets never ran
    summary.write(manifest, record, str(tmp_path))
    assert cli.main(["audit", "verify", str(tmp_path)]) == 0
    assert "2 records in" in capsys.readouterr().out
