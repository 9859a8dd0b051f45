"""A runner that dies (SIGKILL) or loses its connection leaves no trace of the interrupted migration and no lock;
the next run applies everything. A stale lock can be inspected and, when it is a runner's, ended with `unlock`.

PostgreSQL notices a dead client when it next uses the socket; a killed local process closes it at once, so the
tests wait (bounded) for the backend to go before looking at ``pg_locks``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from lambda_db_setup import lock
from lambda_db_setup.engine import Engine
from tests import safety
from tests.helpers import applied_names, create_table_migration, table_exists, write_sql
from tests.safety import catalog, cli_command, cli_env, run_cli

module_database_url = safety.module_database_url
database_url = safety.database_url

# Sleeps 60 s in the runner's session; the test's own session sets crash.sleep = 0 to run it at once.
SLOW_SQL = (
    "CREATE TABLE slow (id int);\nINSERT INTO slow VALUES (1);\n"
    "SELECT pg_sleep(coalesce(nullif(current_setting('crash.sleep', true), ''), '60')::float);"
)

# A runner that stops for 60 s right after its first migration committed: "between two migrations".
PAUSING_RUNNER = """
import pathlib, sys, time
import psycopg2
from lambda_db_setup.engine import Engine
from lambda_db_setup.options import EngineOptions
url, directory, marker = sys.argv[1:4]

def pause(outcome):
    pathlib.Path(marker).write_text(outcome.name)
    time.sleep(60)

options = EngineOptions(application_name="lambda_db_setup-pausing")
Engine(psycopg2.connect(url), pathlib.Path(directory), options, on_migration=pause).up()
"""


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return value


def query(conn, text: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(text, params)
        return cursor.fetchall()


def runner_backend(conn, application_name: str, *, running: str | None = None) -> int | None:
    """The backend pid of the runner with that application_name (optionally: while running ``running``)."""
    rows = query(
        conn,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
        " AND (%s::text IS NULL OR (state = 'active' AND query LIKE %s))",
        (application_name, running, f"%{running}%"),
    )
    return rows[0][0] if rows else None


def backend_gone(conn, pid: int) -> bool:
    return not query(conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))


def lock_holder(conn):
    with conn.cursor() as cursor:
        return lock.find_holder(cursor)


@contextmanager
def started(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def three_migrations(migrations_dir: Path) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    write_sql(migrations_dir, "2000_slow", SLOW_SQL)
    create_table_migration(migrations_dir, "3000_third", "third")


def finish_and_check(conn, migrations_dir: Path) -> None:
    """The next run (without the sleep) applies what is left; everything is there exactly once."""
    with conn.cursor() as cursor:
        cursor.execute("SET crash.sleep = '0'")
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_first", "2000_slow", "3000_third"]
    assert query(conn, "SELECT id FROM slow") == [(1,)]


def test_runner_killed_in_the_middle_of_a_migration(conn, database_url, migrations_dir) -> None:
    three_migrations(migrations_dir)
    up = cli_command("up", "--database-url", database_url, "--migrations-dir", str(migrations_dir))
    with started(up) as runner:
        pid = wait_until(lambda: runner_backend(conn, "lambda_db_setup", running="pg_sleep"), "the slow migration")
        assert lock_holder(conn).pid == pid
        os.kill(runner.pid, signal.SIGKILL)
        wait_until(lambda: backend_gone(conn, pid), "the killed runner's backend to end")
        assert runner.wait(timeout=10) == -signal.SIGKILL
    assert lock_holder(conn) is None
    advisory = (  # in this test's database: other xdist workers run beside it on the same server
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert query(conn, advisory) == [(0,)]
    assert applied_names(conn) == ["1000_first"]
    assert not table_exists(conn, "slow")
    finish_and_check(conn, migrations_dir)


def test_runner_killed_between_two_migrations(conn, database_url, migrations_dir, tmp_path: Path) -> None:
    three_migrations(migrations_dir)
    marker = tmp_path / "first-done"
    script = [sys.executable, "-c", PAUSING_RUNNER, database_url, str(migrations_dir), str(marker)]
    with started(script) as runner:
        wait_until(marker.exists, "the first migration to commit")
        pid = runner_backend(conn, "lambda_db_setup-pausing")
        assert query(conn, "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("idle",)]
        assert lock_holder(conn).pid == pid  # between migrations: no transaction open, the lock held
        os.kill(runner.pid, signal.SIGKILL)
        wait_until(lambda: backend_gone(conn, pid), "the killed runner's backend to end")
    assert lock_holder(conn) is None
    assert applied_names(conn) == ["1000_first"]
    assert table_exists(conn, "first") and not table_exists(conn, "slow")
    finish_and_check(conn, migrations_dir)


def test_connection_cut_in_the_middle_of_a_migration(conn, database_url, migrations_dir) -> None:
    three_migrations(migrations_dir)
    up = cli_command("up", "--database-url", database_url, "--migrations-dir", str(migrations_dir))
    with started(up) as runner:
        pid = wait_until(lambda: runner_backend(conn, "lambda_db_setup", running="pg_sleep"), "the slow migration")
        assert query(conn, "SELECT pg_terminate_backend(%s, 5000)", (pid,)) == [(True,)]
        stdout, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 1
    assert stdout.startswith("applied 1000_first (")
    last = stderr.splitlines()[-1]  # libpq reports the server's FATAL message or just the closed socket
    assert last.startswith("error: 2000_slow.sql: connection lost while running it (")
    # Sent with its COMMIT in one round trip: only the database can say whether it committed (it did not).
    assert last.endswith("); it was sent with its COMMIT, so whether it was applied is unknown: run `status` to see")
    assert lock_holder(conn) is None
    assert applied_names(conn) == ["1000_first"]
    assert not table_exists(conn, "slow")
    finish_and_check(conn, migrations_dir)


@contextmanager
def stale_lock(database_url: str, application_name: str) -> Iterator[tuple[psycopg2.extensions.connection, int]]:
    """A session holding node-pg-migrate's lock and doing nothing, like a runner that hung."""
    holder = psycopg2.connect(database_url, application_name=application_name)
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (lock.LOCK_ID,))
            yield holder, cursor.fetchone()[1]
    finally:
        holder.close()


