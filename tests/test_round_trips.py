"""A transactional migration travels in one round trip (BEGIN, its statements, its row, COMMIT); only a failure
costs more: the transaction runs again statement by statement, so the error still names its statement.

Every test ends with the invariant: ``pgmigrations`` and the schema agree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import ClassVar

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from lambda_db_setup import execute, lock, tracking
from lambda_db_setup.discovery import parse_file_name
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import MigrationFailedError, MigrationFileError
from lambda_db_setup.execute import Executor
from lambda_db_setup.options import EngineOptions
from lambda_db_setup.prepare import Prepared
from lambda_db_setup.session import open_session
from tests import safety
from tests.helpers import applied_names, create_table_migration, table_exists, write_py, write_sql
from tests.safety import catalog

module_database_url = safety.module_database_url
database_url = safety.database_url


class CountingCursor(psycopg2.extensions.cursor):
    """Keeps every query it sends: each ``execute`` is one simple-query round trip."""

    sent: ClassVar[list[str]] = []

    def execute(self, query, params=None):
        CountingCursor.sent.append(query if isinstance(query, str) else query.as_string(self))
        return super().execute(query, params)


@pytest.fixture
def counted(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    CountingCursor.sent = []
    connection = psycopg2.connect(database_url, cursor_factory=CountingCursor)
    yield connection
    connection.close()


def user_tables(conn) -> set[str]:
    return {relation for relation, kind, _ in catalog(conn)["relations"] if kind == "r"}


def assert_agree(conn, tables_of: dict[str, str]) -> None:
    """Each migration's table exists exactly when its row does."""
    applied = set(applied_names(conn))
    for name, table in tables_of.items():
        assert table_exists(conn, table) == (name in applied), (name, table, applied)


def up_fails(conn, migrations_dir) -> MigrationFailedError:
    """The error ``up`` fails with."""
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    return caught.value


def test_each_transactional_migration_is_one_round_trip(counted, conn, migrations_dir) -> None:
    names = {f"{1000 + index}_t{index}": f"t{index}" for index in range(30)}
    for name, table in names.items():
        create_table_migration(migrations_dir, name, table)
    write_py(
        migrations_dir,
        "2000_several",
        'pgm.create_table("several", {"id": "serial PRIMARY KEY"})\npgm.add_column("several", "note", "text")\n'
        'pgm.create_index("several", "note")\npgm.sql("COMMENT ON TABLE several IS \'100% sure\'")',
    )
    Engine(counted, migrations_dir).up()
    # settings, lock, read pgmigrations, create it; then the migrations, and the release
    opening = CountingCursor.sent[:4]
    assert opening[-1].startswith("CREATE TABLE IF NOT EXISTS") and "pgmigrations" in opening[-1]
    migrations = [query for query in CountingCursor.sent if query.startswith("BEGIN")]
    assert len(migrations) == 31
    assert len(CountingCursor.sent) == len(opening) + 31 + 1
    assert applied_names(conn) == [*names, "2000_several"]
    assert_agree(conn, names | {"2000_several": "several"})


