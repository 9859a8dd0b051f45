"""The queue table: one row per piece of background work, its state, its cursor and how far it got.

The row is the job's whole memory: the runner keeps nothing between batches, so any process (a Lambda, the
CLI, a CodeBuild build) can pick a job up where the last committed batch left it. Rows are written by the
migration that queues them (`enqueue_backfill`, `enqueue_statement`, in its own transaction) and by the
runner and the operator commands (`set_state`); `summary` is rewritten with every change, so the deploy-time
gate (`require_finished`) can quote it without computing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from .. import tracking
from ..errors import MigrationError

SCHEMA = tracking.DEFAULT.schema  # beside node-pg-migrate's pgmigrations (not a configured tracking schema)
TABLE = "lambda_db_setup_background"
QUALIFIED = sql.Identifier(SCHEMA, TABLE)
ACTIVE = ("queued", "running")  # what a runner works on
KINDS = ("backfill", "statement")
# The dollar-quote tag of the DO blocks below; an expression holding it is refused when it is queued.
TAG = "$lambda_db_setup_background$"
QUEUED_SUMMARY = "queued, not started yet"

CREATE = sql.SQL(
    """CREATE TABLE IF NOT EXISTS {} (
  id bigserial PRIMARY KEY,
  migration varchar(255) NOT NULL,
  ordinal integer NOT NULL,
  kind text NOT NULL CHECK (kind IN ('backfill', 'statement')),
  description text NOT NULL,
  schema_name text, table_name text, key_column text, key_type text,
  set_sql text, where_sql text, statement_sql text,
  state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'paused', 'finished', 'failed')),
  batch_size integer NOT NULL DEFAULT 1000 CHECK (batch_size > 0),
  first_key text, last_key text, cursor_key text, total_estimate double precision,
  rows_done bigint NOT NULL DEFAULT 0, batches integer NOT NULL DEFAULT 0,
  failed_batches integer NOT NULL DEFAULT 0, attempts integer NOT NULL DEFAULT 0,
  busy_seconds double precision NOT NULL DEFAULT 0,
  progress double precision, seconds_left double precision,
  throttled text, last_error text, summary text NOT NULL DEFAULT 'queued, not started yet',
  queued_at timestamptz NOT NULL DEFAULT pg_catalog.now(), started_at timestamptz, finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  UNIQUE (migration, ordinal)
)"""
).format(QUALIFIED)

# Queued again (a redo of the migration): back to the start, as if new.
_REQUEUE = """ON CONFLICT (migration, ordinal) DO UPDATE SET kind = EXCLUDED.kind, description = EXCLUDED.description,
  schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name, key_column = EXCLUDED.key_column,
  key_type = EXCLUDED.key_type, set_sql = EXCLUDED.set_sql, where_sql = EXCLUDED.where_sql,
  statement_sql = EXCLUDED.statement_sql, batch_size = EXCLUDED.batch_size, state = 'queued', first_key = NULL,
  last_key = NULL, cursor_key = NULL, total_estimate = NULL, rows_done = 0, batches = 0, failed_batches = 0,
  attempts = 0, busy_seconds = 0, progress = NULL, seconds_left = NULL, throttled = NULL, last_error = NULL,
  summary = EXCLUDED.summary, queued_at = pg_catalog.now(), started_at = NULL, finished_at = NULL,
  updated_at = pg_catalog.now()"""

# Checked in the migration's own transaction, so the table may be created by an earlier statement of it: a table
# that is missing or has no single-column primary key fails the deploy, and EXPLAIN proves the expressions parse
# and name real columns before anything is queued.
_BACKFILL = """DO {tag}
DECLARE
  target regclass := pg_catalog.to_regclass({table});
  keys text[];
  key_type text;
