"""The schema step in a release: green's migrations checked against blue's real statements
(the sandbox's colours use a real PostgreSQL) after preflight and before any traffic moves."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from conftest import STEADY, run_runbook
from test_release import healthy, make_release

from bgkit.errors import SchemaError
from bgkit.postgres import LocalPostgres
from bgkit.sandbox.database import SHOP

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "migrations"
FAST = {"bake_seconds": 5, "plan": "50", **STEADY}


def test_a_migration_that_renames_a_column_blue_reads_is_refused_before_any_traffic_moves(
    shared_sandbox, tmp_path
):
    mark = shared_sandbox.calls.mark()
    run = run_runbook(tmp_path, "alb_weighted", migrations=str(EXAMPLES / "rename_column"), **FAST)
    record = run.record
    assert record["outcome"] == "rolled_back"
    assert "refused before any traffic moved" in record["reason"]
    # the column, blue's own statement, and PostgreSQL's error
    assert (
        "SELECT id, qty, total, status, note FROM orders WHERE customer_id = $1" in record["reason"]
    )
    assert 'column "note" does not exist' in record["reason"]
    assert "[renaming-column]" in record["reason"]
    assert not [e for e in record["events"] if e["kind"] in ("shift", "deploy", "smoke")]
    calls = shared_sandbox.calls.calls(since=mark, runbook="alb_weighted")
    assert not [c for c in calls if c.action == "ModifyListener"]
    assert record["final_split"] == {"blue": 100, "green": 0}
    schema = record["schema"]
    assert schema["compatible"] is False and schema["applied"] is False
    assert {s["result"] for s in schema["statements"]} >= {"breaks"}
    assert schema["migrations"][0]["name"] == "0001_rename_note.sql"
    assert len(schema["migrations"][0]["sha256"]) == 64
    text = run.outputs_text()
    assert "### Schema: green's migrations against blue (enforce): **would break blue**" in text
    assert "postgresql://" not in text  # the database's URL (its password) is never written
    from bgkit.html import render_html

    page = render_html(run.nb)  # the reviewer's page shows the schema section and its table
    assert "Schema: green&#x27;s migrations against blue" in page or "Schema: green's" in page
    assert (
        "column &quot;note&quot; does not exist" in page or 'column "note" does not exist' in page
    )


def test_a_compatible_migration_is_applied_and_the_release_promoted(shared_sandbox, tmp_path):
    run = run_runbook(
        tmp_path,
        "alb_weighted",
        migrations=str(EXAMPLES / "add_column_and_table"),
        apply_migrations=True,
        **{**FAST, "plan": "all_at_once"},  # the schema step is the point here, not the bakes
    )
    record = run.record
    assert record["outcome"] == "promoted", record["reason"]
    schema = record["schema"]
    assert schema["compatible"] and schema["applied"]["files"] == ["0001_gift_wrap_and_coupons.sql"]
    ran = {s["sql"]: s["result"] for s in schema["statements"]}
    # blue's statements, as its requests ran them through pg_stat_statements
    assert ran["SELECT id, qty, total, status, note FROM orders WHERE customer_id = $1"] == "runs"
    kinds = [e["kind"] for e in record["events"]]
    assert kinds.index("schema") < kinds.index("promote")
    # the database both colours use has the new column and table now
    database = schema["blue"].rsplit("/", 1)[1]
    server = shared_sandbox.databases._server
    with psycopg.connect(server.conninfo(database)) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
        )]  # fmt: skip
        assert "gift_wrap" in columns
        assert conn.execute("SELECT to_regclass('coupons')").fetchone()[0] == "coupons"


@pytest.fixture(scope="module")
def shop_server():
    with LocalPostgres(tcp=True, statements=True) as pg:
        for database in ("shop", "quiet"):
            pg.create_database(database)
            pg.psql(database, input=SHOP.read_text())
        pg.psql("quiet", input="SELECT pg_stat_statements_reset();")  # blue never ran here
        with psycopg.connect(pg.url("shop"), autocommit=True) as conn:
            conn.execute(
                "SELECT id, qty, total, status, note FROM orders WHERE customer_id = %s", (1,)
            )
        yield pg


@pytest.fixture
def shop_url(shop_server):
    return shop_server.url("shop")


def test_a_database_without_blue_statements_is_a_warning_in_the_record(monkeypatch, shop_server):
    monkeypatch.setenv("BGKIT_SECRET_DATABASE_URL", shop_server.url("quiet"))
    release, _, _ = make_release(healthy, migrations=str(EXAMPLES / "add_column_and_table"))
    release.preflight()
    release.check_schema()
    assert release.state == "ready" and release.record.schema["statements"] == []
    assert any(
        "the database held none of blue's statements" in e["message"] for e in release.record.events
    )


def test_no_migrations_records_no_schema_change_and_deploy_runs_the_step(monkeypatch):
    release, _, _ = make_release(healthy)
    release.preflight()
    release.deploy()  # the runbook skipped the schema cell: deploy runs it first
    assert release.record.schema == {"result": "no schema change (no migrations)"}
    assert release.check_schema() == release.state  # once only: a note, nothing else
    kinds = [e["kind"] for e in release.record.events]
    assert kinds[kinds.index("preflight") + 1] == "schema" and kinds.count("schema") == 1


def test_enforce_ends_the_release_and_warn_goes_on(monkeypatch, shop_url):
    monkeypatch.setenv("BGKIT_SECRET_DATABASE_URL", shop_url)
    rename = str(EXAMPLES / "rename_column")
    release, pattern, _ = make_release(healthy, migrations=rename)
    release.preflight()
    release.check_schema()
    assert release.state == "rolled_back" and pattern.writes == []
    assert release.deploy() == "rolled_back"

    release, pattern, _ = make_release(healthy, migrations=rename, schema_check="warn")
    release.preflight()
    release.check_schema()
    assert release.state == "ready"
    assert any("schema_check is warn, so the release goes on" in e["message"]
               for e in release.record.events)  # fmt: skip
    assert release.record.schema["compatible"] is False


def test_an_unreachable_database_is_refused_at_preflight_without_its_password(monkeypatch):
    monkeypatch.setenv("BGKIT_SECRET_DATABASE_URL", "postgresql://app:s3cret-pw-42@127.0.0.1:1/x")
    release, pattern, _ = make_release(healthy, migrations=str(EXAMPLES / "add_column_and_table"))
    with pytest.raises(SchemaError, match="database_url: cannot connect") as refused:
        release.preflight()
    assert "s3cret-pw-42" not in str(refused.value)
    assert release.state == "failed" and pattern.writes == []
    assert "s3cret-pw-42" not in str(release.record.to_dict())


def test_a_rollback_after_the_migrations_were_applied_says_they_stay(monkeypatch, shop_url):
    from test_release import bad_green, run

    monkeypatch.setenv("BGKIT_SECRET_DATABASE_URL", shop_url)
    release, pattern, _ = make_release(
        bad_green, migrations=str(EXAMPLES / "add_column_and_table"), apply_migrations=True
    )
    record = run(release)
    assert record["outcome"] == "rolled_back" and pattern.writes[-1] == 0
    assert record["schema"]["applied"]["one_transaction"] is True
    (rollback,) = [e for e in record["events"] if e["kind"] == "rollback"]
    assert (
        "green's migrations stay applied: an expand change that blue works with"
        in rollback["message"]
    )
    with psycopg.connect(shop_url) as conn:  # and they did stay
        assert conn.execute("SELECT to_regclass('coupons')").fetchone()[0] == "coupons"


def test_migrations_are_read_from_s3(shared_sandbox, tmp_path):
    from bgkit.schema import check

    session = shared_sandbox.session()
    s3 = session.client("s3")
    s3.create_bucket(Bucket="bgkit-migrations-test")
    for path in sorted((EXAMPLES / "rename_column").glob("*.sql")):
        s3.put_object(
            Bucket="bgkit-migrations-test", Key=f"rel-1/{path.name}", Body=path.read_bytes()
        )
    s3.put_object(Bucket="bgkit-migrations-test", Key="rel-1/README.txt", Body=b"not sql")
    statements = tmp_path / "statements.sql"
    statements.write_text("SELECT id, qty, total, status, note FROM orders WHERE customer_id = $1;")
    report = check(
        "s3://bgkit-migrations-test/rel-1/",
        schema_file=str(SHOP),
        statements_file=str(statements),
        session=session,
    )
    assert [m.name for m in report.migrations] == ["0001_rename_note.sql"]
    assert not report.compatible
    assert [s.result for s in report.proof.statements] == ["breaks"]
