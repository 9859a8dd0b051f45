"""Long statements queued with ``pgm.background_sql``: run once, outside a transaction, where time allows.

``CREATE INDEX CONCURRENTLY`` and ``ALTER TABLE ... VALIDATE CONSTRAINT`` can take hours on a big table; they
run on the long-statement runner (CodeBuild, see the README), or on the CLI's ``background run``. The job's
advisory lock is held while the statement runs: a second runner skips it, and a killed runner's lock goes
with its session, so the next one starts it again. A concurrent index build that failed leaves an INVALID
index that ``IF NOT EXISTS`` would skip: the job fails instead of finishing with it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg2

from ..errors import pg_message
from ..sqltext import identifiers
from . import queue
from .queue import Job
from .summary import describe

if TYPE_CHECKING:
    from .runner import Runner, RunReport

ADVISORY_CLASS = 72_105  # the first key of the advisory lock a statement job holds while it runs
INVALID_NAMED = """
    SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    WHERE NOT i.indisvalid AND ic.relname = ANY(%s) ORDER BY 1
"""


class Busy(Exception):
    """Another runner holds the job."""


def run_statement(runner: Runner, job: Job, report: RunReport, deadline: float | None) -> None:
    """Run ``job``'s statement if no other runner is; record finished, or the failure (failed when out of tries)."""
    cursor = runner.cursor
    cursor.execute("SELECT pg_catalog.pg_try_advisory_lock(%s, %s)", (ADVISORY_CLASS, job.id))
    if not cursor.fetchone()[0]:
        raise Busy
    try:
        job = queue.read_job(cursor, job.id)
        if job is None or job.state not in queue.ACTIVE:
            return
        started = replace(job, state="running", started_at=job.started_at or datetime.now(UTC))
        queue.update(cursor, job.id, state="running", started_at=started.started_at, summary=describe(started))
        error = _execute(runner, job, deadline)
        if error is None:
            finished = replace(started, finished_at=datetime.now(UTC), state="finished")
            queue.update(cursor, job.id, state="finished", finished_at=finished.finished_at, summary=describe(finished))
            report.batches += 1
        else:
            _record_failure(runner, started, error)
            report.failures += 1
    finally:
        if not runner.conn.closed:
            cursor.execute("SELECT pg_catalog.pg_advisory_unlock(%s, %s)", (ADVISORY_CLASS, job.id))


def _execute(runner: Runner, job: Job, deadline: float | None) -> str | None:
    """The statement under the runner's timeouts; the error text, or None when it worked and left no INVALID index."""
    cursor = runner.cursor
    timeout = runner.limits.statement_timeout_ms
    if deadline is not None:
        left = max(1, int((deadline - time.monotonic()) * 1000))
        timeout = min(timeout, left) if timeout else left
    cursor.execute(
        "SELECT pg_catalog.set_config('lock_timeout', %s, false),"
        " pg_catalog.set_config('statement_timeout', %s, false)",
        (f"{runner.limits.lock_timeout_ms}ms", f"{timeout}ms"),
    )
    try:
        cursor.execute(job.statement_sql)
    except psycopg2.Error as error:
        if error.pgcode is None or runner.conn.closed:
            raise
        return f"{pg_message(error)} (SQLSTATE {error.pgcode})"
    finally:
        if not runner.conn.closed:
            cursor.execute("RESET lock_timeout; RESET statement_timeout")
    cursor.execute(INVALID_NAMED, (sorted(identifiers(job.statement_sql)),))
    invalid = [row[0] for row in cursor.fetchall()]
    if invalid:
        return f"INVALID index(es) {', '.join(invalid)}: an earlier build failed; DROP INDEX CONCURRENTLY them"
    return None


def _record_failure(runner: Runner, job: Job, error: str) -> None:
    attempts = job.attempts + 1
    state = "failed" if attempts >= runner.limits.max_attempts else job.state
    failed = replace(job, attempts=attempts, state=state, last_error=f"{attempts} attempts failed; last: {error}")
    queue.update(
        runner.cursor,
        job.id,
        attempts=attempts,
        state=state,
        last_error=failed.last_error,
        failed_batches=job.failed_batches + 1,
        summary=describe(failed),
    )
