"""`bgkit audit`: the index of records, their hash chain, and records kept in S3.

The chain tests build records the way `bgkit run` leaves them (a notebook whose metadata["bgkit"]
is the release record) and chain them with the same `audit.link` that `bgkit run` calls. The S3
tests run real releases with `bgkit run --output s3://…` against the test sandbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from bgkit import audit, cli

LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2"
STAGE = "apigateway:abc123/prod"
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


def record_notebook(
    runbook: str, release: str, target_id: str | None, outcome: str, started: datetime, **extra
) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## 6. Shift traffic"),
        nbformat.v4.new_code_cell("release.shift()"),
    ]
    nb.metadata["bgkit"] = {
        "runbook": runbook,
        "release": release,
        "target": "aws",
        "target_id": target_id,
        "outcome": outcome,
        "reason": extra.pop("reason", "every step passed"),
        "started_at": started.isoformat(),
        "duration_seconds": extra.pop("duration", 312.5),
        "operator": "arn:aws:sts::123456789012:assumed-role/release/alice",
        **extra,
    }
    return nb


def add(folder: Path, nb: nbformat.NotebookNode, name: str) -> str:
    """Write a record into the folder as `bgkit run` does, then chain it."""
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    audit.link(str(path), str(folder))
    return str(path)


@pytest.fixture
def chained(tmp_path: Path) -> dict[str, str]:
    """Three releases of one listener and one of a stage, chained in the order they ran."""
    paths = {}
    for n, (outcome, reason) in enumerate(
        [("promoted", "every step passed"), ("rolled_back", "green 5xx above blue's at step 2"),
         ("promoted", "every step passed")]
    ):  # fmt: skip
        nb = record_notebook(
            "alb_weighted", f"rel-{n + 1}", LISTENER, outcome, T0 + timedelta(days=n), reason=reason
        )
        paths[f"alb{n + 1}"] = add(tmp_path, nb, f"alb-{n + 1}")
    nb = record_notebook("apigw_canary", "rel-s", STAGE, "failed", T0 + timedelta(hours=5))
    paths["stage"] = add(tmp_path, nb, "stage-1")
    return paths


def chain_of(path: str) -> dict:
    return audit.read(path).metadata[audit.CHAIN_KEY]


def problems(folder: Path) -> list[str]:
    _, found = audit.verify(str(folder))
    return [str(p) for p in found]


def rewrite(path: str, change) -> None:
    nb = audit.read(path)
    change(nb)
    nbformat.write(nb, path)


def test_each_record_is_chained_to_the_one_before_it_for_the_same_target(chained, tmp_path):
    first, second, third = (chain_of(chained[k]) for k in ("alb1", "alb2", "alb3"))
    assert [first["sequence"], second["sequence"], third["sequence"]] == [1, 2, 3]
    assert first["previous"] is None
    assert second["previous"] == first["hash"] and third["previous"] == second["hash"]
    assert {first["target"], second["target"], third["target"]} == {LISTENER}
    stage = chain_of(chained["stage"])
    assert (stage["target"], stage["sequence"], stage["previous"]) == (STAGE, 1, None)
    assert audit.verify(str(tmp_path)) == (4, [])
    # the hash is of the content: recomputed from the file, it is the one stored
    assert audit.content_hash(audit.read(chained["alb2"])) == second["hash"]


def test_an_edited_record_is_reported(chained, tmp_path):
    def soften(nb):
        nb.metadata["bgkit"]["outcome"] = "promoted"
        nb.metadata["bgkit"]["reason"] = "every step passed"

    rewrite(chained["alb2"], soften)
    assert problems(tmp_path) == [
        f"{chained['alb2']}: edited: its content no longer matches its hash"
    ]


def test_an_edited_output_is_reported_too(chained, tmp_path):
    rewrite(chained["alb1"], lambda nb: nb.cells[1].outputs.append(
        nbformat.v4.new_output("stream", name="stdout", text="judged by hand\n")
    ))  # fmt: skip
    assert problems(tmp_path) == [
        f"{chained['alb1']}: edited: its content no longer matches its hash"
    ]


def test_a_removed_record_is_reported_by_the_one_after_it(chained, tmp_path):
    Path(chained["alb2"]).unlink()
    (found,) = problems(tmp_path)
    assert found.startswith(f"{chained['alb3']}: removed: record 2 of {LISTENER}")


def test_a_record_re_chained_out_of_order_is_reported(chained, tmp_path):
    """Someone who can recompute hashes puts release 3 before release 2: the hashes and links
    agree again, but the start times do not."""
    one, two, three = (audit.read(chained[k]) for k in ("alb1", "alb2", "alb3"))
    for nb, sequence, previous in ((three, 2, one), (two, 3, three)):
        nb.metadata[audit.CHAIN_KEY] = {
            "target": LISTENER, "sequence": sequence,
            "previous": previous.metadata[audit.CHAIN_KEY]["hash"],
        }  # fmt: skip
        nb.metadata[audit.CHAIN_KEY]["hash"] = audit.content_hash(nb)
    nbformat.write(three, chained["alb3"])
    nbformat.write(two, chained["alb2"])
    (found,) = problems(tmp_path)
    assert found.startswith(f"{chained['alb2']}: reordered: record 3 of {LISTENER} started before")


def test_a_copied_record_and_a_record_without_a_chain_are_reported(chained, tmp_path):
    copy = tmp_path / "copy.ipynb"
    copy.write_text(Path(chained["alb3"]).read_text())
    nbformat.write(
        record_notebook("alb_weighted", "x", LISTENER, "promoted", T0), tmp_path / "z.ipynb"
    )
    found = problems(tmp_path)
    assert len(found) == 2
    assert any(f"record 3 of {LISTENER} twice" in p for p in found)
    assert (
        f"{tmp_path / 'z.ipynb'}: no hash chain (not written by `bgkit run`, or stripped)" in found
    )


def test_audit_verify_exits_non_zero_and_names_the_record(chained, tmp_path, capsys):
    assert cli.main(["audit", "verify", str(tmp_path)]) == 0
    assert "4 records in" in capsys.readouterr().out
    rewrite(chained["stage"], lambda nb: nb.metadata["bgkit"].update(operator="someone else"))
    assert cli.main(["audit", "verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM {chained['stage']}: edited" in out and "1 problems" in out


def test_the_index_lists_runs_oldest_first_with_filters(chained, tmp_path):
    rows = audit.index(str(tmp_path))
    assert [r.release for r in rows] == ["rel-1", "rel-s", "rel-2", "rel-3"]
    second = rows[2]
    assert (second.runbook, second.outcome, second.target) == (
        "alb_weighted",
        "rolled_back",
        LISTENER,
    )
    assert second.reason == "green 5xx above blue's at step 2" and second.duration_seconds == 312.5
    assert [r.release for r in audit.index(str(tmp_path), runbook="apigw_canary")] == ["rel-s"]
    assert [r.release for r in audit.index(str(tmp_path), outcome="rolled_back")] == ["rel-2"]
    since = T0 + timedelta(days=1)
    assert [r.release for r in audit.index(str(tmp_path), since=since)] == ["rel-2", "rel-3"]


def test_the_index_in_each_format(chained, tmp_path, capsys):
    assert cli.main(["audit", str(tmp_path), "--format", "json", "--outcome", "promoted"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["release"], r["outcome"], r["path"]) for r in rows] == [
        ("rel-1", "promoted", chained["alb1"]), ("rel-3", "promoted", chained["alb3"])
    ]  # fmt: skip
    assert cli.main(["audit", str(tmp_path), "--format", "csv", "--runbook", "apigw_canary"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",") == list(audit.Row.__dataclass_fields__)
    assert lines[1].startswith(
        "2026-11-20T19:00:00+00:00,apigw_canary,rel-s,apigateway:abc123/prod,"
    )
    assert cli.main(["audit", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "started",
        "(UTC)",
        "kind",
        "runbook",
        "release",
        "outcome",
        "duration",
        "mode",
        "operator",
    ]
    assert table[1].split()[:7] == [
        "2026-11-20",
        "14:00:00",
        "release",
        "alb_weighted",
        "rel-1",
        "promoted",
        "312",
    ]
    assert "rel-2: target " + LISTENER + "; green 5xx above blue's at step 2" in table


def test_the_index_says_each_records_kind_and_filters_by_it(chained, tmp_path, capsys):
    nb = record_notebook("alb_weighted", "rel-4", LISTENER, "planned", T0 + timedelta(days=3))
    add(tmp_path, nb, "alb-4-plan")
    assert [(r.release, r.kind) for r in audit.index(str(tmp_path))] == [
        ("rel-1", "release"), ("rel-s", "release"), ("rel-2", "release"), ("rel-3", "release"),
        ("rel-4", "plan"),
    ]  # fmt: skip
    assert [r.release for r in audit.index(str(tmp_path), kind="plan")] == ["rel-4"]
    assert cli.main(["audit", str(tmp_path), "--format", "csv", "--kind", "plan"]) == 0
    (header, line) = capsys.readouterr().out.splitlines()
    assert dict(zip(header.split(","), line.split(","), strict=True))["kind"] == "plan"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "--since", "last tuesday"], "--since: expected an ISO date or time"),
        (["audit", "/no/such/folder"], "audit: no folder /no/such/folder"),
        (["audit", "--outcome", "won"], "invalid choice: 'won'"),
        (["audit", "--kind", "deploy"], "invalid choice: 'deploy'"),
        (["audit", "render"], "audit render: which record?"),
    ],
)
def test_bad_audit_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) if {"--outcome", "--kind"} & set(argv) else _no_exit():
        assert cli.main(argv) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_since_takes_ages_and_iso_times():
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert audit.since_time("12h", now) == now - timedelta(hours=12)
    assert audit.since_time("7d", now) == now - timedelta(days=7)
    assert audit.since_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert audit.since_time("2026-11-01T14:00+01:00").hour == 14


def test_audit_render_writes_the_reviewers_page_beside_the_record(chained, capsys):
    assert cli.main(["audit", "render", chained["alb2"]]) == 0
    page = Path(chained["alb2"]).with_suffix(".html")
    assert capsys.readouterr().out == f"html: {page}\n"
    html = page.read_text()
    assert "<title>alb_weighted release rel-2: rolled_back</title>" in html
    assert (
        "green 5xx above blue&#39;s at step 2" in html or "green 5xx above blue's at step 2" in html
    )


def test_a_file_that_is_not_a_record_is_reported_and_the_rest_still_count(chained, tmp_path):
    (tmp_path / "half-written.ipynb").write_text("")
    hidden = tmp_path / ".ipynb_checkpoints"
    hidden.mkdir()
    (hidden / "alb-1-checkpoint.ipynb").write_text(Path(chained["alb1"]).read_text())
    count, found = audit.verify(str(tmp_path))
    assert count == 5
    assert [str(p) for p in found] == [
        f"{tmp_path / 'half-written.ipynb'}: unreadable: NotJSONError: Notebook does not appear to be JSON: ''"
    ]
    assert [r.release for r in audit.index(str(tmp_path))] == ["rel-1", "rel-s", "rel-2", "rel-3"]
    nb = record_notebook("alb_weighted", "rel-4", LISTENER, "promoted", T0 + timedelta(days=3))
    assert chain_of(add(tmp_path, nb, "alb-4"))["sequence"] == 4  # the junk file is no record


def test_a_malformed_chain_is_reported_and_does_not_stop_the_next_record(chained, tmp_path):
    rewrite(chained["alb3"], lambda nb: nb.metadata[audit.CHAIN_KEY].update(sequence="3"))
    found = problems(tmp_path)
    assert f"{chained['alb3']}: no hash chain (not written by `bgkit run`, or stripped)" in found
    nb = record_notebook("alb_weighted", "rel-4", LISTENER, "promoted", T0 + timedelta(days=3))
    path = add(tmp_path, nb, "alb-4")  # chained after the newest well-formed record, the second
    assert (
        chain_of(path)["sequence"] == 3
        and chain_of(path)["previous"] == chain_of(chained["alb2"])["hash"]
    )
