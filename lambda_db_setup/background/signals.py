"""When the database says stop: the health signals a runner reads before each batch.

GitLab's batched migrations stop on the same kind of signal. A backfill writes a dead row for every row it
updates; a transaction left open holds back the horizon below which vacuum may remove them, a vacuum already
working on the table would be racing the backfill, and replicas have to replay every batch. Each signal only
delays the next batch; it never fails the job.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

# One round trip. Other databases' sessions do not hold back this database's horizon, so only this one's count.
_READ = """
SELECT
  (SELECT max(EXTRACT(epoch FROM pg_catalog.now() - xact_start)) FROM pg_catalog.pg_stat_activity
    WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
      AND backend_type = 'client backend' AND xact_start IS NOT NULL),
  EXISTS (SELECT FROM pg_catalog.pg_stat_progress_vacuum WHERE relid = pg_catalog.to_regclass({table})),
  (SELECT max(EXTRACT(epoch FROM replay_lag)) FROM pg_catalog.pg_stat_replication)
"""


@dataclass(frozen=True)
class Thresholds:
    """Beyond these the runner waits: the oldest other open transaction, and the replicas' replay lag."""

    max_transaction_seconds: float = 600.0
    max_replication_lag_seconds: float = 60.0


def throttle_reason(cursor: Cursor, schema: str, table: str, thresholds: Thresholds) -> str | None:
    """Why the next batch on ``schema.table`` should wait, or None when the database is fine with it."""
    qualified = sql.Literal(sql.Identifier(schema, table).as_string(cursor))
    cursor.execute(sql.SQL(_READ).format(table=qualified))
    oldest, vacuuming, lag = cursor.fetchone()
    if oldest is not None and float(oldest) > thresholds.max_transaction_seconds:
        limit = thresholds.max_transaction_seconds
        return f"a transaction has been open for {float(oldest):.0f} s (more than {limit:g})"
    if vacuuming:
        return f"vacuum is running on {table}"
    if lag is not None and float(lag) > thresholds.max_replication_lag_seconds:
        return f"a replica is {float(lag):.0f} s behind (more than {thresholds.max_replication_lag_seconds:g})"
    return None
