"""``python -m bench``: run the figures, print them as Markdown for the README (progress goes to stderr)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import backfill, coldstart, files, many, noop, template
from .common import PROJECT_ROOT, Context, Table, merge, node_pg_migrate_version

FIGURES: dict[str, Callable[[Context], list[Table]]] = {
    "noop": noop.run,
    "many": many.run,
    "files": files.run,
    "coldstart": coldstart.run,
    "template": template.run,
    "backfill": backfill.run,
}
DEFAULT_REPEAT = 5


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeat", type=int, help=f"runs per case (default {DEFAULT_REPEAT}, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--only", action="append", choices=FIGURES, help="run only this figure (repeatable)")
    parser.add_argument("--server-url", help="a PostgreSQL server to use instead of the embedded one")
    parser.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / ".bench", help="generated files, data")
    args = parser.parse_args(argv)
    ctx = Context(
        repeat=args.repeat or (1 if args.quick else DEFAULT_REPEAT),
        quick=args.quick,
        work_dir=args.work_dir.absolute(),
        server_url=args.server_url,
    )
    ctx.work_dir.mkdir(parents=True, exist_ok=True)

    tables: list[Table] = []
    failures: list[str] = []
    for name in args.only or FIGURES:
        try:
            tables += FIGURES[name](ctx)
        except Exception as error:  # one broken figure should not hide the others
            traceback.print_exc()
            failures.append(f"**{name} failed:** {' '.join(str(error).split())[:500]}")
    print(_header(ctx))
    for table in merge(tables):
        print()
        print(table.markdown())
    for failure in failures:
        print()
        print(failure)
    return 1 if failures else 0


def _header(ctx: Context) -> str:
    """Where and how the numbers were taken, so a pasted table carries its conditions."""
    node = (
        f"node {_node_version()}, node-pg-migrate {node_pg_migrate_version()}"
        if ctx.with_node
        else ("node-pg-migrate not installed (its columns are empty; `bench/run` installs it)")
    )
    server = ctx.started_server()
    postgres = f"PostgreSQL {server.version()}" if server else "no PostgreSQL needed"
    mode = " (`--quick`: tiny sizes, not a measurement)" if ctx.quick else ""
    return (
        f"Median of {ctx.repeat} run(s){mode} on {_cpu()} ({os.cpu_count()} cores), Python {platform.python_version()},"
        f" {postgres}, {node}."
    )


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
