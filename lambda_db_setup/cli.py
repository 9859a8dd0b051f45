"""``python -m lambda_db_setup``: the engine's commands for a developer's shell.

Connects to ``--database-url`` / ``DATABASE_URL``, or else starts (or reuses) the embedded PostgreSQL 16.
Every setting with a flag also reads its environment variable (the Lambda's), the flag winning.
Exit codes: 0 done, 1 the engine refused or a migration failed, 2 bad usage, 3 cannot connect.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import parse_dsn

from . import lock, remote
from .discovery import discover
from .engine import Engine
from .errors import ConfigurationError, MigrationError
from .lint import format_report, lint
from .options import EngineOptions
from .results import MigrationOutcome, RunResult
from .settings import APPLICATION_NAME, BY_NAME, SETTINGS, Setting, Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
COMMON_SETTINGS = (
    "database_url", "migrations_dir", "lock_wait_seconds", "lock_timeout_ms", "statement_timeout_ms", "lambda_function"
)  # fmt: skip

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

Command = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    """The commands; the connection and timeout options are accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    for name in COMMON_SETTINGS:
        _add_setting_flag(common, BY_NAME[name])
    common.add_argument("--embedded-dir", type=Path, default=argparse.SUPPRESS, help="embedded server data (.pgdata)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="tracebacks on errors")
    common.add_argument(
        "--confirm", action="store_true", default=argparse.SUPPRESS, help="with --lambda: allow a change"
    )

    parser = argparse.ArgumentParser(
        prog="python -m lambda_db_setup",
        description="PostgreSQL schema migrations (node-pg-migrate compatible).",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(func=func)
        return sub

    create = command("create", _create, "write a new timestamped migration file")
    create.add_argument("name", nargs="+", help="what the migration does, e.g. add user preferences")
    create.add_argument("--sql", action="store_true", help="a .sql file instead of a .py file")

    up = command("up", _on_database(_up), "apply pending migrations")
    up.add_argument("count", nargs="?", type=int, help="apply only the next COUNT")
    up.add_argument("--to", metavar="NAME", help="apply up to and including NAME")
    up.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    _add_setting_flag(up, BY_NAME["adopt_existing_schema"])

    down = command("down", _on_database(_down), "revert the newest applied migrations")
    down.add_argument("count", nargs="?", type=int, default=1, help="how many (default 1)")
    down.add_argument("--force", action="store_true", help="drop tables even when they hold rows")
    down.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")

    redo = command("redo", _on_database(_redo), "revert and re-apply the newest migrations")
    redo.add_argument("count", nargs="?", type=int, default=1, help="how many (default 1)")
    redo.add_argument("--force", action="store_true", help="drop tables even when they hold rows")

    command("status", _on_database(_status), "applied, pending, drifted and missing migrations")
    command("repair", _on_database(_repair), "accept reviewed edits of applied files (checksums)")

    baseline = command("baseline", _on_database(_baseline), "record migrations as applied, run nothing")
    baseline.add_argument("--to", metavar="NAME", help="only up to and including NAME")
    baseline.add_argument("--no-verify", action="store_true", help="skip checking that the schema matches")

    command("check", _on_database(_check), "lint the pending migrations' SQL with squawk")

    unlock = command("unlock", _on_database(_unlock), "show who holds the migration lock")
    unlock.add_argument("--terminate", action="store_true", help="end the holder's session if it is a runner")
    unlock.add_argument("--force", action="store_true", help="with --terminate: even while it runs a statement")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (errors are one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(os.environ, flags=_given_settings(args))
        if settings.lambda_function:
            return remote.run(args, settings)
        return args.func(args, settings)
    except ConfigurationError as error:
        _fail(args, error)
        return EXIT_USAGE
    except MigrationError as error:
        _fail(args, error)
        return EXIT_FAILED
    except psycopg2.OperationalError as error:
        _fail(args, error, prefix="cannot connect: ")
        return EXIT_CONNECT
    except psycopg2.Error as error:
        _fail(args, error, prefix="database error: ")
        return EXIT_FAILED


def _add_setting_flag(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """A flag from the settings table: same parsing as its environment variable, which it overrides."""
    assert setting.flag is not None, setting.name
    where = f"default: ${setting.env}, else {setting.default}" if setting.env else f"default: {setting.default}"
    options: dict[str, Any] = {
        "dest": setting.name,
        "default": argparse.SUPPRESS,
        "help": f"{setting.meaning} ({where})",
    }
    if setting.kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    else:
        options["type"] = _flag_type(setting)
        options["metavar"] = setting.kind.__name__.upper()
    parser.add_argument(setting.flag, **options)


def _flag_type(setting: Setting) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return setting.parse(text, setting.flag or setting.name)
        except ConfigurationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {setting.name: getattr(args, setting.name) for setting in SETTINGS if hasattr(args, setting.name)}


def _on_database(run: Callable[[argparse.Namespace, Settings, Engine], int]) -> Command:
    """A command that needs the database: connect, build the engine, close the connection afterwards."""

    def command(args: argparse.Namespace, settings: Settings) -> int:
        with closing(_connect(args, settings)) as conn:
            options = EngineOptions.from_settings(settings)
            return run(args, settings, Engine(conn, settings.migrations_dir, options, on_migration=_print_outcome))

    return command


def _connect(args: argparse.Namespace, settings: Settings) -> Connection:
    url = settings.database_url
    if not url:
        from . import embedded

        data_dir = getattr(args, "embedded_dir", None) or embedded.DEFAULT_DATA_DIR
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


def _create(args: argparse.Namespace, settings: Settings) -> int:
    description = " ".join(args.name)
    slug = re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_")
    if not slug:
        print("error: the name needs at least one letter or digit", file=sys.stderr)
        return EXIT_USAGE
    directory = settings.migrations_dir
    directory.mkdir(parents=True, exist_ok=True)
    newest = max((migration.timestamp for migration in discover(directory)), default=0)
    timestamp = max(int(time.time() * 1000), newest + 1)
    path = directory / f"{timestamp}_{slug}.{'sql' if args.sql else 'py'}"
    template = SQL_TEMPLATE if args.sql else PY_TEMPLATE
    path.write_text(template.format(description=description[:1].upper() + description[1:], file_name=path.name))
    print(path)
    return EXIT_OK


def _up(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _print_result(engine.up(args.count, args.to, dry_run=args.dry_run), "up")
    return EXIT_OK


def _down(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _print_result(engine.down(args.count, force=args.force, dry_run=args.dry_run), "down")
    return EXIT_OK


def _redo(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    _print_result(engine.redo(args.count, force=args.force), "redo")
    return EXIT_OK


def _repair(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    repaired = engine.repair()
    print(f"recorded new checksums for {len(repaired)} migration(s){': ' if repaired else ''}{', '.join(repaired)}")
    return EXIT_OK


def _baseline(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    baseline = engine.baseline(args.to, verify=not args.no_verify)
    if baseline.verified_tables is not None:
        print(f"schema verified: {len(baseline.verified_tables)} table(s) match what the migrations build")
    print(f"baseline: recorded {len(baseline.recorded)} migration(s) as applied without running them")
    for migration in baseline.recorded:
        print(f"  {migration.name}")
    return EXIT_OK


def _check(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    rendered = engine.up(dry_run=True).would_run
    report = lint(rendered, engine.conn.server_version, settings.squawk_binary)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_outcome(outcome: MigrationOutcome) -> None:
    verb = "applied" if outcome.direction == "up" else "reverted"
    print(f"{verb} {outcome.name} ({outcome.duration_ms:.0f} ms)", flush=True)


def _print_result(result: RunResult, command: str) -> None:
    if result.dry_run:
        for outcome in result.would_run:
            print(f"-- {outcome.direction}: {outcome.name}")
            for statement in outcome.sql:
                print(f"{statement.rstrip().rstrip(';')};")
            print()
        print(f"-- dry run: {len(result.would_run)} migration(s) would run; nothing was changed")
        return
    if result.ahead:
        print(f"warning: the database is ahead of these files: {', '.join(result.ahead)}")
    if result.adopted:
        print(f"adopted the existing schema (it matched): recorded {len(result.adopted)} migration(s) without running")
        return
    done = result.ran + result.reverted
    if not done:
        print("nothing to do: no pending migrations" if command == "up" else "nothing to revert")
        return
    print(f"{command}: {len(done)} migration(s) done")


def _status(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
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
    return EXIT_OK


def _unlock(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    engine.conn.autocommit = True
    with engine.conn.cursor() as cursor:
        holder = lock.find_holder(cursor)
        if holder is None:
            print("the migration lock is free")
            return EXIT_OK
        print(f"the migration lock is held by {holder.describe()}")
        if args.terminate:
            lock.terminate(cursor, holder, even_if_active=args.force)
            print(f"terminated pid {holder.pid}; the lock is released")
    return EXIT_OK


def _fail(args: argparse.Namespace, error: Exception, prefix: str = "") -> None:
    if getattr(args, "verbose", False):
        traceback.print_exception(error)
    message = " ".join(str(error).split())
    print(f"error: {prefix}{message}", file=sys.stderr)
