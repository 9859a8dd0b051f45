"""The queue and the batch runner on the embedded server: authoring, batches, states, throttling, failures."""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_db_setup import cli
from lambda_db_setup.background import queue
from lambda_db_setup.background.runner import Limits, Runner
from lambda_db_setup.background.signals import Thresholds
from lambda_db_setup.builder import MigrationBuilder
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import MigrationFailedError, MigrationFileError
from tests.background_helpers import AUDIT, jobs, make_big, queue_backfill, scalar
from tests.helpers import applied_names, table_exists, write_py


def test_up_queues_the_backfill_with_its_row_and_does_not_run_it(conn, migrations_dir, database_url):
    make_big(conn, 5000)
    queue_backfill(migrations_dir, conn)
    assert applied_names(conn) == ["1000_backfill_w2"]
    (job,) = jobs(database_url)
    assert (job.migration, job.kind, job.state, job.description) == (
        "1000_backfill_w2",
        "backfill",
        "queued",
        "backfill of big.w2",
    )
    assert (job.schema_name, job.table_name, job.key_column, job.key_type) == ("public", "big", "id", "bigint")
    assert scalar(conn, "SELECT count(*) FROM big WHERE w2 IS NOT NULL") == 0


def test_runner_updates_every_row_once_in_batches(conn, migrations_dir, database_url):
    make_big(conn, 20_000, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v * 2"}, batch_size=500')
    report = Runner(conn, Limits(target_batch_seconds=10)).run()
    assert scalar(conn, "SELECT count(*) FROM big WHERE w2 IS DISTINCT FROM v * 2") == 0
    assert scalar(conn, "SELECT count(*) FROM big_audit WHERE updates = 1") == 20_000
    (job,) = jobs(database_url)
    assert job.state == "finished" and job.rows_done == 20_000 and job.progress == 1.0
    assert job.started_at is not None and job.finished_at >= job.started_at
    assert report.batches == job.batches and job.batches < 40  # the batch size grew past 500
    assert job.summary == f"finished: 20,000 rows in {job.batches} batches"


def test_where_limits_the_rows_and_rows_added_later_are_left_alone(conn, migrations_dir, database_url):
    make_big(conn, 3000, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "1"}, where="v < 10", batch_size=100')
    Runner(conn).run()
    assert scalar(conn, "SELECT count(*) FROM big WHERE w2 = 1") == scalar(
        conn, "SELECT count(*) FROM big WHERE v < 10"
    )
    assert scalar(conn, "SELECT count(*) FROM big WHERE w2 IS NOT NULL AND v >= 10") == 0


def test_an_empty_table_finishes_at_once(conn, migrations_dir, database_url):
    make_big(conn, 0)
    queue_backfill(migrations_dir, conn)
    Runner(conn).run()
    assert [job.state for job in jobs(database_url)] == ["finished"]


def test_text_keys_and_quoted_names_work(conn, migrations_dir, database_url):
    with conn.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "Sch ä"; CREATE TABLE "Sch ä"."T ü" (k text PRIMARY KEY, "a b" int)')
        cursor.execute("""INSERT INTO "Sch ä"."T ü" SELECT 'k' || g, NULL FROM generate_series(1, 1000) g""")
    write_py(migrations_dir, "1000_q", 'pgm.backfill(("Sch ä", "T ü"), set={"a b": "length(k)"}, batch_size=64)')
    Engine(conn, migrations_dir).up()
    Runner(conn).run()
    assert scalar(conn, 'SELECT count(*) FROM "Sch ä"."T ü" WHERE "a b" = length(k)') == 1000
    (job,) = jobs(database_url)
    assert job.key_type == "text" and job.state == "finished"


@pytest.mark.parametrize(
    ("table_sql", "message"),
    [
        ("CREATE TABLE big (id int, v int)", "1000_q.py: backfill of big.v: table big has no primary key"),
        ("CREATE TABLE big (a int, b int, v int, PRIMARY KEY (a, b))", "has a composite primary key (a, b)"),
        ("SELECT 1", "1000_q.py: backfill of big.v: table big does not exist"),
        ("CREATE TABLE big (id int PRIMARY KEY, v int)", 'column "nope" does not exist'),
    ],
)
def test_a_table_that_cannot_be_walked_fails_the_migration(conn, migrations_dir, database_url, table_sql, message):
    with conn.cursor() as cursor:
        cursor.execute(table_sql)
    write_py(
        migrations_dir, "1000_q", 'pgm.backfill("big", set={"v": "nope + 1" if %r else "1"})' % ("nope" in message)
    )
    with pytest.raises(MigrationFailedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == []
    assert jobs(database_url) == []


def test_the_table_may_be_created_by_the_same_migration(conn, migrations_dir, database_url):
    write_py(
        migrations_dir,
        "1000_q",
        'pgm.create_table("t", {"id": {"type": "serial", "primary_key": True}, "x": "int"})\n'
        'pgm.sql("INSERT INTO t (x) SELECT g FROM generate_series(1, 10) g")\n'
        'pgm.backfill("t", set={"x": "x + 1"})',
    )
    Engine(conn, migrations_dir).up()
    Runner(conn).run()
    assert scalar(conn, "SELECT sum(x) FROM t") == 65


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('pgm.backfill("big", set={})', "set must map at least one column"),
        ('pgm.backfill("big", set={"w2": ""})', "set 'w2'"),
        ('pgm.backfill("big", set={"w2": "1"}, batch_size=0)', "batch_size must be a positive whole number"),
        ('pgm.backfill("big", set={"w2": "1"}, batch_size=True)', "batch_size must be a positive whole number"),
        ('pgm.backfill("", set={"w2": "1"})', "not a valid identifier"),
        ('pgm.backfill("big", set={"w2": "1"}, where="  ")', "where"),
        ('pgm.background_sql("SELECT 1; SELECT 2")', "exactly one statement"),
        ('pgm.backfill("big", set={"w2": "$lambda_db_setup_background$"})', "uses as its quote"),
        ('pgm.require_finished("")', "require_finished"),
    ],
)
def test_bad_arguments_name_the_file(conn, migrations_dir, call, message):
    write_py(migrations_dir, "1000_q", call)
    with pytest.raises(MigrationFileError, match=f"1000_q.py: up\\(pgm\\) raised ValueError: .*{message}"):
        Engine(conn, migrations_dir).up()


