"""The tracking table's schema and name as settings (node-pg-migrate's --migrations-schema, --migrations-table).

Any name PostgreSQL accepts works (a space, a quote, non-ASCII, upper case), through every command and the
Lambda; the table is never taken for one of the application's (data-loss guard, adoption, roles); the default
stays node-pg-migrate's ``public.pgmigrations``, so a database the JavaScript tool manages is taken over as is.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from lambda_db_setup import roles
from lambda_db_setup.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import DataLossError, MigrationFailedError, OrderError
from lambda_db_setup.options import EngineOptions
from lambda_db_setup.rolespec import WRITE, AppGroup
from lambda_db_setup.schema_check import SCRATCH_SCHEMA
from lambda_db_setup.tracking import TrackingTable
from tests import cfn_events
from tests.helpers import applied_names, create_table_migration, table_exists, write_sql
from tests.test_handler import Deployment, deployment  # noqa: F401 (fixture)
from tests.test_roles import drop_roles
from tests.test_round_trips import CountingCursor

ODD = TrackingTable('Mig "Schema" ü', 'History Ä "log"')  # a space, quotes, non-ASCII, upper case
ODD_SHOWN = '"Mig ""Schema"" ü"."History Ä ""log"""'
ODD_FLAGS = ("--migrations-schema", ODD.schema, "--migrations-table", ODD.table)
NODE_PG_MIGRATE_TABLE = "CREATE TABLE {} (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL)"


