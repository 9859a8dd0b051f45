"""`failures.decide`: retry or fail, and with which message, from the facts of one failed statement (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_db_setup.discovery import parse_file_name
from lambda_db_setup.errors import LockContentionError, MigrationFailedError
from lambda_db_setup.failures import (
    INVALID_TRANSACTION_TERMINATION,
    LOCK_NOT_AVAILABLE,
    Failure,
    Retry,
    RetryPolicy,
    decide,
)

MIGRATION = parse_file_name(Path("1000_add_column.sql"))
POLICY = RetryPolicy(retries=3, lock_timeout_ms=5000)


def lock_timeout(**facts: object) -> Failure:
    defaults = {"statement": "ALTER TABLE items ADD COLUMN x int", "sqlstate": LOCK_NOT_AVAILABLE}
    return Failure(MIGRATION, pg_message="canceling statement due to lock timeout", **(defaults | facts))


def test_a_lock_timeout_is_retried_while_attempts_are_left() -> None:
    assert isinstance(decide(lock_timeout(attempt=1), POLICY), Retry)
    assert isinstance(decide(lock_timeout(attempt=3), POLICY), Retry)


def test_the_last_lock_timeout_fails_naming_the_attempts_and_the_holders() -> None:
    conflicts = (("items", 4242, "web-app"),)
    error = decide(lock_timeout(attempt=4, conflicts=conflicts), POLICY)
    assert isinstance(error, LockContentionError)
    assert error.attempts == 4 and error.conflicts == [("items", 4242, "web-app")]
    assert str(error).startswith(
        "1000_add_column.sql: lock contention: could not lock table items (held by pid 4242 web-app) within"
        " lock_timeout (5000 ms), gave up after 4 attempts"
    )
    assert (error.migration, error.sqlstate) == ("1000_add_column", LOCK_NOT_AVAILABLE)


@pytest.mark.parametrize(
    ("facts", "policy", "why"),
    [
        ({"in_transaction": False, "statements_before": 2}, POLICY, "statements before it already ran outside"),
        ({"in_transaction": False, "new_invalid_indexes": ("items_x_idx",)}, POLICY, "it left an INVALID index"),
        ({}, RetryPolicy(retries=3, lock_timeout_ms=5000, out_of_time=True), "too close to the deadline"),
        ({}, RetryPolicy(retries=0, lock_timeout_ms=5000), "gave up after 1 attempts"),
    ],
)
def test_a_lock_timeout_is_not_retried_when_running_again_is_unsafe_or_pointless(facts, policy, why) -> None:
    error = decide(lock_timeout(**facts), policy)
    assert isinstance(error, LockContentionError)
    assert why in str(error)


def test_a_lost_connection_says_what_stayed_applied() -> None:
    in_transaction = decide(lock_timeout(sqlstate=None, connection_lost=True), POLICY)
    assert "its transaction was not committed: nothing of it was applied" in str(in_transaction)
    outside = decide(lock_timeout(connection_lost=True, in_transaction=False, statements_before=1), POLICY)
    assert "the 1 statement(s) before the failing one stay applied" in str(outside)
    assert type(outside) is MigrationFailedError and outside.sqlstate is None


def test_other_errors_fail_at_once_with_the_statement_and_notes() -> None:
    failure = Failure(
        MIGRATION,
        statement="CREATE UNIQUE INDEX CONCURRENTLY items_code ON items (code)",
        sqlstate="23505",
        pg_message="could not create unique index",
        in_transaction=False,
        invalid_indexes=("items_code",),
        new_invalid_indexes=("items_code",),
    )
    error = decide(failure, POLICY)
    assert type(error) is MigrationFailedError
    assert str(error) == (
        "1000_add_column.sql: could not create unique index (SQLSTATE 23505) in: CREATE UNIQUE INDEX CONCURRENTLY"
        " items_code ON items (code); INVALID index(es) left by a failed concurrent build: items_code"
        " (DROP INDEX CONCURRENTLY them before running it again)"
    )


def test_a_transaction_ended_by_a_do_block_gets_the_hint() -> None:
    failure = Failure(MIGRATION, "DO $$ BEGIN COMMIT; END $$", INVALID_TRANSACTION_TERMINATION, "invalid transaction")
    assert "a DO block or procedure tried to end the migration's transaction" in str(decide(failure, POLICY))
