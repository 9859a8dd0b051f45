"""What a long run says while it works: an adapter overrides what it shows; the engine runs the same without."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .discovery import Migration
    from .lock import LockHolder


class Progress:
    """Called by the engine as things happen; every method does nothing here."""

    def skipped(self, text: str) -> None:
        """A directory entry named like a migration was skipped (``text`` says which and why)."""

    def waiting_for_lock(self, holder: LockHolder | None, waited_seconds: float, wait_seconds: float) -> None:
        """The migration lock is held elsewhere; called when the wait begins and about every 5 s after."""

    def starting(self, migration: Migration, direction: str, attempt: int) -> None:
        """A migration's attempt begins (``direction`` up or down)."""

    def retrying(self, migration: Migration, attempt: int, backoff_seconds: float) -> None:
        """An attempt hit lock contention; the next begins after ``backoff_seconds``."""


SILENT = Progress()
