"""How far a transaction sent in one round trip got: session-level advisory locks that a rollback keeps.

Before each part of the transaction (a statement, or a migration's closing; the last closing also covers the
lock check) the batch moves a marker lock from the previous part's number to this one's; the lock check
releases the last, so a failure with no marker held is COMMIT's. Session-level advisory locks are not undone
by ROLLBACK, so after a failure the marker still held says which part was running. Any role may take them: no
temporary object, no privilege. A part that released every advisory lock (``pg_advisory_unlock_all()``) also
released the marker, so the next move finds nothing to move and takes a "lost" marker instead: the first lost
marker names the part that released the migration lock. Markers use their own first key, beside the
migration lock's, and are taken with ``pg_try_advisory_lock``: a run never waits on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor

from .lock import LOCK_CLASSID

REACHED_KEY = LOCK_CLASSID + 1
LOST_KEY = LOCK_CLASSID + 2
_HELD = f"""
    SELECT l.classid::int, l.objid::int FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
      AND l.classid IN ({REACHED_KEY}, {LOST_KEY})
"""
READ_AND_RELEASE = f"SELECT held.*, pg_catalog.pg_advisory_unlock(held.classid, held.objid) FROM ({_HELD}) held"


# Before the transaction's first part: an expression, sent with the statement that takes the transaction lock.
FIRST = f"pg_catalog.pg_try_advisory_lock({REACHED_KEY}, 1)"


def move(number: int) -> str:
    """An expression, before part ``number`` (2 and up): release the previous marker, or record that it was
    gone."""
    return (
        f"CASE WHEN pg_catalog.pg_advisory_unlock({REACHED_KEY}, {number - 1})"
        f" THEN pg_catalog.pg_try_advisory_lock({REACHED_KEY}, {number})"
        f" ELSE pg_catalog.pg_try_advisory_lock({LOST_KEY}, {number}) END"
    )


def release(number: int) -> str:
    """An expression for the last part ``number``, before COMMIT: the session keeps no marker."""
    return f"pg_catalog.pg_advisory_unlock({REACHED_KEY}, {number})"


@dataclass(frozen=True)
class Reached:
    """Where a failed transaction stopped: the part running (None: unknown), and the part that released every
    advisory lock, the migration lock among them (None: none did)."""

    part: int | None
    released_locks_in: int | None = None


def read_and_release(cursor: Cursor) -> Reached:
    """After the rollback: which part the transaction reached; every marker is released."""
    cursor.execute(READ_AND_RELEASE)
    rows = cursor.fetchall()
    lost = [number for key, number, _ in rows if key == LOST_KEY]
    numbers = [number for _, number, _ in rows]
    return Reached(max(numbers) if numbers else None, min(lost) - 1 if lost else None)
