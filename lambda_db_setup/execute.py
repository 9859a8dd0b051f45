"""Running migrations: a transaction (one migration, or a group in single-transaction mode) sent in one round
trip with the rows and COMMIT, or a no-transaction migration statement by statement; retried on lock contention.

A failed transaction is not run again to find its statement: the error's position in the query string, or the
marker lock the transaction last took (`markers`), says which it was. What each attempt knows travels as an
`Attempt` value; whether a failure is retried, and with which message it fails, is decided by
`failures.decide` from the facts gathered here.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.sql import Composable

from . import interrupts, lock, markers, tracking
from .dataloss import DATA_LOSS, Guard
from .discovery import Direction, Migration
from .errors import MigrationError, MigrationFailedError, MigrationFileError, pg_detail, pg_message
from .failures import LOCK_NOT_AVAILABLE, Failure, Retry, RetryPolicy, decide, statement_excerpt
from .prepare import Prepared, prepare
from .progress import SILENT, Progress
from .results import Action, MigrationOutcome
from .session import Session
from .sqltext import identifiers

OnMigration = Callable[[MigrationOutcome], None]
Step = tuple[Migration, Direction, Prepared]  # one migration to run, which way, its checked SQL
# In a single transaction of several migrations, each one's deferred constraints are checked at its end, as its
# own COMMIT would: fire what is pending, then defer again what is declared INITIALLY DEFERRED.
SETTLE_DEFERRED = """SET CONSTRAINTS ALL IMMEDIATE
;
DO $pgm$ DECLARE deferred text; BEGIN
SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.conname), ', ') INTO deferred
FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
WHERE c.condeferred AND NOT pg_catalog.pg_is_other_temp_schema(n.oid);
IF deferred IS NOT NULL THEN EXECUTE 'SET CONSTRAINTS ' || deferred || ' DEFERRED'; END IF; END $pgm$"""
_UNLOCKS = re.compile(r"pg_advisory_unlock", re.IGNORECASE)
ANY_DEFERRABLE = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE condeferrable)"
# A commit WAL order makes safe to lose in a crash: the run's last commit (synchronous) flushes it with its own.
# An expression sent with the lock check, just before COMMIT (the session reset before it would undo it).
ASYNCHRONOUS = "pg_catalog.set_config('synchronous_commit', 'off', true)"
SEPARATOR = "\n;\n"
INVALID_NAMED = """
    SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
    WHERE NOT i.indisvalid AND (ic.relname = ANY(%s) OR t.relname = ANY(%s)) ORDER BY 1