def test_a_redo_queues_the_work_again_from_the_start(conn, migrations_dir, database_url):
    make_big(conn, 100)
    write_py(migrations_dir, "1000_q", 'pgm.backfill("big", set={"w2": "v"})', 'pgm.sql("UPDATE big SET w2 = NULL")')
    engine = Engine(conn, migrations_dir)
    engine.up()
    Runner(conn).run()
    engine.redo()
    (job,) = jobs(database_url)
    assert (job.state, job.rows_done, job.cursor_key, job.summary) == ("queued", 0, None, "queued, not started yet")


def test_pause_stops_the_runner_and_resume_continues(conn, migrations_dir, database_url):
    make_big(conn, 5000, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v"}, batch_size=100')
    runner = Runner(conn, Limits(target_batch_seconds=1e-6))  # the size stays small: many batches
    runner.run(deadline=time.monotonic() + 0.3)
    with conn.cursor() as cursor:
        queue.update(cursor, jobs(database_url)[0].id, state="paused")
    done = scalar(conn, "SELECT count(*) FROM big_audit")
    assert 0 < done < 5000
    assert runner.run().batches == 0  # nothing active: the runner leaves at once
    assert scalar(conn, "SELECT count(*) FROM big_audit") == done
    with conn.cursor() as cursor:
        queue.update(cursor, jobs(database_url)[0].id, state="running")
    runner.run()
    assert scalar(conn, "SELECT count(*) FROM big_audit WHERE updates = 1") == 5000


def test_an_old_open_transaction_throttles_until_it_ends(conn, migrations_dir, database_url):
    make_big(conn, 500)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v"}, batch_size=10')
    idle = psycopg2.connect(database_url)
    with idle.cursor() as cursor:
        cursor.execute("SELECT 1")  # opens a transaction and leaves it open
    time.sleep(1.2)
    limits = Limits(thresholds=Thresholds(max_transaction_seconds=1.0), throttle_wait_seconds=0.1)
    report = Runner(conn, limits).run(deadline=time.monotonic() + 1.0)
    (job,) = jobs(database_url)
    assert report.batches == 0 and job.rows_done == 0
    assert report.throttled.startswith("a transaction has been open for")
    assert "waiting: a transaction has been open for" in job.summary
    idle.close()
    Runner(conn, limits).run()
    (job,) = jobs(database_url)
    assert job.state == "finished" and job.throttled is None


def test_vacuum_on_the_table_throttles(conn, migrations_dir, database_url):
    make_big(conn, 20_000)
    queue_backfill(migrations_dir, conn)
    with conn.cursor() as cursor:
        cursor.execute("UPDATE big SET v = v + 1")  # dead rows for vacuum to work through, slowly
    vacuum = psycopg2.connect(database_url)
    vacuum.autocommit = True
    with vacuum.cursor() as cursor:
        cursor.execute("SET vacuum_cost_delay = 100; SET vacuum_cost_limit = 1; SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    thread = threading.Thread(target=lambda: _ignore_cancel(vacuum, "VACUUM big"))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not scalar(conn, "SELECT count(*) FROM pg_stat_progress_vacuum WHERE pid = %s", (pid,)):
            assert time.monotonic() < deadline, "the vacuum never showed up"
        report = Runner(conn, Limits(throttle_wait_seconds=0.05)).run(deadline=time.monotonic() + 0.3)
    finally:
        scalar(conn, "SELECT pg_cancel_backend(%s)", (pid,))
        thread.join()
        vacuum.close()
    assert report.batches == 0 and report.throttled == "vacuum is running on big"
    Runner(conn).run()
    assert jobs(database_url)[0].state == "finished"


def _ignore_cancel(conn, statement: str) -> None:
    with conn.cursor() as cursor, contextlib.suppress(psycopg2.errors.QueryCanceled):
        cursor.execute(statement)


def test_a_timed_out_batch_is_split_and_the_job_still_finishes(conn, migrations_dir, database_url):
    make_big(conn, 64, audit=True)
    with conn.cursor() as cursor:  # 3 ms a row
        cursor.execute(
            "CREATE FUNCTION slow(x int) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT x FROM pg_sleep(0.003)'"
        )
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "slow(v)"}, batch_size=64')
    limits = Limits(batch_timeout_ms=80, target_batch_seconds=0.05, max_attempts=2)
    Runner(conn, limits).run()
    (job,) = jobs(database_url)
    assert job.state == "finished", job.summary
    assert job.failed_batches >= 2 and "canceling statement due to statement timeout" in job.last_error
    assert job.batch_size < 32  # 64 and 32 rows took too long: halved twice
    assert scalar(conn, "SELECT count(*) FROM big_audit WHERE updates = 1") == 64


def test_a_batch_that_keeps_failing_fails_the_job_after_the_attempts(conn, migrations_dir, database_url):
    make_big(conn, 100, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v / (id - 50)"}, batch_size=10')
    Runner(conn, Limits(max_attempts=3, target_batch_seconds=1e3, max_batch_size=10)).run()
    (job,) = jobs(database_url)
    assert job.state == "failed"
    assert job.attempts == 3 and job.cursor_key == "40"
    assert job.summary.startswith("failed: 3 attempts failed; last: division by zero (SQLSTATE 22012)")
    assert scalar(conn, "SELECT count(*) FROM big_audit") == 40


def test_more_than_half_of_the_batches_failing_fails_the_job(conn, migrations_dir, database_url):
    make_big(conn, 100)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v / (id % 2)"}, batch_size=1')
    Runner(conn, Limits(max_attempts=100, ratio_after_batches=10, target_batch_seconds=1e3, max_batch_size=1)).run()
    (job,) = jobs(database_url)
    # id 1 worked, id 2 failed 9 times: 10 batches judged, more than half failed, long before 100 attempts
    assert job.state == "failed" and job.last_error.startswith("9 of 10 batches failed")
    assert job.cursor_key == "1"


def test_a_second_runner_skips_a_job_the_first_holds(conn, migrations_dir, database_url):
    make_big(conn, 200, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v"}, batch_size=10')
    holder = psycopg2.connect(database_url)
    holder.autocommit = True
    with holder.cursor() as cursor:
        cursor.execute("BEGIN")
        queue.read_job(cursor, jobs(database_url)[0].id, lock=True)
        report = Runner(conn, Limits(idle_wait_seconds=0.05)).run(deadline=time.monotonic() + 0.3)
        cursor.execute("ROLLBACK")
    holder.close()
    assert report.batches == 0 and scalar(conn, "SELECT count(*) FROM big_audit") == 0


def test_concurrent_runners_update_each_row_once(conn, migrations_dir, database_url):
    make_big(conn, 20_000, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v"}, batch_size=200')
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with contextlib.closing(psycopg2.connect(database_url)) as own:
                Runner(own, Limits(target_batch_seconds=0.01, idle_wait_seconds=0.01)).run()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert scalar(conn, "SELECT count(*) FROM big_audit WHERE updates = 1") == 20_000
    assert jobs(database_url)[0].state == "finished"


def test_long_statement_runs_outside_a_transaction(conn, migrations_dir, database_url):
    make_big(conn, 1000)
    write_py(migrations_dir, "1000_q", 'pgm.background_sql("CREATE INDEX CONCURRENTLY big_v_index ON big (v);")')
    Engine(conn, migrations_dir).up()
    assert not table_exists(conn, "big_v_index")
    Runner(conn).run(kinds=("backfill",))
    assert not table_exists(conn, "big_v_index")  # a Lambda's runner leaves statements alone
    Runner(conn).run()
    assert table_exists(conn, "big_v_index")
    (job,) = jobs(database_url)
    assert (job.state, job.description) == ("finished", "CREATE INDEX CONCURRENTLY big_v_index ON big (v)")


def test_a_failing_long_statement_fails_after_its_attempts_and_names_an_invalid_index(
    conn, migrations_dir, database_url
):
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE u (id int PRIMARY KEY, x int); INSERT INTO u VALUES (1, 1), (2, 1)")
    write_py(
        migrations_dir, "1000_q", 'pgm.background_sql("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u_x ON u (x)")'
    )
    Engine(conn, migrations_dir).up()
    Runner(conn, Limits(max_attempts=2)).run()
    (job,) = jobs(database_url)
    assert job.state == "failed" and "INVALID index(es) u_x" in job.last_error  # the 2nd try skipped it


def test_two_jobs_in_a_no_transaction_migration_with_percent_signs(conn, migrations_dir, database_url, capsys):
    make_big(conn, 1000)
    with conn.cursor() as cursor:
        cursor.execute("ALTER TABLE big ADD COLUMN label text")
    write_py(
        migrations_dir,
        "1000_two",
        'pgm.no_transaction()\npgm.backfill("big", set={"w2": "v % 7"}, where="v % 2 = 0")\n'
        'pgm.backfill("big", set={"label": "\'ä%\' || v"}, batch_size=3)',
    )
    Engine(conn, migrations_dir).up()
    assert [(job.name, job.description) for job in jobs(database_url)] == [
        ("1000_two", "backfill of big.w2"),
        ("1000_two#2", "backfill of big.label"),
    ]
    assert cli.main(["background", "pause", "1000_two#2", "--database-url", database_url]) == 0
    Runner(conn).run()
    assert [job.state for job in jobs(database_url)] == ["finished", "paused"]
    assert scalar(conn, "SELECT count(*) FROM big WHERE w2 = v %% 7 AND v %% 2 = 0") == 500
    assert scalar(conn, "SELECT count(*) FROM big WHERE label IS NOT NULL") == 0
    assert cli.main(["background", "resume", "1000_two#2", "--database-url", database_url]) == 0
    Runner(conn).run()
    assert scalar(conn, "SELECT count(*) FROM big WHERE label = 'ä%%' || v") == 1000


def test_a_batch_cut_short_by_the_caller_s_deadline_is_not_a_failure(conn, migrations_dir, database_url):
    make_big(conn, 64, audit=True)
    with conn.cursor() as cursor:  # 5 ms a row: 320 ms for the batch, longer than the deadline allows
        cursor.execute(
            "CREATE FUNCTION slow(x int) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT x FROM pg_sleep(0.005)'"
        )
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "slow(v)"}, batch_size=64')
    report = Runner(conn).run(deadline=time.monotonic() + 0.15)
    (job,) = jobs(database_url)
    assert (report.batches, report.failures, job.failed_batches, job.attempts, job.batch_size) == (0, 0, 0, 0, 64)
    assert job.last_error is None and scalar(conn, "SELECT count(*) FROM big_audit") == 0
    Runner(conn).run()
    assert jobs(database_url)[0].state == "finished"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.sets(st.integers(-(2**40), 2**40), max_size=120),
    batch_size=st.integers(1, 40),
    modulus=st.integers(1, 5),
)
def test_any_keys_any_batch_size_every_matching_row_once(conn, ids, batch_size, modulus):
    """Sparse and negative keys, batches of any size, any predicate: each matching row is updated exactly once."""
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS big, big_audit CASCADE; DROP FUNCTION IF EXISTS big_audit")
        cursor.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, w2 int)")
        cursor.executemany("INSERT INTO big VALUES (%s, %s, NULL)", [(key, key % 1000) for key in ids])
        cursor.execute(AUDIT)
        builder = MigrationBuilder("1000_q")
        builder.backfill("big", set={"w2": "v + 1"}, where=f"abs(id) % {modulus} = 0", batch_size=batch_size)
        for statement in builder.statements:
            cursor.execute(statement.as_string(conn))
    Runner(conn, Limits(target_batch_seconds=1e3, max_batch_size=batch_size)).run()
    matching = {key for key in ids if abs(key) % modulus == 0}
    with conn.cursor() as cursor:
        cursor.execute("SELECT id, updates FROM big_audit")
        assert dict(cursor.fetchall()) == dict.fromkeys(matching, 1)
        cursor.execute("SELECT state FROM lambda_db_setup_background")
        assert cursor.fetchone() == ("finished",)
