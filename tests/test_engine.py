"""The engine against a real PostgreSQL: order, tracking, transactions, checks, drift, lock, down/redo."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from lambda_db_setup import lock
from lambda_db_setup.discovery import discover, parse_timestamp
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import (
    DriftError,
    LockError,
    MigrationFailedError,
    MigrationFileError,
    OrderError,
    TrackingTableError,
)
from lambda_db_setup.options import EngineOptions
from tests.helpers import applied_names, create_table_migration, table_exists, write_py, write_sql


def test_discovery_orders_by_numeric_prefix_with_17_digit_utc_dates(migrations_dir) -> None:
    create_table_migration(migrations_dir, "20240101000000000_from_date", "a")  # 1704067200000 ms
    create_table_migration(migrations_dir, "1704067200001_right_after", "b")
    create_table_migration(migrations_dir, "999_early", "c")
    (migrations_dir / "__init__.py").write_text("")
    (migrations_dir / "README.md").write_text("not a migration")
    names = [migration.name for migration in discover(migrations_dir)]
    assert names == ["999_early", "20240101000000000_from_date", "1704067200001_right_after"]
    assert parse_timestamp("20240101000000123") == 1704067200123


def test_tracking_table_has_node_pg_migrate_shape(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    Engine(conn, migrations_dir).up()
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'pgmigrations' ORDER BY ordinal_position"
        )
        columns = cursor.fetchall()
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.pgmigrations'::regclass"
        )
        constraints = [row[0] for row in cursor.fetchall()]
    assert columns == [
        ("id", "integer", None, "NO"),
        ("name", "character varying", 255, "NO"),
        ("run_on", "timestamp without time zone", None, "NO"),
        ("checksum", "character varying", 64, "YES"),
    ]
    assert constraints == ["PRIMARY KEY (id)"]


def test_up_applies_pending_in_order_and_records_each(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "2000_second", "second")
    create_table_migration(migrations_dir, "1000_first", "first")
    write_sql(migrations_dir, "3000_third", "CREATE TABLE third (id int);\nINSERT INTO third VALUES (1);")
    result = Engine(conn, migrations_dir).up()
    assert [outcome.name for outcome in result.ran] == ["1000_first", "2000_second", "3000_third"]
    assert all(outcome.duration_ms >= 0 for outcome in result.ran)
    assert applied_names(conn) == ["1000_first", "2000_second", "3000_third"]
    again = Engine(conn, migrations_dir).up()
    assert again.ran == []
    assert again.already_applied == ["1000_first", "2000_second", "3000_third"]


def test_up_count_and_to(conn, migrations_dir) -> None:
    for index, table in enumerate(["a", "b", "c", "d"], start=1):
        create_table_migration(migrations_dir, f"{index}000_{table}", table)
    engine = Engine(conn, migrations_dir)
    assert [o.name for o in engine.up(1).ran] == ["1000_a"]
    assert [o.name for o in engine.up(to="3000_c").ran] == ["2000_b", "3000_c"]
    assert engine.up().pending == []
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


def test_failing_migration_rolls_back_entirely_and_stops(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_ok", "ok")
    write_py(
        migrations_dir,
        "2000_broken",
        """
        pgm.sql("CREATE TABLE half (id int)")
        pgm.sql("INSERT INTO half VALUES (1)")
        pgm.sql("SELECT * FROM no_such_table")
        """,
    )
    create_table_migration(migrations_dir, "3000_after", "after")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    error = caught.value
    assert error.migration == "2000_broken"
    assert error.sqlstate == "42P01"
    assert "no_such_table" in error.statement
    assert 'relation "no_such_table" does not exist' in str(error)
    assert "2000_broken.py" in str(error)
    assert applied_names(conn) == ["1000_ok"]
    assert not table_exists(conn, "half")
    assert not table_exists(conn, "after")


def test_multi_statement_sql_file_error_rolls_back_the_whole_file(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_multi", "CREATE TABLE m1 (id int);\nCREATE TABLE m2 (id int);\nSELEC 1;")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    assert caught.value.sqlstate == "42601"
    assert "SELEC 1" in caught.value.statement
    assert not table_exists(conn, "m1")
    assert applied_names(conn) == []


def test_no_transaction_migration_runs_create_index_concurrently(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_table", "items")
    write_py(
        migrations_dir,
        "2000_index",
        """
        pgm.no_transaction()
        pgm.sql("CREATE INDEX CONCURRENTLY items_id_idx ON items (id)")
        """,
    )
    write_sql(
        migrations_dir,
        "3000_sql_index",
        "CREATE INDEX CONCURRENTLY items_id2_idx ON items (id);\n"
        "CREATE INDEX CONCURRENTLY items_id3_idx ON items (id);",
        header="-- pgm:no-transaction\n",
    )
    Engine(conn, migrations_dir).up()
    with conn.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'items' ORDER BY 1")
        assert [row[0] for row in cursor.fetchall()] == ["items_id2_idx", "items_id3_idx", "items_id_idx"]
    assert applied_names(conn)[-1] == "3000_sql_index"


def test_concurrent_index_inside_transaction_fails_cleanly(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_table", "items")
    write_py(migrations_dir, "2000_index", 'pgm.sql("CREATE INDEX CONCURRENTLY items_idx ON items (id)")')
    with pytest.raises(MigrationFailedError, match="cannot run inside a transaction block"):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_table"]


def test_migration_that_commits_itself_is_refused_before_running(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_commits", "CREATE TABLE c1 (id int);\nCOMMIT;\nCREATE TABLE c2 (id int);")
    with pytest.raises(MigrationFileError, match="ends or opens a transaction itself"):
        Engine(conn, migrations_dir).up()
    assert not table_exists(conn, "c1")
    assert applied_names(conn) == []


def test_new_file_sorting_before_applied_one_is_refused(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "2000_applied", "applied")
    Engine(conn, migrations_dir).up()
    create_table_migration(migrations_dir, "1000_late_arrival", "late")
    with pytest.raises(OrderError) as caught:
        Engine(conn, migrations_dir).up()
    assert str(caught.value) == "Not run migration 1000_late_arrival is preceding already run migration 2000_applied"
    assert not table_exists(conn, "late")


def test_applied_migration_without_file_is_refused(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    doomed = create_table_migration(migrations_dir, "2000_b", "b")
    create_table_migration(migrations_dir, "3000_c", "c")
    Engine(conn, migrations_dir).up()
    doomed.unlink()
    with pytest.raises(OrderError, match="applied migration 2000_b has no file any more"):
        Engine(conn, migrations_dir).up()


def test_database_ahead_of_files_is_an_error_unless_allowed(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    newest = create_table_migration(migrations_dir, "2000_b", "b")
    Engine(conn, migrations_dir).up()
    newest.unlink()
    with pytest.raises(OrderError, match="ahead of these files: 2000_b"):
        Engine(conn, migrations_dir).up()
    result = Engine(conn, migrations_dir, EngineOptions(allow_ahead=True)).up()
    assert result.ahead == ["2000_b"]
    assert result.ran == []


def test_drift_is_detected_and_repair_accepts_it(conn, migrations_dir) -> None:
    path = create_table_migration(migrations_dir, "1000_a", "a")
    Engine(conn, migrations_dir).up()
    path.write_text(path.read_text() + "\n# reviewed comment\n")
    create_table_migration(migrations_dir, "2000_b", "b")
    with pytest.raises(DriftError, match="1000_a") as caught:
        Engine(conn, migrations_dir).up()
    assert caught.value.drifted == ["1000_a"]
    assert Engine(conn, migrations_dir).plan().drifted == ["1000_a"]
    assert Engine(conn, migrations_dir).repair() == ["1000_a"]
    assert [o.name for o in Engine(conn, migrations_dir).up().ran] == ["2000_b"]


def test_rows_written_by_node_pg_migrate_are_adopted(conn, migrations_dir) -> None:
    """A table exactly as node-pg-migrate creates and fills it: nothing re-runs, no drift, checksum added."""
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    create_table_migration(migrations_dir, "3000_c", "c")
    with conn.cursor() as cursor:
        cursor.execute(
            'CREATE TABLE "public"."pgmigrations" (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL,'
            " run_on timestamp NOT NULL)"
        )
        cursor.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")
        cursor.execute('INSERT INTO "public"."pgmigrations" (name, run_on) VALUES (\'1000_a\', NOW())')
        cursor.execute('INSERT INTO "public"."pgmigrations" (name, run_on) VALUES (\'2000_b\', NOW())')
    plan = Engine(conn, migrations_dir).plan()
    assert [m.name for m in plan.pending] == ["3000_c"]
    assert plan.drifted == []
    result = Engine(conn, migrations_dir).up()
    assert [o.name for o in result.ran] == ["3000_c"]
    with conn.cursor() as cursor:
        cursor.execute("SELECT name, checksum IS NOT NULL FROM pgmigrations ORDER BY id")
        assert cursor.fetchall() == [("1000_a", False), ("2000_b", False), ("3000_c", True)]


def test_unexpected_tracking_table_shape_is_named(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE pgmigrations (version bigint, applied_at timestamptz)")
    with pytest.raises(
        TrackingTableError, match=r"pgmigrations has an unexpected shape: missing column\(s\) id, name, run_on"
    ):
        Engine(conn, migrations_dir).up()


def test_lock_held_elsewhere_makes_up_wait_then_fail_naming_holder(conn, database_url, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    holder = psycopg2.connect(database_url, application_name="other-runner")
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (lock.LOCK_ID,))
            holder_pid = cursor.fetchone()[1]
        started = time.monotonic()
        options = EngineOptions(lock_wait_seconds=0.6, lock_poll_seconds=0.1)
        with pytest.raises(LockError) as caught:
            Engine(conn, migrations_dir, options).up()
        assert time.monotonic() - started >= 0.6
        assert caught.value.holder.pid == holder_pid
        assert f"pid {holder_pid} (other-runner" in str(caught.value)
        assert not table_exists(conn, "a")
    finally:
        holder.close()


def test_lock_released_while_waiting_lets_up_proceed(conn, database_url, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    holder = psycopg2.connect(database_url)
    holder.autocommit = True
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (lock.LOCK_ID,))
    timer = threading.Timer(0.3, holder.close)
    timer.start()
    try:
        result = Engine(conn, migrations_dir, EngineOptions(lock_wait_seconds=10, lock_poll_seconds=0.05)).up()
    finally:
        timer.join()
    assert [o.name for o in result.ran] == ["1000_a"]


def test_lock_is_released_after_run_and_application_name_set(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    Engine(conn, migrations_dir, EngineOptions(application_name="lambda_db_setup-test")).up()
    with conn.cursor() as cursor:
        assert lock.find_holder(cursor) is None
        cursor.execute("SHOW application_name")
        assert cursor.fetchone()[0] == "lambda_db_setup-test"


def test_down_and_redo(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    write_sql(migrations_dir, "3000_c", "CREATE TABLE c (id int);", "DROP TABLE c;")
    engine = Engine(conn, migrations_dir)
    engine.up()
    reverted = engine.down(2)
    assert [(o.name, o.direction) for o in reverted.outcomes] == [("3000_c", "down"), ("2000_b", "down")]
    assert applied_names(conn) == ["1000_a"]
    assert not table_exists(conn, "b") and not table_exists(conn, "c")
    redone = engine.redo(1)
    assert [(o.name, o.direction) for o in redone.outcomes] == [("1000_a", "down"), ("1000_a", "up")]
    assert applied_names(conn) == ["1000_a"]
    assert table_exists(conn, "a")


def test_down_without_down_function_names_the_file(conn, migrations_dir) -> None:
    write_py(migrations_dir, "1000_one_way", 'pgm.sql("CREATE TABLE one_way (id int)")')
    write_sql(migrations_dir, "2000_sql_one_way", "CREATE TABLE sql_one_way (id int);")
    engine = Engine(conn, migrations_dir)
    engine.up()
    with pytest.raises(MigrationFileError, match=r"2000_sql_one_way\.sql: no '-- Down Migration' section"):
        engine.down()
    (migrations_dir / "2000_sql_one_way.sql").unlink()
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM pgmigrations WHERE name = '2000_sql_one_way'")
    with pytest.raises(MigrationFileError, match=r"1000_one_way.py: no down\(pgm\) function"):
        engine.down()
    assert applied_names(conn) == ["1000_one_way"]


def test_dry_run_prints_sql_and_changes_nothing(conn, migrations_dir) -> None:
    write_py(
        migrations_dir,
        "1000_a",
        'pgm.create_table("dry", {"id": {"type": "int", "primary_key": True}})',
        'pgm.drop_table("dry")',
    )
    result = Engine(conn, migrations_dir).up(dry_run=True)
    assert result.dry_run
    assert result.would_run[0].name == "1000_a"
    assert 'CREATE TABLE "dry"' in result.would_run[0].sql[0]
    assert not table_exists(conn, "dry")
    assert not table_exists(conn, "pgmigrations")


def test_statement_timeout_never_passes_the_deadline(conn, migrations_dir) -> None:
    write_py(migrations_dir, "1000_slow", 'pgm.sql("SELECT pg_sleep(5)")')
    options = EngineOptions(deadline=time.monotonic() + 1.5, start_margin_seconds=0.5)
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir, options).up()
    assert caught.value.sqlstate == "57014"
    assert applied_names(conn) == []


def test_deadline_leaves_remaining_migrations_pending(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    result = Engine(conn, migrations_dir, EngineOptions(deadline=time.monotonic() + 5, start_margin_seconds=10)).up()
    assert result.ran == []
    assert [migration.name for migration in result.pending] == ["1000_a", "2000_b"]
    assert applied_names(conn) == []
    assert [o.name for o in Engine(conn, migrations_dir).up().ran] == ["1000_a", "2000_b"]


def test_new_file_before_applied_ones_is_refused_even_when_rows_are_in_another_order(conn, migrations_dir) -> None:
    for name in ("1000_a", "2000_b", "3000_c", "4000_d"):
        create_table_migration(migrations_dir, name, name.split("_")[1])
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL)"
        )
        for name in ("2000_b", "1000_a", "4000_d"):
            cursor.execute("INSERT INTO pgmigrations (name, run_on) VALUES (%s, now())", (name,))
    with pytest.raises(OrderError, match="Not run migration 3000_c is preceding already run migration 4000_d"):
        Engine(conn, migrations_dir).up()
    assert not table_exists(conn, "c")


def test_no_transaction_migration_leaving_a_transaction_open_is_not_recorded(conn, migrations_dir) -> None:
    write_sql(
        migrations_dir,
        "1000_dangling",
        "CREATE TABLE first_one (id int);\nBEGIN;\nCREATE TABLE second_one (id int);",
        header="-- pgm:no-transaction\n",
    )
    with pytest.raises(MigrationFailedError, match=r"a statement left a transaction open \(BEGIN\)"):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == []
    assert table_exists(conn, "first_one") and not table_exists(conn, "second_one")


def test_failure_at_commit_names_the_migration_and_applies_nothing(conn, migrations_dir) -> None:
    write_sql(
        migrations_dir,
        "1000_deferred",
        "CREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO child VALUES (42);",
    )
    with pytest.raises(MigrationFailedError, match=r"1000_deferred\.sql: .*violates foreign key.* when committing it"):
        Engine(conn, migrations_dir).up()
    assert not table_exists(conn, "parent")
    assert applied_names(conn) == []


def test_deadline_bounds_the_whole_migration_not_each_statement(conn, migrations_dir) -> None:
    write_py(migrations_dir, "1000_three_naps", 'pgm.sql("SELECT pg_sleep(0.8)")\n' * 3)
    options = EngineOptions(deadline=time.monotonic() + 1.5, start_margin_seconds=0.1)
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir, options).up()
    assert caught.value.sqlstate == "57014"
    assert applied_names(conn) == []


@pytest.mark.parametrize("unlock", ["SELECT pg_advisory_unlock_all()", "SELECT pg_advisory_unlock(7241865325823964)"])
def test_a_migration_that_releases_the_lock_is_not_recorded(conn, migrations_dir, unlock) -> None:
    """The lock is checked before each row: a migration that let it go is rolled back, and so is the run."""
    create_table_migration(migrations_dir, "1000_before", "before")
    write_py(migrations_dir, "2000_unlocks", f'pgm.sql("CREATE TABLE unlocked (id int)")\npgm.sql("{unlock}")')
    create_table_migration(migrations_dir, "3000_after", "after")
    with pytest.raises(MigrationFailedError, match="the migration lock is no longer held by this session") as caught:
        Engine(conn, migrations_dir).up()
    assert caught.value.migration == "2000_unlocks"
    assert applied_names(conn) == ["1000_before"]
    assert not table_exists(conn, "unlocked") and not table_exists(conn, "after")


@pytest.mark.parametrize("unlock", ["SELECT pg_advisory_unlock_all()", "SELECT pg_advisory_unlock(7241865325823964)"])
def test_lock_released_by_a_no_transaction_migration_is_caught_before_its_row(conn, migrations_dir, unlock) -> None:
    """The lock is checked with a no-transaction migration's row: one that let it go is not recorded, and the
    run stops there, saying its statements stay applied."""
    write_sql(migrations_dir, "1000_unlocks", f"CREATE TABLE unlocked (id int);\n{unlock};", header=NO_TX)
    create_table_migration(migrations_dir, "2000_after", "after")
    with pytest.raises(MigrationFailedError, match=r"no longer held by this session .* when recording it") as caught:
        Engine(conn, migrations_dir).up()
    assert "its statements stay applied and it is not recorded" in str(caught.value)
    assert caught.value.migration == "1000_unlocks"
    assert applied_names(conn) == [] and table_exists(conn, "unlocked") and not table_exists(conn, "after")


NO_TX = "-- pgm:no-transaction\n"


def test_reading_the_plan_changes_nothing(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL)"
        )
        cursor.execute("INSERT INTO pgmigrations (name, run_on) VALUES ('1000_a', now())")
    plan = Engine(conn, migrations_dir).plan()
    Engine(conn, migrations_dir).up(dry_run=True)
    assert [row.name for row in plan.applied] == ["1000_a"] and plan.applied[0].checksum is None
    with conn.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'pgmigrations'")
        assert sorted(row[0] for row in cursor.fetchall()) == ["id", "name", "run_on"]


def test_redo_holds_the_lock_from_down_to_up(conn, migrations_dir, monkeypatch) -> None:
    """One lock acquisition for the whole redo: no other runner can slip in between the down and the up."""
    create_table_migration(migrations_dir, "1000_a", "a")
    Engine(conn, migrations_dir).up()
    acquisitions: list[float] = []
    real_acquire = lock.acquire

    def counting_acquire(cursor, **options) -> None:
        acquisitions.append(time.monotonic())
        real_acquire(cursor, **options)

    monkeypatch.setattr(lock, "acquire", counting_acquire)
    result = Engine(conn, migrations_dir).redo()
    assert [(o.name, o.direction) for o in result.outcomes] == [("1000_a", "down"), ("1000_a", "up")]
    assert len(acquisitions) == 1
    assert applied_names(conn) == ["1000_a"] and table_exists(conn, "a")
