"""Figure 6: a background backfill against one plain UPDATE (the floor) and a naive batched loop, with the
latency of a concurrent writer beside each.

The table has ``ROWS`` rows; each case fills ``w2 = v * 2`` on all of them, while a writer updates random
existing rows one at a time (as an application would) and its latencies are recorded. The idle p99 is the
writer's alone. Time is compared rather than rate so that a lower ratio is better, as in the other figures:
a time ratio of at most 1.25 is a throughput of at least 0.8 of the naive loop's.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import psycopg2

from lambda_db_setup.background.runner import Runner
from lambda_db_setup.engine import Engine

from .common import TIMES, Context, Row, Table, Target, Unit, progress

ROWS, QUICK_ROWS = 1_000_000, 20_000
NAIVE_BATCH = 1000
IDLE_SECONDS = 5.0
TITLE = "7. Background backfill"


class Writer(threading.Thread):
    """Updates random existing rows, one per autocommit statement, recording each one's latency."""

    def __init__(self, url: str, rows: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rows = url, rows
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        chance = random.Random(6)
        with closing(autocommit(self.url)) as conn, conn.cursor() as cursor:
            while not self.stop.is_set():
                started = time.perf_counter()
                cursor.execute("UPDATE big SET v = v + 1 WHERE id = %s", (chance.randint(1, self.rows),))
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.002)


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 100 else max(latencies)


def run(ctx: Context) -> list[Table]:
    rows = QUICK_ROWS if ctx.quick else ROWS
    progress(f"{TITLE}: {rows:,} rows")
    cases: dict[str, Callable[[str, Path], None]] = {
        "one UPDATE": lambda url, _: _sql(url, ["UPDATE big SET w2 = v * 2"]),
        "naive loop": _naive_loop,
        "ours": _ours,
    }
    seconds: dict[str, float] = {}
    tails: dict[str, float] = {}
    longest: dict[str, float] = {}
    with ctx.server.fresh_database() as url:
        _make_table(url, rows)
        tails["idle"] = _writer_alone(url, rows)
        for name, case in cases.items():
            _sql(url, ["UPDATE big SET w2 = NULL", "VACUUM big"])
            writer = Writer(url, rows)
            writer.start()
            started = time.perf_counter()
            case(url, ctx.work_dir / "backfill")
            seconds[name] = time.perf_counter() - started
            writer.stop.set()
            writer.join()
            tails[name], longest[name] = p99(writer.latencies), max(writer.latencies)
            rate, tail = rows / seconds[name], tails[name] * 1000
            progress(f"  {name}: {seconds[name]:.2f} s, {rate:,.0f} rows/s, writer p99 {tail:.1f} ms")
    return [_table(rows, seconds, tails, longest)]


def _table(rows: int, seconds: dict[str, float], tails: dict[str, float], longest: dict[str, float]) -> Table:
    case = f"fill {rows:,} rows"
    return Table(
        TITLE,
        rows=[
            Row(
                f"{case}: time",
                Unit.SECONDS,
                seconds["ours"],
                "naive batched loop",
                seconds["naive loop"],
                Target(1.25),
            ),
            Row(f"{case}: time", Unit.SECONDS, seconds["ours"], "one UPDATE (the floor)", seconds["one UPDATE"]),
            Row("writer p99 during it", Unit.SECONDS, tails["ours"], "writer alone", tails["idle"], Target(2.0)),
            Row("writer p99, naive loop", Unit.SECONDS, tails["naive loop"], "writer alone", tails["idle"]),
            Row("writer p99, one UPDATE", Unit.SECONDS, tails["one UPDATE"], "writer alone", tails["idle"]),
        ],
        notes=[
            "Rows per second: "
            + ", ".join(f"{name} {rows / value:,.0f}" for name, value in seconds.items())
            + f". The naive loop commits {NAIVE_BATCH:,} keys at a time; ours adapts its batch to the target"
            " duration, checks the throttling signals before each batch and saves its cursor in the batch's"
            f" transaction. A time ratio ≤ 1.25{TIMES} is a throughput ≥ 0.8{TIMES} the naive loop's.",
            "The writer updates random existing rows one at a time, 2 ms apart; its p99 while alone is the baseline."
            " A blocked write is one sample however long it waits, so its longest wait is shown too: "
            + ", ".join(f"{name} {value * 1000:,.0f} ms" for name, value in longest.items())
            + ".",
        ],
    )


def _make_table(url: str, rows: int) -> None:
    _sql(
        url,
        [
            "CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, w2 int)",
            f"INSERT INTO big (id, v) SELECT g, g % 1000 FROM generate_series(1, {rows}) g",
            "VACUUM ANALYZE big",
        ],
    )


def _writer_alone(url: str, rows: int) -> float:
    writer = Writer(url, rows)
    writer.start()
    time.sleep(IDLE_SECONDS)
    writer.stop.set()
    writer.join()
    return p99(writer.latencies)


def _naive_loop(url: str, _: Path) -> None:
    """What one writes by hand: fixed key ranges, each committed, until past the largest key."""
    with closing(autocommit(url)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM big")
        (last,) = cursor.fetchone()
        for start in range(0, last, NAIVE_BATCH):
            cursor.execute("UPDATE big SET w2 = v * 2 WHERE id > %s AND id <= %s", (start, start + NAIVE_BATCH))


def _ours(url: str, work_dir: Path) -> None:
    """Queue it as a migration would, then run the queue to its end."""
    migrations = work_dir / f"migrations-{time.time_ns()}"
    migrations.mkdir(parents=True)
    (migrations / "1000_backfill_w2.py").write_text('def up(pgm):\n    pgm.backfill("big", set={"w2": "v * 2"})\n')
    with closing(psycopg2.connect(url)) as conn:
        Engine(conn, migrations).up()
        Runner(conn).run()


def _sql(url: str, statements: list[str]) -> None:
    with closing(autocommit(url)) as conn, conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def autocommit(url: str) -> psycopg2.extensions.connection:
    """A connection whose every statement commits (``with conn`` would open a transaction even then)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn
