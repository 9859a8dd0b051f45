"""Engine hardening: what one migration leaves behind, a hostile search_path, untrustworthy pgmigrations rows,
data loss by any SQL, live lock holders, INVALID indexes, down --to / redo dry runs, and Ctrl-C.

Every test ends by checking that ``pgmigrations`` and the schema agree.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
from psycopg2 import sql

from lambda_db_setup import dataloss, discovery, lock
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import (
    DataLossError,
    IrreversibleMigrationError,
    LockError,
    MigrationFailedError,
    MigrationFileError,
    RunInterrupted,
    SchemaMismatchError,
    TrackingTableError,
)
from lambda_db_setup.results import Action
from tests.helpers import applied_names, create_table_migration, write_py, write_sql
from tests.safety import catalog

NO_TX = "-- pgm:no-transaction\n"


def query(conn, text: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(text, params or None)
        return cursor.fetchall() if cursor.description else []


def tables(conn) -> set[str]:
    """Every user table as schema.name."""
    rows = query(
        conn,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg\\_%' AND c.relname <> 'pgmigrations'",
    )
    return {row[0] for row in rows}


def lock_is_free(conn) -> bool:
    return query(
        conn,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ) == [(0,)]


# -- 1. session state does not leak from one migration to the next -------------------------------


@pytest.mark.parametrize(
    "leak",
    [
        "SET search_path TO other",
        "SET SESSION search_path = other, public",
        "SELECT set_config('search_path', 'other', false)",
        "SELECT pg_catalog.set_config('search_path', 'other', false) FROM generate_series(1, 2)",
    ],
)
@pytest.mark.parametrize("header", ["", NO_TX])
def test_a_search_path_set_by_one_migration_does_not_move_the_next(conn, migrations_dir, leak, header) -> None:
    write_sql(migrations_dir, "1000_other", f"CREATE SCHEMA other;\n{leak};", "DROP SCHEMA other;", header=header)
    create_table_migration(migrations_dir, "2000_later", "later")
    Engine(conn, migrations_dir).up()
    one_run = tables(conn)
    assert one_run == {"public.later"}
    assert applied_names(conn) == ["1000_other", "2000_later"]
    Engine(conn, migrations_dir).down(2)
    Engine(conn, migrations_dir).up(1)
    Engine(conn, migrations_dir).up()
    assert tables(conn) == one_run  # one run and two runs build the same schema


@pytest.fixture
def role(conn) -> Iterator[str]:
    """A role without any privilege in the test database (roles are cluster-wide: unique, dropped after)."""
    name = f"nopriv_{uuid.uuid4().hex[:8]}"
    query(conn, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)).as_string(conn))
    try:
        yield name
    finally:
        query(conn, sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(*[sql.Identifier(name)] * 2).as_string(conn))


@pytest.mark.parametrize(
    "statement", ["SET ROLE {role}", "SET SESSION AUTHORIZATION {role}", "SET ROLE {role}; RESET ALL"]
)
@pytest.mark.parametrize("header", ["", NO_TX])
def test_a_role_set_by_one_migration_does_not_run_the_next(conn, migrations_dir, role, statement, header) -> None:
    write_sql(migrations_dir, "1000_become", statement.format(role=role) + ";", header=header)
    write_sql(migrations_dir, "2000_later", "CREATE TABLE later (id int);")
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_become", "2000_later"]
    owner = query(conn, "SELECT tableowner FROM pg_tables WHERE tablename = 'later'")
    assert owner == query(conn, "SELECT current_user")


@pytest.mark.parametrize(
    "leak", ["SET statement_timeout = 1", "SELECT set_config('statement_timeout', '1', false)", "SET lock_timeout = 1"]
)
def test_timeouts_set_by_one_migration_do_not_apply_to_the_next(conn, migrations_dir, leak) -> None:
    write_sql(migrations_dir, "1000_short", f"{leak};")
    write_sql(migrations_dir, "2000_slow", "SELECT pg_sleep(0.05);\nCREATE TABLE later (id int);")
    write_sql(
        migrations_dir,
        "3000_settings",
        "DO $$ BEGIN IF current_setting('lock_timeout') <> '5s' OR current_setting('statement_timeout') <> '0'"
        " THEN RAISE EXCEPTION 'leaked'; END IF; END $$;",
    )
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_short", "2000_slow", "3000_settings"] and tables(conn) == {"public.later"}


def test_reset_all_keeps_the_engine_settings_for_the_next_migration(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_reset", "RESET ALL;", header=NO_TX)
    write_sql(
        migrations_dir,
        "2000_who",
        "DO $$ BEGIN IF current_setting('application_name') NOT LIKE 'lambda_db_setup%' THEN"
        " RAISE EXCEPTION 'application_name is %', current_setting('application_name'); END IF; END $$;",
    )
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_reset", "2000_who"]


# -- 2. a database-wide search_path pointing elsewhere --------------------------------------------


def test_a_hostile_database_search_path_changes_nothing_the_engine_reads(conn, database_url, migrations_dir) -> None:
    query(
        conn,
        "CREATE SCHEMA elsewhere;"
        " CREATE TABLE elsewhere.pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL,"
        " run_on timestamp NOT NULL, checksum varchar(64));"
        " INSERT INTO elsewhere.pgmigrations (name, run_on) VALUES ('1000_a', now());"
        " CREATE VIEW elsewhere.pg_locks AS SELECT * FROM pg_catalog.pg_locks WHERE false;"
        " CREATE VIEW elsewhere.pg_stat_activity AS SELECT * FROM pg_catalog.pg_stat_activity WHERE false;"
        " CREATE VIEW elsewhere.pg_class AS SELECT * FROM pg_catalog.pg_class WHERE false;",
    )
    query(conn, f"ALTER DATABASE {conn.info.dbname} SET search_path = elsewhere, pg_catalog, public")
    write_sql(migrations_dir, "1000_a", "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);", "DROP TABLE a;")
    create_table_migration(migrations_dir, "2000_b", "b")
    hostile = psycopg2.connect(database_url)
    try:
        assert [o.name for o in Engine(hostile, migrations_dir).up().ran] == ["1000_a", "2000_b"]
        assert Engine(hostile, migrations_dir).up().ran == []  # nothing re-runs
        assert Engine(hostile, migrations_dir).plan().pending == []
        assert [o.name for o in Engine(hostile, migrations_dir).down().reverted] == ["2000_b"]
        with pytest.raises(DataLossError, match=r"^1000_a\.sql: down would drop elsewhere\.a \(1 row\);"):
            Engine(hostile, migrations_dir).down()
    finally:
        hostile.close()
    assert query(conn, "SELECT name FROM public.pgmigrations") == [("1000_a",)]
    assert query(conn, "SELECT name FROM elsewhere.pgmigrations") == [("1000_a",)]  # the decoy is untouched
    assert tables(conn) == {"elsewhere.a"} and lock_is_free(conn)


def test_baseline_compares_the_real_catalog_under_a_hostile_search_path(conn, database_url, migrations_dir) -> None:
    query(
        conn,
        "CREATE SCHEMA elsewhere; CREATE TABLE public.a (id int, extra text);"
        + "".join(
            f" CREATE VIEW elsewhere.{name} AS SELECT * FROM pg_catalog.{name} WHERE false;"
            for name in ("pg_class", "pg_namespace", "pg_constraint", "pg_indexes", "pg_tables")
        ),
    )
    query(conn, f"ALTER DATABASE {conn.info.dbname} SET search_path = elsewhere, pg_catalog, public")
    create_table_migration(migrations_dir, "1000_a", "a")
    hostile = psycopg2.connect(database_url)
    try:
        with pytest.raises(SchemaMismatchError, match="extra"):
            Engine(hostile, migrations_dir).baseline()
    finally:
        hostile.close()
    assert applied_names(conn) == []


# -- 3. rows in pgmigrations no command can trust ---------------------------------------------------


def two_applied(conn, migrations_dir) -> Engine:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    create_table_migration(migrations_dir, "3000_c", "c")
    engine = Engine(conn, migrations_dir)
    engine.up(2)
    return engine


def assert_every_changing_command_refuses(engine: Engine, conn, match: str) -> None:
    before = catalog(conn)
    for command in (engine.up, engine.down, engine.redo, engine.repair, engine.baseline):
        with pytest.raises(TrackingTableError, match=match):
            command()
    assert catalog(conn) == before and lock_is_free(conn)


def test_a_duplicated_row_is_reported_and_refused(conn, migrations_dir) -> None:
    engine = two_applied(conn, migrations_dir)
    query(conn, "INSERT INTO pgmigrations (name, run_on) VALUES ('1000_a', now())")
    (dup_id,) = query(conn, "SELECT max(id) FROM pgmigrations")[0]
    problems = engine.plan().problems
    assert problems == [
        f"public.pgmigrations has 2 rows for 1000_a (ids 1, {dup_id}): delete the duplicate"
        f" (DELETE FROM public.pgmigrations WHERE id = {dup_id})"
    ]
    assert_every_changing_command_refuses(engine, conn, r"2 rows for 1000_a .*; nothing was changed$")
    query(conn, f"DELETE FROM public.pgmigrations WHERE id = {dup_id}")  # the advice works
    assert [o.name for o in engine.down().reverted] == ["2000_b"] and tables(conn) == {"public.a"}


def test_a_back_dated_run_on_is_refused_instead_of_reverting_the_wrong_migration(conn, migrations_dir) -> None:
    engine = two_applied(conn, migrations_dir)
    query(conn, "UPDATE pgmigrations SET run_on = '2001-01-01' WHERE name = '2000_b'")
    [problem] = engine.plan().problems
    assert problem.startswith("public.pgmigrations records 2000_b (id 2, run_on 2001-01-01 00:00:00) before 1000_a")
    assert_every_changing_command_refuses(engine, conn, "which to revert first is ambiguous")
    assert tables(conn) == {"public.a", "public.b"}  # 1000_a was not reverted in 2000_b's place


@pytest.mark.parametrize(("column", "value"), [("timestamp", None), ("text", "'yesterday'"), ("text", None)])
def test_run_on_null_or_not_a_timestamp_is_reported_by_status_and_refused(conn, migrations_dir, column, value) -> None:
    query(conn, f"CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on {column})")
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    query(conn, "CREATE TABLE a (id int)")
    query(conn, f"INSERT INTO pgmigrations (name, run_on) VALUES ('1000_a', {value or 'NULL'})")
    engine = Engine(conn, migrations_dir)
    [problem] = engine.plan().problems  # status reports, does not raise
    assert problem.startswith("public.pgmigrations row id 1 (1000_a) has run_on ")
    assert "not a timestamp" in problem and "WHERE id = 1" in problem
    assert_every_changing_command_refuses(engine, conn, r"row id 1 \(1000_a\)")


def test_down_picks_by_file_order(conn, migrations_dir) -> None:
    engine = two_applied(conn, migrations_dir)
    query(conn, "UPDATE pgmigrations SET run_on = '2001-01-01'")  # a tie: file order and id agree
    assert [o.name for o in engine.down().reverted] == ["2000_b"]
    assert applied_names(conn) == ["1000_a"] and tables(conn) == {"public.a"}


# -- 4. data loss by whatever SQL the down runs -------------------------------------------------


@pytest.mark.parametrize(
    ("down", "lost"),
    [
        ("DROP TABLE notes;", "drop public.notes (3 rows); pass --force to drop them anyway"),  # seen in the text
        ("DROP SCHEMA keep CASCADE;", "drop keep.kept (3 rows); pass --force to drop them anyway"),
        (
            "DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE notes'; END $$;",
            "drop public.notes (3 rows); pass --force to drop them anyway",
        ),
        ("TRUNCATE notes, keep.kept;", "empty public.notes (3 rows), empty keep.kept (3 rows); pass --force to lose"),
        ("DELETE FROM notes;", "empty public.notes (3 rows); pass --force to lose those rows anyway"),
        ("SET search_path TO keep;\nDROP TABLE kept;", "drop keep.kept (3 rows); pass --force to drop them anyway"),
    ],
)
def test_down_that_loses_rows_by_any_sql_is_rolled_back(conn, migrations_dir, down: str, lost: str) -> None:
    write_sql(
        migrations_dir,
        "1000_notes",
        "CREATE TABLE notes (id int);\nCREATE SCHEMA keep;\nCREATE TABLE keep.kept (id int);",
        "DROP TABLE IF EXISTS notes, keep.kept;\nDROP SCHEMA IF EXISTS keep;",
    )
    write_sql(migrations_dir, "2000_harm", "SELECT 1;", down)
    create_table_migration(migrations_dir, "3000_empty", "empty_one")
    engine = Engine(conn, migrations_dir)
    engine.up()
    query(conn, "INSERT INTO notes SELECT generate_series(1, 3); INSERT INTO keep.kept SELECT generate_series(1, 3)")
    before = catalog(conn)
    with pytest.raises(DataLossError) as caught:
        engine.down(2)  # 3000_empty reverts (its table is empty), 2000_harm is refused one step later
    assert str(caught.value).startswith(f"2000_harm.sql: down would {lost}")
    if down == "DROP TABLE notes;":  # the text check refuses before the first down runs
        assert catalog(conn) == before
        engine.down()
    assert applied_names(conn) == ["1000_notes", "2000_harm"]
    assert catalog(conn)["relations"] == [r for r in before["relations"] if r[0] != "empty_one"]
    assert query(conn, "SELECT count(*) FROM notes UNION ALL SELECT count(*) FROM keep.kept") == [(3,), (3,)]
    assert lock_is_free(conn)
    assert [o.name for o in engine.down(force=True).reverted] == ["2000_harm"]
    assert applied_names(conn) == ["1000_notes"]


def test_up_pays_nothing_for_the_data_loss_guard(conn, migrations_dir, monkeypatch) -> None:
    def refuse(*_args):
        raise AssertionError("up took the data-loss snapshot")

    monkeypatch.setattr(dataloss.Guard, "take", classmethod(refuse))
    write_sql(migrations_dir, "1000_t", "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nTRUNCATE t;")
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_t"]


# -- 5. unlock --terminate leaves live runners alone -----------------------------------------------


@pytest.fixture
def holder(database_url) -> Iterator[tuple[psycopg2.extensions.connection, int]]:
    """A runner-named session holding the migration lock, idle between statements."""
    connection = psycopg2.connect(database_url, application_name="lambda_db_setup")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (lock.LOCK_ID,))
        pid = cursor.fetchone()[1]
    try:
        yield connection, pid
    finally:
        connection.close()


def test_a_runner_idle_for_a_moment_is_live_and_needs_force(conn, holder) -> None:
    _, pid = holder
    with conn.cursor() as cursor:
        found = lock.find_holder(cursor)
        assert found.pid == pid and found.state == "idle" and 0 <= found.state_seconds < 30
        assert f"idle for {found.state_seconds:.1f} s)" in found.describe()
        with pytest.raises(LockError, match="idle for less than 30 s, so it may be between two statements"):
            lock.terminate(cursor, found)
        assert lock.find_holder(cursor).pid == pid  # still alive
        lock.terminate(cursor, found, even_if_active=True)
        assert lock.find_holder(cursor) is None


def test_a_runner_idle_for_longer_than_the_grace_is_ended_without_force(conn, holder) -> None:
    time.sleep(0.3)
    with conn.cursor() as cursor:
        lock.terminate(cursor, lock.find_holder(cursor), idle_grace_seconds=0.2)
        assert lock.find_holder(cursor) is None


def test_a_runner_inside_a_transaction_is_live(conn, holder) -> None:
    connection, pid = holder
    connection.autocommit = False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    time.sleep(0.3)
    with conn.cursor() as cursor:
        with pytest.raises(LockError, match="it is inside a transaction"):
            lock.terminate(cursor, lock.find_holder(cursor), idle_grace_seconds=0.1)
        assert lock.find_holder(cursor).pid == pid


def test_a_holder_that_is_not_a_runner_gets_the_sql_that_would_end_it(conn, database_url) -> None:
    other = psycopg2.connect(database_url, application_name="node-pg-migrate")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (lock.LOCK_ID,))
            pid = cursor.fetchone()[1]
        with conn.cursor() as cursor, pytest.raises(LockError) as caught:
            lock.terminate(cursor, lock.find_holder(cursor), even_if_active=True)
        assert f"not terminating pid {pid} (node-pg-migrate, connected since " in str(caught.value)
        assert f"`SELECT pg_terminate_backend({pid})` would end it" in str(caught.value)
        with other.cursor() as cursor:
            cursor.execute("SELECT 1")  # alive
    finally:
        other.close()


# -- 6. INVALID indexes and PostgreSQL's DETAIL ---------------------------------------------------------


def test_a_failed_concurrent_unique_index_is_never_recorded(conn, migrations_dir) -> None:
    query(conn, "CREATE TABLE codes (code text); INSERT INTO codes VALUES ('a'), ('a')")
    write_sql(
        migrations_dir,
        "1000_unique",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS codes_code ON codes (code);",
        header=NO_TX,
    )
    engine = Engine(conn, migrations_dir)
    with pytest.raises(MigrationFailedError) as first:
        engine.up()
    assert "(SQLSTATE 23505) in: CREATE UNIQUE INDEX" in str(first.value)
    assert "codes (code); DETAIL: Key (code)=(a) is duplicated.; INVALID index(es) left" in str(first.value)
    for _ in range(2):  # on every run, although IF NOT EXISTS now skips the build
        with pytest.raises(MigrationFailedError, match=r"^1000_unique\.sql: INVALID index\(es\) codes_code "):
            engine.up()
        assert applied_names(conn) == []
    query(conn, "DELETE FROM codes WHERE ctid = (SELECT max(ctid) FROM codes); DROP INDEX codes_code")
    engine.up()
    assert applied_names(conn) == ["1000_unique"]
    assert query(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'codes_code'::regclass") == [(True,)]


def test_an_invalid_index_on_a_table_the_migration_names_blocks_it(conn, migrations_dir) -> None:
    query(conn, "CREATE TABLE codes (code text); INSERT INTO codes VALUES ('a'), ('a')")
    with pytest.raises(psycopg2.Error):
        query(conn, "CREATE UNIQUE INDEX CONCURRENTLY broken ON codes (code)")
    write_sql(migrations_dir, "1000_more", "CREATE INDEX CONCURRENTLY codes_other ON codes (code);", header=NO_TX)
    with pytest.raises(MigrationFailedError, match=r"INVALID index\(es\) broken "):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == []


def test_detail_is_part_of_a_transactional_failure(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_dup", "CREATE TABLE k (id int PRIMARY KEY);\nINSERT INTO k VALUES (1), (1);")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    message = str(caught.value)
    assert message.startswith("1000_dup.sql: duplicate key value violates unique constraint")
    assert message.endswith("; DETAIL: Key (id)=(1) already exists.") and "\n" not in message
    assert applied_names(conn) == [] and tables(conn) == set()


# -- 7. down --to, redo dry runs, reversible ---------------------------------------------------------


def three(conn, migrations_dir) -> Engine:
    for name in ("1000_a", "2000_b", "3000_c"):
        create_table_migration(migrations_dir, name, name.split("_")[1])
    engine = Engine(conn, migrations_dir)
    engine.up()
    return engine


def test_down_to_reverts_newest_first_down_to_and_including_it(conn, migrations_dir) -> None:
    engine = three(conn, migrations_dir)
    dry = engine.down(to="2000_b", dry_run=True)
    assert [(o.name, o.action) for o in dry.outcomes] == [
        ("3000_c", Action.WOULD_REVERT),
        ("2000_b", Action.WOULD_REVERT),
    ]
    assert [o.name for o in engine.down(to="2000_b").reverted] == ["3000_c", "2000_b"]
    assert applied_names(conn) == ["1000_a"] and tables(conn) == {"public.a"}


@pytest.mark.parametrize("to", ["2000_b", "9000_nope"])
def test_down_to_a_migration_not_applied_is_refused_naming_it(conn, migrations_dir, to) -> None:
    engine = three(conn, migrations_dir)
    engine.down(to="2000_b")
    with pytest.raises(MigrationFileError, match=f"^--to {to}: no applied migration has that name$"):
        engine.down(to=to)
    assert applied_names(conn) == ["1000_a"]


def test_redo_dry_run_renders_downs_and_ups_takes_no_lock_changes_nothing(conn, migrations_dir, request) -> None:
    engine = three(conn, migrations_dir)
    request.getfixturevalue("holder")
    before = catalog(conn)
    result = engine.redo(2, dry_run=True)  # the lock is held by `holder`: a dry run does not need it
    assert result.dry_run
    assert [(o.name, o.direction) for o in result.outcomes] == [
        ("3000_c", "down"),
        ("2000_b", "down"),
        ("2000_b", "up"),
        ("3000_c", "up"),
    ]
    assert result.outcomes[0].sql == ("DROP TABLE c",) and result.outcomes[3].sql == ("CREATE TABLE c (id int)",)
    assert catalog(conn) == before


def test_up_dry_run_says_which_migrations_could_not_be_reverted(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_py(migrations_dir, "2000_one_way", 'pgm.sql("CREATE TABLE one_way (id int)")')
    write_sql(migrations_dir, "3000_idx", "CREATE INDEX CONCURRENTLY i ON a (id);", "DROP INDEX i;", header=NO_TX)
    write_py(migrations_dir, "4000_broken_down", 'pgm.sql("SELECT 1")', 'raise ValueError("oops")')
    outcomes = Engine(conn, migrations_dir).up(dry_run=True).outcomes
    assert [(o.name, o.reversible, o.use_transaction) for o in outcomes] == [
        ("1000_a", True, True),
        ("2000_one_way", False, True),
        ("3000_idx", True, False),
        ("4000_broken_down", False, True),
    ]


def test_irreversible_refusal_names_the_migration_and_says_nothing_changed(conn, migrations_dir) -> None:
    assert discovery.IrreversibleMigrationError is IrreversibleMigrationError
    create_table_migration(migrations_dir, "1000_a", "a")
    write_py(migrations_dir, "2000_one_way", 'pgm.sql("CREATE TABLE one_way (id int)")')
    engine = Engine(conn, migrations_dir)
    engine.up()
    before = catalog(conn)
    for command in (lambda: engine.down(2), lambda: engine.redo(), lambda: engine.down(dry_run=True)):
        with pytest.raises(IrreversibleMigrationError) as caught:
            command()
        assert str(caught.value) == "2000_one_way.py: no down(pgm) function; down refused, nothing was changed"
        assert caught.value.migration == "2000_one_way"
    assert catalog(conn) == before


# -- 8. Ctrl-C ------------------------------------------------------------------------------------------


def test_ctrl_c_between_migrations_reports_what_was_applied(conn, migrations_dir) -> None:
    for name in ("1000_a", "2000_b", "3000_c"):
        create_table_migration(migrations_dir, name, name.split("_")[1])

    def interrupt_after_first(outcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as caught:
        Engine(conn, migrations_dir, on_migration=interrupt_after_first).up()
    assert str(caught.value) == "interrupted: 1 migration(s) applied (1000_a); 2000_b was not applied"
    assert caught.value.applied == ["1000_a"] and caught.value.interrupted == "2000_b"
    assert applied_names(conn) == ["1000_a"] and tables(conn) == {"public.a"} and lock_is_free(conn)


def test_sigint_during_a_transaction_stops_the_run_after_its_round_trip(conn, migrations_dir) -> None:
    """A transaction travels in one round trip with its COMMIT: Ctrl-C takes effect when it returns, so the
    migration it hit is applied whole (and reported so) and the next is not started."""
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_slow", "SELECT pg_sleep(1.5);\nCREATE TABLE slow (id int);")
    create_table_migration(migrations_dir, "3000_c", "c")
    with pytest.raises(RunInterrupted) as caught, sigint_after(0.6):
        Engine(conn, migrations_dir).up()
    assert str(caught.value) == "interrupted: 2 migration(s) applied (1000_a, 2000_slow); 3000_c was not applied"
    assert applied_names(conn) == ["1000_a", "2000_slow"] and tables(conn) == {"public.a", "public.slow"}
    assert lock_is_free(conn)
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_a", "2000_slow", "3000_c"]


def test_sigint_during_a_no_transaction_statement_stops_before_the_next(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_slow", "SELECT pg_sleep(1.5);\nCREATE TABLE slow (id int);", header=NO_TX)
    create_table_migration(migrations_dir, "3000_c", "c")
    with pytest.raises(RunInterrupted) as caught, sigint_after(0.6):
        Engine(conn, migrations_dir).up()
    assert str(caught.value) == (
        "interrupted: 1 migration(s) applied (1000_a); 2000_slow was not applied"
        " (it runs without a transaction: what its statements did before Ctrl-C stays; not recorded)"
    )
    assert applied_names(conn) == ["1000_a"] and tables(conn) == {"public.a"} and lock_is_free(conn)
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_a", "2000_slow", "3000_c"]


@contextmanager
def sigint_after(seconds: float) -> Iterator[None]:
    """Ctrl-C, as the terminal sends it, ``seconds`` from now."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def test_ctrl_c_during_down_says_reverted(conn, migrations_dir) -> None:
    engine = three(conn, migrations_dir)

    def interrupt(outcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match=r"^interrupted: 1 migration\(s\) reverted \(3000_c\); 2000_b was not"):
        Engine(conn, migrations_dir, on_migration=interrupt).down(2)
    assert applied_names(conn) == ["1000_a", "2000_b"] and tables(conn) == {"public.a", "public.b"}
    assert engine.plan().problems == []
