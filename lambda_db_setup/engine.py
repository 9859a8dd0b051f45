"""The migration engine: discover -> plan -> lock -> apply -> result. Knows PostgreSQL, not AWS or shells.

Every migration runs in its own transaction together with its ``pgmigrations`` row, so a failure leaves
no trace of it; migrations that call ``pgm.no_transaction()`` run statement by statement instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.sql import Composable

from . import lock, schema_check, tracking
from .builder import MigrationBuilder
from .discovery import Migration, discover, parse_file_name
from .errors import (
    DataLossError,
    DriftError,
    LockContentionError,
    LockError,
    MigrationFailedError,
    MigrationFileError,
    OrderError,
)
from .sqltext import dropped_tables, excerpt, identifiers, is_transaction_control, split_statements
from .tracking import AppliedRow

LOCK_NOT_AVAILABLE = "55P03"
INVALID_TRANSACTION_TERMINATION = "2D000"
TRANSACTION_ENDED_HINT = (
    "; a DO block or procedure tried to end the migration's transaction: the engine runs each migration in one"
    " transaction, so remove the COMMIT/ROLLBACK or call pgm.no_transaction() / add '-- pgm:no-transaction'"
)
STATEMENT_EXCERPT = 300
ROW_COUNT_CAP = 1_000_000


@dataclass(frozen=True)
class EngineOptions:
    """How a run behaves; adapters fill it from flags or environment variables."""

    lock_wait_seconds: float = 30.0
    lock_poll_seconds: float = 0.5
    lock_timeout_ms: int = 5000
    statement_timeout_ms: int = 0
    lock_retries: int = 3
    lock_retry_backoff_seconds: float = 1.0
    deadline: float | None = None
    start_margin_seconds: float = 10.0
    allow_ahead: bool = False
    adopt_existing_schema: bool = False  # no history but the tables exist: record instead of run, if they match
    application_name: str = "lambda_db_setup"
    client_check_interval_ms: int = 1000  # PostgreSQL 14+: end a dead runner's statement within this long


@dataclass(frozen=True)
class MigrationOutcome:
    """One migration that ran (or, in a dry run, would run), how long it took, and in how many attempts."""

    name: str
    duration_ms: float
    direction: str = "up"
    sql: tuple[str, ...] = ()
    attempts: int = 1  # more than 1 when lock contention made the engine run it again
    use_transaction: bool = True  # False for a migration that runs statement by statement (no_transaction)


@dataclass
class RunResult:
    """What a run did; adapters log it."""

    applied: list[MigrationOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # recorded without running: the schema already matched
    dry_run: bool = False

    @property
    def last_applied(self) -> str | None:
        return self.applied[-1].name if self.applied else None


@dataclass(frozen=True)
class BaselineResult:
    """Migrations recorded without running, and the tables whose schema was verified (None: not checked)."""

    recorded: list[str]
    verified_tables: list[str] | None


@dataclass(frozen=True)
class Plan:
    """Files compared with ``pgmigrations``: what is applied, pending, missing, ahead or drifted."""

    applied: list[AppliedRow]
    table_exists: bool
    pending: list[Migration]
    missing: list[str]
    ahead: list[str]
    drifted: list[str]
    out_of_order: tuple[str, str] | None

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


def make_plan(migrations: list[Migration], applied: list[AppliedRow] | None) -> Plan:
    """Compare the files with the applied rows (no I/O but reading applied files for their checksums)."""
    rows = applied or []
    by_name = {migration.name: migration for migration in migrations}
    applied_names = {row.name for row in rows}
    unknown = [row.name for row in rows if row.name not in by_name]
    newest = (migrations[-1].timestamp, migrations[-1].name) if migrations else None
    ahead = [name for name in unknown if newest is None or _sort_key(name) > newest]
    missing = [name for name in unknown if name not in ahead]
    out_of_order = _first_out_of_order(migrations, applied_names)
    drifted = [
        row.name for row in rows if row.checksum and row.name in by_name and by_name[row.name].checksum != row.checksum
    ]
    return Plan(
        applied=rows,
        table_exists=applied is not None,
        pending=[migration for migration in migrations if migration.name not in applied_names],
        missing=missing,
        ahead=ahead,
        drifted=drifted,
        out_of_order=out_of_order,
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


class Engine:
    """Runs migrations from one directory against one database connection."""

    def __init__(
        self,
        conn: Connection,
        migrations_dir: Path,
        options: EngineOptions | None = None,
        on_migration: Callable[[MigrationOutcome], None] | None = None,
    ) -> None:
        self.conn = conn
        self.migrations_dir = Path(migrations_dir)
        self.options = options or EngineOptions()
        self.on_migration = on_migration
        self._settings_applied = False
        self._attempt = 1
        self._invalid_before: set[str] = set()

    # -- reading ---------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The current plan, without taking the lock or changing anything."""
        with self._cursor() as cursor:
            return make_plan(discover(self.migrations_dir), tracking.read_applied(cursor, upgrade=False))

    # -- commands --------------------------------------------------------------------------------

    def up(self, count: int | None = None, to: str | None = None, *, dry_run: bool = False) -> RunResult:
        """Apply pending migrations in order (all, the next ``count``, or up to and including ``to``)."""
        migrations = discover(self.migrations_dir)
        with self._session(take_lock=not dry_run) as cursor:
            plan = make_plan(migrations, tracking.read_applied(cursor, upgrade=not dry_run))
            plan.check(allow_ahead=self.options.allow_ahead)
            targets = _select_up_targets(plan.pending, count, to)
            result = RunResult(skipped=[row.name for row in plan.applied], ahead=list(plan.ahead), dry_run=dry_run)
            if dry_run:
                result.applied = [self._render(migration, "up") for migration in targets]
                return result
            builders = [self._build(migration, "up") for migration in targets]  # every file valid before any runs
            if self.options.adopt_existing_schema and not plan.applied and count is None and to is None:
                result.adopted = self._adopt_existing_schema(cursor, plan, targets, builders)
                targets, builders = targets[len(result.adopted) :], builders[len(result.adopted) :]
            if not plan.table_exists:
                tracking.ensure_table(cursor)
            for index, (migration, builder) in enumerate(zip(targets, builders, strict=True)):
                if self._out_of_time():
                    result.pending = [remaining.name for remaining in targets[index:]]
                    break
                result.applied.append(self._run(cursor, migration, "up", builder))
            return result

    def down(self, count: int = 1, *, force: bool = False, dry_run: bool = False) -> RunResult:
        """Revert the newest ``count`` applied migrations, newest first."""
        migrations = discover(self.migrations_dir)
        with self._session(take_lock=not dry_run) as cursor:
            targets = self._down_targets(cursor, migrations, count, upgrade=not dry_run)
            if dry_run:
                return RunResult(applied=[self._render(migration, "down") for migration in targets], dry_run=True)
            return RunResult(applied=self._revert(cursor, targets, force=force))

    def redo(self, count: int = 1, *, force: bool = False) -> RunResult:
        """Revert and re-apply the newest ``count`` migrations under one lock (tests a down/up pair)."""
        migrations = discover(self.migrations_dir)
        with self._session(take_lock=True) as cursor:
            targets = self._down_targets(cursor, migrations, count, upgrade=True)
            again = list(reversed(targets))
            up_builders = [self._build(migration, "up") for migration in again]  # valid before reverting anything
            result = RunResult(applied=self._revert(cursor, targets, force=force))
            for migration, builder in zip(again, up_builders, strict=True):
                result.applied.append(self._run(cursor, migration, "up", builder))
            return result

    def repair(self) -> list[str]:
        """Accept the current content of applied files: record their checksums (after a reviewed edit)."""
        migrations = discover(self.migrations_dir)
        with self._session(take_lock=True) as cursor:
            plan = make_plan(migrations, tracking.read_applied(cursor, upgrade=True))
            by_name = {migration.name: migration for migration in migrations}
            repaired = [
                row.name for row in plan.applied if row.name in by_name and row.checksum != by_name[row.name].checksum
            ]
            for name in repaired:
                tracking.set_checksum(cursor, name, by_name[name].checksum)
            return repaired

    def baseline(self, to: str | None = None, *, verify: bool = True) -> BaselineResult:
        """Record pending migrations (all, or up to ``to``) as applied without running them.

        For a database whose schema was built before tracking existed. With ``verify`` (the default)
        it first proves that the live schema is exactly what those migrations would build.
        """
        migrations = discover(self.migrations_dir)
        with self._session(take_lock=True) as cursor:
            plan = make_plan(migrations, tracking.read_applied(cursor, upgrade=True))
            plan.check(allow_ahead=False)
            targets = _select_up_targets(plan.pending, None, to)
            builders = [self._build(migration, "up") for migration in targets] if verify else []
            verified = schema_check.compare(cursor, targets, builders) if verify and targets else None
            if verified and verified.differences:
                raise _mismatch(
                    f"baseline refused: the schema does not match what {len(targets)} migration(s)", verified
                )
            self._record_applied(cursor, plan, targets)
            return BaselineResult(
                recorded=[migration.name for migration in targets],
                verified_tables=verified.tables if verified else None,
            )

    # -- internals -------------------------------------------------------------------------------

    def _adopt_existing_schema(
        self, cursor: Cursor, plan: Plan, targets: list[Migration], builders: list[MigrationBuilder]
    ) -> list[str]:
        """What the original Lambda did for a schema built before tracking: record it, if it really matches.

        An empty ``public`` is a new database: nothing to rehearse. Otherwise it rehearses the leading
        migrations that run in a transaction; when none of their tables exist this is a new database too.
        When all exist exactly as they would build them, they are recorded without running. Anything in
        between is refused: applying over an unknown schema is a guess.
        """
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename <> %s)", (tracking.TABLE,)
        )
        (has_tables,) = cursor.fetchone()
        leading = targets[: next((i for i, b in enumerate(builders) if not b.use_transaction), len(targets))]
        comparison = schema_check.compare(cursor, leading, builders[: len(leading)]) if leading and has_tables else None
        if comparison is None or all(table in comparison.absent for table in comparison.tables):
            return []
        if comparison.differences:
            raise _mismatch(
                "the database has no migration history but already has tables the migrations create, and its"
                f" schema does not match what {len(leading)} migration(s)",
                comparison,
                " (record what it has with `baseline --to NAME`)",
            )
        self._record_applied(cursor, plan, leading)
        return [migration.name for migration in leading]

    def _record_applied(self, cursor: Cursor, plan: Plan, migrations: list[Migration]) -> None:
        """Record migrations as applied without running them, all in one transaction."""
        if not plan.table_exists:
            tracking.ensure_table(cursor)
        cursor.execute("BEGIN")
        try:
            for migration in migrations:
                tracking.record(cursor, migration.name, migration.checksum)
            cursor.execute("COMMIT")
        except BaseException:
            self._rollback(cursor)
            raise

    def _down_targets(
        self, cursor: Cursor, migrations: list[Migration], count: int, *, upgrade: bool
    ) -> list[Migration]:
        """The newest ``count`` applied migrations, newest first (the history must match the files)."""
        plan = make_plan(migrations, tracking.read_applied(cursor, upgrade=upgrade))
        plan.check(allow_ahead=False)
        by_name = {migration.name: migration for migration in migrations}
        return [by_name[row.name] for row in reversed(plan.applied[-count:])] if count > 0 else []

    def _revert(self, cursor: Cursor, targets: list[Migration], *, force: bool) -> list[MigrationOutcome]:
        """Run the ``down`` of each target; all are built (and checked for data loss) before the first runs."""
        builders = [self._build(migration, "down") for migration in targets]
        if not force:
            for migration, builder in zip(targets, builders, strict=True):
                self._refuse_data_loss(cursor, migration, builder)
        return [
            self._run(cursor, migration, "down", builder) for migration, builder in zip(targets, builders, strict=True)
        ]

    @contextmanager
    def _cursor(self) -> Iterator[Cursor]:
        self.conn.autocommit = True
        with self.conn.cursor() as cursor:
            if not self._settings_applied:
                settings = {
                    "application_name": self.options.application_name,
                    "lock_timeout": f"{self.options.lock_timeout_ms}ms",
                    "statement_timeout": f"{self.options.statement_timeout_ms}ms",
                }
                if self.conn.server_version >= 140000 and self.options.client_check_interval_ms > 0:
                    # A runner killed mid-statement: its backend notices the closed socket and rolls back now,
                    # not when the statement ends, so the lock and the half-done migration go with it.
                    settings["client_connection_check_interval"] = f"{self.options.client_check_interval_ms}ms"
                cursor.execute(  # one round trip for all of them
                    "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in settings),
                    [part for setting in settings.items() for part in setting],
                )
                self._settings_applied = True
            yield cursor

    @contextmanager
    def _session(self, *, take_lock: bool) -> Iterator[Cursor]:
        """A cursor in autocommit mode holding the migration lock for the whole run."""
        with self._cursor() as cursor:
            if not take_lock:
                yield cursor
                return
            lock.acquire(
                cursor, wait_seconds=self.options.lock_wait_seconds, poll_seconds=self.options.lock_poll_seconds
            )
            try:
                yield cursor
            except BaseException:
                if not self.conn.closed:
                    try:
                        self._rollback(cursor)
                        lock.release(cursor)
                    except psycopg2.Error:
                        pass  # the lock dies with the session; the original error matters more
                raise
            if not lock.release(cursor):
                raise LockError(
                    "the migration lock was not held any more at the end of the run (a transaction-mode pooler,"
                    " or a migration that released it): check `status` and run again with a direct connection"
                )

    def _out_of_time(self) -> bool:
        deadline = self.options.deadline
        return deadline is not None and deadline - time.monotonic() < self.options.start_margin_seconds

    def _statement_timeout_ms(self) -> int | None:
        """The timeout a migration gets when a deadline is set: never past the deadline."""
        if self.options.deadline is None:
            return None
        left_ms = max(int((self.options.deadline - time.monotonic()) * 1000), 1)
        configured = self.options.statement_timeout_ms
        return min(configured, left_ms) if configured > 0 else left_ms

    def _build(self, migration: Migration, direction: str) -> MigrationBuilder:
        builder = migration.build(direction)
        if builder.use_transaction:
            for text in (
                part for statement in builder.statements for part in _statements(statement.as_string(self.conn))
            ):
                if is_transaction_control(text):
                    raise MigrationFileError(
                        f"{migration.file_name}: ends or opens a transaction itself ({_excerpt(text)}); the"
                        " engine runs each migration in its own transaction: remove it, or call"
                        " pgm.no_transaction() / add '-- pgm:no-transaction'",
                        migration=migration.name,
                    )
        return builder

    def _render(self, migration: Migration, direction: str) -> MigrationOutcome:
        builder = self._build(migration, direction)
        statements = tuple(statement.as_string(self.conn) for statement in builder.statements)
        return MigrationOutcome(migration.name, 0.0, direction, statements, use_transaction=builder.use_transaction)

    def _run(self, cursor: Cursor, migration: Migration, direction: str, builder: MigrationBuilder) -> MigrationOutcome:
        started = time.perf_counter()
        self._attempt = 1
        while True:
            try:
                if builder.use_transaction:
                    self._run_in_transaction(cursor, migration, direction, builder)
                else:
                    self._run_without_transaction(cursor, migration, direction, builder)
                break
            except _Retryable:
                backoff = self.options.lock_retry_backoff_seconds * 2 ** (self._attempt - 1)
                time.sleep(backoff * random.uniform(0.5, 1.5))
                self._attempt += 1
        duration_ms = (time.perf_counter() - started) * 1000
        outcome = MigrationOutcome(
            migration.name, duration_ms, direction, attempts=self._attempt, use_transaction=builder.use_transaction
        )
        if self.on_migration:
            self.on_migration(outcome)
        return outcome

    def _run_in_transaction(
        self, cursor: Cursor, migration: Migration, direction: str, builder: MigrationBuilder
    ) -> None:
        """BEGIN and a check that the lock is still ours travel with the first statement, the row with COMMIT."""
        opening = f"BEGIN; {lock.ASSERT_HELD}; "
        try:
            if not builder.statements:
                cursor.execute(opening)
            for statement in builder.statements:
                prefix = opening + self._timeout_prefix()
                self._execute(cursor, migration, statement, index=None, prefix=prefix)
                opening = ""
                if self.conn.info.transaction_status != TRANSACTION_STATUS_INTRANS:
                    raise MigrationFailedError(
                        f"{migration.file_name}: a statement ended the migration's transaction"
                        f" ({_excerpt(statement.as_string(self.conn))}); nothing of it was recorded",
                        migration=migration.name,
                    )
            self._finish(cursor, migration, direction, in_transaction=True)
        except BaseException:
            self._rollback(cursor)
            raise

    def _timeout_prefix(self) -> str:
        """With a deadline, each statement gets a statement_timeout that ends before it (never past it)."""
        timeout = self._statement_timeout_ms()
        return "" if timeout is None else f"SET LOCAL statement_timeout = {timeout}; "

    def _rollback(self, cursor: Cursor) -> None:
        if not self.conn.closed and self.conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
            cursor.execute("ROLLBACK")

    def _run_without_transaction(
        self, cursor: Cursor, migration: Migration, direction: str, builder: MigrationBuilder
    ) -> None:
        """Statement by statement in autocommit (a multi-statement query would be one implicit transaction)."""
        cursor.execute(lock.ASSERT_HELD)
        self._invalid_before = set(_invalid_indexes(cursor))
        try:
            for index, statement in enumerate(builder.statements):
                if (timeout := self._statement_timeout_ms()) is not None:
                    cursor.execute("SELECT set_config('statement_timeout', %s, false)", (f"{timeout}ms",))
                self._execute(cursor, migration, statement, index=index)
                if self.conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
                    self._rollback(cursor)
                    raise MigrationFailedError(
                        f"{migration.file_name}: a statement left a transaction open"
                        f" ({_excerpt(statement.as_string(self.conn))}); it runs without a transaction, so the"
                        f" {index} statement(s) before it stay applied and it is not recorded",
                        migration=migration.name,
                    )
            self._finish(cursor, migration, direction, in_transaction=False)
        finally:
            if self.options.deadline is not None and not self.conn.closed:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, false)", (f"{self.options.statement_timeout_ms}ms",)
                )

    def _finish(self, cursor: Cursor, migration: Migration, direction: str, *, in_transaction: bool) -> None:
        """Record (up) or remove (down) the migration's row, committing in the same round trip."""
        try:
            if direction == "up":
                tracking.record(cursor, migration.name, migration.checksum, commit=in_transaction)
            else:
                tracking.remove(cursor, migration.name, commit=in_transaction)
        except psycopg2.Error as error:
            if self.conn.closed:
                raise MigrationFailedError(
                    f"{migration.file_name}: connection lost while committing it: whether it was applied is"
                    " unknown; run `status` to see",
                    migration=migration.name,
                    pg_message=str(error).strip(),
                ) from error
            pg_message = (error.diag.message_primary or str(error)).strip()
            raise MigrationFailedError(
                f"{migration.file_name}: {pg_message} (SQLSTATE {error.pgcode}) when committing it;"
                " nothing of it was applied",
                migration=migration.name,
                sqlstate=error.pgcode,
                pg_message=pg_message,
            ) from error

    def _execute(
        self,
        cursor: Cursor,
        migration: Migration,
        statement: Composable,
        *,
        index: int | None,
        prefix: str = "",
    ) -> None:
        """Run one statement, after ``prefix`` (our own SQL) in the same round trip; ``index`` is its position
        in a migration that runs without a transaction."""
        try:
            cursor.execute(sql.Composed([sql.SQL(prefix), statement]) if prefix else statement)
        except psycopg2.Error as error:
            raise self._failure(cursor, migration, statement.as_string(self.conn), error, index) from error

    def _failure(
        self, cursor: Cursor, migration: Migration, text: str, error: psycopg2.Error, index: int | None
    ) -> Exception:
        """The error to raise for a failed statement, or `_Retryable` when running it again is safe."""
        pg_message = (error.diag.message_primary or str(error)).strip() if error.diag else str(error).strip()
        pg_message = pg_message.splitlines()[0] if pg_message else type(error).__name__
        if error.pgcode is None or self.conn.closed:
            kept = (
                "its transaction was not committed: nothing of it was applied"
                if index is None
                else f"it runs without a transaction: {_kept(index)}"
            )
            return MigrationFailedError(
                f"{migration.file_name}: connection lost while running it ({pg_message}); {kept}",
                migration=migration.name,
                statement=text,
                pg_message=pg_message,
            )
        if index is not None:
            self._rollback(cursor)  # a no-transaction migration may have opened one itself
        invalid = [] if index is None else _invalid_indexes(cursor)
        new_invalid = [name for name in invalid if name not in self._invalid_before]
        notes = _invalid_index_note(invalid) + ("" if not index else f"; it runs without a transaction: {_kept(index)}")
        if error.pgcode == LOCK_NOT_AVAILABLE:
            self._rollback(cursor)
            conflicts = _conflicts(cursor, text)
            if index:
                why_not = "not retried: statements before it already ran outside a transaction"
            elif new_invalid:
                why_not = "not retried: it left an INVALID index"
            elif self._out_of_time():
                why_not = "not retried: too close to the deadline"
            elif self._attempt <= self.options.lock_retries:
                return _Retryable()
            else:
                why_not = f"gave up after {self._attempt} attempts"
            holders = ", ".join(
                f"table {table} (held by pid {pid}{' ' + app if app else ''})" for table, pid, app in conflicts
            )
            return LockContentionError(
                f"{migration.file_name}: lock contention: could not lock {holders or 'a table it needs'} within"
                f" lock_timeout ({self.options.lock_timeout_ms} ms), {why_not}; live traffic holds a conflicting"
                f" lock: retry when it is quieter or raise LOCK_TIMEOUT_MS / --lock-timeout-ms{notes}",
                migration=migration.name,
                sqlstate=error.pgcode,
                statement=text,
                pg_message=pg_message,
                attempts=self._attempt,
                conflicts=conflicts,
            )
        hint = TRANSACTION_ENDED_HINT if error.pgcode == INVALID_TRANSACTION_TERMINATION else ""
        return MigrationFailedError(
            f"{migration.file_name}: {pg_message} (SQLSTATE {error.pgcode}) in: {_excerpt(text)}{hint}{notes}",
            migration=migration.name,
            sqlstate=error.pgcode,
            statement=text,
            pg_message=pg_message,
        )

    def _refuse_data_loss(self, cursor: Cursor, migration: Migration, builder: MigrationBuilder) -> None:
        """A `down` that drops tables still holding rows needs ``force``; say how many rows would go."""
        losses = []
        for statement in builder.statements:
            for table in dropped_tables(statement.as_string(self.conn)):
                cursor.execute(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.oid = to_regclass(%s)",
                    (table,),
                )
                found = cursor.fetchone()
                if found is None:
                    continue
                cursor.execute(
                    sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS sample").format(
                        sql.Identifier(*found)
                    ),
                    (ROW_COUNT_CAP + 1,),
                )
                (rows,) = cursor.fetchone()
                if rows:
                    amount = f"over {ROW_COUNT_CAP:,}" if rows > ROW_COUNT_CAP else f"{rows:,}"
                    losses.append(f"{found[0]}.{found[1]} ({amount} row{'' if rows == 1 else 's'})")
        if losses:
            raise DataLossError(
                f"{migration.file_name}: down would drop {', '.join(losses)}; pass --force to drop them anyway",
                migration=migration.name,
            )


