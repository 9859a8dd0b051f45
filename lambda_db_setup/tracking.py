"""The ``pgmigrations`` table, exactly as node-pg-migrate creates and reads it, plus a nullable checksum.

node-pg-migrate inserts ``(name, run_on)`` and reads ``name ORDER BY run_on, id``; the extra ``checksum``
column is nullable so both tools can keep sharing the table. Rows it wrote have no checksum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from .errors import TrackingTableError

SCHEMA = "public"
TABLE = "pgmigrations"
QUALIFIED = sql.Identifier(SCHEMA, TABLE)
REQUIRED_COLUMNS = ("id", "name", "run_on")

CREATE = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL,"
    " run_on timestamp NOT NULL, checksum varchar(64))"
).format(QUALIFIED)
ADD_CHECKSUM = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS checksum varchar(64)").format(QUALIFIED)
SELECT_APPLIED = sql.SQL("SELECT id, name, run_on, checksum FROM {} ORDER BY run_on, id").format(QUALIFIED)
SELECT_APPLIED_WITHOUT_CHECKSUM = sql.SQL("SELECT id, name, run_on, NULL FROM {} ORDER BY run_on, id").format(QUALIFIED)
INSERT = sql.SQL("INSERT INTO {table} (name, run_on, checksum) VALUES ({name}, pg_catalog.now(), {checksum})")
DELETE = sql.SQL("DELETE FROM {table} WHERE name = {name}")
SET_CHECKSUM = sql.SQL("UPDATE {} SET checksum = %s WHERE name = %s").format(QUALIFIED)


@dataclass(frozen=True)
class AppliedRow:
    """One row of ``pgmigrations``."""

    id: int
    name: str
    run_on: datetime
    checksum: str | None


def read_applied(cursor: Cursor, *, upgrade: bool) -> list[AppliedRow] | None:
    """Applied migrations in node-pg-migrate's order, or None when the table does not exist yet.

    One round trip in the common case: the SELECT itself proves the table and its columns exist. A table
    written only by node-pg-migrate has no checksum column: with ``upgrade`` (under the migration lock) it
    gets it; read-only callers (status, dry run, check) just read the rows without checksums.
    """
    try:
        cursor.execute(SELECT_APPLIED)
    except psycopg2.errors.UndefinedTable:
        return None
    except psycopg2.errors.UndefinedColumn:
        present = _columns(cursor)
        missing = [column for column in REQUIRED_COLUMNS if column not in present]
        if missing:
            raise TrackingTableError(
                f"table {SCHEMA}.{TABLE} has an unexpected shape: missing column(s) {', '.join(missing)}"
                f" (found: {', '.join(present) or 'none'}); expected node-pg-migrate's id, name, run_on"
            ) from None
        if upgrade:
            cursor.execute(ADD_CHECKSUM)
            cursor.execute(SELECT_APPLIED)
        else:
            cursor.execute(SELECT_APPLIED_WITHOUT_CHECKSUM)
    return [AppliedRow(*row) for row in cursor.fetchall()]


def ensure_table(cursor: Cursor) -> None:
    """Create the table if it is missing (idempotent, safe under the migration lock)."""
    cursor.execute(CREATE)


def inserted(name: str, checksum: str | None) -> sql.Composed:
    """The INSERT recording a migration, with its values as literals: it can join any batch of statements."""
    return INSERT.format(table=QUALIFIED, name=sql.Literal(name), checksum=sql.Literal(checksum))


def deleted(name: str) -> sql.Composed:
    """The DELETE removing a migration's row, with its name as a literal."""
    return DELETE.format(table=QUALIFIED, name=sql.Literal(name))


def record_all(cursor: Cursor, migrations: list[tuple[str, str | None]]) -> None:
    """Record ``(name, checksum)`` pairs as applied without running them, all in one transaction."""
    cursor.execute("BEGIN")
    try:
        for name, checksum in migrations:
            cursor.execute(inserted(name, checksum))
        cursor.execute("COMMIT")
    except BaseException:
        if not cursor.connection.closed:
            cursor.execute("ROLLBACK")
        raise


def set_checksum(cursor: Cursor, name: str, checksum: str) -> None:
    """Accept the file's current content as reviewed (``repair``)."""
    cursor.execute(SET_CHECKSUM, (checksum, name))


def _columns(cursor: Cursor) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        (SCHEMA, TABLE),
    )
    return [row[0] for row in cursor.fetchall()]
