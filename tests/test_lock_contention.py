"""Live traffic holding table locks: a migration fails fast on ``lock_timeout``, is retried when that is safe,
and finally fails naming the contention, the table and the holder. Nothing is left half-applied.

Timeouts are short (lock_timeout 200 ms, backoff 50 ms); the tests assert attempts and outcomes, not durations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest

from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import LockContentionError, MigrationFailedError
from lambda_db_setup.options import EngineOptions
from tests import safety
from tests.helpers import applied_names, write_py, write_sql
from tests.safety import catalog

module_database_url = safety.module_database_url
database_url = safety.database_url

FAST = EngineOptions(lock_timeout_ms=200, lock_retries=2, lock_retry_backoff_seconds=0.05, application_name="ldbs-test")


@contextmanager
def traffic(database_url: str, *statements: str, application_name: str = "web-app") -> Iterator[tuple]:
    """Another session inside an open transaction that ran ``statements`` (so holds their locks)."""
    other = psycopg2.connect(database_url, application_name=application_name)
    try:
        with other.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            cursor.execute("SELECT pg_backend_pid()")
            yield other, cursor.fetchone()[0]
    finally:
        other.close()


def items_table(conn, rows: int = 3) -> None:
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE items (id int, code text); CREATE TABLE unrelated (id int)")
        cursor.execute("INSERT INTO items SELECT g, 'c' || g FROM generate_series(1, %s) AS g", (rows,))


def columns(conn, table: str) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0", (table,))
        return [row[0] for row in cursor.fetchall()]


def invalid_indexes(conn) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize(
    "holding",
    ["LOCK TABLE items, unrelated IN ACCESS SHARE MODE", "SELECT count(*) FROM items JOIN unrelated USING (id)"],
    ids=["lock-table", "pending-select"],
)
def test_alter_table_behind_live_traffic_fails_fast_after_retries(conn, database_url, migrations_dir, holding) -> None:
    items_table(conn)
    write_sql(
        migrations_dir, "1000_add_column", "CREATE TABLE fresh (id int);\nALTER TABLE items ADD COLUMN note text;"
    )
    before = catalog(conn)
    with traffic(database_url, holding) as (_, holder_pid), pytest.raises(LockContentionError) as caught:
        Engine(conn, migrations_dir, FAST).up()
    error = caught.value
    assert error.attempts == 3  # the first try and lock_retries=2 retries
    assert error.conflicts == [("items", holder_pid, "web-app")]  # not `unrelated`: the statement does not name it
    assert error.sqlstate == "55P03"
    assert str(error) == (
        f"1000_add_column.sql: lock contention: could not lock table items (held by pid {holder_pid} web-app) within"
        " lock_timeout (200 ms), gave up after 3 attempts; live traffic holds a conflicting lock: retry when it is"
        " quieter or raise LOCK_TIMEOUT_MS / --lock-timeout-ms"
    )
    assert catalog(conn) == before  # neither `fresh` nor the column: the whole migration rolled back each time


def test_migration_succeeds_when_traffic_lets_go_during_the_retries(conn, database_url, migrations_dir) -> None:
    items_table(conn)
    write_py(migrations_dir, "1000_add_column", 'pgm.sql("ALTER TABLE items ADD COLUMN note text")')
    options = EngineOptions(lock_timeout_ms=200, lock_retries=5, lock_retry_backoff_seconds=0.05)
    with traffic(database_url, "LOCK TABLE items IN ACCESS SHARE MODE") as (other, _):

        def release_after_first_timeout() -> None:
            watcher = psycopg2.connect(database_url)
            watcher.autocommit = True  # a new pg_stat_activity snapshot per query
            try:
                with watcher.cursor() as cursor:
                    for _ in range(200):  # until the runner waits for the lock (bounded: 10 s)
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE '%ALTER TABLE items%' AND datname = current_database()"
                        )
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.05)
            finally:
                watcher.close()
            time.sleep(0.3)  # longer than lock_timeout: the first attempt has failed by now
            other.rollback()

        releaser = threading.Thread(target=release_after_first_timeout)
        releaser.start()
        try:
            result = Engine(conn, migrations_dir, options).up()
        finally:
            releaser.join()
    assert [o.name for o in result.ran] == ["1000_add_column"]
    assert result.ran[0].attempts >= 2
    assert "note" in columns(conn, "items")
    assert applied_names(conn) == ["1000_add_column"]


def test_lock_and_statement_timeouts_are_set_on_the_session(conn, migrations_dir) -> None:
    assert EngineOptions().lock_timeout_ms == 5000
    Engine(conn, migrations_dir, EngineOptions(lock_timeout_ms=1234, statement_timeout_ms=4321)).up()
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
            " current_setting('client_connection_check_interval')"
        )
        assert cursor.fetchone() == ("1234ms", "4321ms", "1s")


def test_statement_timeout_cancels_a_slow_migration_without_retrying(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(10);")
    options = EngineOptions(statement_timeout_ms=200, lock_retries=3, lock_retry_backoff_seconds=0.05)
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir, options).up()
    assert not isinstance(caught.value, LockContentionError)
    assert str(caught.value) == (
        "1000_slow.sql: canceling statement due to statement timeout (SQLSTATE 57014) in: SELECT pg_sleep(10)"
    )
    assert catalog(conn) == {"relations": [], "functions": [], "pgmigrations": []}


# -- migrations without a transaction (CREATE INDEX CONCURRENTLY) --------------------------------------


def concurrent_index(migrations_dir, *statements: str, name: str = "2000_index") -> None:
    write_sql(migrations_dir, name, "\n".join(statements), header="-- pgm:no-transaction\n")


def test_concurrent_index_waiting_for_the_table_lock_is_retried(conn, database_url, migrations_dir) -> None:
    items_table(conn)
    concurrent_index(migrations_dir, "CREATE INDEX CONCURRENTLY items_code_idx ON items (code);")
    with (
        traffic(database_url, "LOCK TABLE items IN SHARE MODE") as (_, holder_pid),
        pytest.raises(LockContentionError) as caught,
    ):
        Engine(conn, migrations_dir, FAST).up()
    assert caught.value.attempts == 3  # nothing was created before the lock wait: safe to retry
    assert caught.value.conflicts == [("items", holder_pid, "web-app")]
    assert invalid_indexes(conn) == []
    assert applied_names(conn) == []
    Engine(conn, migrations_dir, FAST).up()  # traffic gone: it builds
    assert applied_names(conn) == ["2000_index"]


def test_concurrent_index_timing_out_after_creating_an_invalid_index_is_not_retried(
    conn, database_url, migrations_dir
) -> None:
    """A writer's open transaction makes the build wait after the (invalid) index exists: running it again
    would trip over that index, so the engine stops and says which index to drop."""
    items_table(conn)
    concurrent_index(migrations_dir, "CREATE INDEX CONCURRENTLY items_code_idx ON items (code);")
    with traffic(database_url, "INSERT INTO items VALUES (99, 'x')"), pytest.raises(LockContentionError) as caught:
        Engine(conn, migrations_dir, FAST).up()
    assert caught.value.attempts == 1
    message = str(caught.value)
    assert "within lock_timeout (200 ms), not retried: it left an INVALID index;" in message
    assert message.endswith(
        "; INVALID index(es) left by a failed concurrent build: items_code_idx"
        " (DROP INDEX CONCURRENTLY them before running it again)"
    )
    assert invalid_indexes(conn) == ["items_code_idx"]
    assert applied_names(conn) == []


def test_failing_unique_concurrent_index_reports_the_invalid_index(conn, migrations_dir) -> None:
    items_table(conn)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO items VALUES (100, 'c1')")  # a duplicate code
    concurrent_index(migrations_dir, "CREATE UNIQUE INDEX CONCURRENTLY items_code_key ON items (code);")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir, FAST).up()
    message = str(caught.value)
    assert message.startswith(
        '2000_index.sql: could not create unique index "items_code_key" (SQLSTATE 23505) in: CREATE UNIQUE INDEX'
    )
    assert message.endswith(
        "; INVALID index(es) left by a failed concurrent build: items_code_key"
        " (DROP INDEX CONCURRENTLY them before running it again)"
    )
    assert applied_names(conn) == []


def test_an_old_invalid_index_does_not_stop_retries_of_another_build(conn, database_url, migrations_dir) -> None:
    items_table(conn)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO items VALUES (100, 'c1')")
    with pytest.raises(psycopg2.errors.UniqueViolation), conn.cursor() as cursor:
        cursor.execute("CREATE UNIQUE INDEX CONCURRENTLY leftover_key ON items (code)")
    concurrent_index(migrations_dir, "CREATE INDEX CONCURRENTLY items_id_idx ON items (id);")
    with traffic(database_url, "LOCK TABLE items IN SHARE MODE"), pytest.raises(LockContentionError) as caught:
        Engine(conn, migrations_dir, FAST).up()
    assert caught.value.attempts == 3
    assert "gave up after 3 attempts" in str(caught.value)
    assert str(caught.value).endswith(
        "failed concurrent build: leftover_key (DROP INDEX CONCURRENTLY them before running it again)"
    )


def test_lock_timeout_on_a_later_statement_without_transaction_is_not_retried(
    conn, database_url, migrations_dir
) -> None:
    items_table(conn)
    concurrent_index(
        migrations_dir,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS unrelated_id_idx ON unrelated (id);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_code_idx ON items (code);",
    )
    with (
        traffic(database_url, "LOCK TABLE items IN SHARE MODE") as (_, holder_pid),
        pytest.raises(LockContentionError) as caught,
    ):
        Engine(conn, migrations_dir, FAST).up()
    assert caught.value.attempts == 1
    assert str(caught.value) == (
        f"2000_index.sql: lock contention: could not lock table items (held by pid {holder_pid} web-app) within"
        " lock_timeout (200 ms), not retried: statements before it already ran outside a transaction; live traffic"
        " holds a conflicting lock: retry when it is quieter or raise LOCK_TIMEOUT_MS / --lock-timeout-ms; it runs"
        " without a transaction: the 1 statement(s) before the failing one stay applied and it is not recorded;"
        " make them re-runnable (IF NOT EXISTS) or undo them before running it again"
    )
    assert applied_names(conn) == []
    Engine(conn, migrations_dir, FAST).up()  # re-runnable statements: the next run completes it
    assert applied_names(conn) == ["2000_index"]
