"""node-pg-migrate's session advisory lock, taken by polling and verified in ``pg_locks``.

Polling ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a blocked waiter would
deadlock a holder's ``CREATE INDEX CONCURRENTLY`` (which waits for every older transaction). Every
migration verifies in ``pg_locks`` (``ASSERT_HELD``, sent with its BEGIN) that its backend still holds the
lock: a transaction-mode pooler would run it on another backend, silently without the lock.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor

from .errors import LockError
from .settings import APPLICATION_NAME

LOCK_ID = 7241865325823964  # node-pg-migrate's PG_MIGRATE_LOCK_ID, shared by every instance
LOCK_CLASSID, LOCK_OBJID = divmod(LOCK_ID, 2**32)  # how pg_locks shows a bigint advisory key

_OUR_LOCK = """
    locktype = 'advisory' AND classid = %(classid)s AND objid = %(objid)s AND objsubid = 1
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND granted
"""
TRY_LOCK = "SELECT pg_try_advisory_lock(%(lock_id)s)"
HOLDER = f"""
    SELECT pid, coalesce(application_name, ''), to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
           coalesce(state, 'unknown'), host(client_addr)
    FROM pg_stat_activity
    WHERE pid IN (SELECT pid FROM pg_locks WHERE {_OUR_LOCK})
"""
# Sent with every migration's BEGIN: fails the migration if this session no longer holds the lock (a pooler
# moved us to another backend, or the migration itself released it). Literal numbers only: no parameters.
ASSERT_HELD = f"""DO $lock$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE {
    _OUR_LOCK.replace("%(classid)s", str(LOCK_CLASSID)).replace("%(objid)s", str(LOCK_OBJID))
} AND pid = pg_backend_pid()) THEN RAISE EXCEPTION 'the migration lock is no longer held by this session'
USING HINT = 'a transaction-mode pooler or the migration itself (pg_advisory_unlock_all, DISCARD ALL) lost it';
END IF; END $lock$"""
_PARAMS = {"lock_id": LOCK_ID, "classid": LOCK_CLASSID, "objid": LOCK_OBJID}


@dataclass(frozen=True)
class LockHolder:
    """Who holds the migration lock, as ``pg_stat_activity`` describes them."""

    pid: int
    application_name: str
    backend_start: str
    state: str
    client_addr: str | None

    def describe(self) -> str:
        client = f", client {self.client_addr}" if self.client_addr else ""
        application = self.application_name or "(no application_name)"
        return f"pid {self.pid} ({application}{client}, connected since {self.backend_start}, {self.state})"


def acquire(cursor: Cursor, *, wait_seconds: float, poll_seconds: float = 0.5) -> None:
    """Take the lock within ``wait_seconds`` or raise `LockError` naming the holder."""
    deadline = time.monotonic() + wait_seconds
    while True:
        cursor.execute(TRY_LOCK, _PARAMS)
        if cursor.fetchone()[0]:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            holder = find_holder(cursor)
            who = holder.describe() if holder else "a session that has since let go"
            raise LockError(
                f"migration lock not obtained within {wait_seconds:g}s: held by {who};"
                " if that runner is gone, `python -m lambda_db_setup unlock --terminate` ends its session",
                holder=holder,
            )
        time.sleep(min(remaining, poll_seconds * random.uniform(0.5, 1.5)))


def release(cursor: Cursor) -> bool:
    """Release the lock; False when this session did not hold it any more."""
    cursor.execute("SELECT pg_advisory_unlock(%(lock_id)s)", _PARAMS)
    return bool(cursor.fetchone()[0])


def find_holder(cursor: Cursor) -> LockHolder | None:
    """The session holding the migration lock in this database, if any."""
    cursor.execute(HOLDER, _PARAMS)
    row = cursor.fetchone()
    return LockHolder(*row) if row else None


def terminate(
    cursor: Cursor, holder: LockHolder, *, runner_prefix: str = APPLICATION_NAME, even_if_active: bool = False
) -> None:
    """End a stale runner's session so its lock is released; refuse to end anything else.

    A runner that is running a statement right now may be alive and mid-migration (a migration without a
    transaction would stay half-applied), so that needs ``even_if_active``.
    """
    if not holder.application_name.startswith(runner_prefix):
        raise LockError(
            f"not terminating {holder.describe()}: it is not recognisable as a migration runner"
            f" (application_name does not start with {runner_prefix!r}); end it yourself if you are sure",
            holder=holder,
        )
    if holder.state == "active" and not even_if_active:
        raise LockError(
            f"not terminating {holder.describe()}: it is running a statement now, so it may be a live run;"
            " wait, or add --force if you know its client is gone",
            holder=holder,
        )
    cursor.execute("SELECT pg_terminate_backend(%s, 5000)", (holder.pid,))
    (terminated,) = cursor.fetchone()
    if not terminated:
        raise LockError(f"could not terminate {holder.describe()}", holder=holder)