def run(capsys, database_url: str, migrations_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(conn, table: TrackingTable) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT name FROM {} ORDER BY run_on, id").format(table.identifier))
        return [name for (name,) in cursor.fetchall()]


def execute(conn, statement: str | sql.Composable) -> None:
    with conn.cursor() as cursor:
        cursor.execute(statement)


def test_every_command_uses_an_odd_schema_and_table(conn, database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    assert run(capsys, database_url, migrations_dir, "up", *ODD_FLAGS)[0] == EXIT_OK
    assert rows(conn, ODD) == ["1000_a", "2000_b"] and not table_exists(conn, "public.pgmigrations")
    code, out, _ = run(capsys, database_url, migrations_dir, "status", *ODD_FLAGS)
    assert code == EXIT_OK and "applied (2):" in out and "pending (0):" in out
    code, out, _ = run(capsys, database_url, migrations_dir, "status")  # the default table: nothing applied
    assert code == EXIT_OK and "applied (0):" in out
    code, out, _ = run(capsys, database_url, migrations_dir, "redo", *ODD_FLAGS)
    assert code == EXIT_OK and "reverted 2000_b" in out and "applied 2000_b" in out
    # The last down empties the tracking table: that is the history, not data the guard protects.
    code, out, err = run(capsys, database_url, migrations_dir, "down", "2", *ODD_FLAGS)
    assert code == EXIT_OK, err
    assert rows(conn, ODD) == [] and not table_exists(conn, "a") and not table_exists(conn, "b")
    execute(conn, "CREATE TABLE a (id int); CREATE TABLE b (id int)")
    code, out, _ = run(capsys, database_url, migrations_dir, "baseline", *ODD_FLAGS)
    assert code == EXIT_OK and "baseline: recorded 2 migration(s)" in out
    assert rows(conn, ODD) == ["1000_a", "2000_b"]
    assert "nothing to do" in run(capsys, database_url, migrations_dir, "up", *ODD_FLAGS)[1]
    assert not table_exists(conn, "public.pgmigrations")


@pytest.mark.parametrize(
    ("table", "shown"),
    [(ODD, ODD_SHOWN), (TrackingTable("public", "user"), '"public"."user"'), (TrackingTable(), "public.pgmigrations")],
)
def test_problems_name_the_table_as_sql_would_and_their_advice_runs(
    conn, database_url, migrations_dir, capsys, table, shown
) -> None:
    """Any name, a reserved word (``user``) included, is printed so that the advised SQL runs as printed."""
    flags = ("--migrations-schema", table.schema, "--migrations-table", table.table)
    create_table_migration(migrations_dir, "1000_a", "a")
    assert run(capsys, database_url, migrations_dir, "up", *flags)[0] == EXIT_OK
    execute(conn, sql.SQL("INSERT INTO {} (name, run_on) VALUES ('1000_a', now())").format(table.identifier))
    code, out, err = run(capsys, database_url, migrations_dir, "status", "--json", *flags)
    document = json.loads(out)
    assert code == EXIT_FAILED and f"1 {shown} problem(s)" in err
    (problem,) = document["problems"]
    assert problem.startswith(f"{shown} has 2 rows for 1000_a (ids 1, 2): delete the duplicate")
    execute(conn, re.search(r"\((DELETE FROM .*)\)$", problem)[1])  # the advice, as printed
    assert run(capsys, database_url, migrations_dir, "status", *flags)[0] == EXIT_OK


def test_the_schema_is_created_only_when_missing(conn, server_url, database_url, migrations_dir, capsys) -> None:
    """CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: a runner that
    owns its schema but may not create schemas must not be sent it."""
    create_table_migration(migrations_dir, "1000_a", "a")
    execute(conn, "DROP ROLE IF EXISTS narrow_runner; CREATE ROLE narrow_runner LOGIN")
    execute(conn, "CREATE SCHEMA history AUTHORIZATION narrow_runner; GRANT CREATE ON SCHEMA public TO narrow_runner")
    narrow = re.sub(r"//[^@/]*@", "//narrow_runner@", database_url)
    try:
        flags = ("--migrations-schema", "history", "--migrations-table", "runs")
        code, _, err = run(capsys, narrow, migrations_dir, "up", *flags)
        assert code == EXIT_OK, err
        assert rows(conn, TrackingTable("history", "runs")) == ["1000_a"]
        code, _, err = run(capsys, narrow, migrations_dir, "up", "--migrations-schema", "not_there")
        assert code == EXIT_FAILED and "permission denied for database" in err
    finally:
        execute(conn, "DROP OWNED BY narrow_runner CASCADE; DROP ROLE narrow_runner")


def test_settings_come_from_flag_environment_and_pyproject(conn, database_url, tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.lambda_db_setup]\nmigrations_table = "From Pyproject"\n')
    (tmp_path / "migrations").mkdir()
    create_table_migration(tmp_path / "migrations", "1000_a", "a")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGRATIONS_TABLE", raising=False)
    monkeypatch.setenv("MIGRATIONS_SCHEMA", "from_env")
    assert main(["up", "--database-url", database_url]) == EXIT_OK
    assert rows(conn, TrackingTable("from_env", "From Pyproject")) == ["1000_a"]
    monkeypatch.setenv("MIGRATIONS_TABLE", "from env")
    assert main(["up", "--database-url", database_url, "--migrations-table", "from flag"]) == EXIT_OK
    assert rows(conn, TrackingTable("from_env", "from flag")) == ["1000_a"]
    assert main(["status", "--database-url", database_url]) == EXIT_OK
    assert "pending (1):" in capsys.readouterr().out  # from env: nothing recorded there yet


@pytest.mark.parametrize(
    ("where", "value", "source"),
    [
        ("flag", "", "--migrations-table"),
        ("flag", "ä" * 32, "--migrations-table"),  # 64 bytes: PostgreSQL would cut it to 63
        ("pyproject", "a\\u0000b", "pyproject.toml [tool.lambda_db_setup] migrations_table"),
        ("environment", "x" * 64, "MIGRATIONS_TABLE"),
    ],
)
def test_a_name_postgresql_cannot_keep_is_refused(tmp_path, capsys, monkeypatch, where, value, source) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.lambda_db_setup]\nmigrations_table = "{value}"\n' if where == "pyproject" else ""
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGRATIONS_TABLE", raising=False)
    if where == "environment":
        monkeypatch.setenv("MIGRATIONS_TABLE", value)
    flags = ["--migrations-table", value] if where == "flag" else []
    try:
        code = main(["status", "--database-url", "postgresql://nobody@127.0.0.1:1/x", *flags])
    except SystemExit as stop:  # argparse refusing a flag's value
        code = stop.code
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{source} must be a PostgreSQL name: 1 to 63 bytes of UTF-8, no NUL" in err
    assert "Traceback" not in err


def test_a_system_schema_is_refused_and_an_upper_case_look_alike_is_not(
    conn, database_url, migrations_dir, capsys
) -> None:
    """PostgreSQL reserves pg_*; pg_temp would even be accepted, and lose the history when the session ends."""
    create_table_migration(migrations_dir, "1000_a", "a")
    for schema in ("pg_temp", "pg_catalog", "pg_new"):
        code, _, err = run(capsys, database_url, migrations_dir, "up", "--migrations-schema", schema)
        assert code == EXIT_USAGE
        assert err.splitlines()[-1] == (
            f"error: migrations_schema {schema!r}: a PostgreSQL system schema (pg_*) cannot hold the tracking table"
        )
    assert not table_exists(conn, "a")
    assert run(capsys, database_url, migrations_dir, "up", "--migrations-schema", "PG_Upper")[0] == EXIT_OK
    assert rows(conn, TrackingTable("PG_Upper", "pgmigrations")) == ["1000_a"]


def test_sixty_three_bytes_is_the_longest_name(conn, migrations_dir) -> None:
    longest = TrackingTable("public", "ä" * 31 + "x")
    create_table_migration(migrations_dir, "1000_a", "a")
    Engine(conn, migrations_dir, EngineOptions(tracking=longest)).up()
    assert rows(conn, longest) == ["1000_a"]
    assert Engine(conn, migrations_dir, EngineOptions(tracking=longest)).plan().pending == []


def test_the_guard_protects_data_but_not_the_history(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    options = EngineOptions(tracking=ODD)
    Engine(conn, migrations_dir, options).up()
    Engine(conn, migrations_dir, options).down()  # empties the tracking table in its own schema: allowed
    assert rows(conn, ODD) == []
    Engine(conn, migrations_dir, options).up()
    execute(conn, "INSERT INTO a VALUES (1)")
    with pytest.raises(DataLossError, match=r"down would drop public\.a \(1 row\)"):
        Engine(conn, migrations_dir, options).down()


def test_adoption_records_into_the_configured_table(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    execute(conn, "CREATE TABLE a (id int); CREATE TABLE b (id int)")  # built before tracking existed
    result = Engine(conn, migrations_dir, EngineOptions(adopt_existing_schema=True, tracking=ODD)).up()
    assert [outcome.name for outcome in result.adopted] == ["1000_a", "2000_b"] and result.ran == []
    assert rows(conn, ODD) == ["1000_a", "2000_b"] and not table_exists(conn, "public.pgmigrations")


def test_a_tracking_table_in_public_is_no_application_table(conn, database_url, migrations_dir) -> None:
    """An empty custom table in public (left by a run that stopped) does not make public look populated,
    and the application's roles get no privilege on it."""
    in_public = TrackingTable("public", "History")
    execute(conn, sql.SQL(NODE_PG_MIGRATE_TABLE).format(in_public.identifier))
    create_table_migration(migrations_dir, "1000_a", "a")
    CountingCursor.sent = []
    with closing(psycopg2.connect(database_url, cursor_factory=CountingCursor)) as counted:
        result = Engine(counted, migrations_dir, EngineOptions(adopt_existing_schema=True, tracking=in_public)).up()
    assert [outcome.name for outcome in result.ran] == ["1000_a"] and result.adopted == []
    assert not [query for query in CountingCursor.sent if SCRATCH_SCHEMA in query]  # a new database: no rehearsal
    group = AppGroup(f"readwrite_{uuid.uuid4().hex[:8]}", WRITE)
    try:
        roles.ensure_roles(conn, [group], [], tracking_table=in_public)
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT has_table_privilege(%(group)s, 'public.\"History\"', 'SELECT'),"
                " has_table_privilege(%(group)s, 'public.a', 'SELECT')",
                {"group": group.name},
            )
            assert cursor.fetchone() == (False, True)
    finally:
        drop_roles(conn, [group.name])


@pytest.mark.parametrize("where", [None, ("mig", "hist")])
def test_a_node_pg_migrate_database_is_taken_over_as_it_is(conn, database_url, migrations_dir, capsys, where) -> None:
    """Tables and rows exactly as node-pg-migrate leaves them, by default or with its --migrations-schema
    mig --migrations-table hist; the same settings here continue its history."""
    table = TrackingTable(*where) if where else TrackingTable()
    flags = ["--migrations-schema", table.schema, "--migrations-table", table.table] if where else []
    if where:
        execute(conn, "CREATE SCHEMA mig")
    execute(conn, sql.SQL(NODE_PG_MIGRATE_TABLE).format(table.identifier))
    execute(conn, "CREATE TABLE a (id int); CREATE TABLE b (id int)")
    for name in ("1000_a", "2000_b"):
        execute(
            conn,
            sql.SQL("INSERT INTO {} (name, run_on) VALUES ({}, now())").format(table.identifier, sql.Literal(name)),
        )
        create_table_migration(migrations_dir, name, name[-1])
    create_table_migration(migrations_dir, "3000_c", "c")
    code, out, _ = run(capsys, database_url, migrations_dir, "up", *flags)
    assert code == EXIT_OK and "applied 3000_c" in out and "1000_a" not in out
    assert rows(conn, table) == ["1000_a", "2000_b", "3000_c"]
    assert table_exists(conn, "public.pgmigrations") == (where is None)
    assert (applied_names(conn) == []) == (where is not None)


def test_the_lambda_reads_the_settings_from_its_environment(
    deployment: Deployment,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIGRATIONS_SCHEMA", ODD.schema)
    monkeypatch.setenv("MIGRATIONS_TABLE", ODD.table)
    create_table_migration(deployment.migrations_dir, "1700000003000_create_cat", "cat")
    answer = deployment.deploy(cfn_events.create())
    assert answer["Data"]["AppliedCount"] == "1"
    assert rows(deployment.conn, ODD) == ["1700000003000_create_cat"]
    assert not table_exists(deployment.conn, "public.pgmigrations")


def test_a_run_that_fails_flushes_through_the_configured_table(conn, database_url, migrations_dir) -> None:
    """What a failed run committed asynchronously is flushed by rewriting the newest row of *its* table."""
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_bad", "INSERT INTO missing_table VALUES (1);")
    CountingCursor.sent = []
    counted = psycopg2.connect(database_url, cursor_factory=CountingCursor)
    with closing(counted), pytest.raises(MigrationFailedError):
        Engine(counted, migrations_dir, EngineOptions(tracking=ODD)).up()
    flushes = [query for query in CountingCursor.sent if query.startswith("UPDATE ") and "SET run_on" in query]
    assert flushes == [f"UPDATE {ODD_SHOWN} SET run_on = run_on WHERE id = (SELECT max(id) FROM {ODD_SHOWN})"]
    assert rows(conn, ODD) == ["1000_a"]


def test_the_stack_passes_a_configured_table_to_the_lambda_and_refuses_a_bad_one(tmp_path) -> None:
    from tests.test_infra import _user_functions, synthesize  # aws-cdk-lib: only this test needs it

    synth = synthesize(tmp_path / "custom", migrationsSchema=ODD.schema, migrationsTable=ODD.table)
    for function in _user_functions(synth).values():
        env = function["Environment"]["Variables"]
        assert (env["MIGRATIONS_SCHEMA"], env["MIGRATIONS_TABLE"]) == (ODD.schema, ODD.table)
    with pytest.raises(ValueError, match="migrations_table must be a PostgreSQL name: 1 to 63 bytes"):
        synthesize(tmp_path / "bad", migrationsTable="x" * 64)
    with pytest.raises(ValueError, match=r"a PostgreSQL system schema \(pg_\*\) cannot hold the tracking table"):
        synthesize(tmp_path / "system", migrationsSchema="pg_temp")


def test_the_forget_hint_names_the_configured_table_and_runs_as_printed(conn, database_url, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    create_table_migration(migrations_dir, "3000_c", "c")
    Engine(conn, migrations_dir, EngineOptions(tracking=ODD)).up()
    (migrations_dir / "2000_b.py").unlink()
    execute(conn, sql.SQL("INSERT INTO {} (name, run_on) VALUES ('-3000_dash', now())").format(ODD.identifier))
    with pytest.raises(OrderError) as refused:
        Engine(conn, migrations_dir, EngineOptions(tracking=ODD)).up()
    hint = str(refused.value).rsplit(": `", 1)[1].rstrip("`")
    assert hint == (
        "lambda-db-setup forget --migrations-schema 'Mig \"Schema\" ü' --migrations-table 'History Ä \"log\"'"
        " -- 2000_b -3000_dash"
    )
    where = ["--yes", "--database-url", database_url, "--migrations-dir", str(migrations_dir)]
    assert main(["forget", *where, *shlex.split(hint)[2:]]) == EXIT_OK
    assert rows(conn, ODD) == ["1000_a", "3000_c"]
