"""``python -m lambda_db_setup``: the engine's commands for a developer's shell and for CI.

Connects to ``--database-url`` / ``DATABASE_URL``, or else starts (or reuses) the embedded PostgreSQL 16.
Every setting reads its flag, else its environment variable (the Lambda's), else the project's
``pyproject.toml [tool.lambda_db_setup]``, else its default. No output ever holds the URL's password.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
import unicodedata
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection

from . import __version__, interrupts, lock, logs
from .background import commands as background_commands
from .background import control as background_control
from .background import queue as background_queue
from .discovery import discover, slug_for
from .engine import Engine
from .errors import ConfigurationError, MigrationError, RunInterrupted
from .interrupts import Terminated
from .lint import format_report, lint
from .options import EngineOptions
from .reports import (
    Output,
    attention,
    forget_document,
    forget_lines,
    outcome_document,
    print_result,
    print_status,
    status_document,
    up_document,
)
from .settings import APPLICATION_NAME, BY_NAME, PROJECT_TABLE, SETTINGS, Setting, Settings, project_settings
from .urls import describe_target, url_secrets

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143
EMBEDDED_ACTIONS = ("url", "status", "stop")
COMMON_SETTINGS = (
    "database_url", "migrations_dir", "migrations_schema", "migrations_table", "lock_wait_seconds", "lock_timeout_ms",
    "statement_timeout_ms", "lambda_function", "embedded_dir",
)  # fmt: skip
DISTRIBUTION = "lambda-db-setup"
MODULE_PROG, SCRIPT_PROG = "python -m lambda_db_setup", DISTRIBUTION  # how usage and --version name the CLI
INTERRUPTED = (
    "stopped by {signal}; the migrations reported applied stay applied, and nothing of the interrupted"
    " migration was applied unless it runs outside a transaction (-- pgm:no-transaction); `status` shows where"
    " the database stands"
)
EPILOG = """\
exit codes:
  0    done
  1    refused or failed; status: something needs a person (drift, missing file, ahead,
       out of order; with --check also pending migrations)
  2    bad usage: a flag, environment variable or pyproject.toml setting
  3    cannot connect
  130  interrupted (Ctrl-C); the statement running is cancelled, what was applied is listed
  143  terminated (SIGTERM), handled as Ctrl-C

Without --database-url or DATABASE_URL the project's embedded PostgreSQL 16 is started (or reused), its
data in .pgdata/ under the project root (`embedded url|status|stop` to reach it).
Settings: flag > environment variable > pyproject.toml [tool.lambda_db_setup] > default;
the project root is the nearest directory up with such a pyproject.toml (else one with migrations/
beside a pyproject.toml or cdk.json), and relative paths not given as flags resolve against it.
"""

PY_TEMPLATE = '''"""{description}."""

from lambda_db_setup.builder import MigrationBuilder


def up(pgm: MigrationBuilder) -> None:
    """Apply the change, e.g. pgm.create_table(...), pgm.add_columns(...), pgm.sql("...")."""
    raise NotImplementedError("{file_name}: write up() before applying it")


def down(pgm: MigrationBuilder) -> None:
    """Undo what up() did, e.g. pgm.drop_table(..., if_exists=True)."""
    raise NotImplementedError("{file_name}: write down() before reverting it")
'''

SQL_TEMPLATE = """-- Migration: {description}.
-- Add a line '-- pgm:no-transaction' to run this file outside a transaction (CREATE INDEX CONCURRENTLY).

-- Up Migration


-- Down Migration

