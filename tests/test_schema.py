"""Schema changes against blue: a catalogue of migrations that break the running version (each
refused with its reason) and of expand changes that pass, checked against a real PostgreSQL
"production" database whose blue statements are read from pg_stat_statements."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bgkit.errors import SchemaError
from bgkit.postgres import LocalPostgres
from bgkit.sandbox.database import SHOP
from bgkit.schema import check

HERE = Path(__file__).resolve().parent / "schema"
# blue's schema and rows: the sandbox's shop, with a view and a function blue also reads
BLUE_SCHEMA = SHOP.read_text() + (HERE / "shop.sql").read_text()

# Blue's workload: what the running version does, with values (pg_stat_statements keeps the
# texts with $n, as blue's driver sends them).
BLUE = [
    ("SELECT id, qty, total, status, note FROM orders WHERE customer_id = %s", (1,)),
    ("INSERT INTO orders (customer_id, total, status) VALUES (%s, %s, %s)", (1, "5.00", "new")),
    ("UPDATE orders SET qty = %s WHERE id = %s", (3, 1)),
    ("INSERT INTO customers (email, name) VALUES (%s, %s)", ("dee@example.com", "Dee")),
    ("SELECT name FROM customers WHERE id = %s", (2,)),
    ("SELECT total FROM order_totals WHERE customer_id = %s", (1,)),
    ("SELECT order_total(%s)", (1,)),
]

# kind -> (migration, what the refusal must say)
BREAKS_BLUE = {
    "drop a column blue reads": (
        "ALTER TABLE orders DROP COLUMN note;",
        ["ban-drop-column", 'column "note" does not exist'],
    ),
    "rename a column": (
        "ALTER TABLE orders RENAME COLUMN note TO remark;",
        ["renaming-column", 'column "note" does not exist'],
    ),
    "drop a table": ("DROP TABLE orders CASCADE;", ["ban-drop-table", '"orders" does not exist']),
    "rename a table": (
        "ALTER TABLE customers RENAME TO clients;",
        ["renaming-table", 'relation "customers" does not exist'],
    ),
    "a required column (NOT NULL, no default)": (
        "ALTER TABLE customers ADD COLUMN phone text NOT NULL;",
        ["adding-required-field", 'column "phone" of relation "customers" contains null values'],
    ),
    "change a column's type": (
        "ALTER TABLE customers ALTER COLUMN email TYPE integer USING length(email);",
        ["changing-column-type", 'invalid input syntax for type integer: "…"'],
    ),
    "drop NOT NULL": (
        "ALTER TABLE customers ALTER COLUMN email DROP NOT NULL;",
        ["ban-drop-not-null"],
    ),
    "a CHECK constraint blue's writes violate": (
        "ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;",
        ['violates check constraint "qty_positive"', "UPDATE orders SET qty = $1"],
    ),
    "a UNIQUE constraint blue's writes violate": (
        "ALTER TABLE customers ADD CONSTRAINT email_unique UNIQUE (email);",
        ['duplicate key value violates unique constraint "email_unique"', "INSERT INTO customers"],
    ),
    "drop a default blue's inserts rely on": (
        "ALTER TABLE orders ALTER COLUMN qty DROP DEFAULT;",
        ["ban-drop-default", 'null value in column "qty"'],
    ),
    "drop a view blue reads": (
        "DROP VIEW order_totals;",
        ["ban-drop-view", 'relation "order_totals" does not exist'],
    ),
    "drop a function blue calls": (
        "DROP FUNCTION order_total(bigint);",
        ["ban-drop-function", "function order_total"],
    ),
    "remove an enum value blue writes": (
        "UPDATE orders SET status = 'paid' WHERE status = 'cancelled';\n"
        "ALTER TYPE order_status RENAME TO order_status_old;\n"
        "CREATE TYPE order_status AS ENUM ('new', 'paid');\n"
        "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;\n"
        "ALTER TABLE orders ALTER COLUMN status TYPE order_status"
        " USING status::text::order_status;\n"
        "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'new';\n"
        "DROP TYPE order_status_old;",
        ['invalid input value for enum order_status: "cancelled"'],
    ),
    "SET NOT NULL on a column blue leaves NULL": (
        "ALTER TABLE orders ALTER COLUMN note SET NOT NULL;",
        ["adding-not-nullable-field", 'column "note" of relation "orders" contains null values'],
    ),
}

EXPANDS = {
    "a nullable column": "ALTER TABLE orders ADD COLUMN gift_wrap boolean;",
    "a column with a constant default": (
        "ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'EUR';"
    ),
    "a new table": "CREATE TABLE coupons (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "code text NOT NULL);",
    "an index built concurrently": (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_by_customer ON orders (customer_id);"
    ),
    "a new view": "CREATE VIEW paid_orders AS SELECT id, total FROM orders WHERE status = 'paid';",
    "a widened type": "ALTER TABLE customers ALTER COLUMN name TYPE varchar(200);",
    "a new enum value": "ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'refunded';",
}


@pytest.fixture(scope="module")
def production():
    """Blue's real database: the shop's schema and rows, pg_stat_statements on, blue's
    workload run through it."""
    import psycopg

    with LocalPostgres(tcp=True, statements=True) as pg:
        pg.create_database("shop")
        with psycopg.connect(pg.url("shop"), autocommit=True) as conn:
            conn.execute(BLUE_SCHEMA)
            conn.execute("SELECT pg_stat_statements_reset()")  # blue's statements, not the seed
            for statement, values in BLUE:
                conn.execute(statement, values)
        yield pg


def migration(tmp_path: Path, sql: str) -> str:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_change.sql").write_text(sql + "\n")
    return str(folder)


@pytest.mark.parametrize("kind", BREAKS_BLUE)
def test_a_change_that_breaks_blue_is_refused_with_its_reason(production, tmp_path, kind):
    sql, expected = BREAKS_BLUE[kind]
    report = check(migration(tmp_path, sql), database_url=production.url("shop"))
    assert not report.compatible, kind
    why = "\n".join(report.reasons)
    for words in expected:
        assert words in why, f"{kind}: {words!r} not in {why}"
    assert "@example.com" not in why  # blue's rows (an email) are never quoted
    assert "DETAIL" not in why


@pytest.mark.parametrize("kind", EXPANDS)
def test_an_expand_change_passes(production, tmp_path, kind):
    report = check(migration(tmp_path, EXPANDS[kind]), database_url=production.url("shop"))
    assert report.compatible, f"{kind}: {report.reasons}"
    ran = {s.sql: s.result for s in report.proof.statements}
    # every statement of blue's workload was read from pg_stat_statements and ran on green
    assert len(ran) == len(BLUE) and set(ran.values()) == {"runs"}, ran


def test_blue_statements_come_from_pg_stat_statements_with_placeholders(production, tmp_path):
    report = check(
        migration(tmp_path, "ALTER TABLE orders ADD COLUMN gift_wrap boolean;"),
        database_url=production.url("shop"),
    )
    statements = {s.sql for s in report.proof.statements}
    assert "UPDATE orders SET qty = $1 WHERE id = $2" in statements
    assert not any("bgkit schema check" in s or "pg_catalog" in s for s in statements)
    assert report.proof.sampled_rows >= 6  # blue's own rows: the values its writes are run with
    assert report.blue_source.startswith("database 127.0.0.1:")
    assert [m.describe()["name"] for m in report.migrations] == ["0001_change.sql"]


def test_the_widening_is_a_warning_with_the_type_change_named(production, tmp_path):
    report = check(
        migration(tmp_path, EXPANDS["a widened type"]), database_url=production.url("shop")
    )
    (finding,) = [f for f in report.findings if f.rule == "changing-column-type"]
    assert not finding.blocks
    assert "public.customers.name character varying(50) -> character varying(200)" in finding.advice


@pytest.fixture
def schema_file(tmp_path) -> str:
    path = tmp_path / "blue_schema.sql"
    path.write_text(BLUE_SCHEMA)
    return str(path)


def test_files_give_blue_without_a_database(tmp_path, schema_file):
    report = check(
        migration(tmp_path, "ALTER TABLE orders RENAME COLUMN note TO remark;"),
        schema_file=schema_file,
        statements_file=str(HERE / "blue_statements.sql"),
    )
    assert not report.compatible
    broken = [s.sql for s in report.proof.breaking]
    assert broken == ["SELECT id, qty, total, status, note FROM orders WHERE customer_id = $1"]


def test_a_syntax_error_is_refused_naming_file_and_line(production, tmp_path):
    folder = migration(
        tmp_path, "ALTER TABLE orders ADD COLUMN ok text;\nALTER TABLE orders DRP x;"
    )
    with pytest.raises(SchemaError, match=r"migrations: 0001_change.sql, line 2: syntax error"):
        check(folder, database_url=production.url("shop"))


def test_an_unreachable_database_is_refused_without_its_password(tmp_path):
    url = "postgresql://blue:hunter2-secret@127.0.0.1:1/shop"
    with pytest.raises(SchemaError, match="database_url: cannot connect") as refused:
        check(migration(tmp_path, "ALTER TABLE t ADD COLUMN x text;"), database_url=url)
    assert "hunter2-secret" not in str(refused.value)


def test_a_wrong_password_is_refused_without_it(production, tmp_path):
    url = production.url("shop").replace(production.password, "not-the-password-77")
    with pytest.raises(SchemaError, match="database_url: cannot connect") as refused:
        check(migration(tmp_path, "ALTER TABLE t ADD COLUMN x text;"), database_url=url)
    assert "not-the-password-77" not in str(refused.value)
    assert production.password not in str(refused.value)


def test_an_empty_folder_and_a_missing_file_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="migrations: .*empty holds no .sql file"):
        check(str(tmp_path / "empty"), schema_file="x", statements_file="y")
    with pytest.raises(SchemaError, match="migrations: .*nowhere.sql does not exist"):
        check(str(tmp_path / "nowhere.sql"), schema_file="x", statements_file="y")


def test_a_database_without_pg_stat_statements_says_what_to_do(production, tmp_path):
    production.create_database("plain")
    with pytest.raises(SchemaError, match="pg_stat_statements") as refused:
        check(
            migration(tmp_path, "ALTER TABLE t ADD COLUMN x text;"),
            database_url=production.url("plain"),
        )
    assert "give blue's statements as a file" in str(refused.value)


def test_no_server_or_data_folder_is_left_behind(tmp_path, monkeypatch, schema_file):
    started = []
    start = LocalPostgres.start

    def spy(self):
        start(self)
        started.append((self, self.folder))
        return self

    monkeypatch.setattr(LocalPostgres, "start", spy)
    check(
        migration(tmp_path, "ALTER TABLE orders ADD COLUMN gift_wrap boolean;"),
        schema_file=schema_file,
        statements_file=str(HERE / "blue_statements.sql"),
    )
    ((scratch, folder),) = started
    assert folder.name.startswith("bgkit-pg-") and not folder.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(folder) not in ps and f"port={scratch.port}" not in ps  # its server has exited


def test_bgkit_schema_check_exits_0_3_and_2(production, tmp_path, capsys, monkeypatch, schema_file):
    import json

    from bgkit.cli import main

    files = ["--schema", schema_file, "--statements", str(HERE / "blue_statements.sql")]
    rename = migration(tmp_path, "ALTER TABLE orders RENAME COLUMN note TO remark;")
    assert main(["schema", "check", rename, *files]) == 3
    out = capsys.readouterr().out
    assert "BLOCKS 0001_change.sql:1 [renaming-column]" in out and out.rstrip().endswith("s)")
    assert "INCOMPATIBLE" in out

    (tmp_path / "expand").mkdir()
    (tmp_path / "expand" / "0002_add.sql").write_text(EXPANDS["a nullable column"])
    # the database's URL from the environment, as a secret: no process listing shows it
    monkeypatch.setenv("BGKIT_SECRET_DATABASE_URL", production.url("shop"))
    assert main(["schema", "check", str(tmp_path / "expand"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compatible"] and report["blue"].startswith("database 127.0.0.1:")
    assert production.password not in json.dumps(report)

    assert main(["schema", "check", str(tmp_path / "none.sql"), *files]) == 2
    assert "migrations: " in capsys.readouterr().err
