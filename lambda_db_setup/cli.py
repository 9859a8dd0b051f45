"""``python -m lambda_db_setup``: the engine's commands for a developer's shell.

Connects to ``--database-url`` / ``DATABASE_URL``, or else starts (or reuses) the embedded PostgreSQL 16.
Exit codes: 0 done, 1 the engine refused or a migration failed, 2 bad usage, 3 cannot connect.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import parse_dsn

from . import lock
from .discovery import discover
from .engine import Engine, EngineOptions, MigrationOutcome, RunResult
from .errors import MigrationError
from .lint import format_report, lint

DEFAULT_MIGRATIONS_DIR = Path("migrations")
APPLICATION_NAME = EngineOptions.application_name  # how pg_stat_activity and `unlock` recognise a runner
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3

PY_TEMPLATE = '''"""{description}."""

from lambda_db_setup.builder import MigrationBuilder


def up(pgm: MigrationBuilder) -> None:
    """Apply the change, e.g. pgm.create_table(...), pgm.add_columns(...), pgm.sql("...")."""
    raise NotImplementedError("{file_name}: write up() before applying it")


def down(pgm: MigrationBuilder) -> None:
    """Undo what up() did, e.g. pgm.drop_table(..., if_exists=True)."""
    raise NotImplementedError("{file_name}: write down() before reverting it")
'''

SQL_TEMPLATE = """-- {description}.
-- Add a line '-- pgm:no-transaction' to run this file outside a transaction (CREATE INDEX CONCURRENTLY).

-- Up Migration


-- Down Migration