"""


Command = Callable[[argparse.Namespace, Settings, Output], int]
DatabaseCommand = Callable[[argparse.Namespace, Settings, Engine, Output], int]


def build_parser(prog: str = MODULE_PROG) -> argparse.ArgumentParser:
    """The commands; the connection and timeout options are accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    for name in COMMON_SETTINGS:
        _add_setting_flag(common, BY_NAME[name])
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="tracebacks on errors")
    common.add_argument(
        "--confirm", action="store_true", default=argparse.SUPPRESS, help="with --lambda: allow a change"
    )

    parser = argparse.ArgumentParser(
        prog=prog,
        description="PostgreSQL schema migrations (node-pg-migrate compatible).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, epilog=EPILOG)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.set_defaults(func=func)
        return sub

    _add_commands(command)
    return parser


def _add_commands(command: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    create = command("create", _create, "write a new timestamped migration file")
    create.add_argument("name", nargs="+", help="what the migration does, e.g. add user preferences")
    create.add_argument("--sql", action="store_true", help="a .sql file instead of a .py file")

    up = command("up", _on_database(_up), "apply pending migrations")
    up.add_argument("count", nargs="?", type=_positive_int, help="apply only the next COUNT")
    up.add_argument("--to", metavar="NAME", help="apply up to and including NAME")
    up.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    up.add_argument("--json", action="store_true", help="one JSON document on stdout; progress on stderr")
    _add_setting_flag(up, BY_NAME["adopt_existing_schema"])
    _add_setting_flag(up, BY_NAME["single_transaction"])

    down = command("down", _on_database(_down), "revert the newest applied migrations")
    down.add_argument("count", nargs="?", type=_positive_int, default=1, help="how many (default 1)")
    down.add_argument("--force", action="store_true", help="drop tables even when they hold rows")
    down.add_argument("--to", metavar="NAME", help="revert newest first down to and including NAME")
    down.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    _add_setting_flag(down, BY_NAME["single_transaction"])

    redo = command("redo", _on_database(_redo), "revert and re-apply the newest migrations")
    redo.add_argument("count", nargs="?", type=_positive_int, default=1, help="how many (default 1)")
    redo.add_argument("--force", action="store_true", help="drop tables even when they hold rows")
    redo.add_argument("--dry-run", action="store_true", help="print the downs' and ups' SQL, change nothing")
    _add_setting_flag(redo, BY_NAME["single_transaction"])

    status = command("status", _on_database(_status), "applied, pending, drifted and missing migrations")
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.add_argument("--check", action="store_true", help="exit 1 also when migrations are pending")
    command("repair", _on_database(_repair), "accept reviewed edits of applied files (checksums)")

    forget = command("forget", _on_database(_forget), "remove the rows of applied migrations whose file is gone")
    forget.add_argument("names", nargs="*", metavar="NAME", help="a migration name whose row to remove")
    forget.add_argument("--all-gone", action="store_true", help="every row whose file is gone (missing or ahead)")
    forget.add_argument("--dry-run", action="store_true", help="show the rows, change nothing")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")
    forget.add_argument("--json", action="store_true", help="one JSON document on stdout")

    baseline = command("baseline", _on_database(_baseline), "record migrations as applied, run nothing")
    baseline.add_argument("--to", metavar="NAME", help="only up to and including NAME")
    baseline.add_argument("--no-verify", action="store_true", help="skip checking that the schema matches")

    command("check", _on_database(_check), "lint the pending migrations' SQL with squawk")

    embedded = command("embedded", _embedded, "the project's embedded PostgreSQL 16: its URL, status; stop it")
    embedded.add_argument("action", choices=EMBEDDED_ACTIONS, help="url: start (or reuse) it and print a URL for psql")

    unlock = command("unlock", _on_database(_unlock), "show who holds the migration lock")
    unlock.add_argument("--terminate", action="store_true", help="end the holder's session if it is a runner")
    unlock.add_argument("--force", action="store_true", help="with --terminate: even while it runs a statement")
    logs.add_arguments(command("logs", _logs, "what the deploy-time runs did, read from CloudWatch Logs"))

    background_commands.add(command, _connect)


def main(argv: Sequence[str] | None = None, prog: str = MODULE_PROG) -> int:
    """Run one command; returns the exit code (errors are one line on stderr)."""
    args = build_parser(prog).parse_args(argv)
    out = Output(json=getattr(args, "json", False), secrets=url_secrets(_given_database_url(args)))
    out.show_starts = out.show_starts or getattr(args, "verbose", False)
    try:
        settings = load_settings(args, Path.cwd())
        out.secrets = tuple(sorted({*out.secrets, *url_secrets(settings.database_url)}, key=len, reverse=True))
        if settings.lambda_function and args.command not in ("embedded", "logs"):  # neither reads the database
            from . import remote  # boto3 and botocore: only for --lambda

            return remote.run(args, settings)
        return args.func(args, settings, out)
    except RunInterrupted as error:  # the engine knows what was applied and what was not
        return _fail(args, out, error, EXIT_TERMINATED if error.terminated else EXIT_INTERRUPTED, prefix="")
    except KeyboardInterrupt as stop:
        return _stopped(args, out, stop)
    except ConfigurationError as error:
        return _fail(args, out, error, EXIT_USAGE)
    except MigrationError as error:
        return _fail(args, out, error, EXIT_FAILED)
    except psycopg2.errors.QueryCanceled as error:  # an OperationalError, but no connection problem
        if stop := interrupts.cancelled_by_us(error):  # a signal cancelled a query outside a migration
            return _stopped(args, out, stop)
        return _fail(args, out, error, EXIT_FAILED, prefix="error: database error: ")
    except psycopg2.OperationalError as error:
        return _fail(args, out, error, EXIT_CONNECT, prefix="error: cannot connect: ")
    except psycopg2.Error as error:
        return _fail(args, out, error, EXIT_FAILED, prefix="error: database error: ")


def run(prog: str = SCRIPT_PROG) -> None:
    """The console script's entry point (``[project.scripts] lambda-db-setup = "lambda_db_setup.cli:run"``):
    Ctrl-C and SIGTERM cancel the statement running (`interrupts`)."""
    with interrupts.installed():
        code = main(prog=prog)
    sys.exit(code)


def _stopped(args: argparse.Namespace, out: Output, stop: KeyboardInterrupt) -> int:
    """A signal outside a run of migrations (while connecting, waiting for the lock, reading the plan)."""
    if isinstance(stop, Terminated):
        return _fail(args, out, "terminated: " + INTERRUPTED.format(signal="SIGTERM"), EXIT_TERMINATED, prefix="")
    return _fail(args, out, "interrupted: " + INTERRUPTED.format(signal="Ctrl-C"), EXIT_INTERRUPTED, prefix="")


class _Version(argparse.Action):
    """``--version``, looked up only when asked for (reading the installed metadata is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


def package_version() -> str:
    """The installed distribution's version, else the source tree's (a checkout run with ``python -m``)."""
    from importlib import metadata  # 50+ ms to import: only --version needs it

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def load_settings(args: argparse.Namespace, cwd: Path) -> Settings:
    """The settings of this invocation; relative paths not given as flags resolve against the project root."""
    return project_settings(cwd, _given_settings(args))


def _positive_int(text: str) -> int:
    """A COUNT: 0 or a negative number would do nothing or, worse, everything."""
    number = int(text) if re.fullmatch(r"\s*\d+\s*", text) else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number; got {text!r}")
    return number


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


def _given_database_url(args: argparse.Namespace) -> str | None:
    return getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")


def _database_url_source(args: argparse.Namespace) -> str:
    """Where the database URL came from, to name it in an error."""
    if hasattr(args, "database_url"):
        return "--database-url"
    if os.environ.get("DATABASE_URL", "").strip():
        return "DATABASE_URL"
    return f"pyproject.toml {PROJECT_TABLE} database_url"


def _on_database(run: DatabaseCommand) -> Command:
    """A command that needs the database: connect, build the engine, close the connection afterwards."""

    def command(args: argparse.Namespace, settings: Settings, out: Output) -> int:
        with closing(_connect(args, settings)) as conn:
            options = EngineOptions.from_settings(settings)
            engine = Engine(conn, settings.migrations_dir, options, on_migration=out.on_migration, progress=out)
            return run(args, settings, engine, out)

    return command


def _connect(args: argparse.Namespace, settings: Settings) -> Connection:
    url = settings.database_url
    if not url:
        from . import embedded

        data_dir = settings.embedded_dir.resolve()
        url = embedded.start(data_dir)
        print(f"using the embedded PostgreSQL 16 (data in {data_dir})", file=sys.stderr)
    else:
        print(f"using {describe_target(url, _database_url_source(args))}", file=sys.stderr)
    return psycopg2.connect(url, application_name=APPLICATION_NAME, connect_timeout=10)


def _embedded(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    """The project's embedded server, for psql and for freeing its memory; ``status`` exits 1 when it is down."""
    from . import embedded

    data_dir = settings.embedded_dir.resolve()
    if args.action == "url":
        print(embedded.start(data_dir))
        return EXIT_OK
    if args.action == "stop":
        stopped = embedded.shut_down(data_dir)
        print(f"{'stopped' if stopped else 'not running'}: the embedded PostgreSQL 16 with data in {data_dir}")
        return EXIT_OK
    state = embedded.state(data_dir)
    if not state.running:
        where = "data in" if state.initialized else "no data yet in"
        print(f"not running: the embedded PostgreSQL 16 ({where} {data_dir})")
        return EXIT_FAILED
    print(f"running: the embedded PostgreSQL 16 (pid {state.pid}, data in {data_dir})\n{state.url}")
    return EXIT_OK


def _one_line(text: str) -> str:
    """``text`` as one line of printable characters (no newline, control or bidi character survives)."""
    printable = "".join(" " if unicodedata.category(char)[0] == "C" else char for char in text)
    return " ".join(printable.split())


def _create(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    description = _one_line(" ".join(args.name))
    directory = settings.migrations_dir
    newest = max((migration.timestamp for migration in discover(directory)), default=0) if directory.is_dir() else 0
    timestamp = max(int(time.time() * 1000), newest + 1)
    try:
        slug = slug_for(description, timestamp)
    except MigrationError as error:
        raise ConfigurationError(str(error)) from None
    path = directory / f"{timestamp}_{slug}.{'sql' if args.sql else 'py'}"
    sentence = description[:1].upper() + description[1:]
    if args.sql:
        text = SQL_TEMPLATE.format(description=sentence)
    else:
        docstring = sentence.replace("\\", "\\\\").replace('"', '\\"')
        text = PY_TEMPLATE.format(description=docstring, file_name=path.name)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return EXIT_OK


def _up(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    result = engine.up(args.count, args.to, dry_run=args.dry_run)
    if args.json:
        out.document(up_document(result, tuple(out.warnings)))
    else:
        print_result(result, "up")
    return EXIT_OK


def _down(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    print_result(engine.down(args.count, to=args.to, force=args.force, dry_run=args.dry_run), "down")
    return EXIT_OK


def _redo(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    print_result(engine.redo(args.count, force=args.force, dry_run=args.dry_run), "redo")
    return EXIT_OK


def _repair(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    repaired = engine.repair()
    print(f"recorded new checksums for {len(repaired)} migration(s){': ' if repaired else ''}{', '.join(repaired)}")
    return EXIT_OK


def _forget(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    """Remove rows whose file is gone: shown first, then confirmed (a prompt, or --yes), then removed under the lock;
    exactly the rows shown, each checked again under the lock."""
    if bool(args.names) == args.all_gone:
        raise ConfigurationError("forget: name the migrations whose rows to remove, or pass --all-gone (not both)")
    tracking = str(engine.options.tracking)
    rows = engine.forget(args.names or None, dry_run=True)
    if rows and not args.dry_run:
        if not args.yes:
            _confirm(forget_lines(rows, tracking, dry_run=True)[:-1], f"remove these {len(rows)} row(s)?")
        rows = engine.forget([row.name for row in rows])
    if args.json:
        out.document(forget_document(rows, dry_run=args.dry_run))
    else:
        print("\n".join(forget_lines(rows, tracking, dry_run=args.dry_run)))
    return EXIT_OK


def _confirm(lines: list[str], question: str) -> None:
    """Ask on the terminal (stderr, so stdout stays the result); refuse without one, or without a yes."""
    if not sys.stdin.isatty():
        raise ConfigurationError("no terminal to confirm on: pass --yes to go ahead; nothing was changed")
    print("\n".join([*lines, f"{question} [y/N] "]), end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise MigrationError("not confirmed; nothing was changed")


def _baseline(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    baseline = engine.baseline(args.to, verify=not args.no_verify)
    if baseline.verified_tables is not None:
        print(f"schema verified: {len(baseline.verified_tables)} table(s) match what the migrations build")
    print(f"baseline: recorded {len(baseline.recorded)} migration(s) as applied without running them")
    for migration in baseline.recorded:
        print(f"  {migration.name}")
    return EXIT_OK


def _check(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    rendered = engine.up(dry_run=True).would_run
    report = lint(rendered, engine.conn.server_version, settings.squawk_binary)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _status(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
    plan = engine.plan()
    needs = attention(plan) + ([f"{len(plan.pending)} pending"] if args.check and plan.pending else [])
    if args.json:
        with engine.conn.cursor() as cursor:
            background = [background_control.document(job) for job in background_queue.read_jobs(cursor)]
        out.document({**status_document(plan, needs), "background": background})
    else:
        print_status(plan)
    if needs:
        print(f"status: needs attention: {', '.join(needs)}", file=sys.stderr)
    return EXIT_FAILED if needs else EXIT_OK


def _unlock(args: argparse.Namespace, settings: Settings, engine: Engine, out: Output) -> int:
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


def _logs(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    return logs.run(args)


def _fail(args: argparse.Namespace, out: Output, error: BaseException | str, code: int, prefix: str = "error: ") -> int:
    """One line on stderr (the traceback first with --verbose), the JSON document under --json; no secret in any."""
    if getattr(args, "verbose", False) and isinstance(error, BaseException):
        print(out.scrub("".join(traceback.format_exception(error))), file=sys.stderr, end="")
    message = out.scrub(" ".join(str(error).split()))
    if out.json:
        migrations = [outcome_document(outcome) for outcome in out.finished]
        out.document(
            {"command": args.command, "ok": False, "exit_code": code, "error": message, "migrations": migrations}
        )
    print(f"{prefix}{message}", file=sys.stderr)
    return code