BEGIN
  IF target IS NULL THEN
    RAISE EXCEPTION USING MESSAGE = {where} || ': table ' || {shown} || ' does not exist';
  END IF;
  SELECT array_agg(a.attname::text ORDER BY k.ord), min(pg_catalog.format_type(a.atttypid, a.atttypmod))
    INTO keys, key_type
    FROM pg_catalog.pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = target AND i.indisprimary;
  IF keys IS NULL THEN
    RAISE EXCEPTION USING MESSAGE = {where} || ': table ' || {shown}
      || ' has no primary key; a backfill walks the primary key in batches: add one first';
  END IF;
  IF pg_catalog.array_length(keys, 1) > 1 THEN
    RAISE EXCEPTION USING MESSAGE = {where} || ': table ' || {shown} || ' has a composite primary key ('
      || pg_catalog.array_to_string(keys, ', ') || '); a backfill needs a single-column one';
  END IF;
  EXECUTE 'EXPLAIN UPDATE ' || {table} || ' SET ' || {set_sql} || ' WHERE ' || {where_sql};
  INSERT INTO {queue} (migration, ordinal, kind, description, schema_name, table_name, key_column, key_type,
    set_sql, where_sql, batch_size, summary)
  SELECT {migration}, {ordinal}, 'backfill', {description}, n.nspname, c.relname, keys[1], key_type,
    {set_sql}, {where_sql}, {batch_size}, {summary}
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target
  {requeue};
END {tag}"""

_STATEMENT = """INSERT INTO {queue} (migration, ordinal, kind, description, statement_sql, summary)
VALUES ({migration}, {ordinal}, 'statement', {description}, {statement}, {summary})
{requeue}"""

_GATE = """DO {tag}
DECLARE
  job record;
BEGIN
  -- two IFs: plpgsql plans a whole condition, so the table's query must not be planned before it exists
  IF pg_catalog.to_regclass({queue_name}) IS NULL THEN
    RAISE EXCEPTION USING MESSAGE = {none};
  END IF;
  IF NOT EXISTS (SELECT FROM {queue} WHERE migration = {migration}) THEN
    RAISE EXCEPTION USING MESSAGE = {none};
  END IF;
  FOR job IN SELECT description, state, summary FROM {queue} WHERE migration = {migration} AND state <> 'finished'
      ORDER BY ordinal LOOP
    RAISE EXCEPTION USING MESSAGE = {where} || ': ' || job.description || ': ' || job.summary
      || ' (the background work of ' || {migration} || ' must finish first)';
  END LOOP;
END {tag}"""


@dataclass(frozen=True)
class Job:
    """One row of the queue table, as the runner and the status commands read it."""

    id: int
    migration: str
    ordinal: int
    kind: str
    description: str
    schema_name: str | None
    table_name: str | None
    key_column: str | None
    key_type: str | None
    set_sql: str | None
    where_sql: str | None
    statement_sql: str | None
    state: str
    batch_size: int
    first_key: str | None
    last_key: str | None
    cursor_key: str | None
    total_estimate: float | None
    rows_done: int
    batches: int
    failed_batches: int
    attempts: int
    busy_seconds: float
    progress: float | None
    seconds_left: float | None
    throttled: str | None
    last_error: str | None
    summary: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def name(self) -> str:
        """How the CLI and the gate name it: the migration, and its place when the migration queued several."""
        return self.migration if self.ordinal == 1 else f"{self.migration}#{self.ordinal}"

    @property
    def table(self) -> sql.Identifier:
        """A backfill's table, schema-qualified."""
        return sql.Identifier(self.schema_name, self.table_name)

    @property
    def rows_per_second(self) -> float | None:
        return self.rows_done / self.busy_seconds if self.busy_seconds > 0 else None


COLUMNS = sql.SQL(", ").join(sql.Identifier(field.name) for field in fields(Job))


def enqueue_backfill(
    migration: str,
    ordinal: int,
    table: tuple[str, ...],
    assignments: Sequence[tuple[str, str]],
    where: str | None,
    batch_size: int,
) -> list[sql.Composable]:
    """The statements that queue a backfill: the table if missing, then the checked INSERT (`_BACKFILL`)."""
    set_sql = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.SQL(expression)) for column, expression in assignments
    )
    description = f"backfill of {table[-1]}.{','.join(column for column, _ in assignments)}"
    _refuse_tag([expression for _, expression in assignments] + [where or ""], description)
    table_text = sql.Identifier(*table)
    literal = sql.Literal
    return [
        CREATE,
        sql.SQL(_BACKFILL).format(
            tag=sql.SQL(TAG),
            table=_AsTextLiteral(table_text),
            where=literal(description),
            shown=literal(".".join(table)),
            set_sql=_AsTextLiteral(set_sql),
            where_sql=literal(where or "true"),
            queue=QUALIFIED,
            migration=literal(migration),
            ordinal=literal(ordinal),
            description=literal(description),
            batch_size=literal(batch_size),
            summary=literal(QUEUED_SUMMARY),
            requeue=sql.SQL(_REQUEUE),
        ),
    ]


