"""Ctrl-C and SIGTERM while a statement runs: cancel it on the server, then stop the run as an interrupt.

Without this, a signal waits for the statement in flight to finish (libpq blocks in C), and SIGTERM kills
the process outright: no cancel, no flush of asynchronous commits, no report. With `installed`, queries wait in
`_wait` (psycopg2's wait callback, after ``psycopg2.extras.wait_select``), where a signal only marks the stop
as pending and sends a cancel request; the statement ends with SQLSTATE 57014, the transaction rolls back and
the connection stays usable. The caller then takes the pending stop (`take`) and raises it: a cancelled
statement, or one whose result was already on its way back, both end the run the same way. A signal that
arrives while no query is in flight raises at once, as Python's own Ctrl-C does.
"""

from __future__ import annotations

import select
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

import psycopg2
from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE
from psycopg2.extensions import connection as Connection

QUERY_CANCELED = "57014"  # a cancel request, and also a statement_timeout: only a pending stop tells them apart
POLL_SECONDS = 0.2  # how soon a signal that arrived during a query is acted on


class Terminated(KeyboardInterrupt):
    """SIGTERM (a container stop, a CI cancellation, systemd): handled exactly as Ctrl-C, exit code 143."""


class _State:
    in_query = False
    pending: KeyboardInterrupt | None = None


_state = _State()


@contextmanager
def installed() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM go through `_on_signal`, every query through `_wait` (process-wide);
    what was there before is put back on the way out."""
    handlers = {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    callback = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(_wait)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        take()


def take() -> KeyboardInterrupt | None:
    """The stop a signal asked for during the last query (cleared), or None."""
    stop, _state.pending = _state.pending, None
    return stop


def raise_pending() -> None:
    """Raise the stop a signal asked for during a query that has since finished."""
    if (stop := take()) is not None:
        raise stop


def cancelled_by_us(error: psycopg2.Error) -> KeyboardInterrupt | None:
    """The pending stop when ``error`` is the cancellation it caused (None: a real failure, pending kept)."""
    if error.pgcode == QUERY_CANCELED and _state.pending is not None:
        return take()
    return None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    if not _state.in_query:
        raise stop
    _state.pending = _state.pending or stop


def _wait(conn: Connection) -> None:
    """psycopg2's wait callback: poll the connection; on a stop asked for during it, ask the server to cancel
    (once).

    It never raises for a signal: psycopg2 closes the connection when its wait callback raises.
    """
    _state.in_query = True
    cancelled = _state.pending is not None  # a stop not yet taken: this query is the caller's clean-up
    try:
        while (state := conn.poll()) != POLL_OK:
            if state not in (POLL_READ, POLL_WRITE):
                raise conn.OperationalError(f"bad state from poll: {state}")
            if _state.pending is not None and not cancelled:
                cancelled = True
                with suppress(psycopg2.Error):  # still connecting: nothing to cancel; the stop stays pending
                    conn.cancel()
            fd = conn.fileno()
            select.select([fd] if state == POLL_READ else [], [fd] if state == POLL_WRITE else [], [], POLL_SECONDS)
    finally:
        _state.in_query = False
