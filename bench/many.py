"""Figure 2: many trivial migrations (each ``CREATE TABLE tN (id int)``) applied to an empty database.

This is where per-migration overhead shows: reading and splitting files, importing ``.py`` ones, and the
round trips and commits around each migration. The floor is the same statements through ``psql -f``,
autocommitted one by one, with no bookkeeping at all. Every run gets a fresh database.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2

from lambda_db_setup.discovery import discover
from lambda_db_setup.prepare import prepare

from .common import (
    MEMORY_NOTE,
    MEMORY_TITLE,
    NODE_MISSING,
    Context,
    Row,
    Run,
    Table,
    Target,
    Unit,
    median_seconds,
    median_wall,
    memory_row,
    migration_names,
    node_runner,
    ours,
    progress,
    repeat,
    reported,
    run_process,
    write_migrations,
)

FULL_COUNT = 1_000
QUICK_COUNT = 20


def run(ctx: Context) -> list[Table]:
    count = QUICK_COUNT if ctx.quick else FULL_COUNT
    title = f"2. {count:,} trivial migrations from empty"
    progress(title)
    names = migration_names(count)
    root = ctx.work_dir / "many"
    sql_dir = write_migrations(root / "sql", names, "sql")
    py_dir = write_migrations(root / "py", names, "py")
    js_dir = write_migrations(root / "js", names, "js")
    script = root / "all.sql"
    script.write_text("".join(f"CREATE TABLE t{index:05d} (id int);\n" for index in range(count)))

    def fresh(action: Callable[[str], Run]) -> Callable[[], Run]:
        def variant() -> Run:
            with ctx.server.fresh_database() as url:
                return action(url)

        return variant

    variants = {
        "ours .sql": fresh(lambda url: ours("up", sql_dir, url)),
        "ours .py": fresh(lambda url: ours("up", py_dir, url)),
        "ours .sql, single transaction": fresh(lambda url: ours("up", sql_dir, url, "--single-transaction")),
    }
    if ctx.with_node:
        variants["node .sql"] = fresh(lambda url: node_runner(url, sql_dir))
        variants["node .sql, a transaction each"] = fresh(
            lambda url: node_runner(url, sql_dir, "--no-single-transaction")
        )
        variants["node .js"] = fresh(lambda url: node_runner(url, js_dir))
    if ctx.psql:
        psql = ctx.psql
        variants["psql"] = fresh(lambda url: _psql(psql, url, script))
    runs = repeat(variants, ctx.repeat)
    with ctx.server.fresh_database() as url:
        checked, built = _prepare_seconds(url, sql_dir, ctx.repeat)

    sql_ours, py_ours = median_seconds(runs["ours .sql"]), median_seconds(runs["ours .py"])
    single_ours = median_seconds(runs["ours .sql, single transaction"])
    psql_floor = median_wall(runs.get("psql"))
    no_psql = "psql not found"
    table = Table(title)
    table.rows += [
        Row("`.sql` files", Unit.SECONDS, sql_ours, "`psql -f`, one file", psql_floor, Target(1.2), no_psql),
        Row("`.py` files", Unit.SECONDS, py_ours, "`psql -f`, one file", psql_floor, Target(1.5), no_psql),
        Row(
            "`.sql` files, `--single-transaction`",
            Unit.SECONDS,
            single_ours,
            "node-pg-migrate `runner()`, `.sql` (default: one transaction for all)",
            median_seconds(runs.get("node .sql")),
            Target(0.7),
            NODE_MISSING,
        ),
        Row(
            "`.sql` files",
            Unit.SECONDS,
            sql_ours,
            "node-pg-migrate `runner()`, `.sql` (default: one transaction for all)",
            median_seconds(runs.get("node .sql")),
            Target(0.5),
            NODE_MISSING,
        ),
        Row(
            "`.sql` files",
            Unit.SECONDS,
            sql_ours,
            "node-pg-migrate `runner()`, `.sql`, `--no-single-transaction` (a transaction each, as ours)",
            median_seconds(runs.get("node .sql, a transaction each")),
            missing=NODE_MISSING,
        ),
        Row(
            "`.py` files",
            Unit.SECONDS,
            py_ours,
            "node-pg-migrate `runner()`, `.js`",
            median_seconds(runs.get("node .js")),
            Target(0.5),
            NODE_MISSING,
        ),
        Row(
            f"checking {count:,} `.sql` migrations before anything is sent (`prepare`: built, rendered, every"
            " statement lexed whole, no NUL, encodable, no COPY with the client)",
            Unit.SECONDS,
            checked,
            "building and rendering them only",
            built,
        ),
        Row(
            "round trips after connecting",
            Unit.COUNT,
            reported(runs["ours .sql"], "round_trips"),
            "node-pg-migrate `runner()` (one transaction)",
            reported(runs.get("node .sql"), "round_trips"),
            Target(count + 10, on_ratio=False),
            missing=NODE_MISSING,
        ),
        Row(
            "round trips after connecting, `--single-transaction`",
            Unit.COUNT,
            reported(runs["ours .sql, single transaction"], "round_trips"),
            "node-pg-migrate `runner()` (one transaction)",
            reported(runs.get("node .sql"), "round_trips"),
            missing=NODE_MISSING,
        ),
    ]
    table.notes += [
        "This project runs each migration in its own transaction with its `pgmigrations` row, sent in one round"
        " trip, all but the run's last committing without waiting for the disk (`synchronous_commit = off`);"
        " `--single-transaction` sends all of them in one. node-pg-migrate by default runs all pending"
        " migrations in one transaction (one commit in all), each statement its own round trip.",
        "`.py` migrations are imported without cached bytecode (`PYTHONDONTWRITEBYTECODE=1`, fresh files),"
        " as on Lambda, whose asset ships no `__pycache__`.",
        "`psql` runs the statements only (no lock, no tracking table) and is timed as a whole process.",
    ]
    memory = Table(MEMORY_TITLE, notes=[MEMORY_NOTE])
    memory.rows += [
        memory_row(
            f"{count:,} migrations from empty, `.sql`",
            runs["ours .sql"],
            "node-pg-migrate `runner()`, `.sql`",
            runs.get("node .sql"),
        ),
        memory_row(
            f"{count:,} migrations from empty, `.py`",
            runs["ours .py"],
            "node-pg-migrate `runner()`, `.js`",
            runs.get("node .js"),
        ),
    ]
    return [table, memory]


def _prepare_seconds(url: str, directory: Path, times: int) -> tuple[float, float]:
    """Median seconds, in this process, to `prepare` every migration of ``directory`` against building and
    rendering them only; files are read and parsed afresh each time (new `Migration` values)."""
    conn = psycopg2.connect(url)
    try:

        def checked() -> None:
            for migration in discover(directory):
                prepare(migration, "up", conn)

        def built() -> None:
            for migration in discover(directory):
                for statement in migration.build("up").statements:
                    statement.as_string(conn)

        return _median_time(checked, times), _median_time(built, times)
    finally:
        conn.close()


def _median_time(action: Callable[[], None], times: int) -> float:
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def _psql(psql: Path, url: str, script: Path) -> Run:
    return run_process([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", script])
