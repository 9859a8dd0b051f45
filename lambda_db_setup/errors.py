"""Every error the package raises, under one root; each message names the migration, file or setting at fault.

Adapters turn these into their own world: the CLI into a one-line message and an exit code, the
Lambda handler into the CloudFormation FAILED reason. ``str(error)`` is always that one line.
"""

from __future__ import annotations

from typing import Any


class MigrationError(Exception):
    """The root; ``migration`` is the migration name (file name without extension) when one is at fault."""

    def __init__(self, message: str, *, migration: str | None = None) -> None:
        super().__init__(message)
        self.migration = migration


class ConfigurationError(MigrationError):
    """A setting (environment variable or flag) is missing or has a value that cannot be used."""


class EventError(MigrationError):
    """The Lambda event is not one the Provider framework sends."""


class SecretError(MigrationError):
    """A secret is missing, unreadable, or does not hold the JSON the handler expects."""


class ConnectError(MigrationError):
    """The database could not be reached or refused the login."""


class RolesError(MigrationError):
    """A role, grant or password could not be applied; the transaction was rolled back."""


class MigrationFileError(MigrationError):
    """A migration file cannot be used: bad name, unreadable, no `up`, bad SQL sections, import error."""


class IrreversibleMigrationError(MigrationFileError):
    """The migration has no way back: no or an empty Down section, no down(), or a down() adding no SQL."""


class OrderError(MigrationError):
    """Applied migrations and files disagree: a file is missing, or a new file sorts before an applied one."""


class DriftError(MigrationError):
    """Applied migration files were edited after they ran (checksum mismatch)."""

    def __init__(self, message: str, *, drifted: list[str]) -> None:
        super().__init__(message, migration=drifted[0] if drifted else None)
        self.drifted = drifted


class TrackingTableError(MigrationError):
    """``pgmigrations`` has an unexpected shape or rows no run can trust (duplicates, NULL or odd run_on)."""


class SchemaMismatchError(MigrationError):
    """The live schema is not what the migrations being baselined or adopted would have built."""

    def __init__(self, message: str, *, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


class LockError(MigrationError):
    """The migration lock could not be taken or could not be verified; ``holder`` is a `lock.LockHolder`."""

    def __init__(self, message: str, *, holder: Any = None) -> None:
        super().__init__(message)
        self.holder = holder


class MigrationFailedError(MigrationError):
    """A migration's SQL failed; its transaction was rolled back and the run stopped."""

    def __init__(
        self,
        message: str,
        *,
        migration: str,
        sqlstate: str | None = None,
        statement: str | None = None,
        pg_message: str | None = None,
    ) -> None:
        super().__init__(message, migration=migration)
        self.sqlstate = sqlstate
        self.statement = statement
        self.pg_message = pg_message


class LockContentionError(MigrationFailedError):
    """A migration kept hitting ``lock_timeout`` because live traffic held a conflicting lock.

    ``attempts`` is how many times it ran into the timeout; ``conflicts`` the (table, pid, application_name)
    of other sessions holding locks on tables the statement names.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 1,
        conflicts: list[tuple[str, int, str]] | None = None,
        **failure: Any,
    ) -> None:
        super().__init__(message, **failure)
        self.attempts = attempts
        self.conflicts = conflicts or []


class DataLossError(MigrationError):
    """A `down` would drop or empty tables that still hold rows; it needs an explicit force."""


class RunInterrupted(MigrationError):
    """Ctrl-C (or SIGTERM: ``terminated``) stopped a run: ``applied`` were done (``verb``: applied, reverted, run)
    before it; ``interrupted`` was rolled back (None: the signal came between migrations). The lock was released
    and asynchronous commits flushed."""

    def __init__(
        self,
        *,
        applied: list[str],
        interrupted: str | None,
        verb: str = "applied",
        partial: bool = False,
        terminated: bool = False,
    ) -> None:
        done = f"{len(applied)} migration(s) {verb} ({', '.join(applied)})" if applied else f"no migration {verb}"
        signal = "SIGTERM" if terminated else "Ctrl-C"
        left = f"; {interrupted} was not {verb}" if interrupted else ""
        if partial:
            left += f" (it runs without a transaction: what its statements did before {signal} stays; not recorded)"
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        super().__init__(f"{what}: {done}{left}", migration=interrupted)
        self.applied = applied
        self.interrupted = interrupted
        self.terminated = terminated


class RunBudgetError(MigrationError):
    """The deploy's time (the Lambda's RUN_BUDGET_SECONDS from on_event's start) ran out with work left."""


class LintError(MigrationError):
    """The migration linter (squawk) could not run or could not be understood."""


class LintRefusedError(MigrationError):
    """squawk flagged pending migrations and the run was set to refuse them (``LINT_BEFORE_APPLY``)."""


def pg_message(error: BaseException) -> str:
    """PostgreSQL's primary message of a driver error, on one line (the driver's text when it has none)."""
    diag = getattr(error, "diag", None)
    text = ((diag.message_primary if diag is not None else None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def pg_detail(error: BaseException) -> str:
    """PostgreSQL's DETAIL (e.g. which key is duplicated) as ``"; DETAIL: …"`` on one line, or ``""``."""
    diag = getattr(error, "diag", None)
    detail = " ".join(((diag.message_detail if diag is not None else None) or "").split())
    return f"; DETAIL: {detail}" if detail else ""
