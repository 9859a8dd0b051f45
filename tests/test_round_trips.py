"""A transactional migration travels in one round trip (BEGIN, its statements, its row, COMMIT); only a failure
costs more: the transaction runs again statement by statement, so the error still names its statement.

Every test ends with the invariant: ``pgmigrations`` and the schema agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import ClassVar

import psycopg2
import psycopg2.extensions
import pytest

from lambda_db_setup import lock, tracking
from lambda_db_setup.builder import MigrationBuilder
from lambda_db_setup.discovery import parse_file_name
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import MigrationFailedError, MigrationFileError
from lambda_db_setup.execute import Executor
from lambda_db_setup.options import EngineOptions
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
    opening = CountingCursor.sent[:4]  # settings, lock, read pgmigrations, create it; then the migrations
    migrations = [query for query in CountingCursor.sent if query.startswith("BEGIN")]
    assert len(migrations) == 31
    assert len(CountingCursor.sent) == len(opening) + 31 + 1  # and the lock's release
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
def test_sql_that_would_swallow_the_commit_fails_and_records_nothing(conn, migrations_dir, statement) -> None:
    write_py(migrations_dir, "1000_swallows", f"pgm.sql({statement!r})")
    with pytest.raises(MigrationFailedError, match=r"^1000_swallows\.py: unterminated") as caught:
        Engine(conn, migrations_dir).up()
    assert caught.value.sqlstate == "42601"
    assert applied_names(conn) == [] and user_tables(conn) == set()


def test_a_failure_that_does_not_recur_commits_once(conn, migrations_dir) -> None:
    """The first run (one round trip) fails; the second, statement by statement, does not: it is applied
    and recorded once, as any attempt that succeeds."""
    with conn.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE flaky")  # nextval is not rolled back: the second run sees 2
    write_sql(
        migrations_dir,
        "1000_flaky",
        "CREATE TABLE flaky_t (id int);\nINSERT INTO flaky_t SELECT 1 / (nextval('flaky') - 1)::int;",
    )
    result = Engine(conn, migrations_dir).up()
    assert [outcome.name for outcome in result.ran] == ["1000_flaky"]
    assert applied_names(conn) == ["1000_flaky"]
    with conn.cursor() as cursor:
        cursor.execute("SELECT id FROM flaky_t")
        assert cursor.fetchall() == [(1,)]


def test_a_second_run_failing_differently_also_reports_the_first_error(conn, migrations_dir) -> None:
    with conn.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE flaky")
    write_sql(
        migrations_dir,
        "1000_flaky",
        "SELECT 1 / (nextval('flaky') - 1)::int;\nINSERT INTO missing_table VALUES (1);",
    )
    message = str(up_fails(conn, migrations_dir))
    assert message.startswith('1000_flaky.sql: relation "missing_table" does not exist (SQLSTATE 42P01)')
    assert message.endswith("(its first run, in one round trip, failed with: division by zero, SQLSTATE 22012)")
    assert applied_names(conn) == []


def test_a_commit_that_slipped_past_the_checks_is_reported_not_recorded(conn, database_url, migrations_dir) -> None:
    """Defence in depth: `prepare` refuses COMMIT in a transactional migration; here it is bypassed, as a
    parser gap would. The transaction-level lock is gone by the row, so nothing is recorded."""
    path = write_sql(migrations_dir, "1000_commits", "SELECT 1;")
    builder = MigrationBuilder()
    for statement in ("CREATE TABLE before_commit (id int)", "COMMIT", "CREATE TABLE after_commit (id int)"):
        builder.sql(statement)
    runner = psycopg2.connect(database_url)
    try:
        with open_session(runner, EngineOptions(), take_lock=True) as session:
            tracking.ensure_table(session.cursor)
            with pytest.raises(MigrationFailedError, match="a statement ended the migration's transaction") as caught:
                Executor(session).run([(parse_file_name(path), "up", builder)])
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
    asynchronous = ["SET LOCAL synchronous_commit = off\n;\nCOMMIT" in batch for batch in batches]
    assert asynchronous == [True, True, True, False]


def test_a_run_that_fails_waits_for_what_it_committed(counted, conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    write_sql(migrations_dir, "3000_bad", "INSERT INTO missing_table VALUES (1);")
    with pytest.raises(MigrationFailedError):
        Engine(counted, migrations_dir).up()
    flushes = [query for query in CountingCursor.sent if query.startswith("UPDATE public.pgmigrations SET run_on")]
    assert len(flushes) == 1
    assert applied_names(conn) == ["1000_a", "2000_b"]
