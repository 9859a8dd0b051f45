"""How a run behaves: the engine's options, filled by an adapter from `Settings` and its own situation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .settings import APPLICATION_NAME, BY_NAME, Settings
from .tracking import DEFAULT, TrackingTable


def _default(name: str) -> Any:
    return BY_NAME[name].default


@dataclass(frozen=True)
class EngineOptions:
    """Timeouts, retries and policies; the defaults are the settings table's."""

    lock_wait_seconds: float = _default("lock_wait_seconds")
    lock_poll_seconds: float = 0.5
    lock_timeout_ms: int = _default("lock_timeout_ms")
    statement_timeout_ms: int = _default("statement_timeout_ms")
    lock_retries: int = 3
    lock_retry_backoff_seconds: float = 1.0
    deadline: float | None = None  # a time.monotonic() value no statement may run past (the Lambda's)
    start_margin_seconds: float = 10.0  # no migration starts with less than this left before the deadline
    allow_ahead: bool = False
    # No history but the tables exist: record instead of run, if they match. Off for direct engine use; the
    # adapters take the settings table's default (on), through from_settings.
    adopt_existing_schema: bool = False
    application_name: str = APPLICATION_NAME
    client_check_interval_ms: int = 1000  # PostgreSQL 14+: end a dead runner's statement within this long
    single_transaction: bool = _default("single_transaction")  # consecutive transactional migrations commit together
    tracking: TrackingTable = DEFAULT  # the history table: migrations_schema.migrations_table

    @classmethod
    def from_settings(cls, settings: Settings, **situation: Any) -> EngineOptions:
        """The options the settings give; ``situation`` adds what the adapter knows (deadline, allow_ahead)."""
        return cls(
            lock_wait_seconds=settings.lock_wait_seconds,
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
            adopt_existing_schema=settings.adopt_existing_schema,
            single_transaction=settings.single_transaction,
            tracking=TrackingTable(settings.migrations_schema, settings.migrations_table),
            **situation,
        )

    def out_of_time(self) -> bool:
        """True when too little time is left before the deadline to start another migration."""
        return self.deadline is not None and self.deadline - time.monotonic() < self.start_margin_seconds

    def deadline_left_ms(self) -> int | None:
        """Milliseconds left before the deadline (at least 1), or None without one."""
        if self.deadline is None:
            return None
        return max(int((self.deadline - time.monotonic()) * 1000), 1)

    def deadline_timeout_ms(self) -> int | None:
        """The statement_timeout a statement gets when a deadline is set: never past the deadline."""
        left_ms = self.deadline_left_ms()
        if left_ms is None:
            return None
        return min(self.statement_timeout_ms, left_ms) if self.statement_timeout_ms > 0 else left_ms
