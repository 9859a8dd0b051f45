"""Shared set-up of the background-migration tests: a big table, an audit trigger, a queued backfill."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import psycopg2

from lambda_db_setup.background import queue
from lambda_db_setup.background.queue import Job
from lambda_db_setup.engine import Engine
from tests.helpers import write_py

# Counts every UPDATE of a row of big, in the updating transaction: a rolled-back batch leaves no count.
AUDIT = """
CREATE TABLE big_audit (id bigint PRIMARY KEY, updates int NOT NULL);
CREATE FUNCTION big_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO big_audit VALUES (NEW.id, 1) ON CONFLICT (id) DO UPDATE SET updates = big_audit.updates + 1;
  RETURN NEW;
END $$;
CREATE TRIGGER big_audit AFTER UPDATE ON big FOR EACH ROW EXECUTE FUNCTION big_audit();
"""


def make_big(conn, rows: int, *, audit: bool = False) -> None:
    """``big(id bigint primary key, v int, w2 int)`` with ``rows`` rows, ids 1..rows, w2 NULL."""
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, w2 int)")
        cursor.execute("INSERT INTO big (id, v) SELECT g, g %% 1000 FROM generate_series(1, %s) g", (rows,))
        cursor.execute("ANALYZE big")
        if audit:
            cursor.execute(AUDIT)


def queue_backfill(
    migrations_dir: Path, conn, *, name: str = "1000_backfill_w2", arguments: str = 'set={"w2": "v * 2"}'
) -> None:
    """Apply a migration that queues a backfill of big.w2."""
    write_py(migrations_dir, name, f'pgm.backfill("big", {arguments})')
    Engine(conn, migrations_dir).up()


def autocommit(url: str) -> psycopg2.extensions.connection:
    """A connection whose every statement commits (``with conn`` would open a transaction even then)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def jobs(database_url: str) -> list[Job]:
    with closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cursor:
        conn.autocommit = True
        return queue.read_jobs(cursor)


def scalar(conn, query: str, params: tuple = ()) -> object:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()[0]