"""


@dataclass(frozen=True)
class Position:
    """A part of a transaction sent in one round trip: its migration's index in the group, the migration, the
    statement's text (None: the migration's closing: session reset, row, guard, deferred constraints)."""

    index: int
    migration: Migration
    statement: str | None
    start: int = 0  # where it starts in the query string (PostgreSQL's error positions count from 1)


@dataclass(frozen=True)
class Attempt:
    """One try at a migration: its number and the INVALID indexes that existed before it began."""

    number: int = 1
    invalid_before: frozenset[str] = frozenset()


class _Again(Exception):
    """Unwinds an attempt whose failure `decide` judged safe to retry; ``migration`` is the one that hit it."""

    def __init__(self, migration: Migration) -> None:
        super().__init__(migration.name)
        self.migration = migration


class Executor:
    """Runs migrations in one session, a transaction at a time; reports each finished one to ``on_migration``."""

    def __init__(self, session: Session, on_migration: OnMigration | None = None, progress: Progress = SILENT) -> None:
        self.session = session
        self.on_migration = on_migration
        self.progress = progress
        self.unflushed = False  # an asynchronous COMMIT was sent that no synchronous one has flushed since
        self.any_deferrable: bool | None = None  # whether the database has deferrable constraints (None: not read)
        self.reported: set[tuple[str, Action]] = set()  # what on_migration was told of

    def prepare(self, migration: Migration, direction: Direction) -> Prepared:
        """Build the migration's SQL and check every statement before anything is sent (`prepare.prepare`)."""
        return prepare(migration, direction, self.session.conn)

    @staticmethod
    def render(migration: Migration, direction: Direction, prepared: Prepared) -> MigrationOutcome:
        """What a dry run reports: the statements as the server would receive them."""
        return MigrationOutcome(
            migration,
            Action.WOULD_RUN if direction == "up" else Action.WOULD_REVERT,
            use_transaction=prepared.use_transaction,
            sql=prepared.statements,
            reversible=direction == "down" or _reversible(migration),
        )

    def run(self, group: list[Step], guard: Guard | None = None, *, durable: bool = True) -> list[MigrationOutcome]:
        """Apply (up) or revert (down) a group: one no-transaction migration, or transactional migrations that
        commit together; retried while `decide` says a retry is safe.

        ``guard`` checks before COMMIT that no down dropped or emptied a table holding rows. ``durable`` False
        commits without waiting for the disk (`ASYNCHRONOUS`): for all but a run's last transaction.
        """
        started = time.perf_counter()
        attempt = Attempt()
        while True:
            for migration, direction, _ in group:
                self.progress.starting(migration, direction, attempt.number)
            try:
                if group[0][2].use_transaction:
                    self._in_transaction(group, attempt, guard, durable)
                else:
                    self._without_transaction(*group[0], attempt)
                break
            except _Again as again:
                backoff = self.session.options.lock_retry_backoff_seconds * 2 ** (attempt.number - 1)
                backoff *= random.uniform(0.5, 1.5)
                self.progress.retrying(again.migration, attempt.number, backoff)
                time.sleep(backoff)
                attempt = Attempt(attempt.number + 1)
        duration_ms = (time.perf_counter() - started) * 1000
        outcomes = [
            MigrationOutcome(
                migration,
                Action.RAN if direction == "up" else Action.REVERTED,
                duration_ms=duration_ms,
                attempts=attempt.number,
                use_transaction=prepared.use_transaction,
                group_size=len(group),
            )
            for migration, direction, prepared in group
        ]
        for outcome in outcomes:
            self.report(outcome)
        return outcomes

    def report(self, outcome: MigrationOutcome) -> None:
        """Tell ``on_migration`` of a finished migration, once (a run a signal stopped reports late ones too)."""
        key = (outcome.migration.name, outcome.action)
        if self.on_migration and key not in self.reported:
            self.reported.add(key)
            self.on_migration(outcome)

    def make_durable(self) -> None:
        """Wait until what this session committed asynchronously is on disk (a run that stops before its last,
        synchronous, transaction): a synchronous commit that writes WAL flushes all WAL before it. Only ups
        commit asynchronously, so the row it rewrites (unchanged) exists: the newest, inserted by one of them."""
        if not self.unflushed:
            return
        with suppress(psycopg2.Error):  # a lost connection: nothing more can be done from here
            self.session.cursor.execute(
                sql.SQL("UPDATE {0} SET run_on = run_on WHERE id = (SELECT max(id) FROM {0})").format(
                    self.session.options.tracking.identifier
                )
            )
            self.unflushed = False

    def _in_transaction(self, group: list[Step], attempt: Attempt, guard: Guard | None, durable: bool) -> None:
        """The whole transaction in one round trip (`_batch`); a failure is judged by `decide` like any, with the
        part the server was running when it failed (`_failed`). A signal's cancel ends it as an interrupt; one
        that came as its result was already on its way back stops the run after it (it committed)."""
        session = self.session
        durable = durable or any(direction == "down" for _, direction, _ in group)  # see make_durable
        batch, positions = self._batch(group, guard, durable)
        self.unflushed = self.unflushed or not durable
        try:
            session.cursor.execute(batch)
        except psycopg2.Error as error:
            if error.pgcode is None or session.conn.closed:
                raise self._lost(group, error) from error
            stop = interrupts.cancelled_by_us(error)
            session.rollback()
            reached = markers.read_and_release(session.cursor)
            if stop:
                raise stop from None
            raise self._failed(group, self._position(error, positions, reached), error, attempt, guard) from error
        except BaseException:
            if not session.conn.closed:
                with suppress(psycopg2.Error):
                    session.rollback()
                    markers.read_and_release(session.cursor)
            raise
        self.unflushed = self.unflushed and not durable
        interrupts.raise_pending()

    def _batch(self, group: list[Step], guard: Guard | None, durable: bool) -> tuple[str, list[Position]]:
        """The transaction as one simple query, and its parts' positions (with where each starts in it).

        Every statement was checked whole (`prepare`), and statements are separated by newlines, so neither an
        open quote nor a trailing ``--`` comment can hide what follows. A marker lock (`markers`) is moved
        before each part: a statement, or a migration's closing, whose last also covers the lock check. Every
        statement costs the server a parse and a plan, so the engine adds few: the first marker is taken with
        the transaction lock, a closing's with its session reset, and the lock check releases the last (and,
        ``durable`` False, makes the commit asynchronous).
        """
        parts: list[str] = []
        positions: list[Position] = []
        length = 0

        def add(*texts: str) -> None:
            nonlocal length
            parts.extend(texts)
            length += sum(len(text) + len(SEPARATOR) for text in texts)

        add("BEGIN", f"{lock.TAKE_TRANSACTION_LOCK}, {markers.FIRST}")
        settle = len(group) > 1 and self._may_defer(group)
        for index, (migration, direction, prepared) in enumerate(group):
            for statement in prepared.statements:
                if positions:
                    add(f"SELECT {markers.move(len(positions) + 1)}")
                if (limit := self._deadline_limit()) is not None:
                    add(limit)
                positions.append(Position(index, migration, statement, start=length))
                add(statement)
            move = markers.move(len(positions) + 1) if positions else None
            positions.append(Position(index, migration, None, start=length))
            add(*self._closing(migration, direction, guard, move, settle=settle and index < len(group) - 1))
        # Once, just before COMMIT: pg_locks lists every lock the transaction took, so it costs more the longer
        # the transaction; the rows inserted before it commit only if it passes.
        add(lock.still_ours(markers.release(len(positions)), *([] if durable else [ASYNCHRONOUS])), "COMMIT")
        return SEPARATOR.join(parts), positions

    def _may_defer(self, group: list[Step]) -> bool:
        """Whether a deferred constraint could fire at the group's COMMIT: the database has a deferrable one
        (read once per run), or the group's SQL could make one."""
        if self.any_deferrable is None:
            self.session.cursor.execute(ANY_DEFERRABLE)
            self.any_deferrable = bool(self.session.cursor.fetchone()[0])
        mentions = any("deferrable" in text.lower() for _, _, prepared in group for text in prepared.statements)
        return self.any_deferrable or mentions

    @staticmethod
    def _position(error: psycopg2.Error, positions: list[Position], reached: markers.Reached) -> Position | None:
        """The part that failed (None: COMMIT, a deferred constraint). A syntax or name error carries its place in
        the query string; otherwise the marker lock held after the rollback says. A part that released every
        advisory lock (the migration lock with them) is the one at fault, whatever failed later."""
        offset = error.diag.statement_position
        if offset:
            before = [position for position in positions if position.start < int(offset)]
            return before[-1] if before else None
        if lock.broken(error) == lock.LOST:  # the lock check found the lock gone: who let it go?
            if reached.released_locks_in:
                return positions[reached.released_locks_in - 1]
            # one advisory lock released by key moved no marker: the statement that names the function
            return next((p for p in positions if p.statement and _UNLOCKS.search(p.statement)), None)
        number = reached.part
        if number is None or number > len(positions):  # released by the lock check: COMMIT failed
            return None
        return positions[number - 1]

    def _failed(
        self, group: list[Step], position: Position | None, error: psycopg2.Error, attempt: Attempt, guard: Guard | None
    ) -> BaseException:
        """What a failed transaction raises: `_Again` for a lock timeout worth retrying, else the error, which
        names the statement (``position``; None: at the lock check or COMMIT) and what a group's rollback undid."""
        session = self.session
        broken = lock.broken(error)
        if broken == lock.ENDED:
            return self._ended(group)
        at = position or Position(len(group) - 1, group[-1][0], None)
        undone = [step[0].name for step in group[: at.index]]
        if broken == lock.LOST:
            return _with_undone(_lock_lost(at), undone)
        if guard and error.pgcode == DATA_LOSS:  # a down's guard, after its statements
            return _with_undone(guard.refusal(session, at.migration, error), undone)
        if at.statement is None:
            return _with_undone(_commit_failure(at.migration, error), undone)
        verdict = decide(self._failure(at.migration, at.statement, error, attempt, None), self._retry_policy())
        return _Again(at.migration) if isinstance(verdict, Retry) else _with_undone(verdict, undone)

    def _closing(
        self, migration: Migration, direction: Direction, guard: Guard | None, move: str | None, *, settle: bool
    ) -> list[str]:
        """What ends a migration inside its transaction: the session reset (with the marker ``move``), its row,
        the data-loss guard, and (``settle``, in a group) its deferred constraints, checked as its own COMMIT
        would."""
        restore = self.session.restore + (f", {move}" if move else "")  # it ends in a SELECT list
        closing = [restore, self.session.text(_row(self.session, migration, direction))]
        if guard and direction == "down":
            closing.append(guard.sql)
        if settle:
            closing.append(SETTLE_DEFERRED)
        return closing

    def _deadline_limit(self) -> str | None:
        """With a deadline: the statement_timeout of the batch's next statement, computed by the server from the
        time the batch arrived (``statement_timestamp()``), so later statements get what is left (PostgreSQL 13
        and later time each statement of a query string on its own)."""
        options = self.session.options
        left_ms = options.deadline_left_ms()
        if left_ms is None:
            return None
        cap = options.statement_timeout_ms or left_ms
        elapsed = "(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp())"
        return (
            f"SELECT pg_catalog.set_config('statement_timeout', LEAST({cap}, GREATEST(1,"
            f" {left_ms} - {elapsed} * 1000)::int))::text, true)"
        )

    def _without_transaction(
        self, migration: Migration, direction: Direction, prepared: Prepared, attempt: Attempt
    ) -> None:
        """Statement by statement in autocommit (a multi-statement query would be one implicit transaction).

        A signal stops it between statements (or cancels the one running); once all ran, it is recorded first.
        """
        session = self.session
        session.cursor.execute(lock.ASSERT_HELD)
        attempt = replace(attempt, invalid_before=frozenset(invalid_indexes(session)))
        try:
            for index, statement in enumerate(prepared.statements):
                interrupts.raise_pending()
                if (timeout := session.options.deadline_timeout_ms()) is not None:
                    session.cursor.execute(
                        "SELECT pg_catalog.set_config('statement_timeout', %s, false)", (f"{timeout}ms",)
                    )
                self._execute(migration, statement, attempt, statements_before=index)
                if session.conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
                    session.rollback()
                    raise MigrationFailedError(
                        f"{migration.file_name}: a statement left a transaction open"
                        f" ({statement_excerpt(statement)}); it runs without a transaction, so the"
                        f" {index} statement(s) before it stay applied and it is not recorded",
                        migration=migration.name,
                    )
            self._refuse_invalid_indexes(migration, prepared)
        except BaseException:
            if not session.conn.closed:
                with suppress(psycopg2.Error):  # the original error matters more
                    session.rollback()
                    session.cursor.execute(session.restore)
            raise
        self._finish(migration, direction)
        interrupts.raise_pending()

    def _refuse_invalid_indexes(self, migration: Migration, prepared: Prepared) -> None:
        """Fail a no-transaction migration while an index it names (or one on a table it names) is INVALID.

        ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` skips an INVALID index a failed build left, so without
        this the migration would be recorded with the index unusable. Sent with the session reset.
        """
        names = sorted({name for statement in prepared.statements for name in identifiers(statement)})
        self.session.cursor.execute(self.session.restore.replace("%", "%%") + "; " + INVALID_NAMED, (names, names))
        invalid = [row[0] for row in self.session.cursor.fetchall()]
        if invalid:
            raise MigrationFailedError(
                f"{migration.file_name}: INVALID index(es) {', '.join(invalid)} (a concurrent build failed or was"
                " interrupted; IF NOT EXISTS skips it): the migration is not recorded; DROP INDEX CONCURRENTLY"
                " them and run it again",
                migration=migration.name,
            )

    def _finish(self, migration: Migration, direction: Direction) -> None:
        """Record (up) or remove (down) a no-transaction migration's row once all its statements ran, in one
        implicit transaction with a check that the session still holds the migration lock (a statement may
        have released it: ``pg_advisory_unlock_all()``, ``DISCARD ALL`` run through EXECUTE)."""
        try:
            row = self.session.text(_row(self.session, migration, direction))
            self.session.cursor.execute(lock.ASSERT_HELD + ";\n" + row)
        except psycopg2.Error as error:
            if self.session.conn.closed:
                raise MigrationFailedError(
                    f"{migration.file_name}: connection lost while recording it: whether it was recorded is"
                    " unknown; run `status` to see",
                    migration=migration.name,
                    pg_message=str(error).strip(),
                ) from error
            left = "it runs without a transaction, so its statements stay applied and it is not recorded"
            raise _commit_failure(migration, error, "recording", left) from error

    def _lost(self, group: list[Step], error: psycopg2.Error) -> MigrationFailedError:
        """The connection went while the transaction, sent with its COMMIT, ran: whether it committed is unknown."""
        first = group[0][0]
        what = first.file_name if len(group) == 1 else f"{first.file_name} and {len(group) - 1} more in one transaction"
        return MigrationFailedError(
            f"{what}: connection lost while running it ({pg_message(error)}); it was sent with its COMMIT, so"
            " whether it was applied is unknown: run `status` to see",
            migration=first.name,
            pg_message=pg_message(error),
        )

    @staticmethod
    def _ended(group: list[Step]) -> MigrationFailedError:
        """`lock.still_ours` found the transaction lock gone: what ran before the statement that ended it committed."""
        first = group[0][0]
        what = first.file_name if len(group) == 1 else f"one of {', '.join(step[0].file_name for step in group)}"
        return MigrationFailedError(
            f"{what}: a statement ended the migration's transaction, so what ran before it was committed without"
            " its row; it is not recorded: check the schema, and remove the statement or call"
            " pgm.no_transaction() / add '-- pgm:no-transaction'",
            migration=first.name,
            sqlstate=lock.TRANSACTION_ENDED,
        )

    def _execute(self, migration: Migration, statement: str, attempt: Attempt, statements_before: int) -> None:
        """Run one statement of a no-transaction migration, after ``statements_before`` of its others."""
        try:
            self.session.cursor.execute(statement)
        except psycopg2.Error as error:
            if stop := interrupts.cancelled_by_us(error):
                raise stop from None
            failure = self._failure(migration, statement, error, attempt, statements_before)
            verdict = decide(failure, self._retry_policy())
            if isinstance(verdict, Retry):
                raise _Again(migration) from error
            raise verdict from error

    def _retry_policy(self) -> RetryPolicy:
        options = self.session.options
        return RetryPolicy(options.lock_retries, options.lock_timeout_ms, out_of_time=options.out_of_time())

    def _failure(
        self, migration: Migration, text: str, error: psycopg2.Error, attempt: Attempt, statements_before: int | None
    ) -> Failure:
        """What `decide` needs to know, read from the error and (for a lock timeout or index) the catalog."""
        session = self.session
        failure = Failure(
            migration=migration,
            statement=text,
            sqlstate=error.pgcode,
            pg_message=pg_message(error),
            pg_detail=pg_detail(error),
            in_transaction=statements_before is None,
            statements_before=statements_before or 0,
            attempt=attempt.number,
        )
        if error.pgcode is None or session.conn.closed:
            return replace(failure, connection_lost=True)
        session.rollback()  # the failed transaction, or one a no-transaction migration opened itself
        if statements_before is not None:
            invalid = invalid_indexes(session)
            new = tuple(name for name in invalid if name not in attempt.invalid_before)
            failure = replace(failure, invalid_indexes=tuple(invalid), new_invalid_indexes=new)
        if error.pgcode == LOCK_NOT_AVAILABLE:
            failure = replace(failure, conflicts=tuple(conflicts(session, text)))
        return failure


