"""One command's session: an autocommit cursor with the engine's settings, holding the lock when asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.sql import Composable

from . import lock
from .errors import LockError
from .options import EngineOptions
from .progress import SILENT, Progress


@dataclass(frozen=True)
class Session:
    """The connection, its cursor and the run's options, passed to whatever runs SQL for the command."""

    conn: Connection
    cursor: Cursor
    options: EngineOptions
    # Undoes what a migration's plain SET / SET ROLE / set_config(..., false) left behind and re-applies the
    # engine's settings, so every migration starts from the same state (DISCARD ALL would drop the lock).
    restore: str = ""

    def rollback(self) -> None:
        """End a transaction left open (by a failure, or by a migration that opened one itself)."""
        if not self.conn.closed and self.conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
            self.cursor.execute("ROLLBACK")

    def text(self, statement: Composable) -> str:
        """A builder statement as the SQL text the server receives."""
        return statement.as_string(self.conn)


@contextmanager
def open_session(
    conn: Connection, options: EngineOptions, *, take_lock: bool, progress: Progress = SILENT
) -> Iterator[Session]:
    """Apply the session settings in one round trip, then (``take_lock``) hold the migration lock throughout."""
    conn.autocommit = True
    with conn.cursor() as cursor:
        settings = _settings(conn, options)
        cursor.execute(
            "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in settings),
            [part for setting in settings.items() for part in setting],
        )
        session = Session(conn, cursor, options, restore=_restore(conn, settings))
        if not take_lock:
            yield session
            return
        on_wait = None if progress is SILENT else progress.waiting_for_lock
        lock.acquire(
            cursor, wait_seconds=options.lock_wait_seconds, poll_seconds=options.lock_poll_seconds, on_wait=on_wait
        )
        try:
            yield session
        except BaseException:
            if not conn.closed:
                try:
                    session.rollback()
                    lock.release(cursor)
                except psycopg2.Error:
                    pass  # the lock dies with the session; the original error matters more
            raise
        if not lock.release(cursor):
            raise LockError(
                "the migration lock was not held any more at the end of the run (a transaction-mode pooler,"
                " or a migration that released it): check `status` and run again with a direct connection"
            )


def _settings(conn: Connection, options: EngineOptions) -> dict[str, str]:
    settings = {
        "application_name": options.application_name,
        "lock_timeout": f"{options.lock_timeout_ms}ms",
        "statement_timeout": f"{options.statement_timeout_ms}ms",
    }
    if conn.server_version >= 140000 and options.client_check_interval_ms > 0:
        # A runner killed mid-statement: its backend notices the closed socket and rolls back now,
        # not when the statement ends, so the lock and the half-done migration go with it.
        settings["client_connection_check_interval"] = f"{options.client_check_interval_ms}ms"
    return settings


def _restore(conn: Connection, settings: dict[str, str]) -> str:
    """The SQL that returns the session to its opening state; literal values, so it can join any round trip."""
    calls = sql.SQL(", ").join(
        sql.SQL("pg_catalog.set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value))
        for name, value in settings.items()
    )
    reset = sql.SQL("RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; SELECT {}").format(calls)
    return reset.as_string(conn)
