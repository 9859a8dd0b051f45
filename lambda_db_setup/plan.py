"""Files compared with ``pgmigrations``: what is applied, pending, missing, ahead, out of order or drifted.

No I/O but reading applied files for their checksums: the engine reads the rows, this decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .discovery import Migration, parse_file_name
from .errors import DriftError, MigrationFileError, OrderError
from .tracking import AppliedRow


@dataclass(frozen=True)
class Plan:
    """Where the database stands against the files; ``by_name`` indexes the files."""

    migrations: list[Migration]
    applied: list[AppliedRow]
    table_exists: bool
    pending: list[Migration]
    missing: list[str]
    ahead: list[str]
    drifted: list[str]
    out_of_order: tuple[str, str] | None
    by_name: dict[str, Migration] = field(repr=False)

    def check(self, *, allow_ahead: bool) -> None:
        """Refuse to run on a history that does not match the files (node-pg-migrate's rules, plus drift)."""
        if self.missing:
            raise OrderError(
                f"applied migration {self.missing[0]} has no file any more"
                f"{' (nor ' + ', '.join(self.missing[1:]) + ')' if len(self.missing) > 1 else ''};"
                " restore the file, or remove its row from pgmigrations if it was deliberately deleted",
                migration=self.missing[0],
            )
        if self.ahead and not allow_ahead:
            raise OrderError(
                f"the database is ahead of these files: {', '.join(self.ahead)} applied but not found here",
                migration=self.ahead[0],
            )
        if self.out_of_order:
            not_run, already_run = self.out_of_order
            raise OrderError(
                f"Not run migration {not_run} is preceding already run migration {already_run}",
                migration=not_run,
            )
        if self.drifted:
            raise DriftError(
                f"applied migration file(s) changed since they ran: {', '.join(self.drifted)};"
                " review the change, then run `repair` to accept it",
                drifted=self.drifted,
            )

    def up_targets(self, count: int | None = None, to: str | None = None) -> list[Migration]:
        """The pending migrations to apply: all, the next ``count``, or up to and including ``to``."""
        if to is not None:
            names = [migration.name for migration in self.pending]
            if to not in names:
                raise MigrationFileError(f"--to {to}: no pending migration has that name", migration=to)
            return self.pending[: names.index(to) + 1]
        return self.pending if count is None else self.pending[: max(count, 0)]

    def down_targets(self, count: int) -> list[Migration]:
        """The newest ``count`` applied migrations, newest first."""
        return [self.by_name[row.name] for row in reversed(self.applied[-count:])] if count > 0 else []


def make_plan(migrations: list[Migration], applied: list[AppliedRow] | None) -> Plan:
    """Compare the files with the applied rows (None: the tracking table does not exist yet)."""
    rows = applied or []
    by_name = {migration.name: migration for migration in migrations}
    applied_names = {row.name for row in rows}
    unknown = [row.name for row in rows if row.name not in by_name]
    newest = (migrations[-1].timestamp, migrations[-1].name) if migrations else None
    ahead = [name for name in unknown if newest is None or _sort_key(name) > newest]
    drifted = [
        row.name for row in rows if row.checksum and row.name in by_name and by_name[row.name].checksum != row.checksum
    ]
    return Plan(
        migrations=migrations,
        applied=rows,
        table_exists=applied is not None,
        pending=[migration for migration in migrations if migration.name not in applied_names],
        missing=[name for name in unknown if name not in ahead],
        ahead=ahead,
        drifted=drifted,
        out_of_order=_first_out_of_order(migrations, applied_names),
        by_name=by_name,
    )


def _first_out_of_order(migrations: list[Migration], applied_names: set[str]) -> tuple[str, str] | None:
    """node-pg-migrate's check-order: the first file not yet run, if a file after it has already run."""
    for position, migration in enumerate(migrations):
        if migration.name not in applied_names:
            later = next((later.name for later in migrations[position + 1 :] if later.name in applied_names), None)
            return (migration.name, later) if later else None
    return None


def _sort_key(name: str) -> tuple[int, str]:
    """Where an applied name would sort among files (names that are not migration names sort first)."""
    try:
        migration = parse_file_name(Path(f"{name}.sql"))
    except MigrationFileError:
        return (-1, name)
    return (migration.timestamp, migration.name)
