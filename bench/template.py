"""Figure 6: a migrated database per test — a copy of a migrated template, or a rolled-back transaction on one
shared migrated database, against migrating a fresh one.

What `lambda_db_setup.testing` gives each test (``migrated_conn``: ``CREATE DATABASE ... TEMPLATE``;
``migrated_rollback_conn``: connect, a transaction, its rollback, the check that nothing was committed)
against what a test suite without it pays for every test (``CREATE DATABASE`` and the project's 14
migrations). The database cases drop theirs afterwards, as the fixture does. In process: the cost is the
server's, not Python's start-up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import psycopg2

from lambda_db_setup.engine import Engine
from lambda_db_setup.testing import rolled_back_connection, scratch_database

from .common import PROJECT_ROOT, Context, Row, Table, Target, Unit, progress

TITLE = "6. A migrated database per test"
MIGRATIONS = PROJECT_ROOT / "migrations"


def run(ctx: Context) -> list[Table]:
    progress(TITLE)
    server_url = ctx.server.url

    def migrate_fresh() -> None:
        with scratch_database(server_url, "bench_fresh") as url:
            _migrate(url)

    with scratch_database(server_url, "bench_template") as template_url:
        _migrate(template_url)
        template = template_url.partition("?")[0].rsplit("/", 1)[1]

        def copy_template() -> None:
            with scratch_database(server_url, "bench_copy", template=template):
                pass

        times = max(ctx.repeat, 3)
        fresh, copied = _median(migrate_fresh, times), _median(copy_template, times)
        rolled_back = _median(lambda: _roll_back(template_url), times * 20)  # milliseconds: more runs, same noise
    baseline = "migrate a fresh database"
    rows = [
        Row("copy of the migrated template (`migrated_conn`)", Unit.SECONDS, copied, baseline, fresh, Target(0.1)),
        Row("rolled-back transaction (`migrated_rollback_conn`)", Unit.SECONDS, rolled_back, baseline, fresh,
            Target(0.05)),
    ]  # fmt: skip
    notes = [
        "Each database case creates its database, migrates or copies it, and drops it, as one test's fixture does;"
        " the transaction case connects to a migrated database, opens a transaction, rolls it back and closes.",
    ]
    return [Table(TITLE, rows, notes)]


def _roll_back(url: str) -> None:
    with rolled_back_connection(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 1")


def _migrate(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        Engine(conn, MIGRATIONS).up()
    finally:
        conn.close()


def _median(case: Callable[[], None], times: int) -> float:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        case()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)