def test_a_deadline_costs_no_round_trip(counted, conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_b", "CREATE TABLE b (id int);\nCREATE TABLE b2 (id int);")
    Engine(counted, migrations_dir, EngineOptions(deadline=time.monotonic() + 600)).up()
    assert len([query for query in CountingCursor.sent if query.startswith("BEGIN")]) == 2
    assert len(CountingCursor.sent) == 7
    assert applied_names(conn) == ["1000_a", "2000_b"] and table_exists(conn, "b2")


def test_the_deadline_shrinks_from_statement_to_statement(conn, migrations_dir) -> None:
    """Each statement of a batch gets what is left of the deadline, computed by the server: three 1.2 s
    statements cannot run 3.6 s against a 2.5 s deadline."""
    slow = "SELECT pg_sleep(1.2);"
    write_sql(migrations_dir, "1000_slow", f"CREATE TABLE slow (id int);\n{slow}\n{slow}\n{slow}")
    options = EngineOptions(deadline=time.monotonic() + 2.5, start_margin_seconds=0)
    started = time.monotonic()
    with pytest.raises(MigrationFailedError, match=r"statement timeout \(SQLSTATE 57014\)") as caught:
        Engine(conn, migrations_dir, options).up()
    assert time.monotonic() - started < 3.5  # the batch stopped at the deadline; the replay got nothing left
    assert caught.value.migration == "1000_slow"
    assert applied_names(conn) == [] and not table_exists(conn, "slow")


def test_a_failure_names_its_statement_and_applies_nothing(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(
        migrations_dir,
        "2000_bad",
        "CREATE TABLE first (id int);\nINSERT INTO missing_table VALUES (1);\nCREATE TABLE third (id int);",
    )
    error = up_fails(conn, migrations_dir)
    message = str(error)
    assert message.startswith('2000_bad.sql: relation "missing_table" does not exist (SQLSTATE 42P01) in:')
    assert "INSERT INTO missing_table VALUES (1)" in message and "CREATE TABLE third" not in message
    assert "first run" not in message  # the second run failed the same way: nothing more to say
    assert error.statement == "INSERT INTO missing_table VALUES (1)"
    assert applied_names(conn) == ["1000_a"] and user_tables(conn) == {"a"}


@pytest.mark.parametrize(
    "statements",
    [
        "CREATE TABLE joined (id int) -- a trailing comment, no newline after it",
        "CREATE TABLE joined (id int);",
        "CREATE TABLE joined (id int);;",
        "CREATE TABLE joined (note text DEFAULT '%s %(name)s 100%');\nSELECT '%' || $$;\n$$",
        "CREATE FUNCTION joined_f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\nCREATE TABLE joined (id int)",
        "/* a block comment */ CREATE TABLE joined (id int) /* and one after */",
    ],
)
def test_statements_join_into_one_round_trip_whatever_they_end_with(conn, migrations_dir, statements) -> None:
    write_sql(migrations_dir, "1000_joined", statements)
    create_table_migration(migrations_dir, "2000_after", "after")
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_joined", "2000_after"]
    assert table_exists(conn, "joined") and table_exists(conn, "after")


@pytest.mark.parametrize(
    "statement", ["CREATE TABLE joined (id int); /* never closed", "SELECT 'never closed", "SELECT $x$ never closed"]
)
def test_sql_that_would_swallow_the_commit_is_refused_before_anything_runs(conn, migrations_dir, statement) -> None:
    """Text that ends inside a quote or comment would swallow the engine's row and COMMIT: refused with its
    file and statement before the first migration runs."""
    create_table_migration(migrations_dir, "1000_first", "first")
    write_py(migrations_dir, "2000_swallows", f'pgm.sql("CREATE TABLE second (id int)")\npgm.sql({statement!r})')
    with pytest.raises(MigrationFileError, match=r"^2000_swallows\.py: statement 2 \(.*\): line 1, column \d+: a") as e:
        Engine(conn, migrations_dir).up()
    assert "never ends: PostgreSQL would read on into whatever is sent after it" in str(e.value)
    assert applied_names(conn) == [] and user_tables(conn) == set()


def test_a_failing_migration_runs_once(conn, migrations_dir) -> None:
    """The failing statement is named from the markers the server sent before it, not by running it again."""
    with conn.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE calls")  # nextval is not rolled back: it counts the runs
    write_sql(
        migrations_dir,
        "1000_once",
        "SELECT nextval('calls');\nCREATE TABLE once_t (id int);\nINSERT INTO missing_table VALUES (1);",
    )
    error = up_fails(conn, migrations_dir)
    assert error.statement == "INSERT INTO missing_table VALUES (1)"
    with conn.cursor() as cursor:
        cursor.execute("SELECT last_value FROM calls")
        assert cursor.fetchone() == (1,)
    assert applied_names(conn) == [] and not table_exists(conn, "once_t")


@pytest.mark.parametrize("level", ["warning", "error"])
def test_the_failing_statement_is_named_whatever_client_min_messages_says(conn, migrations_dir, level) -> None:
    write_sql(
        migrations_dir,
        "1000_quiet",
        f"SET client_min_messages = {level};\nCREATE TABLE quiet (id int);\nSELECT 1 / 0;\nCREATE TABLE b (id int);",
    )
    error = up_fails(conn, migrations_dir)
    assert error.statement == "SELECT 1 / 0" and error.sqlstate == "22012"
    assert applied_names(conn) == [] and not table_exists(conn, "quiet")


def test_without_temporary_objects_the_failing_statement_is_still_named(database_url, conn, migrations_dir) -> None:
    """A role without TEMPORARY on the database: the markers are advisory locks, which any role may take, so a
    failure of a multi-statement migration still names its statement."""
    role = f"notemp_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        cursor.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(conn.info.dbname)))
        cursor.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
    dsn = psycopg2.extensions.parse_dsn(database_url) | {"user": role}
    runner = psycopg2.connect(**dsn)
    try:
        create_table_migration(migrations_dir, "1000_a", "a")
        write_sql(migrations_dir, "2000_bad", "CREATE TABLE b (id int);\nSELECT 1 / 0;")
        with pytest.raises(MigrationFailedError) as caught:
            Engine(runner, migrations_dir).up()
        assert caught.value.statement == "SELECT 1 / 0" and caught.value.migration == "2000_bad"
        assert applied_names(conn) == ["1000_a"] and not table_exists(conn, "b")
    finally:
        runner.close()
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(sql.Identifier(conn.info.dbname)))
            cursor.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(sql.Identifier(role), sql.Identifier(role)))


