"""The tracking table, exactly as node-pg-migrate creates and reads it, plus a nullable checksum.

node-pg-migrate inserts ``(name, run_on)`` and reads ``name ORDER BY run_on, id``; the extra ``checksum``
column is nullable so both tools can keep sharing the table. Rows it wrote have no checksum. Where the table
lives is a setting (`TrackingTable`), as node-pg-migrate's ``--migrations-schema`` and ``--migrations-table``;
every statement names it through ``sql.Identifier``, so any name PostgreSQL accepts works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from .errors import ConfigurationError, TrackingTableError

DEFAULT_SCHEMA = "public"
DEFAULT_TABLE = "pgmigrations"
REQUIRED_COLUMNS = ("id", "name", "run_on")


@dataclass(frozen=True)
class TrackingTable:
    """Where the history lives; ``str()`` is its name as valid SQL: node-pg-migrate's default bare, any other
    quoted (always right, a name like ``user`` included), so the SQL a message advises runs as printed."""

    schema: str = DEFAULT_SCHEMA
    table: str = DEFAULT_TABLE

    def __post_init__(self) -> None:
        # PostgreSQL reserves pg_* schema names; pg_temp would even work, and forget the history at every session end
        if self.schema.startswith("pg_"):
            raise ConfigurationError(
                f"migrations_schema {self.schema!r}: a PostgreSQL system schema (pg_*) cannot hold the tracking table"
            )

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def __str__(self) -> str:
        if (self.schema, self.table) == (DEFAULT_SCHEMA, DEFAULT_TABLE):
            return f"{DEFAULT_SCHEMA}.{DEFAULT_TABLE}"
        return ".".join('"' + name.replace('"', '""') + '"' for name in (self.schema, self.table))


DEFAULT = TrackingTable()  # node-pg-migrate's: public.pgmigrations


@dataclass(frozen=True)
class AppliedRow:
    """One row of the tracking table."""

    id: int
    name: str
    run_on: datetime
    checksum: str | None


def read_applied(cursor: Cursor, tracking: TrackingTable, *, upgrade: bool) -> list[AppliedRow] | None:
    """Applied migrations in node-pg-migrate's order, or None when the table (or its schema) does not exist yet.

    One round trip in the common case: the SELECT itself proves the table and its columns exist. A table
    written only by node-pg-migrate has no checksum column: with ``upgrade`` (under the migration lock) it
    gets it; read-only callers (status, dry run, check) just read the rows without checksums.
    """
    select = sql.SQL("SELECT id, name, run_on, {} FROM {} ORDER BY run_on, id")
    try:
        cursor.execute(select.format(sql.Identifier("checksum"), tracking.identifier))
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
        return None
    except psycopg2.errors.UndefinedColumn:
        present = _columns(cursor, tracking)
        missing = [column for column in REQUIRED_COLUMNS if column not in present]
        if missing:
            raise TrackingTableError(
                f"table {tracking} has an unexpected shape: missing column(s) {', '.join(missing)}"
                f" (found: {', '.join(present) or 'none'}); expected node-pg-migrate's id, name, run_on"
            ) from None
        if upgrade:
            add = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS checksum varchar(64)")
            cursor.execute(add.format(tracking.identifier))
            cursor.execute(select.format(sql.Identifier("checksum"), tracking.identifier))
        else:
            cursor.execute(select.format(sql.NULL, tracking.identifier))
    return [AppliedRow(*row) for row in cursor.fetchall()]


def ensure_table(cursor: Cursor, tracking: TrackingTable) -> None:
    """Create the table if it is missing, and its schema first if that is missing too (as node-pg-migrate's
    ``--create-schema``). Idempotent, under the migration lock. CREATE SCHEMA is sent only when the schema is
    absent: even with IF NOT EXISTS it needs the CREATE privilege on the database, which a runner may lack."""
    create = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL,"
        " run_on timestamp NOT NULL, checksum varchar(64))"
    ).format(tracking.identifier)
    try:
        cursor.execute(create)
    except psycopg2.errors.InvalidSchemaName:
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(tracking.schema)))
        cursor.execute(create)


def inserted(tracking: TrackingTable, name: str, checksum: str | None) -> sql.Composed:
    """The INSERT recording a migration, with its values as literals: it can join any batch of statements."""
    return sql.SQL("INSERT INTO {} (name, run_on, checksum) VALUES ({}, pg_catalog.now(), {})").format(
        tracking.identifier, sql.Literal(name), sql.Literal(checksum)
    )


def deleted(tracking: TrackingTable, name: str) -> sql.Composed:
    """The DELETE removing a migration's row, with its name as a literal."""
    return sql.SQL("DELETE FROM {} WHERE name = {}").format(tracking.identifier, sql.Literal(name))


def record_all(cursor: Cursor, tracking: TrackingTable, migrations: list[tuple[str, str | None]]) -> None:
    """Record ``(name, checksum)`` pairs as applied without running them, all in one transaction."""
    cursor.execute("BEGIN")
    try:
        for name, checksum in migrations:
            cursor.execute(inserted(tracking, name, checksum))
        cursor.execute("COMMIT")
    except BaseException:
        if not cursor.connection.closed:
            cursor.execute("ROLLBACK")
        raise


def set_checksum(cursor: Cursor, tracking: TrackingTable, name: str, checksum: str) -> None:
    """Accept the file's current content as reviewed (``repair``)."""
    cursor.execute(sql.SQL("UPDATE {} SET checksum = %s WHERE name = %s").format(tracking.identifier), (checksum, name))


def delete_rows(cursor: Cursor, tracking: TrackingTable, names: Sequence[str]) -> int:
    """Remove every row of ``names`` in one statement (``forget``); the number of rows removed."""
    cursor.execute(sql.SQL("DELETE FROM {} WHERE name = ANY(%s)").format(tracking.identifier), (list(names),))
    return cursor.rowcount


def _columns(cursor: Cursor, tracking: TrackingTable) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        (tracking.schema, tracking.table),
    )
    return [row[0] for row in cursor.fetchall()]
