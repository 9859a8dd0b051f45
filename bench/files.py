"""Figure 3: a long history — many migration files, almost all of them applied.

Applied files must cost next to nothing: they are listed, and read once for the drift checksum, but never
imported. ``status`` runs with a few pending, the no-op ``up`` with all applied. This project gets ``.py``
files (the ones that would be expensive to import); node-pg-migrate gets ``.sql`` files with the same
names, its cheapest kind to load.
"""

from __future__ import annotations

from .common import (
    MEMORY_NOTE,
    MEMORY_TITLE,
    NODE_MISSING,
    Context,
    Row,
    Table,
    Target,
    Unit,
    median_seconds,
    memory_row,
    migration_names,
    node_runner,
    ours,
    progress,
    repeat,
    write_migrations,
)

FULL_COUNT = 10_000
QUICK_COUNT = 200
PENDING = 10
SECOND = 1.0


def run(ctx: Context) -> list[Table]:
    count = QUICK_COUNT if ctx.quick else FULL_COUNT
    title = f"3. {count:,} migration files"
    progress(title)
    names = migration_names(count)
    py_dir = write_migrations(ctx.work_dir / "files" / "py", names, "py")
    sql_dir = write_migrations(ctx.work_dir / "files" / "sql", names, "sql")

    with ctx.server.fresh_database() as status_url, ctx.server.fresh_database() as noop_url:
        progress(f"  recording {count - PENDING:,} and {count:,} migrations as applied (baseline)")
        ours("baseline", py_dir, status_url, "--to", names[-PENDING - 1])
        ours("baseline", py_dir, noop_url)
        variants = {
            "ours status": lambda: ours("plan", py_dir, status_url),
            "ours no-op up": lambda: ours("up", py_dir, noop_url),
            "ours hashing": lambda: ours("hash", py_dir),
        }
        if ctx.with_node:
            variants["node dry run"] = lambda: node_runner(status_url, sql_dir, "--dry-run")
            variants["node no-op up"] = lambda: node_runner(noop_url, sql_dir)
        runs = repeat(variants, ctx.repeat)
        watched = ours("up", py_dir, noop_url, "--watch").report

    noop = median_seconds(runs["ours no-op up"])
    hashing = median_seconds(runs["ours hashing"])
    table = Table(title)
    table.rows += [
        Row(
            f"`status` (`Engine.plan()`), {count - PENDING:,} applied, {PENDING} pending",
            Unit.SECONDS,
            median_seconds(runs["ours status"]),
            "node-pg-migrate `runner()` dry run (it has no status)",
            median_seconds(runs.get("node dry run")),
            Target(SECOND, on_ratio=False),
            NODE_MISSING,
        ),
        Row(
            f"no-op `up`, all {count:,} applied",
            Unit.SECONDS,
            noop,
            "node-pg-migrate `runner()`",
            median_seconds(runs.get("node no-op up")),
            Target(SECOND, on_ratio=False),
            NODE_MISSING,
        ),
        Row(f"drift check alone: list and SHA-256 {count:,} files", Unit.SECONDS, hashing),
    ]
    table.notes += [
        f"The no-op `up` opened {watched['files_opened']:,} migration files and executed"
        f" {watched['files_executed']:,} of them (counted with an audit hook in a separate, untimed run).",
        f"Listing and hashing the files for drift detection is {hashing / noop:.0%} of the no-op `up`.",
        "Rows are recorded as applied with `Engine.baseline()`, so they carry checksums as a real run's would.",
    ]
    memory = Table(MEMORY_TITLE, notes=[MEMORY_NOTE])
    memory.rows += [
        memory_row(
            f"`status`, {count:,} files",
            runs["ours status"],
            "node-pg-migrate `runner()` dry run",
            runs.get("node dry run"),
        ),
        memory_row(
            f"no-op `up`, {count:,} files",
            runs["ours no-op up"],
            "node-pg-migrate `runner()`",
            runs.get("node no-op up"),
        ),
    ]
    return [table, memory]
