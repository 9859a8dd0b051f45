"""``lambda-db-setup background status|run|pause|resume|retry``: the CLI's door to the queue.

One command with an action, so the connection flags work after it as after every other command, and the
operator path (``--lambda``) passes it on as it passes the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from . import control, queue
from .machine import start_machine
from .runner import Runner

if TYPE_CHECKING:
    from ..reports import Output
    from ..settings import Settings

ACTIONS = ("status", "run", "pause", "resume", "retry")
EXIT_OK, EXIT_FAILED = 0, 1


def add(command: Callable[..., argparse.ArgumentParser], connect: Callable[..., Any]) -> None:
    """Add ``background`` to the CLI; ``connect(args, settings)`` is the CLI's own way to the database."""

    def run(args: argparse.Namespace, settings: Settings, out: Output) -> int:
        return background(args, settings, out, connect)

    parser = command("background", run, "background migrations: status, run, pause, resume, retry")
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument("name", nargs="?", help="the migration whose work to pause, resume or retry")
    parser.add_argument("--json", action="store_true", help="status: one JSON document on stdout")
    parser.add_argument("--for", dest="for_seconds", type=_seconds, help="run: stop after SECONDS")
    parser.add_argument("--no-statements", action="store_true", help="run: backfills only")


def background(args: argparse.Namespace, settings: Settings, out: Output, connect: Callable[..., Any]) -> int:
    """Check the arguments before connecting, then do the action."""
    needs_name = args.action in control.ACTIONS
    if needs_name != (args.name is not None):
        need = "needs the migration's NAME" if needs_name else "takes no NAME"
        raise ConfigurationError(f"background {args.action} {need}")
    if args.for_seconds is not None and args.action != "run":
        raise ConfigurationError("--for goes with background run")
    with closing(connect(args, settings)) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            if needs_name:
                for line in control.lines(control.change(cursor, args.action, args.name)):
                    print(line)
                _restart(cursor, args.action, settings)
                return EXIT_OK
            if args.action == "run":
                deadline = None if args.for_seconds is None else time.monotonic() + args.for_seconds
                kinds = ("backfill",) if args.no_statements else queue.KINDS
                report = Runner(conn).run(deadline, kinds)
                print(
                    f"ran {report.batches} batch(es), {report.rows:,} rows in {report.seconds:.1f} s", file=sys.stderr
                )
            return _status(cursor, args, out)


def _restart(cursor: Any, action: str, settings: Settings) -> None:
    """After resume or retry: start the state machine again where there is one (in the Lambda, or with its ARN set)."""
    if action == "pause":
        return
    started = start_machine(cursor, settings.background_state_machine_arn)
    if started is not None:
        print(f"state machine {'started' if started[1] else 'already running'}: {started[0]}", file=sys.stderr)


def _status(cursor: Any, args: argparse.Namespace, out: Output) -> int:
    jobs = queue.read_jobs(cursor)
    if args.json:
        out.document({"command": f"background {args.action}", "background": [control.document(job) for job in jobs]})
    else:
        for line in control.lines(jobs):
            print(line)
    failed = [job.name for job in jobs if job.state == "failed"]
    if failed:
        print(f"background: failed: {', '.join(failed)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {text!r}")
    return value
