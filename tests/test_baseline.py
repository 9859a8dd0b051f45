"""Baseline (record without running, only when the schema really matches) and adoption of node-pg-migrate databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import SchemaMismatchError
from lambda_db_setup.options import EngineOptions
from tests.helpers import applied_names, write_py

APP_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def _two_tables(migrations_dir: Path) -> None:
    write_py(
        migrations_dir,
        "1000_parents",
        'pgm.create_table("parents", {"id": {"type": "int", "primary_key": True}, "label": "text"})',
    )
    write_py(
        migrations_dir,
        "2000_children",
        'pgm.create_table("children", {"id": "int", "parent_id": {"type": "int", "references": "parents"}})',
    )


def test_baseline_verifies_then_records_without_running(conn, migrations_dir) -> None:
    _two_tables(migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE parents (id int PRIMARY KEY, label text)")
        cursor.execute("CREATE TABLE children (id int, parent_id int REFERENCES parents)")
        cursor.execute("INSERT INTO parents VALUES (1, 'kept')")
    result = Engine(conn, migrations_dir).baseline()
    assert [migration.name for migration in result.recorded] == ["1000_parents", "2000_children"]
    assert result.verified_tables == ["children", "parents"]
    assert Engine(conn, migrations_dir).up().ran == []
    with conn.cursor() as cursor:
        cursor.execute("SELECT label FROM parents")
        assert cursor.fetchall() == [("kept",)]
        cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgm_baseline_check'")
        assert cursor.fetchone() == (0,)


def test_baseline_refuses_a_schema_that_differs(conn, migrations_dir) -> None:
    _two_tables(migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE parents (id int PRIMARY KEY, label varchar(10))")
    with pytest.raises(SchemaMismatchError) as caught:
        Engine(conn, migrations_dir).baseline()
    message = str(caught.value)
    assert "table children does not exist" in message
    assert "expected parents column 2 label text" in message
    assert "found parents column 2 label character varying(10)" in message
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('pgmigrations')")
        assert cursor.fetchone() == (None,)


def test_baseline_to_and_without_verification(conn, migrations_dir) -> None:
    _two_tables(migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE parents (id int PRIMARY KEY, label varchar(10))")
    result = Engine(conn, migrations_dir).baseline("1000_parents", verify=False)
    assert [migration.name for migration in result.recorded] == ["1000_parents"] and result.verified_tables is None
    assert applied_names(conn) == ["1000_parents"]
    assert [o.name for o in Engine(conn, migrations_dir).up().ran] == ["2000_children"]


def test_database_migrated_by_node_pg_migrate_is_taken_over_as_is(conn) -> None:
    """Same 14 names in a pgmigrations table as node-pg-migrate writes it: fully migrated, nothing re-run."""
    Engine(conn, APP_MIGRATIONS).up()
    with conn.cursor() as cursor:
        cursor.execute("SELECT name FROM pgmigrations ORDER BY id")
        names = [row[0] for row in cursor.fetchall()]
        cursor.execute("DROP TABLE pgmigrations")
        cursor.execute(
            'CREATE TABLE "public"."pgmigrations" (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL,'
            " run_on timestamp NOT NULL)"
        )
        for name in names:
            cursor.execute('INSERT INTO "public"."pgmigrations" (name, run_on) VALUES (%s, NOW())', (name,))
        cursor.execute("SELECT count(*) FROM empathy_prompt_history")
        prompts_before = cursor.fetchone()[0]
    assert len(names) == 14
    plan = Engine(conn, APP_MIGRATIONS).plan()
    assert plan.pending == [] and plan.drifted == [] and plan.missing == []
    result = Engine(conn, APP_MIGRATIONS).up()
    assert result.ran == [] and result.already_applied == names
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM empathy_prompt_history")
        assert cursor.fetchone()[0] == prompts_before == 1


def test_app_schema_built_before_tracking_is_baselined(conn) -> None:
    """The original system's case: application tables present, pgmigrations empty."""
    Engine(conn, APP_MIGRATIONS).up()
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE pgmigrations")
    result = Engine(conn, APP_MIGRATIONS).baseline()
    assert len(result.recorded) == 14 and len(result.verified_tables) == 12
    assert Engine(conn, APP_MIGRATIONS).up().ran == []


def test_up_adopts_a_matching_schema_built_before_tracking(conn) -> None:
    """The original Lambda's behaviour, on request: tables there, no history, schema matches -> recorded."""
    Engine(conn, APP_MIGRATIONS).up()
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE pgmigrations")
        cursor.execute("INSERT INTO users (user_email) VALUES ('kept@example.com')")
    result = Engine(conn, APP_MIGRATIONS, EngineOptions(adopt_existing_schema=True)).up()
    assert len(result.adopted) == 14 and result.ran == []
    assert len(applied_names(conn)) == 14
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM users")
        assert cursor.fetchone() == (1,)


def test_up_with_adoption_migrates_a_new_database_as_usual(conn) -> None:
    result = Engine(conn, APP_MIGRATIONS, EngineOptions(adopt_existing_schema=True)).up()
    assert result.adopted == [] and len(result.ran) == 14


def test_up_refuses_to_adopt_a_schema_that_differs(conn, migrations_dir) -> None:
    _two_tables(migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE parents (id int PRIMARY KEY, label varchar(10))")
    with pytest.raises(SchemaMismatchError, match="no migration history but already has tables") as caught:
        Engine(conn, migrations_dir, EngineOptions(adopt_existing_schema=True)).up()
    assert "baseline --to NAME" in str(caught.value)
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('children'), to_regclass('pgmigrations')")
        assert cursor.fetchone() == (None, None)
