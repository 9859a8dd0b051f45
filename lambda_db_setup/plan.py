"""Files compared with the tracking table: what is applied, pending, missing, ahead, out of order or drifted.

No I/O but reading applied files for their checksums: the engine reads the rows, this decides.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from .discovery import Migration, parse_file_name
from .errors import DriftError, MigrationFileError, OrderError, TrackingTableError
from .tracking import DEFAULT, AppliedRow, TrackingTable

FORGET = "lambda-db-setup forget"  # the command that removes rows whose file is gone


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
    problems: list[str] = field(default_factory=list)  # rows no command can trust; each says how to fix it
    skipped: tuple[str, ...] = ()  # directory entries named like migrations but skipped, each saying why
    tracking: TrackingTable = DEFAULT  # where the rows were read, to name it in messages

    @property
    def gone(self) -> list[str]:
        """Applied names whose file is gone, missing or ahead, in the rows' order (what ``forget`` removes)."""
        return [name for name in dict.fromkeys(row.name for row in self.applied) if name not in self.by_name]

    def forget_command(self, names: list[str]) -> str:
        """The command line removing the rows of ``names``, as a hint to print."""
        return _forget(names, self.tracking)

    def refuse_problems(self) -> None:
        """Refuse to change anything while the tracking table holds rows that make its history ambiguous."""
        if self.problems:
            raise TrackingTableError(f"{'; '.join(self.problems)}; nothing was changed")

    def check(self, *, allow_ahead: bool) -> None:
        """Refuse to run on a history that does not match the files (node-pg-migrate's rules, plus drift)."""
        if self.missing:
            raise OrderError(
                f"applied migration {self.missing[0]} has no file any more"
                f"{' (nor ' + ', '.join(self.missing[1:]) + ')' if len(self.missing) > 1 else ''};"
                f" restore the file, or if it was deliberately deleted remove"
                f" {'its row' if len(self.missing) == 1 else 'their rows'}: `{self.forget_command(self.missing)}`",
                migration=self.missing[0],
            )
        if self.ahead and not allow_ahead:
            raise OrderError(
                f"the database is ahead of these files: {', '.join(self.ahead)} applied but not found here;"
                " use the newer files, or if those migrations are abandoned remove their rows:"
                f" `{self.forget_command(self.ahead)}`",
                migration=self.ahead[0],
            )
        if self.out_of_order:
            not_run, already_run = self.out_of_order
            raise OrderError(
                f"Not run migration {not_run} is preceding already run migration {already_run}",
                migration=not_run,
            )
        self.refuse_problems()
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

    def down_targets(self, count: int = 1, to: str | None = None) -> list[Migration]:
        """The newest ``count`` applied migrations (or down to and including ``to``), newest first, in file order."""
        applied = {row.name for row in self.applied}
        newest_first = [migration for migration in reversed(self.migrations) if migration.name in applied]
        if to is not None:
            names = [migration.name for migration in newest_first]
            if to not in names:
                raise MigrationFileError(f"--to {to}: no applied migration has that name", migration=to)
            return newest_first[: names.index(to) + 1]
        return newest_first[: max(count, 0)]


def make_plan(
    migrations: list[Migration],
    applied: list[AppliedRow] | None,
    *,
    skipped: tuple[str, ...] = (),
    tracking: TrackingTable = DEFAULT,
) -> Plan:
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
        problems=_duplicates(rows, tracking) + _bad_run_on(rows, tracking) or _run_on_order(migrations, rows, tracking),
        skipped=skipped,
        tracking=tracking,
    )


def _forget(names: list[str], tracking: TrackingTable) -> str:
    """The command line removing the rows of ``names`` (each quoted for a POSIX shell), naming a tracking table
    that is not the default, wherever its settings came from."""
    words = []
    if tracking != DEFAULT:
        words = ["--migrations-schema", tracking.schema, "--migrations-table", tracking.table]
    if any(name.startswith("-") for name in names):
        words.append("--")  # else read as a flag
    return f"{FORGET} {shlex.join(words + names)}"


def _duplicates(rows: list[AppliedRow], tracking: TrackingTable) -> list[str]:
    """Names recorded more than once: which rows, and the DELETE keeping the oldest."""
    ids: defaultdict[str, list[int]] = defaultdict(list)
    for row in rows:
        ids[row.name].append(row.id)
    problems = []
    for name, found in ids.items():
        if len(found) > 1:
            extra = sorted(found)[1:]
            where = f"id = {extra[0]}" if len(extra) == 1 else f"id IN ({', '.join(map(str, extra))})"
            problems.append(
                f"{tracking} has {len(found)} rows for {name} (ids {', '.join(map(str, sorted(found)))}):"
                f" delete the duplicate (DELETE FROM {tracking} WHERE {where})"
            )
    return problems


def _bad_run_on(rows: list[AppliedRow], tracking: TrackingTable) -> list[str]:
    """Rows whose run_on is NULL or not a timestamp: their order, and so what `down` reverts, is unknown."""
    return [
        f"{tracking} row id {row.id} ({row.name}) has run_on {row.run_on!r}, not a timestamp: set it to when it"
        f" ran (UPDATE {tracking} SET run_on = '...' WHERE id = {row.id})"
        + (" and make the column timestamp NOT NULL" if row.run_on is None else "")
        for row in rows
        if not isinstance(row.run_on, datetime)
    ]


def _run_on_order(migrations: list[Migration], rows: list[AppliedRow], tracking: TrackingTable) -> list[str]:
    """A row recorded (run_on, id) before a row whose file sorts earlier: node-pg-migrate would revert by
    run_on, this engine by file order; rather than guess which was meant, it is reported."""
    position = {migration.name: index for index, migration in enumerate(migrations)}
    known = [row for row in rows if row.name in position]
    for earlier, later in pairwise(known):
        if position[later.name] < position[earlier.name]:
            return [
                f"{tracking} records {earlier.name} (id {earlier.id}, run_on {earlier.run_on}) before {later.name}"
                f" (id {later.id}, run_on {later.run_on}) although its file sorts after: which to revert first is"
                f" ambiguous; make run_on follow file order (UPDATE {tracking} SET run_on = ... WHERE id = ...)"
            ]
    return []


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