class _Retryable(Exception):
    """A lock-timeout failure that is safe to retry (the engine sleeps, then runs the migration again)."""


def _mismatch(what: str, comparison: schema_check.Comparison, advice: str = "") -> schema_check.SchemaMismatchError:
    """The error for a schema that differs from the migrations' rehearsal, with the first differences."""
    shown = "; ".join(comparison.differences[:5])
    more = f" (and {len(comparison.differences) - 5} more)" if len(comparison.differences) > 5 else ""
    return schema_check.SchemaMismatchError(
        f"{what} would build: {shown}{more}{advice}", differences=comparison.differences
    )


def _select_up_targets(pending: list[Migration], count: int | None, to: str | None) -> list[Migration]:
    if to is not None:
        names = [migration.name for migration in pending]
        if to not in names:
            raise MigrationFileError(f"--to {to}: no pending migration has that name", migration=to)
        return pending[: names.index(to) + 1]
    return pending if count is None else pending[: max(count, 0)]


def _statements(text: str) -> list[str]:
    """The statements in one builder entry; one without a semicolon is one statement (no lexing needed)."""
    return split_statements(text) if ";" in text else [text]


def _excerpt(text: str | bytes | None) -> str:
    return excerpt(text, STATEMENT_EXCERPT)


def _kept(index: int) -> str:
    if index == 0:
        return "it failed on its first statement, nothing of it was applied"
    return (
        f"the {index} statement(s) before the failing one stay applied and it is not recorded;"
        " make them re-runnable (IF NOT EXISTS) or undo them before running it again"
    )


def _conflicts(cursor: Cursor, statement: str) -> list[tuple[str, int, str]]:
    """Tables the failing statement names that other sessions hold locks on: (table, pid, application_name)."""
    cursor.execute(
        """
        SELECT DISTINCT n.nspname, c.relname, l.pid, coalesce(a.application_name, '')
        FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND c.relkind IN ('r', 'p', 'm')
        ORDER BY 2, 3
        """
    )
    named = identifiers(statement)
    return [
        (relname if schema == "public" else f"{schema}.{relname}", pid, app)
        for schema, relname, pid, app in cursor.fetchall()
        if relname in named
    ]


def _invalid_indexes(cursor: Cursor) -> list[str]:
    cursor.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1")
    return [row[0] for row in cursor.fetchall()]


def _invalid_index_note(invalid: list[str]) -> str:
    if not invalid:
        return ""
    return (
        f"; INVALID index(es) left by a failed concurrent build: {', '.join(invalid)}"
        " (DROP INDEX CONCURRENTLY them before running it again)"
    )
