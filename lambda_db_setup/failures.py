"""Judging a failed statement: run the migration again, or fail with which message. Pure: no I/O.

`execute` gathers what is known about the failure (a `Failure`) and asks `decide`; only a lock timeout
in a migration that has changed nothing yet is worth another attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from .discovery import Migration
from .errors import LockContentionError, MigrationFailedError
from .sqltext import excerpt

LOCK_NOT_AVAILABLE = "55P03"
INVALID_TRANSACTION_TERMINATION = "2D000"
STATEMENT_EXCERPT = 300
TRANSACTION_ENDED_HINT = (
    "; a DO block or procedure tried to end the migration's transaction: the engine runs each migration in one"
    " transaction, so remove the COMMIT/ROLLBACK or call pgm.no_transaction() / add '-- pgm:no-transaction'"
)


@dataclass(frozen=True)
class Failure:
    """One failed statement and what surrounded it."""

    migration: Migration
    statement: str
    sqlstate: str | None
    pg_message: str
    pg_detail: str = ""  # "; DETAIL: …" when PostgreSQL sent one (errors.pg_detail)
    connection_lost: bool = False
    in_transaction: bool = True
    statements_before: int = 0  # statements of a no-transaction migration that already ran (and stay applied)
    invalid_indexes: tuple[str, ...] = ()  # INVALID indexes after a no-transaction migration failed
    new_invalid_indexes: tuple[str, ...] = ()  # of those, the ones this attempt left
    conflicts: tuple[tuple[str, int, str], ...] = ()  # (table, pid, application_name) holding locks it needs
    attempt: int = 1

    def error_fields(self) -> dict[str, str | None]:
        """What every error raised for this failure carries, besides its message."""
        return {
            "migration": self.migration.name,
            "sqlstate": self.sqlstate,
            "statement": self.statement,
            "pg_message": self.pg_message,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """When a lock timeout may be retried."""

    retries: int
    lock_timeout_ms: int
    out_of_time: bool = False


class Retry:
    """The verdict that running the migration again is safe (the executor backs off first)."""


def decide(failure: Failure, policy: RetryPolicy) -> Retry | MigrationFailedError:
    """`Retry`, or the error to raise for ``failure``."""
    if failure.connection_lost:
        return _connection_lost(failure)
    notes = _invalid_index_note(failure.invalid_indexes)
    if not failure.in_transaction and failure.statements_before:
        notes += f"; it runs without a transaction: {kept(failure.statements_before)}"
    if failure.sqlstate == LOCK_NOT_AVAILABLE:
        why_not = _why_not_retried(failure, policy)
        if why_not is None:
            return Retry()
        return _contention(failure, policy, why_not, notes)
    hint = TRANSACTION_ENDED_HINT if failure.sqlstate == INVALID_TRANSACTION_TERMINATION else ""
    return MigrationFailedError(
        f"{failure.migration.file_name}: {failure.pg_message} (SQLSTATE {failure.sqlstate}) in:"
        f" {statement_excerpt(failure.statement)}{failure.pg_detail}{hint}{notes}",
        **failure.error_fields(),
    )


def _why_not_retried(failure: Failure, policy: RetryPolicy) -> str | None:
    if failure.statements_before:
        return "not retried: statements before it already ran outside a transaction"
    if failure.new_invalid_indexes:
        return "not retried: it left an INVALID index"
    if policy.out_of_time:
        return "not retried: too close to the deadline"
    if failure.attempt <= policy.retries:
        return None
    return f"gave up after {failure.attempt} attempts"


def _contention(failure: Failure, policy: RetryPolicy, why_not: str, notes: str) -> LockContentionError:
    holders = ", ".join(
        f"table {table} (held by pid {pid}{' ' + app if app else ''})" for table, pid, app in failure.conflicts
    )
    return LockContentionError(
        f"{failure.migration.file_name}: lock contention: could not lock {holders or 'a table it needs'} within"
        f" lock_timeout ({policy.lock_timeout_ms} ms), {why_not}; live traffic holds a conflicting"
        f" lock: retry when it is quieter or raise LOCK_TIMEOUT_MS / --lock-timeout-ms{notes}",
        **failure.error_fields(),
        attempts=failure.attempt,
        conflicts=list(failure.conflicts),
    )


def _connection_lost(failure: Failure) -> MigrationFailedError:
    left = (
        "its transaction was not committed: nothing of it was applied"
        if failure.in_transaction
        else f"it runs without a transaction: {kept(failure.statements_before)}"
    )
    return MigrationFailedError(
        f"{failure.migration.file_name}: connection lost while running it ({failure.pg_message}); {left}",
        **{**failure.error_fields(), "sqlstate": None},
    )


def kept(statements_before: int) -> str:
    """What a failed no-transaction migration left behind."""
    if statements_before == 0:
        return "it failed on its first statement, nothing of it was applied"
    return (
        f"the {statements_before} statement(s) before the failing one stay applied and it is not recorded;"
        " make them re-runnable (IF NOT EXISTS) or undo them before running it again"
    )


def statement_excerpt(text: str | bytes | None) -> str:
    return excerpt(text, STATEMENT_EXCERPT)


def _invalid_index_note(invalid: tuple[str, ...]) -> str:
    if not invalid:
        return ""
    return (
        f"; INVALID index(es) left by a failed concurrent build: {', '.join(invalid)}"
        " (DROP INDEX CONCURRENTLY them before running it again)"
    )