def test_a_migration_without_statements_whose_row_fails_is_named(conn, migrations_dir) -> None:
    """Nothing but the engine's own SQL in the transaction: the failure is past the statements, and says so."""
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL CHECK (name <> '2000_empty'),"
            " run_on timestamp NOT NULL, checksum varchar(64))"
        )
    create_table_migration(migrations_dir, "1000_a", "a")
    write_py(migrations_dir, "2000_empty", "pass")
    error = up_fails(conn, migrations_dir)
    assert str(error).startswith('2000_empty.py: new row for relation "pgmigrations" violates check constraint')
    assert " when committing it; nothing of it was applied" in str(error)
    assert applied_names(conn) == ["1000_a"]


def test_a_deferred_constraint_fails_when_committing(conn, migrations_dir) -> None:
    write_sql(
        migrations_dir,
        "1000_deferred",
        "CREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO child VALUES (1);",
    )
    error = up_fails(conn, migrations_dir)
    assert str(error).startswith('1000_deferred.sql: insert or update on table "child" violates foreign key')
    assert " when committing it; nothing of it was applied; DETAIL: " in str(error)
    assert applied_names(conn) == [] and not table_exists(conn, "parent")


def test_a_commit_that_slipped_past_the_checks_is_reported_not_recorded(conn, database_url, migrations_dir) -> None:
    """Defence in depth: `prepare` refuses COMMIT in a transactional migration; here it is bypassed, as a
    parser gap would. The transaction-level lock is gone by the row, so nothing is recorded."""
    path = write_sql(migrations_dir, "1000_commits", "SELECT 1;")
    prepared = Prepared(("CREATE TABLE before_commit (id int)", "COMMIT", "CREATE TABLE after_commit (id int)"))
    runner = psycopg2.connect(database_url)
    try:
        with open_session(runner, EngineOptions(), take_lock=True) as session:
            tracking.ensure_table(session.cursor, session.options.tracking)
            with pytest.raises(MigrationFailedError, match="a statement ended the migration's transaction") as caught:
                Executor(session).run([(parse_file_name(path), "up", prepared)])
    finally:
        runner.close()
    assert caught.value.migration == "1000_commits" and caught.value.sqlstate == lock.TRANSACTION_ENDED
    assert "what ran before it was committed without its row" in str(caught.value)
    assert applied_names(conn) == []
    assert table_exists(conn, "before_commit") and not table_exists(conn, "after_commit")


def test_transaction_control_is_still_refused_before_anything_runs(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_commits", "CREATE TABLE b (id int);\n/* a /* nested */ comment */ COMMIT;")
    with pytest.raises(MigrationFileError, match="ends or opens a transaction itself"):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == [] and user_tables(conn) == set()


def test_all_but_the_last_commit_skip_the_wait_for_the_disk(counted, conn, migrations_dir) -> None:
    for index in range(4):
        create_table_migration(migrations_dir, f"{1000 + index}_t{index}", f"t{index}")
    Engine(counted, migrations_dir).up()
    batches = [query for query in CountingCursor.sent if query.startswith("BEGIN")]
    asynchronous = [execute.ASYNCHRONOUS in batch for batch in batches]
    assert asynchronous == [True, True, True, False]


def test_a_run_that_fails_waits_for_what_it_committed(counted, conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    write_sql(migrations_dir, "3000_bad", "INSERT INTO missing_table VALUES (1);")
    with pytest.raises(MigrationFailedError):
        Engine(counted, migrations_dir).up()
    flushes = [query for query in CountingCursor.sent if query.startswith('UPDATE "public"."pgmigrations" SET run_on')]
    assert len(flushes) == 1
    assert applied_names(conn) == ["1000_a", "2000_b"]