"""


def build_parser() -> argparse.ArgumentParser:
    """The commands; the connection and timeout options are accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS, help="PostgreSQL URL (default: $DATABASE_URL)")
    common.add_argument("--migrations-dir", type=Path, default=argparse.SUPPRESS, help="default: migrations/")
    common.add_argument("--lock-wait", type=float, default=argparse.SUPPRESS, help="seconds to wait for the lock")
    common.add_argument("--lock-timeout-ms", type=int, default=argparse.SUPPRESS, help="per-statement lock_timeout")
    common.add_argument("--statement-timeout-ms", type=int, default=argparse.SUPPRESS, help="0 means none")
    common.add_argument("--embedded-dir", type=Path, default=argparse.SUPPRESS, help="embedded server data (.pgdata)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="tracebacks on errors")

    parser = argparse.ArgumentParser(
        prog="python -m lambda_db_setup", description="PostgreSQL schema migrations (node-pg-migrate compatible)."
    )
    parser.set_defaults(
        database_url=None,
        migrations_dir=DEFAULT_MIGRATIONS_DIR,
        lock_wait=30.0,
        lock_timeout_ms=5000,
        statement_timeout_ms=0,
        verbose=False,
        embedded_dir=None,
    )
    for action in common._actions:
        parser._add_action(action)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", parents=[common], help="write a new timestamped migration file")
    create.add_argument("name", nargs="+", help="what the migration does, e.g. add user preferences")
    create.add_argument("--sql", action="store_true", help="a .sql file instead of a .py file")

    up = commands.add_parser("up", parents=[common], help="apply pending migrations")
    up.add_argument("count", nargs="?", type=int, help="apply only the next COUNT")
    up.add_argument("--to", metavar="NAME", help="apply up to and including NAME")
    up.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    up.add_argument(
        "--adopt-existing",
        action="store_true",
        help="no history but the tables exist: record the migrations instead of running them, if the schema matches",
    )

    down = commands.add_parser("down", parents=[common], help="revert the newest applied migrations")
    down.add_argument("count", nargs="?", type=int, default=1, help="how many (default 1)")
    down.add_argument("--force", action="store_true", help="drop tables even when they hold rows")
    down.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")

    redo = commands.add_parser("redo", parents=[common], help="revert and re-apply the newest migrations")
    redo.add_argument("count", nargs="?", type=int, default=1, help="how many (default 1)")
    redo.add_argument("--force", action="store_true", help="drop tables even when they hold rows")

    commands.add_parser("status", parents=[common], help="applied, pending, drifted and missing migrations")
    commands.add_parser("repair", parents=[common], help="accept reviewed edits of applied files (checksums)")

    baseline = commands.add_parser("baseline", parents=[common], help="record migrations as applied, run nothing")
    baseline.add_argument("--to", metavar="NAME", help="only up to and including NAME")
    baseline.add_argument("--no-verify", action="store_true", help="skip checking that the schema matches")

    commands.add_parser("check", parents=[common], help="lint the pending migrations' SQL with squawk")

    unlock = commands.add_parser("unlock", parents=[common], help="show who holds the migration lock")
    unlock.add_argument("--terminate", action="store_true", help="end the holder's session if it is a runner")
    unlock.add_argument("--force", action="store_true", help="with --terminate: even while it runs a statement")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (errors are one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "create":
            return _create(args)
        with closing(_connect(args)) as conn:
            return _run(args, conn)
    except MigrationError as error:
        _fail(args, error)
        return EXIT_FAILED
    except psycopg2.OperationalError as error:
        _fail(args, error, prefix="cannot connect: ")
        return EXIT_CONNECT
    except psycopg2.Error as error:
        _fail(args, error, prefix="database error: ")
        return EXIT_FAILED


def _run(args: argparse.Namespace, conn: Connection) -> int:
    engine = Engine(conn, args.migrations_dir, _options(args), on_migration=_print_outcome)
    if args.command == "up":
        result = engine.up(args.count, args.to, dry_run=args.dry_run)
        _print_result(result, "up")
    elif args.command == "down":
        _print_result(engine.down(args.count, force=args.force, dry_run=args.dry_run), "down")
    elif args.command == "redo":
        _print_result(engine.redo(args.count, force=args.force), "redo")
    elif args.command == "status":
        _print_status(engine)
    elif args.command == "repair":
        repaired = engine.repair()
        print(f"recorded new checksums for {len(repaired)} migration(s){': ' if repaired else ''}{', '.join(repaired)}")
    elif args.command == "baseline":
        baseline = engine.baseline(args.to, verify=not args.no_verify)
        if baseline.verified_tables is not None:
            print(f"schema verified: {len(baseline.verified_tables)} table(s) match what the migrations build")
        print(f"baseline: recorded {len(baseline.recorded)} migration(s) as applied without running them")
        for name in baseline.recorded:
            print(f"  {name}")
    elif args.command == "unlock":
        _unlock(conn, terminate=args.terminate, force=args.force)
    elif args.command == "check":
        report = lint(conn, args.migrations_dir, _options(args))
        print(format_report(report))
        return EXIT_OK if report.ok else EXIT_FAILED
    return EXIT_OK


def _options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        adopt_existing_schema=getattr(args, "adopt_existing", False),
        lock_wait_seconds=args.lock_wait,
        lock_timeout_ms=args.lock_timeout_ms,
        statement_timeout_ms=args.statement_timeout_ms,
        application_name=APPLICATION_NAME,
    )


def _connect(args: argparse.Namespace) -> Connection:
    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        from . import embedded

        data_dir = args.embedded_dir or embedded.DEFAULT_DATA_DIR
        url = embedded.start(data_dir.resolve())
        print(f"using the embedded PostgreSQL 16 (data in {data_dir})", file=sys.stderr)
    else:
        print(f"using {describe_target(url)}", file=sys.stderr)
    try:
        return psycopg2.connect(url, application_name=APPLICATION_NAME, connect_timeout=10)
    except psycopg2.ProgrammingError:  # libpq quotes the bad part of the URL, which may be the password
        raise MigrationError("the database URL is not valid (not shown: it may hold a password)") from None


def describe_target(url: str) -> str:
    """user@host:port/dbname of a connection string, never its password."""
    try:
        parts = parse_dsn(url)
    except psycopg2.ProgrammingError:
        return "the given database URL (unparsable; not shown)"
    host = parts.get("host", "localhost")
    return f"{parts.get('user', '')}@{host}:{parts.get('port', '5432')}/{parts.get('dbname', '')}".lstrip("@")


def _create(args: argparse.Namespace) -> int:
    description = " ".join(args.name)
    slug = re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_")
    if not slug:
        print("error: the name needs at least one letter or digit", file=sys.stderr)
        return EXIT_USAGE
    directory: Path = args.migrations_dir
    directory.mkdir(parents=True, exist_ok=True)
    newest = max((migration.timestamp for migration in discover(directory)), default=0)
    timestamp = max(int(time.time() * 1000), newest + 1)
    kind = "sql" if args.sql else "py"
    path = directory / f"{timestamp}_{slug}.{kind}"
    template = SQL_TEMPLATE if args.sql else PY_TEMPLATE
    path.write_text(template.format(description=description[:1].upper() + description[1:], file_name=path.name))
    print(path)
    return EXIT_OK


def _print_outcome(outcome: MigrationOutcome) -> None:
    verb = "applied" if outcome.direction == "up" else "reverted"
    print(f"{verb} {outcome.name} ({outcome.duration_ms:.0f} ms)", flush=True)


def _print_result(result: RunResult, command: str) -> None:
    if result.dry_run:
        for outcome in result.applied:
            print(f"-- {outcome.direction}: {outcome.name}")
            for statement in outcome.sql:
                print(f"{statement.rstrip().rstrip(';')};")
            print()
        print(f"-- dry run: {len(result.applied)} migration(s) would run; nothing was changed")
        return
    if result.ahead:
        print(f"warning: the database is ahead of these files: {', '.join(result.ahead)}")
    if result.adopted:
        print(f"adopted the existing schema (it matched): recorded {len(result.adopted)} migration(s) without running")
        return
    if not result.applied:
        print("nothing to do: no pending migrations" if command == "up" else "nothing to revert")
        return
    print(f"{command}: {len(result.applied)} migration(s) done")


def _print_status(engine: Engine) -> None:
    plan = engine.plan()
    print(f"applied ({len(plan.applied)}):")
    for row in plan.applied:
        flag = "  DRIFTED" if row.name in plan.drifted else ("  MISSING FILE" if row.name in plan.missing else "")
        print(f"  {row.run_on:%Y-%m-%d %H:%M:%S}  {row.name}{flag}")
    print(f"pending ({len(plan.pending)}):")
    for migration in plan.pending:
        print(f"  {migration.name}")
    for title, names in (("drifted", plan.drifted), ("missing", plan.missing), ("ahead", plan.ahead)):
        if names:
            print(f"{title} ({len(names)}): {', '.join(names)}")
    if plan.out_of_order:
        print(f"out of order: Not run migration {plan.out_of_order[0]} is preceding already run {plan.out_of_order[1]}")


def _unlock(conn: Connection, *, terminate: bool, force: bool) -> None:
    conn.autocommit = True
    with conn.cursor() as cursor:
        holder = lock.find_holder(cursor)
        if holder is None:
            print("the migration lock is free")
            return
        print(f"the migration lock is held by {holder.describe()}")
        if terminate:
            lock.terminate(cursor, holder, even_if_active=force)
            print(f"terminated pid {holder.pid}; the lock is released")


def _fail(args: argparse.Namespace, error: Exception, prefix: str = "") -> None:
    if args.verbose:
        traceback.print_exception(error)
    message = " ".join(str(error).split())
    print(f"error: {prefix}{message}", file=sys.stderr)
