"""node-pg-migrate's session advisory lock, taken by polling and verified in ``pg_locks``.

Polling ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a blocked waiter would
deadlock a holder's ``CREATE INDEX CONCURRENTLY`` (which waits for every older transaction). Every
transaction verifies in ``pg_locks`` that its backend still holds the lock (``still_ours`` before its COMMIT,
or ``ASSERT_HELD`` with its BEGIN when it runs statement by statement): a transaction-mode pooler would run
it on another backend, silently without the lock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor

from . import interrupts
from .errors import LockError
from .settings import APPLICATION_NAME

LOCK_ID = 7241865325823964  # node-pg-migrate's PG_MIGRATE_LOCK_ID, shared by every instance
WAIT_REPORT_SECONDS = 5.0  # how often a waiting run says who holds the lock
LOCK_CLASSID, LOCK_OBJID = divmod(LOCK_ID, 2**32)  # how pg_locks shows a bigint advisory key

IDLE_GRACE_SECONDS = 30.0  # a runner idle for less than this may be between two statements: alive
_OUR_LOCK = """
    locktype = 'advisory' AND classid = %(classid)s AND objid = %(objid)s AND objsubid = 1
    AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) AND granted
"""
TRY_LOCK = "SELECT pg_catalog.pg_try_advisory_lock(%(lock_id)s)"
HOLDER = f"""
    SELECT pid, coalesce(application_name, ''), pg_catalog.to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
           coalesce(state, 'unknown'), pg_catalog.host(client_addr),
           extract(epoch FROM pg_catalog.clock_timestamp() - state_change)::float8
    FROM pg_catalog.pg_stat_activity
    WHERE pid IN (SELECT pid FROM pg_catalog.pg_locks WHERE {_OUR_LOCK})
