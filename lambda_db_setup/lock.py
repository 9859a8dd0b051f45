"""node-pg-migrate's session advisory lock, taken by polling and verified in ``pg_locks``.

Polling ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a blocked waiter would
deadlock a holder's ``CREATE INDEX CONCURRENTLY`` (which waits for every older transaction). Verifying
in ``pg_locks`` catches a transaction-mode pooler that would silently hand the lock to another client.
"""

from __future__ import annotations

import random
import time

from psycopg2.extensions import cursor as Cursor

from .errors import LockError, LockHolder

LOCK_ID = 7241865325823964  # node-pg-migrate's PG_MIGRATE_LOCK_ID, shared by every instance
LOCK_CLASSID, LOCK_OBJID = divmod(LOCK_ID, 2**32)  # how pg_locks shows a bigint advisory key

_OUR_LOCK = """
    locktype = 'advisory' AND classid = %(classid)s AND objid = %(objid)s AND objsubid = 1
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND granted
"""
TRY_LOCK = f"""
    WITH attempt AS MATERIALIZED (SELECT pg_try_advisory_lock(%(lock_id)s) AS obtained)
    SELECT obtained, EXISTS (SELECT 1 FROM pg_locks WHERE {_OUR_LOCK} AND pid = pg_backend_pid())
    FROM attempt
"""
HOLDER = f"""
    SELECT pid, coalesce(application_name, ''), to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
           coalesce(state, 'unknown'), host(client_addr)
    FROM pg_stat_activity
    WHERE pid IN (SELECT pid FROM pg_locks WHERE {_OUR_LOCK})
"""
_PARAMS = {"lock_id": LOCK_ID, "classid": LOCK_CLASSID, "objid": LOCK_OBJID}


def acquire(cursor: Cursor, *, wait_seconds: float, poll_seconds: float = 0.5) -> None:
    """Take the lock within ``wait_seconds`` or raise `LockError` naming the holder."""
    deadline = time.monotonic() + wait_seconds
    while True:
        cursor.execute(TRY_LOCK, _PARAMS)
        obtained, verified = cursor.fetchone()
        if obtained and verified:
            return
        if obtained:
            release(cursor)
            raise LockError(
                "the migration lock was granted but pg_locks does not show this backend holding it:"
                " a transaction-mode connection pooler is in the way; connect directly or in session mode"
            )
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


def release(cursor: Cursor) -> None:
    cursor.execute("SELECT pg_advisory_unlock(%(lock_id)s)", _PARAMS)


def find_holder(cursor: Cursor) -> LockHolder | None:
    """The session holding the migration lock in this database, if any."""
    cursor.execute(HOLDER, _PARAMS)
    row = cursor.fetchone()
    return LockHolder(*row) if row else None


def terminate(cursor: Cursor, holder: LockHolder, *, runner_prefix: str = "lambda_db_setup") -> None:
    """End a stale runner's session so its lock is released; refuse to end anything else."""
    if not holder.application_name.startswith(runner_prefix):
        raise LockError(
            f"not terminating {holder.describe()}: it is not recognisable as a migration runner"
            f" (application_name does not start with {runner_prefix!r}); end it yourself if you are sure",
            holder=holder,
        )
    cursor.execute("SELECT pg_terminate_backend(%s, 5000)", (holder.pid,))
    (terminated,) = cursor.fetchone()
    if not terminated:
        raise LockError(f"could not terminate {holder.describe()}", holder=holder)