def enqueue_statement(migration: str, ordinal: int, statement: str) -> list[sql.Composable]:
    """The statements that queue one long statement to run after the deploy, outside any transaction."""
    words = " ".join(statement.split())
    description = words if len(words) <= 60 else words[:57] + "..."
    return [
        CREATE,
        sql.SQL(_STATEMENT).format(
            queue=QUALIFIED,
            migration=sql.Literal(migration),
            ordinal=sql.Literal(ordinal),
            description=sql.Literal(description),
            statement=sql.Literal(statement),
            summary=sql.Literal(QUEUED_SUMMARY),
            requeue=sql.SQL(_REQUEUE),
        ),
    ]


def require_finished(name: str) -> sql.Composable:
    """The deploy-time gate: fails the migration running it unless every job of migration ``name`` finished."""
    return sql.SQL(_GATE).format(
        tag=sql.SQL(TAG),
        queue_name=sql.Literal(f"{SCHEMA}.{TABLE}"),
        queue=QUALIFIED,
        migration=sql.Literal(name),
        where=sql.Literal("require_finished"),
        none=sql.Literal(
            f"require_finished: migration {name} queued no background work (is the name right, and did it run?)"
        ),
    )


def read_jobs(cursor: Cursor, names: Sequence[str] | None = None) -> list[Job]:
    """Every job (or those of the named migrations), in queue order; none when the table does not exist yet."""
    query = sql.SQL("SELECT {} FROM {}").format(COLUMNS, QUALIFIED)
    if names is not None:
        query += sql.SQL(" WHERE migration = ANY(%s)")
    try:
        cursor.execute(query + sql.SQL(" ORDER BY id"), (list(names),) if names is not None else None)
    except psycopg2.errors.UndefinedTable:  # an autocommit cursor: nothing to roll back
        return []
    return [Job(*row) for row in cursor.fetchall()]


def read_job(cursor: Cursor, job_id: int, *, lock: bool = False) -> Job | None:
    """One job by id; ``lock`` takes its row lock (FOR UPDATE SKIP LOCKED: None when another runner holds it)."""
    query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(COLUMNS, QUALIFIED)
    if lock:
        query += sql.SQL(" FOR UPDATE SKIP LOCKED")
    cursor.execute(query, (job_id,))
    row = cursor.fetchone()
    return Job(*row) if row else None


def update(cursor: Cursor, job_id: int, **values: object) -> None:
    """Write the given columns of one job (and its updated_at)."""
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(column)) for column in values)
    cursor.execute(
        sql.SQL("UPDATE {} SET {}, updated_at = pg_catalog.now() WHERE id = %s").format(QUALIFIED, assignments),
        [*values.values(), job_id],
    )


def jobs_named(cursor: Cursor, name: str) -> list[Job]:
    """The jobs an operator means by ``name``: a migration's (all of them) or one ``migration#ordinal``."""
    migration, _, ordinal = name.partition("#")
    jobs = [job for job in read_jobs(cursor, [migration]) if not ordinal or str(job.ordinal) == ordinal]
    if not jobs:
        known = sorted({job.name for job in read_jobs(cursor)})
        listed = ", ".join(known[:10]) or "none"
        raise MigrationError(f"background: no background work named {name!r} (known: {listed})", migration=migration)
    return jobs


class _AsTextLiteral(sql.Composable):
    """SQL text as a string literal, rendered when executed (the DO block EXECUTEs it, the queue stores it)."""

    def as_string(self, context: object) -> str:
        return sql.Literal(self._wrapped.as_string(context)).as_string(context)


def _refuse_tag(texts: Sequence[str], description: str) -> None:
    for text in texts:
        if TAG in text:
            raise ValueError(f"{description}: an expression holds {TAG}, which the queue's SQL uses as its quote")
