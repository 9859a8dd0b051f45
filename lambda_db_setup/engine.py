"""The migration engine's commands: discover -> session -> lock -> plan -> run -> result. Knows PostgreSQL, not AWS.

Every command starts with the same opening (`Engine._open`): the files discovered once, the session
settings applied, the lock taken when the command changes anything, the tracking table read once and compared
with the files. Running one migration is `execute.Executor`'s job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as Connection

from . import interrupts, schema_check, tracking
from .dataloss import Guard, refuse_data_loss
from .discovery import Direction, Migration, scan
from .errors import MigrationError, RunInterrupted
from .execute import Executor, OnMigration, Step
from .interrupts import Terminated
from .options import EngineOptions
from .plan import Plan, make_plan
from .progress import SILENT, Progress
from .results import Action, BaselineResult, MigrationOutcome, RunResult
from .session import Session, open_session
from .tracking import AppliedRow

Vet = Callable[[list[MigrationOutcome]], None]  # sees the rendered pending migrations; raises to refuse


@dataclass(frozen=True)
class Opened:
    """What every command starts from."""

    session: Session
    plan: Plan
    executor: Executor


@dataclass
class Engine:
    """Runs migrations from one directory against one database connection; each command opens anew."""

    conn: Connection
    migrations_dir: Path
    options: EngineOptions = field(default_factory=EngineOptions)
    on_migration: OnMigration | None = None
    progress: Progress = SILENT

    def __post_init__(self) -> None:
        self.migrations_dir = Path(self.migrations_dir)

    def plan(self) -> Plan:
        """The current plan, without taking the lock or changing anything (``status``)."""
        with self._open(take_lock=False) as opened:
            return opened.plan

    def up(
        self, count: int | None = None, to: str | None = None, *, dry_run: bool = False, vet: Vet | None = None
    ) -> RunResult:
        """Apply pending migrations in order (all, the next ``count``, or up to and including ``to``).

        Every pending file is built before any runs; ``vet`` (e.g. the linter) sees them all rendered first.
        """
        with self._open(take_lock=not dry_run) as opened:
            plan, executor = opened.plan, opened.executor
            plan.check(allow_ahead=self.options.allow_ahead)
            targets = plan.up_targets(count, to)
            result = RunResult([row.name for row in plan.applied], ahead=list(plan.ahead), dry_run=dry_run)
            prepared = [executor.prepare(migration, "up") for migration in targets]
            if dry_run or vet:
                rendered = [executor.render(m, "up", p) for m, p in zip(targets, prepared, strict=True)]
                if dry_run:
                    result.outcomes = rendered
                    return result
                vet(rendered)
            if self.options.adopt_existing_schema and not plan.applied and count is None and to is None:
                adopted = schema_check.adoptable(opened.session.cursor, targets, prepared, self.options.tracking)
                self._record(opened, adopted)
                result.outcomes += [MigrationOutcome(migration, Action.ADOPTED) for migration in adopted]
                targets, prepared = targets[len(adopted) :], prepared[len(adopted) :]
            if not plan.table_exists:
                tracking.ensure_table(opened.session.cursor, self.options.tracking)
            self._run(opened, result, [(m, "up", p) for m, p in zip(targets, prepared, strict=True)], deadline=True)
            return result

    def down(self, count: int = 1, *, to: str | None = None, force: bool = False, dry_run: bool = False) -> RunResult:
        """Revert the newest ``count`` applied migrations (or down to and including ``to``), newest first."""
        with self._open(take_lock=not dry_run) as opened:
            opened.plan.check(allow_ahead=False)
            steps = self._steps(opened, opened.plan.down_targets(count, to), "down")
            if dry_run:
                return RunResult(outcomes=[opened.executor.render(*step) for step in steps], dry_run=True)
            result = RunResult()
            self._run(opened, result, steps, guard=self._guard(opened, steps, force=force))
            return result

    def redo(self, count: int = 1, *, force: bool = False, dry_run: bool = False) -> RunResult:
        """Revert and re-apply the newest ``count`` migrations under one lock (tests a down/up pair).

        Every down and up is built before any runs; a dry run renders both and takes no lock.
        """
        with self._open(take_lock=not dry_run) as opened:
            opened.plan.check(allow_ahead=False)
            targets = opened.plan.down_targets(count)
            downs = self._steps(opened, targets, "down")
            steps = downs + self._steps(opened, list(reversed(targets)), "up")
            if dry_run:
                return RunResult(outcomes=[opened.executor.render(*step) for step in steps], dry_run=True)
            result = RunResult()
            self._run(opened, result, steps, guard=self._guard(opened, downs, force=force))
            return result

    def repair(self) -> list[str]:
        """Accept the current content of applied files: record their checksums (after a reviewed edit)."""
        with self._open(take_lock=True) as opened:
            opened.plan.refuse_problems()
            by_name = opened.plan.by_name
            repaired = [
                row.name
                for row in opened.plan.applied
                if row.name in by_name and row.checksum != by_name[row.name].checksum
            ]
            for name in repaired:
                tracking.set_checksum(opened.session.cursor, self.options.tracking, name, by_name[name].checksum)
            return repaired

    def forget(self, names: Sequence[str] | None = None, *, dry_run: bool = False) -> list[AppliedRow]:
        """Remove the rows of applied migrations whose file is gone: ``names``, or (None) every such row.

        The way out of a history that names files no longer here (a database "ahead" of them, or a file
        deliberately deleted) without hand-written SQL, as Flyway's repair of missing migrations. A name with no
        row, or whose file is here (even one discovery skips: that is a file to fix), is refused and nothing is
        changed. Under the lock unless ``dry_run``; the rows removed (or that would be) are returned.
        """
        with self._open(take_lock=not dry_run) as opened:
            plan = opened.plan
            chosen = plan.gone if names is None else list(dict.fromkeys(names))
            _refuse_unforgettable(chosen, plan, self.migrations_dir)
            wanted = set(chosen)
            rows = [row for row in plan.applied if row.name in wanted]
            if rows and not dry_run:
                tracking.delete_rows(opened.session.cursor, self.options.tracking, chosen)
            return rows

    def baseline(self, to: str | None = None, *, verify: bool = True) -> BaselineResult:
        """Record pending migrations (all, or up to ``to``) as applied without running them.

        For a database whose schema was built before tracking existed. With ``verify`` (the default)
        it first proves that the live schema is exactly what those migrations would build.
        """
        with self._open(take_lock=True) as opened:
            opened.plan.check(allow_ahead=False)
            targets = opened.plan.up_targets(None, to)
            prepared = [opened.executor.prepare(migration, "up") for migration in targets] if verify else []
            verified = schema_check.compare(opened.session.cursor, targets, prepared) if verify and targets else None
            if verified and verified.differences:
                raise schema_check.mismatch(
                    f"baseline refused: the schema does not match what {len(targets)} migration(s)", verified
                )
            self._record(opened, targets)
            return BaselineResult(recorded=targets, verified_tables=verified.tables if verified else None)

    @contextmanager
    def _open(self, *, take_lock: bool) -> Iterator[Opened]:
        """The opening every command shares: one discovery, one session, the lock if asked, one read of the rows.

        Holding the lock, a table node-pg-migrate wrote gets its checksum column; without it nothing is altered.
        """
        found = scan(self.migrations_dir)
        for text in found.skipped:
            self.progress.skipped(text)
        with open_session(self.conn, self.options, take_lock=take_lock, progress=self.progress) as session:
            rows = tracking.read_applied(session.cursor, self.options.tracking, upgrade=take_lock)
            plan = make_plan(found.migrations, rows, skipped=found.skipped, tracking=self.options.tracking)
            yield Opened(session, plan, Executor(session, self.on_migration, self.progress))

    @staticmethod
    def _record(opened: Opened, migrations: list[Migration]) -> None:
        """Record migrations as applied without running them (adopted or baselined), in one transaction."""
        if not migrations:
            return
        table = opened.plan.tracking
        if not opened.plan.table_exists:
            tracking.ensure_table(opened.session.cursor, table)
        tracking.record_all(opened.session.cursor, table, [(m.name, m.checksum) for m in migrations])

    @staticmethod
    def _steps(opened: Opened, targets: list[Migration], direction: Direction) -> list[Step]:
        return [(migration, direction, opened.executor.prepare(migration, direction)) for migration in targets]

    @staticmethod
    def _guard(opened: Opened, downs: list[Step], *, force: bool) -> Guard | None:
        """Unless forced: refuse a down whose SQL drops tables with rows (all checked before the first runs),
        then snapshot the tables with rows so each transactional down is checked again before COMMIT."""
        if force or not downs:
            return None
        for migration, _, prepared in downs:
            refuse_data_loss(opened.session, migration, prepared)
        return Guard.take(opened.session)

    @staticmethod
    def _run(
        opened: Opened, result: RunResult, steps: list[Step], *, guard: Guard | None = None, deadline: bool = False
    ) -> None:
        """Run the steps in order, a transaction at a time (with ``deadline``, stop before one that could not
        finish in time). Every transaction but the run's last commits asynchronously; a run that stops before
        its last waits for them to reach the disk, so what it reports as done survives a crash.

        Ctrl-C or SIGTERM becomes `RunInterrupted`, which counts the transaction it hit as done when its COMMIT
        went through (the cancel came too late); the lock goes with the session.
        """
        before = len(result.outcomes)
        groups = _transactions(steps, single=opened.session.options.single_transaction)
        try:
            for index, group in enumerate(groups):
                interrupts.raise_pending()
                if deadline and opened.session.options.out_of_time():
                    result.pending = [step[0] for later in groups[index:] for step in later]
                    return
                result.outcomes += opened.executor.run(group, guard, durable=index == len(groups) - 1)
        except KeyboardInterrupt as stop:
            raise _interrupted(opened, steps, len(result.outcomes) - before, stop) from None
        finally:
            opened.executor.make_durable()


def _transactions(steps: list[Step], *, single: bool) -> list[list[Step]]:
    """The steps a transaction at a time: each alone, or (``single``) consecutive transactional ones of the same
    direction together (a redo's downs, then its ups: `_interrupted` tells from the rows which committed);
    a no-transaction migration is always alone."""
    groups: list[list[Step]] = []
    for step in steps:
        previous = groups[-1][-1] if groups else None
        joins = single and previous and step[2].use_transaction and previous[2].use_transaction
        joins = joins and step[1] == previous[1]
        if joins:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _refuse_unforgettable(names: list[str], plan: Plan, directory: Path) -> None:
    """``forget`` removes history only: refuse a name with no row, or with a file here (read or not)."""
    applied = {row.name for row in plan.applied}
    unknown = [name for name in names if name not in applied]
    if unknown:
        raise MigrationError(
            f"forget {unknown[0]}: no row in {plan.tracking} has that name"
            f"{' (nor ' + ', '.join(unknown[1:]) + ')' if len(unknown) > 1 else ''}; nothing was changed",
            migration=unknown[0],
        )
    with os.scandir(directory) as entries:
        present = {entry.name.rsplit(".", 1)[0]: entry.name for entry in entries}
    for name in names:
        if name in plan.by_name or name in present:
            file_name = plan.by_name[name].file_name if name in plan.by_name else present[name]
            raise MigrationError(
                f"forget {name}: its file {file_name} is here, and forget removes only rows whose file is gone"
                " (to undo the migration, use `down`); nothing was changed",
                migration=name,
            )


def _interrupted(opened: Opened, steps: list[Step], done: int, stop: KeyboardInterrupt) -> RunInterrupted:
    """What a signal left: ``done`` steps finished, plus those of the transaction it hit if its COMMIT had
    already gone through (reported to ``on_migration`` now, so every adapter lists them)."""
    try:
        opened.session.rollback()
        rows = tracking.read_applied(opened.session.cursor, opened.plan.tracking, upgrade=False)
        recorded = {row.name for row in rows or []}
    except psycopg2.Error:  # the connection went with the interrupt: the transaction it hit was not committed
        recorded = {migration.name for migration, direction, _ in steps[done:] if direction == "down"}
    while done < len(steps) and (steps[done][0].name in recorded) == (steps[done][1] == "up"):
        migration, direction, prepared = steps[done]
        action = Action.RAN if direction == "up" else Action.REVERTED
        with suppress(KeyboardInterrupt):  # a second signal while reporting: the report below still says it
            opened.executor.report(MigrationOutcome(migration, action, use_transaction=prepared.use_transaction))
        done += 1
    directions = {direction for _, direction, _ in steps}
    verb = "applied" if directions == {"up"} else "reverted" if directions == {"down"} else "run"
    return RunInterrupted(
        applied=[migration.name for migration, _, _ in steps[:done]],
        interrupted=steps[done][0].name if done < len(steps) else None,
        verb=verb,
        partial=done < len(steps) and not steps[done][2].use_transaction,
        terminated=isinstance(stop, Terminated),
    )
