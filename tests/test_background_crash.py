"""A backfill of 200,000 rows survives runners killed with SIGKILL at random points, under a concurrent writer:
every row is updated exactly once (an audit trigger counts), the table never sees an ACCESS EXCLUSIVE lock,
and the writer keeps writing throughout."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from contextlib import closing

import psycopg2

from tests.background_helpers import autocommit, jobs, make_big, queue_backfill, scalar
from tests.safety import cli_command, cli_env

ROWS = 200_000
KILLS = 6


class Sampler(threading.Thread):
    """Samples the table's locks every few milliseconds until stopped: which modes were seen, by anyone."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url = database_url
        self.modes: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with closing(autocommit(self.url)) as conn, conn.cursor() as cursor:
            while not self.stop.is_set():
                cursor.execute(
                    "SELECT mode FROM pg_locks WHERE locktype = 'relation' AND relation = 'big'::regclass"
                    " AND pid <> pg_backend_pid()"
                )
                self.modes.update(row[0] for row in cursor.fetchall())
                time.sleep(0.002)


class Writer(threading.Thread):
    """Inserts and updates rows of its own (ids from 10,000,000) as an application would, timing each write."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url = database_url
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with closing(autocommit(self.url)) as conn, conn.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
            next_id = 10_000_000
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    cursor.execute("INSERT INTO big (id, v) VALUES (%s, 1)", (next_id,))
                    cursor.execute("UPDATE big SET v = v + 1 WHERE id = %s", (next_id,))
                except psycopg2.Error as error:
                    self.errors.append(str(error))
                self.latencies.append(time.perf_counter() - started)
                next_id += 1
                time.sleep(0.005)


def test_killed_runners_resume_to_a_correct_end(conn, database_url, migrations_dir):
    make_big(conn, ROWS, audit=True)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v * 2"}, batch_size=2000')
    sampler, writer = Sampler(database_url), Writer(database_url)
    sampler.start()
    writer.start()
    chance = random.Random(21)
    after_kills: list[int] = []
    try:
        while len(after_kills) < KILLS and jobs(database_url)[0].state != "finished":
            runner = subprocess.Popen(
                cli_command("background", "run", "--database-url", database_url),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            before = jobs(database_url)[0].rows_done
            while runner.poll() is None and jobs(database_url)[0].rows_done == before:
                time.sleep(0.01)  # until this runner committed a batch
            time.sleep(chance.uniform(0, 0.3))  # then at a random point of the next
            if runner.poll() is None:
                runner.send_signal(signal.SIGKILL)
                after_kills.append(jobs(database_url)[0].rows_done)
            runner.communicate(timeout=30)
        last = subprocess.run(
            cli_command("background", "run", "--database-url", database_url),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        sampler.stop.set()
        writer.stop.set()
        sampler.join()
        writer.join()
    assert last.returncode == 0, last.stderr
    assert len([done for done in after_kills if 0 < done < ROWS]) >= 3, after_kills  # kills landed mid-work
    (job,) = jobs(database_url)
    in_range = scalar(conn, "SELECT count(*) FROM big WHERE id <= %s", (int(job.last_key),))  # the writer's too
    assert job.state == "finished" and job.rows_done == in_range >= ROWS, job.summary
    assert scalar(conn, "SELECT count(*) FROM big WHERE id <= %s AND w2 IS DISTINCT FROM v * 2", (ROWS,)) == 0
    assert scalar(conn, "SELECT count(*) FROM big_audit WHERE id <= %s AND updates = 1", (ROWS,)) == ROWS
    assert "RowExclusiveLock" in sampler.modes  # the sampler saw the batches' locks
    assert "AccessExclusiveLock" not in sampler.modes, sampler.modes
    assert writer.errors == [] and len(writer.latencies) > 100
