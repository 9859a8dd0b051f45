"""Running one migration: in one transaction with its row, or statement by statement; retried on lock contention.

What each attempt knows travels as an `Attempt` value; whether a failure is retried, and with which
message it fails, is decided by `failures.decide` from the facts gathered here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS
from psycopg2.sql import Composable

from . import lock, tracking
from .builder import MigrationBuilder
from .dataloss import DATA_LOSS, Guard
from .discovery import Direction, Migration
from .errors import IrreversibleMigrationError, MigrationFailedError, MigrationFileError, pg_detail, pg_message
from .failures import LOCK_NOT_AVAILABLE, Failure, Retry, RetryPolicy, decide, statement_excerpt
from .progress import SILENT, Progress
from .results import Action, MigrationOutcome
from .session import Session
from .sqltext import identifiers, is_transaction_control, split_statements

OnMigration = Callable[[MigrationOutcome], None]
INVALID_NAMED = """
    SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
    WHERE NOT i.indisvalid AND (ic.relname = ANY(%s) OR t.relname = ANY(%s)) ORDER BY 1
"""


@dataclass(frozen=True)
class Attempt:
    """One try at a migration: its number and the INVALID indexes that existed before it began."""

    number: int = 1
    invalid_before: frozenset[str] = frozenset()


class _Again(Exception):
    """Unwinds an attempt whose failure `decide` judged safe to retry."""


class Executor:
    """Runs migrations in one session, one at a time; reports each finished one to ``on_migration``."""

    def __init__(self, session: Session, on_migration: OnMigration | None = None, progress: Progress = SILENT) -> None:
        self.session = session
        self.on_migration = on_migration
        self.progress = progress

    def prepare(self, migration: Migration, direction: Direction) -> MigrationBuilder:
        """Build the migration's SQL and refuse transaction control in one that runs in a transaction."""
        try:
            builder = migration.build(direction)
        except IrreversibleMigrationError as error:
            raise IrreversibleMigrationError(
                f"{error}; down refused, nothing was changed", migration=migration.name
            ) from error
        if builder.use_transaction:
            for statement in builder.statements:
                text = self.session.text(statement)
                for part in split_statements(text) if ";" in text else [text]:
                    if is_transaction_control(part):
                        raise MigrationFileError(
                            f"{migration.file_name}: ends or opens a transaction itself ({statement_excerpt(part)});"
                            " the engine runs each migration in its own transaction: remove it, or call"
                            " pgm.no_transaction() / add '-- pgm:no-transaction'",
                            migration=migration.name,
                        )
        return builder

    def render(self, migration: Migration, direction: Direction, builder: MigrationBuilder) -> MigrationOutcome:
        """What a dry run reports: the statements, rendered as the server would receive them."""
        return MigrationOutcome(
            migration,
            Action.WOULD_RUN if direction == "up" else Action.WOULD_REVERT,
            use_transaction=builder.use_transaction,
            sql=tuple(self.session.text(statement) for statement in builder.statements),
            reversible=direction == "down" or _reversible(migration),
        )

    def run(
        self, migration: Migration, direction: Direction, builder: MigrationBuilder, guard: Guard | None = None
    ) -> MigrationOutcome:
        """Apply (up) or revert (down) one migration, retrying while `decide` says a retry is safe.

        ``guard`` (a transactional down) checks before COMMIT that no table holding rows was dropped or emptied.
        """
        started = time.perf_counter()
        attempt = Attempt()
        while True:
            self.progress.starting(migration, direction, attempt.number)
            try:
                if builder.use_transaction:
                    self._in_transaction(migration, direction, builder, attempt, guard)
                else:
                    self._without_transaction(migration, direction, builder, attempt)
                break
            except _Again:
                backoff = self.session.options.lock_retry_backoff_seconds * 2 ** (attempt.number - 1)
                backoff *= random.uniform(0.5, 1.5)
                self.progress.retrying(migration, attempt.number, backoff)
                time.sleep(backoff)
                attempt = Attempt(attempt.number + 1)
        outcome = MigrationOutcome(
            migration,
            Action.RAN if direction == "up" else Action.REVERTED,
            duration_ms=(time.perf_counter() - started) * 1000,
            attempts=attempt.number,
            use_transaction=builder.use_transaction,
        )
        if self.on_migration:
            self.on_migration(outcome)
        return outcome

    def _in_transaction(
        self,
        migration: Migration,
        direction: Direction,
        builder: MigrationBuilder,
        attempt: Attempt,
        guard: Guard | None,
    ) -> None:
        """BEGIN and a check that the lock is still ours travel with the first statement; the session reset,
        the row, the data-loss guard and COMMIT with the last."""
        session = self.session
        opening = f"BEGIN; {lock.ASSERT_HELD}; "
        try:
            if not builder.statements:
                session.cursor.execute(opening)
            for statement in builder.statements:
                timeout = session.options.deadline_timeout_ms()
                prefix = opening + ("" if timeout is None else f"SET LOCAL statement_timeout = {timeout}; ")
                self._execute(migration, statement, attempt, prefix=prefix)
                opening = ""
                if session.conn.info.transaction_status != TRANSACTION_STATUS_INTRANS:
                    raise MigrationFailedError(
                        f"{migration.file_name}: a statement ended the migration's transaction"
                        f" ({statement_excerpt(session.text(statement))}); nothing of it was recorded",
                        migration=migration.name,
                    )
            self._finish(migration, direction, guard=guard)
        except BaseException:
            session.rollback()
            raise

    def _without_transaction(
        self, migration: Migration, direction: Direction, builder: MigrationBuilder, attempt: Attempt
    ) -> None:
        """Statement by statement in autocommit (a multi-statement query would be one implicit transaction)."""
        session = self.session
        session.cursor.execute(lock.ASSERT_HELD)
        attempt = replace(attempt, invalid_before=frozenset(invalid_indexes(session)))
        try:
            for index, statement in enumerate(builder.statements):
                if (timeout := session.options.deadline_timeout_ms()) is not None:
                    session.cursor.execute(
                        "SELECT pg_catalog.set_config('statement_timeout', %s, false)", (f"{timeout}ms",)
                    )
                self._execute(migration, statement, attempt, statements_before=index)
                if session.conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
                    session.rollback()
                    raise MigrationFailedError(
                        f"{migration.file_name}: a statement left a transaction open"
                        f" ({statement_excerpt(session.text(statement))}); it runs without a transaction, so the"
                        f" {index} statement(s) before it stay applied and it is not recorded",
                        migration=migration.name,
                    )
            self._refuse_invalid_indexes(migration, builder)
        except BaseException:
            if not session.conn.closed:
                with suppress(psycopg2.Error):  # the original error matters more
                    session.rollback()
                    session.cursor.execute(session.restore)
            raise
        self._finish(migration, direction, in_transaction=False)

    def _refuse_invalid_indexes(self, migration: Migration, builder: MigrationBuilder) -> None:
        """Fail a no-transaction migration while an index it names (or one on a table it names) is INVALID.

        ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` skips an INVALID index a failed build left, so without
        this the migration would be recorded with the index unusable. Sent with the session reset.
        """
        names = sorted({name for st in builder.statements for name in identifiers(self.session.text(st))})
        self.session.cursor.execute(self.session.restore.replace("%", "%%") + "; " + INVALID_NAMED, (names, names))
        invalid = [row[0] for row in self.session.cursor.fetchall()]
        if invalid:
            raise MigrationFailedError(
                f"{migration.file_name}: INVALID index(es) {', '.join(invalid)} (a concurrent build failed or was"
                " interrupted; IF NOT EXISTS skips it): the migration is not recorded; DROP INDEX CONCURRENTLY"
                " them and run it again",
                migration=migration.name,
            )

    def _finish(
        self, migration: Migration, direction: Direction, *, in_transaction: bool = True, guard: Guard | None = None
    ) -> None:
        """Record (up) or remove (down) the migration's row; in a transaction, reset the session first and
        check ``guard`` and COMMIT after it, all in the same round trip."""
        session = self.session
        around = (session.restore, guard.sql if guard else "") if in_transaction else ("", "")
        try:
            if direction == "up":
                tracking.record(
                    session.cursor, migration.name, migration.checksum, commit=in_transaction, around=around
                )
            else:
                tracking.remove(session.cursor, migration.name, commit=in_transaction, around=around)
        except psycopg2.Error as error:
            if guard and error.pgcode == DATA_LOSS:
                session.rollback()
                raise guard.refusal(session, migration, error) from error
            if self.session.conn.closed:
                raise MigrationFailedError(
                    f"{migration.file_name}: connection lost while committing it: whether it was applied is"
                    " unknown; run `status` to see",
                    migration=migration.name,
                    pg_message=str(error).strip(),
                ) from error
            message = pg_message(error)
            raise MigrationFailedError(
                f"{migration.file_name}: {message} (SQLSTATE {error.pgcode}) when committing it;"
                f" nothing of it was applied{pg_detail(error)}",
                migration=migration.name,
                sqlstate=error.pgcode,
                pg_message=message,
            ) from error

    def _execute(
        self,
        migration: Migration,
        statement: Composable,
        attempt: Attempt,
        *,
        prefix: str = "",
        statements_before: int | None = None,
    ) -> None:
        """Run one statement after ``prefix`` (our own SQL, same round trip). ``statements_before`` is None in a
        transaction, else how many statements of this no-transaction migration already ran."""
        try:
            self.session.cursor.execute(sql.Composed([sql.SQL(prefix), statement]) if prefix else statement)
        except psycopg2.Error as error:
            failure = self._failure(migration, self.session.text(statement), error, attempt, statements_before)
            policy = RetryPolicy(
                retries=self.session.options.lock_retries,
                lock_timeout_ms=self.session.options.lock_timeout_ms,
                out_of_time=self.session.options.out_of_time(),
            )
            verdict = decide(failure, policy)
            if isinstance(verdict, Retry):
                raise _Again from error
            raise verdict from error

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
