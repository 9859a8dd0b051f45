"""Figure 1: a deploy with nothing to do — every migration applied, nothing pending.

This is what almost every deploy runs: connect, take the lock, read ``pgmigrations``, compare with the
files, release the lock. Both tools run against the same database; node-pg-migrate gets ``.js`` files
with the same names (it compares names only), written as its own template writes them.
"""

from __future__ import annotations

import sys

from lambda_db_setup.discovery import discover

from .common import (
    BENCH_DIR,
    NODE_CLI,
    NODE_MISSING,
    PROJECT_ROOT,
    Context,
    Row,
    Table,
    Target,
    Unit,
    median_seconds,
    median_wall,
    migration_names,
    node_runner,
    ours,
    progress,
    repeat,
    reported,
    run_process,
    write_migrations,
)

REAL_MIGRATIONS = PROJECT_ROOT / "migrations"
GENERATED_COUNT = 14
TITLE = "1. No-op deploy"


def run(ctx: Context) -> list[Table]:
    migrations = discover(REAL_MIGRATIONS) if REAL_MIGRATIONS.is_dir() else []
    if migrations:
        ours_dir, source = REAL_MIGRATIONS, "the project's `migrations/`"
        names = [migration.name for migration in migrations]
    else:
        names = migration_names(GENERATED_COUNT)
        ours_dir, source = write_migrations(ctx.work_dir / "noop" / "ours", names, "sql"), "generated trivial `.sql`"
    node_dir = write_migrations(ctx.work_dir / "noop" / "node", names, "js")
    title = f"{TITLE}: {len(names)} migrations applied, nothing pending"
    progress(title)

    cli = [sys.executable, "-m", "lambda_db_setup"]
    run_process([*cli, "--help"], env={"PYTHONDONTWRITEBYTECODE": ""})  # the CLI's bytecode, as on a dev machine
    with ctx.server.fresh_database() as url:
        ours("up", ours_dir, url)  # apply them all: the state every later run finds
        variants = {
            "ours, in-process": lambda: ours("up", ours_dir, url),
            "ours, CLI": lambda: run_process([*cli, "up", "--database-url", url, "--migrations-dir", ours_dir]),
        }
        if ctx.with_node:
            variants["node-pg-migrate runner()"] = lambda: node_runner(url, node_dir)
            variants["node-pg-migrate CLI"] = lambda: run_process(
                ["node", NODE_CLI, "up", "-m", node_dir], env={"DATABASE_URL": url}, cwd=BENCH_DIR
            )
        runs = repeat(variants, ctx.repeat)

    table = Table(title)
    table.rows += [
        Row(
            "in-process: connect + `Engine.up()` + close",
            Unit.SECONDS,
            median_seconds(runs["ours, in-process"]),
            "node-pg-migrate `runner()`",
            median_seconds(runs.get("node-pg-migrate runner()")),
            Target(0.5),
            NODE_MISSING,
        ),
        Row(
            "whole process: `python -m lambda_db_setup up`",
            Unit.SECONDS,
            median_wall(runs["ours, CLI"]),
            "`node-pg-migrate up` (its bin, no npx)",
            median_wall(runs.get("node-pg-migrate CLI")),
            Target(0.5),
            NODE_MISSING,
        ),
        Row(
            "SQL round trips after connecting",
            Unit.COUNT,
            reported(runs["ours, in-process"], "round_trips"),
            "node-pg-migrate `runner()`",
            reported(runs.get("node-pg-migrate runner()"), "round_trips"),
            Target(4, on_ratio=False),
            NODE_MISSING,
        ),
    ]
    table.notes += [
        f"This project runs {source}; node-pg-migrate gets `.js` stubs with the same names"
        " (its `create` template), which it imports on every run, applied or not.",
        "In-process rows time from before connecting to after closing, imports excluded, each run in a fresh"
        " process (`bench/child.py`, `bench/runner.mjs`); whole-process rows are wall time including"
        " interpreter start-up and imports.",
        "Round trips: every `cursor.execute` / `client.query` after the connection is made.",
    ]
    return [table]
