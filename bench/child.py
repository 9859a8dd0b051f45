"""One engine operation in a fresh interpreter, timed after the imports, reported as one JSON line.

``python -m bench.child up|plan|baseline|hash DIR [URL] [--to NAME] [--single-transaction] [--watch]``. The timing
includes ``psycopg2.connect`` and closing, as a deploy pays them; the parent reads the process's peak RSS. Every
``execute`` is counted: each is one simple-query round trip (the engine never uses ``executemany``).
With ``--watch`` an audit hook counts the files under DIR that are opened and executed, which shows
what the run reads; the hook costs time, so watched runs are not the timed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg2
import psycopg2.extensions

from lambda_db_setup.discovery import discover
from lambda_db_setup.engine import Engine
from lambda_db_setup.options import EngineOptions


class CountingCursor(psycopg2.extensions.cursor):
    """A cursor that counts its statements, to show the round trips a run makes after connecting."""

    statements = 0

    def execute(self, query, params=None):
        CountingCursor.statements += 1
        return super().execute(query, params)


class FileWatch:
    """Counts files under one directory that Python opens or executes (``sys.addaudithook``)."""

    def __init__(self, directory: Path) -> None:
        self.prefix = str(directory.absolute()) + "/"
        self.opened = 0
        self.executed = 0
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | os.PathLike) and os.fspath(args[0]).startswith(self.prefix):
            self.opened += 1
        elif event == "exec" and getattr(args[0], "co_filename", "").startswith(self.prefix):
            self.executed += 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("op", choices=["up", "plan", "baseline", "hash"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("url", nargs="?")
    parser.add_argument("--to", help="baseline: record up to and including this migration")
    parser.add_argument("--single-transaction", action="store_true", help="up: all migrations in one transaction")
    parser.add_argument("--watch", action="store_true", help="count files opened and executed under DIRECTORY")
    args = parser.parse_args()
    watch = FileWatch(args.directory) if args.watch else None

    started = time.perf_counter()
    report: dict[str, object] = {}
    if args.op == "hash":
        report["files"] = len([migration.checksum for migration in discover(args.directory)])
    else:
        conn = psycopg2.connect(args.url, cursor_factory=CountingCursor)
        try:
            engine = Engine(conn, args.directory, EngineOptions(single_transaction=args.single_transaction))
            if args.op == "up":
                report["applied"] = len(engine.up().ran)
            elif args.op == "plan":
                plan = engine.plan()
                report["applied"], report["pending"] = len(plan.applied), len(plan.pending)
            else:
                report["applied"] = len(engine.baseline(args.to, verify=False).recorded)
        finally:
            conn.close()
        report["round_trips"] = CountingCursor.statements
    report["seconds"] = time.perf_counter() - started
    if watch:
        report["files_opened"], report["files_executed"] = watch.opened, watch.executed
    print(json.dumps(report))


if __name__ == "__main__":
    main()
