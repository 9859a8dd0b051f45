"""The batch runner: works the queue a batch at a time until it is empty or the caller's deadline comes.

A backfill batch is one transaction: it locks the job's row (so two runners never work one job at once),
finds the batch's upper key, runs ``UPDATE ... WHERE key > cursor AND key <= end``, and moves the cursor,
all under ``lock_timeout`` and ``statement_timeout``. Killed anywhere, the transaction either committed with
its cursor or left nothing, so the next runner neither skips nor repeats a row. A plain UPDATE takes ROW
EXCLUSIVE on the table, never ACCESS EXCLUSIVE, so readers and writers go on. The batch size moves toward a
target duration; a batch that times out is halved and tried again; a job fails when one batch keeps failing
or when more than half of its batches failed. A long statement runs alone, outside any transaction, under a
session advisory lock on its job, so two runners never start it twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from ..errors import pg_message
from . import queue, signals
from .queue import Job
from .statements import Busy, run_statement
from .summary import describe

INTEGER_KEYS = frozenset({"smallint", "integer", "bigint"})
QUERY_CANCELED = "57014"  # statement_timeout


@dataclass(frozen=True)
class Limits:
    """How batches are sized, timed, retried and throttled; the defaults suit a busy production table."""

    target_batch_seconds: float = 0.05
    max_batch_size: int = 100_000
    lock_timeout_ms: int = 2_000
    batch_timeout_ms: int = 30_000  # a batch's statement_timeout: one that runs longer is split
    statement_timeout_ms: int = 0  # a long statement's: none (it runs where no time limit applies)
    max_attempts: int = 3  # failures in a row of one batch before the job fails
    ratio_after_batches: int = 10  # "more than half of the batches failed" is judged from this many on
    throttle_wait_seconds: float = 5.0
    idle_wait_seconds: float = 0.5  # every active job is held by another runner: look again after this
    thresholds: signals.Thresholds = field(default_factory=signals.Thresholds)


@dataclass
class RunReport:
    """What one `Runner.run` did."""

    batches: int = 0
    rows: int = 0
    failures: int = 0
    throttled: str | None = None
    seconds: float = 0.0


class Runner:
    """Works the queue over one autocommit connection; keeps nothing between batches but the report."""

    def __init__(self, conn: Connection, limits: Limits | None = None) -> None:
        conn.autocommit = True
        self.conn = conn
        self.cursor = conn.cursor()
        if conn.server_version >= 140000:  # a runner killed mid-batch: its backend rolls back within a second
            self.cursor.execute("SET client_connection_check_interval = 1000")
        self.limits = limits or Limits()

    def run(self, deadline: float | None = None, kinds: Sequence[str] = queue.KINDS) -> RunReport:
        """Batches until no active job of ``kinds`` is left or ``deadline`` (a `time.monotonic` value) comes."""
        report = RunReport()
        started = time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            jobs = [job for job in queue.read_jobs(self.cursor) if job.state in queue.ACTIVE and job.kind in kinds]
            if not jobs:
                break
            if not any(self._work(job, report, deadline) for job in jobs):
                time.sleep(self._wait(deadline, self.limits.idle_wait_seconds))
        report.seconds = time.monotonic() - started
        return report

    def _work(self, job: Job, report: RunReport, deadline: float | None) -> bool:
        """One step of ``job``: a batch, a long statement, or a throttled wait; False when another runner has it."""
        try:
            if job.kind == "statement":
                run_statement(self, job, report, deadline)
                return True
            reason = signals.throttle_reason(self.cursor, job.schema_name, job.table_name, self.limits.thresholds)
            self._note_throttle(job, reason)
            report.throttled = reason
            if reason:
                time.sleep(self._wait(deadline, self.limits.throttle_wait_seconds))
                return True
            self._batch(job.id, report, deadline)
        except Busy:
            return False
        return True

    def _wait(self, deadline: float | None, seconds: float) -> float:
        return max(0.0, min(seconds, deadline - time.monotonic())) if deadline is not None else seconds

    def _note_throttle(self, job: Job, reason: str | None) -> None:
        if reason != job.throttled:
            queue.update(self.cursor, job.id, throttled=reason, summary=describe(replace(job, throttled=reason)))

    def _batch(self, job_id: int, report: RunReport, deadline: float | None) -> None:
        """One batch in one transaction; a failure is rolled back, then counted in a transaction of its own."""
        cursor = self.cursor
        timeout = self._batch_timeout(deadline)
        cursor.execute("BEGIN")
        try:
            cursor.execute(
                "SELECT pg_catalog.set_config('lock_timeout', %s, true), pg_catalog.set_config('statement_timeout',"
                " %s, true)",
                (f"{self.limits.lock_timeout_ms}ms", f"{timeout}ms"),
            )
            job = queue.read_job(cursor, job_id, lock=True)
            if job is None:
                raise Busy
            if job.state not in queue.ACTIVE:  # paused (or failed) since it was read
                cursor.execute("ROLLBACK")
                return
            rows = self._batch_in_transaction(job)
            cursor.execute("COMMIT")
        except psycopg2.Error as error:
            if error.pgcode is None or self.conn.closed:
                raise
            cursor.execute("ROLLBACK")
            if error.pgcode == QUERY_CANCELED and timeout < self.limits.batch_timeout_ms:
                return  # the caller's deadline cut it short, not the batch's size: the next run does it again
            self._failed(job_id, error, split=error.pgcode == QUERY_CANCELED)
            report.failures += 1
            return
        except BaseException:
            if not self.conn.closed:
                cursor.execute("ROLLBACK")
            raise
        report.batches += 1
        report.rows += rows

    def _batch_timeout(self, deadline: float | None) -> int:
        """The batch's statement_timeout: the limit, or less when the caller's deadline is nearer."""
        timeout = self.limits.batch_timeout_ms
        if deadline is not None:
            timeout = min(timeout, max(1, int((deadline - time.monotonic()) * 1000)))
        return timeout

    def _batch_in_transaction(self, job: Job) -> int:
        """Bounds, UPDATE, cursor: the rows updated (the transaction is open and holds the job's row)."""
        if job.last_key is None:
            job = self._start(job)
            if job.last_key is None:  # an empty table: nothing to do
                self._write(job, state="finished", progress=1.0, seconds_left=0.0, finished_at=_now())
                return 0
        started = time.perf_counter()
        end = self._batch_end(job)
        self.cursor.execute(
            sql.SQL("UPDATE {table} SET {assignments} WHERE {after} AND {key} <= {end}::{type} AND ({where})").format(
                table=job.table,
                assignments=sql.SQL(job.set_sql),
                after=_after(job),
                key=sql.Identifier(job.key_column),
                end=sql.Literal(end),
                type=sql.SQL(job.key_type),
                where=sql.SQL(job.where_sql),
            )
        )
        rows = self.cursor.rowcount
        seconds = time.perf_counter() - started
        done = replace(
            job,
            cursor_key=end,
            rows_done=job.rows_done + rows,
            batches=job.batches + 1,
            attempts=0,
            busy_seconds=job.busy_seconds + seconds,
            batch_size=_adapted(job.batch_size, seconds, self.limits),
        )
        finished = end == job.last_key  # both the key type's text output: equal text, equal key
        self._write(
            done,
            state="finished" if finished else "running",
            finished_at=_now() if finished else None,
            **_estimate(done, finished),
        )
        return rows

    def _start(self, job: Job) -> Job:
        """Fix the key range at the first batch: rows inserted later are the application's to fill."""
        self.cursor.execute(
            sql.SQL(
                "SELECT min({key})::text, max({key})::text, (SELECT reltuples FROM pg_catalog.pg_class"
                " WHERE oid = {name}::regclass) FROM {table}"
            ).format(
                key=sql.Identifier(job.key_column),
                table=job.table,
                name=sql.Literal(job.table.as_string(self.conn)),
            )
        )
        first, last, estimate = self.cursor.fetchone()
        started = replace(
            job,
            first_key=first,
            last_key=last,
            total_estimate=estimate if estimate > 0 else None,
            state="running",
            started_at=job.started_at or _now(),
        )
        self._write(started)
        return started

    def _batch_end(self, job: Job) -> str:
        """The key of the batch's last row: ``batch_size`` rows on from the cursor, never past the fixed end."""
        self.cursor.execute(
            sql.SQL(
                # named apart: ORDER BY would take an output column called like the key, and sort its text
                "SELECT {key}::text AS batch_end FROM {table} WHERE {after} AND {key} <= {last}::{type} ORDER BY {key}"
                " OFFSET {offset} LIMIT 1"
            ).format(
                key=sql.Identifier(job.key_column),
                table=job.table,
                after=_after(job),
                last=sql.Literal(job.last_key),
                type=sql.SQL(job.key_type),
                offset=sql.Literal(job.batch_size - 1),
            )
        )
        row = self.cursor.fetchone()
        return row[0] if row else job.last_key

    def _write(self, job: Job, **changes: object) -> None:
        """Save the job's counters and cursor with ``changes``, its summary rewritten to match."""
        job = replace(job, **changes)
        names = ("first_key", "last_key", "cursor_key", "total_estimate", "rows_done", "batches", "attempts")
        names += ("busy_seconds", "batch_size", "state", "progress", "seconds_left", "started_at", "finished_at")
        values = {name: getattr(job, name) for name in names}
        queue.update(self.cursor, job.id, summary=describe(job), **values)

    def _failed(self, job_id: int, error: psycopg2.Error, *, split: bool) -> None:
        """Count a failed batch; halve a batch that timed out; fail the job when the rules say so."""
        job = queue.read_job(self.cursor, job_id)
        if job is None:
            return
        message = f"{pg_message(error)} (SQLSTATE {error.pgcode})"
        can_split = split and job.batch_size > 1
        attempts = job.attempts if can_split else job.attempts + 1
        failed_batches = job.failed_batches + 1
        judged = job.batches + failed_batches
        too_many = judged >= self.limits.ratio_after_batches and failed_batches * 2 > judged
        if attempts >= self.limits.max_attempts or too_many:
            why = f"{failed_batches} of {judged} batches failed" if too_many else f"{attempts} attempts failed"
            message = f"{why}; last: {message}"
            state = "failed"
        else:
            state = job.state
        batch_size = max(1, job.batch_size // 2) if can_split else job.batch_size
        failed = replace(
            job, attempts=attempts, failed_batches=failed_batches, batch_size=batch_size, last_error=message
        )
        queue.update(
            self.cursor,
            job_id,
            attempts=attempts,
            failed_batches=failed_batches,
            batch_size=batch_size,
            last_error=message,
            state=state,
            summary=describe(replace(failed, state=state)),
        )


def _after(job: Job) -> sql.Composable:
    """Rows past the cursor (all rows before the first batch)."""
    if job.cursor_key is None:
        return sql.SQL("true")
    key, cursor = sql.Identifier(job.key_column), sql.Literal(job.cursor_key)
    return sql.SQL("{} > {}::{}").format(key, cursor, sql.SQL(job.key_type))


def _adapted(size: int, seconds: float, limits: Limits) -> int:
    """The next batch size: scaled toward the target duration, at most doubled or halved at a time."""
    factor = min(2.0, max(0.5, limits.target_batch_seconds / max(seconds, 1e-3)))
    return max(1, min(limits.max_batch_size, int(size * factor)))


def _estimate(job: Job, finished: bool) -> dict[str, float | None]:
    """How far the job is (0..1) and the seconds left at its measured rate; None where it cannot be known."""
    if finished:
        return {"progress": 1.0, "seconds_left": 0.0}
    progress = None
    if job.key_type in INTEGER_KEYS and job.first_key is not None:
        first, last, cursor = int(job.first_key), int(job.last_key), int(job.cursor_key)
        progress = (cursor - first + 1) / (last - first + 1)
    elif job.total_estimate:
        progress = min(0.99, job.rows_done / job.total_estimate)
    if not progress or job.busy_seconds <= 0:
        return {"progress": progress, "seconds_left": None}
    return {"progress": progress, "seconds_left": job.busy_seconds * (1 - progress) / progress}


def _now() -> datetime:
    return datetime.now(UTC)
