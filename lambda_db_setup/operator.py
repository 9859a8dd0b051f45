"""Operator commands run inside the migration Lambda: the database sits in isolated subnets, the Lambda reaches it.

``python -m lambda_db_setup --lambda FUNCTION status`` (see `remote`) invokes the on_event function with
``{"lambda_db_setup_operator": {"version": 1, "command": ..., "args": {...}}}``: no RequestType, so it can
never pass for a CloudFormation event, and an event with RequestType or ResponseURL is refused here. The
command runs through the CLI itself, connected with the admin secret, so it prints what it prints locally;
the answer is ``{"lambda_db_setup_operator": {"version": 1, "exit_code", "stdout", "stderr"}}``. Who may run
these is IAM's decision (``lambda:InvokeFunction`` on the function); commands that change the database also
need ``confirm`` here, checked again whatever the caller checked. Each command is logged as one JSON line.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

from psycopg2.extensions import make_dsn

from . import credentials
from .connect import target
from .errors import EventError
from .operator_protocol import COMMANDS, CONFIRM, KEY, VERSION, needs_confirmation
from .settings import BY_NAME, Settings

CFN_KEYS = ("RequestType", "ResponseURL")


def handle(event: dict[str, Any], logger: Any) -> dict[str, Any]:
    """Run one operator command; the outcome is one log line, and the CLI's output is the answer."""
    command, args = _parse(event)
    refusal = needs_confirmation(command, args)
    if refusal and (command == "up" or args.get("action") == "run" or args.get(CONFIRM) is not True):
        logger.warning("operator command refused", extra={"command": command, "arguments": args, "outcome": "refused"})
        raise EventError(f"operator {command} refused: {refusal}; it needs {CONFIRM} (the CLI's --confirm)")
    exit_code, stdout, stderr = _run_cli(_argv(command, args))
    logger.info(
        "operator command",
        extra={
            "command": command,
            "arguments": args,
            "exit_code": exit_code,
            "outcome": "ok" if exit_code == 0 else "failed",
            "error": stderr.strip().splitlines()[-1] if exit_code and stderr.strip() else None,
        },
    )
    return {KEY: {"version": VERSION, "exit_code": exit_code, "stdout": stdout, "stderr": stderr}}


def _parse(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The command and its arguments; anything else (a CloudFormation field, an unknown argument) is refused."""
    clash = [key for key in CFN_KEYS if key in event]
    if clash or set(event) != {KEY}:
        raise EventError(f"operator event refused: it has {', '.join(clash or sorted(set(event) - {KEY}))}")
    body = event[KEY]
    if not isinstance(body, dict) or body.get("version") != VERSION:
        raise EventError(f"operator event refused: expected version {VERSION}")
    command, args = body.get("command"), body.get("args", {})
    if command not in COMMANDS or not isinstance(args, dict):
        raise EventError(f"operator event refused: command must be one of {', '.join(COMMANDS)}")
    allowed = {name for name, _ in COMMANDS[command]} | {CONFIRM}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise EventError(f"operator {command} refused: unknown argument(s) {', '.join(unknown)}")
    for name, value in args.items():
        names = name == "names" and isinstance(value, list) and all(isinstance(item, str) for item in value)
        if not (names or isinstance(value, bool | int | str)) or (name == "count" and isinstance(value, bool)):
            raise EventError(f"operator {command} refused: {name} must be a flag, a number, a name or names")
    return command, args


def _argv(command: str, args: dict[str, Any]) -> list[str]:
    """The CLI's command line for the command: the same parser checks it as on an operator's machine."""
    argv, names = [command], []
    for name, flag in COMMANDS[command]:
        value = args.get(name)
        if value is None or value is False:
            continue
        if isinstance(value, list):
            names = ["--", *value]  # last, after "--": a name may start with "-"
        elif flag is None:
            argv.append(str(value))
        else:
            argv += [flag] if value is True else [flag, str(value)]
    return argv + names


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    """The CLI's exit code, stdout and stderr for ``argv``, against the database of the admin secret."""
    from . import cli  # the CLI is only needed here; CloudFormation events never load it

    stdout, stderr = io.StringIO(), io.StringIO()
    with _database_url(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            exit_code = cli.main(argv)
        except SystemExit as stop:  # argparse refusing the arguments
            exit_code = stop.code if isinstance(stop.code, int) else 2
    return exit_code, stdout.getvalue(), stderr.getvalue()


@contextlib.contextmanager
def _database_url() -> Iterator[None]:
    """DATABASE_URL for the CLI while it runs, as a connection string: the password never on a command line.

    DB_MIGRATIONS_LAMBDA is cleared meanwhile: in here the CLI connects, it never invokes a Lambda again.
    """
    settings = Settings.from_env()
    login = credentials.read_admin_login(
        credentials.secrets_client(), settings.admin_secret_arn, BY_NAME["admin_secret_arn"].env
    )
    where = target(login, settings)
    tls = {"sslrootcert": settings.ca_bundle} if settings.ca_bundle else {}
    url = make_dsn(
        host=where.host, port=where.port, dbname=where.dbname, user=where.user, password=login.password,
        sslmode=settings.sslmode, **tls,
    )  # fmt: skip
    with mock.patch.dict(os.environ, {BY_NAME["database_url"].env: url, BY_NAME["lambda_function"].env: ""}):
        yield
