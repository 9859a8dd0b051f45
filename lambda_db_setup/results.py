"""What a command did, migration by migration: the values adapters print or log."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .discovery import Migration


class Action(StrEnum):
    """What happened to one migration in a run."""

    RAN = "ran"  # its up ran and its row was recorded
    REVERTED = "reverted"  # its down ran and its row was removed
    WOULD_RUN = "would run"  # dry run of up: rendered, nothing changed
    WOULD_REVERT = "would revert"  # dry run of down
    ADOPTED = "adopted"  # recorded without running: the schema already matched


@dataclass(frozen=True)
class MigrationOutcome:
    """One migration, what happened to it, how long it took and in how many attempts."""

    migration: Migration
    action: Action
    duration_ms: float = 0.0
    attempts: int = 1  # more than 1 when lock contention made the engine run it again
    use_transaction: bool = True  # False for a migration that runs statement by statement (no_transaction)
    sql: tuple[str, ...] = ()  # the rendered statements, in a dry run
    reversible: bool = True  # in an up dry run: False when a later `down` of it would be refused
    group_size: int = 1  # migrations committed in its transaction (single-transaction mode); duration_ms is theirs

    @property
    def name(self) -> str:
        return self.migration.name

    @property
    def direction(self) -> str:
        return "down" if self.action in (Action.REVERTED, Action.WOULD_REVERT) else "up"


@dataclass
class RunResult:
    """What a run did, in order; ``already_applied`` are the names recorded before it began."""

    already_applied: list[str] = field(default_factory=list)
    outcomes: list[MigrationOutcome] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)  # left for a later run: the deadline came first
    ahead: list[str] = field(default_factory=list)  # recorded, but no file here (a rollback's older code)
    dry_run: bool = False

    def _with(self, action: Action) -> list[MigrationOutcome]:
        return [outcome for outcome in self.outcomes if outcome.action is action]

    @property
    def ran(self) -> list[MigrationOutcome]:
        return self._with(Action.RAN)

    @property
    def reverted(self) -> list[MigrationOutcome]:
        return self._with(Action.REVERTED)

    @property
    def adopted(self) -> list[MigrationOutcome]:
        return self._with(Action.ADOPTED)

    @property
    def would_run(self) -> list[MigrationOutcome]:
        """The dry run's outcomes, up or down."""
        return [outcome for outcome in self.outcomes if outcome.action in (Action.WOULD_RUN, Action.WOULD_REVERT)]


@dataclass(frozen=True)
class BaselineResult:
    """Migrations recorded without running, and the tables whose schema was verified (None: not checked)."""

    recorded: list[Migration]
    verified_tables: list[str] | None