def test_stale_runner_lock_is_shown_then_terminated_by_unlock(conn, database_url, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    common = ["--database-url", database_url, "--migrations-dir", str(migrations_dir)]
    with stale_lock(database_url, "lambda_db_setup") as (holder, pid):
        blocked = run_cli(["up", *common, "--lock-wait", "0.3"])
        assert blocked.returncode == 1
        last = blocked.stderr.splitlines()[-1]
        assert last.startswith(f"error: migration lock not obtained within 0.3s: held by pid {pid} (lambda_db_setup,")
        assert last.endswith("if that runner is gone, `python -m lambda_db_setup unlock --terminate` ends its session")
        shown = run_cli(["unlock", *common])
        assert shown.returncode == 0
        assert shown.stdout.startswith(f"the migration lock is held by pid {pid} (lambda_db_setup, connected since ")
        assert lock_holder(conn).pid == pid  # only shown
        assert run_cli(["unlock", "--terminate", *common]).returncode == 1  # idle only moments: may be live
        ended = run_cli(["unlock", "--terminate", "--force", *common])
        assert ended.returncode == 0, ended.stderr
        assert ended.stdout.splitlines()[-1] == f"terminated pid {pid}; the lock is released"
        with pytest.raises(psycopg2.OperationalError), holder.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert lock_holder(conn) is None
    assert run_cli(["unlock", *common]).stdout == "the migration lock is free\n"
    assert catalog(conn)["pgmigrations"] == []
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_first"]


@pytest.mark.parametrize("application_name", ["node-pg-migrate", ""])
def test_unlock_refuses_to_terminate_a_session_that_is_not_a_runner(
    conn, database_url, migrations_dir, application_name: str
) -> None:
    with stale_lock(database_url, application_name) as (holder, pid):
        refused = run_cli(["unlock", "--terminate", "--database-url", database_url])
        assert refused.returncode == 1
        shown = application_name or "(no application_name)"
        last = refused.stderr.splitlines()[-1]
        assert last.startswith(f"error: not terminating pid {pid} ({shown}, connected since ")
        assert last.endswith(
            "it is not recognisable as a migration runner (application_name does not start with"
            " 'lambda_db_setup'); end it yourself if you are sure"
        )
        with holder.cursor() as cursor:
            cursor.execute("SELECT 1")  # still alive
        assert lock_holder(conn).pid == pid