def _row(session: Session, migration: Migration, direction: Direction) -> Composable:
    """Recording (up) or removing (down) the migration's row."""
    if direction == "up":
        return tracking.inserted(session.options.tracking, migration.name, migration.checksum)
    return tracking.deleted(session.options.tracking, migration.name)


def _reversible(migration: Migration) -> bool:
    """Whether a later ``down`` of it would run: a down that does not even build counts as irreversible."""
    try:
        return migration.reversible
    except MigrationFileError:
        return False


def conflicts(session: Session, statement: str) -> list[tuple[str, int, str]]:
    """Tables the failing statement names that other sessions hold locks on: (table, pid, application_name)."""
    session.cursor.execute(
        """
        SELECT DISTINCT n.nspname, c.relname, l.pid, coalesce(a.application_name, '')
        FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
          AND c.relkind IN ('r', 'p', 'm')
        ORDER BY 2, 3
        """
    )
    named = identifiers(statement)
    return [
        (relname if schema == "public" else f"{schema}.{relname}", pid, app)
        for schema, relname, pid, app in session.cursor.fetchall()
        if relname in named
    ]


def invalid_indexes(session: Session) -> list[str]:
    session.cursor.execute("SELECT indexrelid::regclass::text FROM pg_catalog.pg_index WHERE NOT indisvalid ORDER BY 1")
    return [row[0] for row in session.cursor.fetchall()]


