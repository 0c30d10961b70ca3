from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bgkit import cli, patterns


def test_runbooks_lists_every_registered_pattern_with_its_parameters(capsys):
    assert cli.main(["runbooks"]) == 0
    out = capsys.readouterr().out
    for name in patterns.names():
        assert f"{name}: " in out
    assert (
        "bake_seconds (float, default 0.0): seconds at each step before judging: 0 for at least "
        "five metric periods (sandbox 5, aws 300), else 1, 5, 10, 20, 30" in out
    )


def test_every_registered_pattern_has_a_runbook():
    for name in patterns.names():
        assert cli.runbook_path(name).name == f"{name}.ipynb"


def test_unknown_parameter_is_a_usage_error_naming_it(capsys):
    assert cli.main(["run", "alb_weighted", "-p", "bake_secs", "5"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        "-p bake_secs: alb_weighted has no parameter 'bake_secs'" in err and "bake_seconds" in err
    )


def test_parameter_of_the_wrong_type_is_a_usage_error(capsys):
    assert cli.main(["run", "alb_weighted", "-p", "step_percent", "lots"]) == cli.EXIT_USAGE
    assert "-p step_percent: expected int, got 'lots'" in capsys.readouterr().err


def test_unknown_runbook_is_a_usage_error(capsys):
    assert cli.main(["run", "no_such_pattern"]) == cli.EXIT_USAGE
    assert "known runbooks: alb_weighted" in capsys.readouterr().err


def test_parameters_take_the_declared_types():
    path = cli.runbook_path("alb_weighted")
    values = cli.coerce_parameters(
        path, [("step_percent", "30"), ("bake_seconds", "5"), ("plan", "canary")]
    )
    assert values == {"step_percent": 30, "bake_seconds": 5.0, "plan": "canary"}


def test_output_paths_never_overwrite(tmp_path: Path):
    now = datetime(2026, 11, 27, 14, 0, 5, tzinfo=UTC)
    first = cli.output_path("alb_weighted", "rel-1", tmp_path, now)
    first.write_text("{}")
    second = cli.output_path("alb_weighted", "rel-1", tmp_path, now)
    assert first == tmp_path / "2026-11-27" / "alb_weighted-rel-1-140005.ipynb"
    assert second != first and not second.exists()


# A promoted run's exit code and record path: tests/test_plan.py's release from its plan.
@pytest.mark.parametrize(
    ("error_rate", "code", "outcome"), [(0.3, cli.EXIT_ROLLED_BACK, "rolled_back")]
)
def test_run_exits_by_outcome_and_prints_the_record_path(
    shared_sandbox, tmp_path, monkeypatch, capsys, error_rate, code, outcome
):
    monkeypatch.chdir(tmp_path)
    argv = [
        "run",
        "alb_weighted",
        "-p",
        "bake_seconds",
        "5",
        "-p",
        "plan",
        "canary",
        "-p",
        "canary_percent",
        "50",
        "-p",
        "green_error_rate",
        str(error_rate),
        "-p",
        "slow_margin_ms",
        "25",  # conftest.STEADY: this test is about exit codes, not latency noise
        "--quiet",
    ]
    assert cli.main(argv) == code
    out = capsys.readouterr().out
    assert f"outcome: {outcome}" in out
    record_path = Path(out.split("record: ", 1)[1].splitlines()[0])
    assert record_path.is_file() and record_path.parts[0] == "outputs"
    from bgkit.record import load

    assert load(record_path)["outcome"] == outcome


def test_run_exits_failed_when_the_runbook_raises(shared_sandbox, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        cli.main(["run", "alb_weighted", "-p", "bake_seconds", "7", "--quiet"]) == cli.EXIT_FAILED
    )
    out = capsys.readouterr().out
    assert "outcome: failed" in out and "error: ParameterError: bake_seconds:" in out


def test_output_that_exists_is_refused(tmp_path, capsys):
    existing = tmp_path / "record.ipynb"
    existing.write_text("{}")
    assert cli.main(["run", "alb_weighted", "--output", str(existing)]) == cli.EXIT_USAGE
    assert "a record is never overwritten" in capsys.readouterr().err
    assert existing.read_text() == "{}"


def test_every_parameter_line_parses_with_its_help():
    """papermill --help-notebook (and bgkit runbooks) read each parameters-cell line; one that does
    not parse (an '=' or a quote in its help, say) silently vanishes from the documentation."""
    import nbformat

    for name in patterns.names():
        path = cli.runbook_path(name)
        nb = nbformat.read(str(path), as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        lines = [line for line in cell.source.splitlines() if line.strip()]
        declared = cli.notebook_parameters(path)
        assert len(declared) == len(lines), name
        assert all(spec["help"] for spec in declared.values()), name
        assert nb.cells.index(cell) == 1  # first code cell, after the purpose markdown


def test_a_release_id_that_would_name_a_file_elsewhere_is_refused_before_anything_runs(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", "alb_weighted", "-p", "release", "../../escaped"])
    assert code == cli.EXIT_USAGE
    assert "-p release: must be 1-64 characters" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.ipynb")) and not (tmp_path.parent / "escaped").exists()