"""
LOST_HINT = "a transaction-mode pooler or the migration itself (pg_advisory_unlock_all, DISCARD ALL) lost it"
# Sent with every migration's BEGIN when it runs statement by statement: fails the migration if this session no
# longer holds the lock (a pooler moved us to another backend, or the migration itself released it).
ASSERT_HELD = f"""DO $lock$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE {
    _OUR_LOCK.replace("%(classid)s", str(LOCK_CLASSID)).replace("%(objid)s", str(LOCK_OBJID))
} AND pid = pg_catalog.pg_backend_pid()) THEN RAISE EXCEPTION 'the migration lock is no longer held by this session'
USING HINT = '{LOST_HINT}';
END IF; END $lock$"""
# A transaction sent in one round trip also takes a transaction-level lock on the same numbers as two int4 keys
# (objsubid 2 in pg_locks): only the end of its transaction releases it, so a COMMIT that slipped past the
# engine's checks inside a migration shows as that lock gone (pg_advisory_unlock_all frees session locks only).
# A backend's own advisory locks are all in its database: no need to match it.
TAKE_TRANSACTION_LOCK = f"SELECT pg_catalog.pg_advisory_xact_lock({LOCK_CLASSID}, {LOCK_OBJID})"
TRANSACTION_ENDED = "PGM02"  # the SQLSTATE an error says when `still_ours` found the transaction lock gone
# `still_ours` raises without PL/pgSQL (an inline block costs more than the migration's own row): casting text that
# is no number fails, quoting the text; pg_backend_pid() keeps the planner from trying the cast ahead of time.
_BROKEN = "lambda_db_setup lock check: "
ENDED, LOST = "transaction ended", "lock lost"
_STILL_OURS = f"""SELECT CASE
WHEN NOT coalesce(bool_or(objsubid = 2), false) THEN ('{_BROKEN}{ENDED} ' || pg_catalog.pg_backend_pid())::int
WHEN NOT coalesce(bool_or(objsubid = 1), false) THEN ('{_BROKEN}{LOST} ' || pg_catalog.pg_backend_pid())::int END
{{also}}FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = {LOCK_CLASSID} AND objid = {LOCK_OBJID}
AND granted AND pid = pg_catalog.pg_backend_pid()"""


def still_ours(*also: str) -> str:
    """Sent before a transaction's COMMIT, with one read of pg_locks: fails when the transaction ended early (a
    COMMIT inside it: the transaction lock is gone) or the migration lock is gone (`broken` says which).
    ``also`` are expressions evaluated in the same statement (each an extra column)."""
    return _STILL_OURS.replace("{also}", "".join(f", {expression}\n" for expression in also))


def broken(error: BaseException) -> str | None:
    """`ENDED` or `LOST` when ``error`` is `still_ours` failing, else None."""
    message = getattr(getattr(error, "diag", None), "message_primary", None) or ""
    if getattr(error, "pgcode", None) != "22P02" or f'"{_BROKEN}' not in message:
        return None
    return ENDED if f"{_BROKEN}{ENDED} " in message else LOST


_PARAMS = {"lock_id": LOCK_ID, "classid": LOCK_CLASSID, "objid": LOCK_OBJID}


@dataclass(frozen=True)
class LockHolder:
    """Who holds the migration lock, as ``pg_stat_activity`` describes them."""

    pid: int
    application_name: str
    backend_start: str
    state: str
    client_addr: str | None
    state_seconds: float | None = None  # how long it has been in ``state`` (pg_stat_activity.state_change)

    def describe(self) -> str:
        client = f", client {self.client_addr}" if self.client_addr else ""
        application = self.application_name or "(no application_name)"
        return f"pid {self.pid} ({application}{client}, connected since {self.backend_start}, {self._state()})"

    def _state(self) -> str:
        if self.state_seconds is None:
            return self.state
        return f"{self.state} for {self.state_seconds:.1f} s"

    def live_because(self, idle_grace_seconds: float) -> str | None:
        """Why it may be a live run (None: it looks stale): mid-statement, mid-transaction or only just idle."""
        if self.state == "active":
            return "it is running a statement now"
        if self.state.startswith("idle in transaction"):
            return "it is inside a transaction"
        if self.state == "idle" and (self.state_seconds is None or self.state_seconds < idle_grace_seconds):
            return f"it has been idle for less than {idle_grace_seconds:g} s, so it may be between two statements"
        return None


OnWait = Callable[["LockHolder | None", float, float], None]  # (holder, waited seconds, wait seconds)


def acquire(cursor: Cursor, *, wait_seconds: float, poll_seconds: float = 0.5, on_wait: OnWait | None = None) -> None:
    """Take the lock within ``wait_seconds`` or raise `LockError` naming the holder; tell ``on_wait`` who holds
    it when the wait begins and every `WAIT_REPORT_SECONDS` (without it, the holder is not even looked up)."""
    started = time.monotonic()
    deadline = started + wait_seconds
    next_report = started
    while True:
        cursor.execute(TRY_LOCK, _PARAMS)
        taken = cursor.fetchone()[0]
        if stop := interrupts.take():  # a signal during the poll: stop (without the lock)
            if taken:
                release(cursor)
            raise stop
        if taken:
            return
        now = time.monotonic()
        if on_wait is not None and now >= next_report:
            on_wait(find_holder(cursor), now - started, wait_seconds)
            next_report = now + WAIT_REPORT_SECONDS
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
    cursor.execute("SELECT pg_catalog.pg_advisory_unlock(%(lock_id)s)", _PARAMS)
    return bool(cursor.fetchone()[0])


def find_holder(cursor: Cursor) -> LockHolder | None:
    """The session holding the migration lock in this database, if any."""
    cursor.execute(HOLDER, _PARAMS)
    row = cursor.fetchone()
    return LockHolder(*row) if row else None


def terminate(
    cursor: Cursor,
    holder: LockHolder,
    *,
    runner_prefix: str = APPLICATION_NAME,
    even_if_active: bool = False,
    idle_grace_seconds: float = IDLE_GRACE_SECONDS,
) -> None:
    """End a stale runner's session so its lock is released; refuse to end anything else.

    A runner that is running a statement, is inside a transaction, or went idle only moments ago may be a
    live run between two statements (a migration without a transaction would stay half-applied), so that
    needs ``even_if_active``. A session that is not a runner is never ended here: the SQL is shown instead.
    """
    if not holder.application_name.startswith(runner_prefix):
        raise LockError(
            f"not terminating {holder.describe()}; `SELECT pg_terminate_backend({holder.pid})` would end it:"
            f" it is not recognisable as a migration runner (application_name does not start with"
            f" {runner_prefix!r}); end it yourself if you are sure",
            holder=holder,
        )
    live = holder.live_because(idle_grace_seconds)
    if live and not even_if_active:
        raise LockError(
            f"not terminating {holder.describe()}: {live}, so it may be a live run;"
            " wait, or add --force if you know its client is gone",
            holder=holder,
        )
    cursor.execute("SELECT pg_catalog.pg_terminate_backend(%s, 5000)", (holder.pid,))
    (terminated,) = cursor.fetchone()
    if not terminated:
        raise LockError(f"could not terminate {holder.describe()}", holder=holder)