def _with_undone(error: MigrationError, undone: list[str]) -> MigrationError:
    """``error`` saying which earlier migrations of its single transaction the rollback undid too."""
    if undone:
        note = f"; its single transaction was rolled back, so these are not applied either: {', '.join(undone)}"
        error.args = (f"{error}{note}", *error.args[1:])
    return error


def _lock_lost(at: Position) -> MigrationFailedError:
    """The lock check found the migration lock gone; ``at`` is the statement that released it, when known."""
    released = f" (released by: {statement_excerpt(at.statement)})" if at.statement else ""
    return MigrationFailedError(
        f"{at.migration.file_name}: the migration lock is no longer held by this session{released}; {lock.LOST_HINT};"
        " its transaction was rolled back, nothing of it was applied",
        migration=at.migration.name,
        statement=at.statement,
    )


def _commit_failure(
    migration: Migration, error: psycopg2.Error, when: str = "committing", left: str = "nothing of it was applied"
) -> MigrationFailedError:
    """A failure past the migration's statements: its row, the lock check or COMMIT (a deferred constraint)."""
    message = pg_message(error)
    return MigrationFailedError(
        f"{migration.file_name}: {message} (SQLSTATE {error.pgcode}) when {when} it; {left}{pg_detail(error)}",
        migration=migration.name,
        sqlstate=error.pgcode,
        pg_message=message,
    )
