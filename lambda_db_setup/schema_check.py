"""Does the live schema already match what the migrations would build? (The check behind `baseline`.)

The migrations' `up` SQL runs inside a transaction that is always rolled back, with a scratch schema
first on the ``search_path`` so that their unqualified tables land there; the scratch tables are then
compared with the same tables in ``public``: columns (order, type, default, nullability), constraints
and indexes. Migrations that must run outside a transaction cannot be rehearsed this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from . import tracking
from .discovery import Migration
from .errors import MigrationError, MigrationFailedError, SchemaMismatchError, pg_message
from .prepare import Prepared

SCRATCH_SCHEMA = "pgm_baseline_check"

SNAPSHOT = """
    SELECT c.relname, 'column',
           (row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text || ' ' || a.attname || ' '
           || format_type(a.atttypid, a.atttypmod) || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT c.relname, 'constraint', con.conname || ' ' || pg_get_constraintdef(con.oid)
    FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT tablename, 'index',
           indexname || ' ' || replace(indexdef, ' ON ' || quote_ident(%(schema)s) || '.', ' ON ')
    FROM pg_catalog.pg_indexes WHERE schemaname = %(schema)s AND tablename = ANY(%(tables)s)
"""


@dataclass(frozen=True)
class Comparison:
    """The tables the migrations build, and how ``public`` differs from them (empty: it matches)."""

    tables: list[str]
    absent: list[str]  # of ``tables``, those public does not have at all
    differences: list[str]


def compare(cursor: Cursor, migrations: Sequence[Migration], prepared: Sequence[Prepared]) -> Comparison:
    """Rehearse ``migrations`` (their ``up`` SQL, already built) in a rolled-back transaction and compare
    their tables with ``public``."""
    for migration, built in zip(migrations, prepared, strict=True):
        if not built.use_transaction:
            raise MigrationError(
                f"{migration.file_name} runs outside a transaction, so the schema check cannot rehearse it;"
                " use baseline --no-verify after checking the schema yourself",
                migration=migration.name,
            )
    cursor.execute("BEGIN")
    try:
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCRATCH_SCHEMA)))
        cursor.execute(sql.SQL("SET LOCAL search_path = {}, public").format(sql.Identifier(SCRATCH_SCHEMA)))
        for migration, built in zip(migrations, prepared, strict=True):
            for statement in built.statements:
                try:
                    cursor.execute(statement)
                except psycopg2.Error as error:
                    message = pg_message(error)
                    raise MigrationFailedError(
                        f"{migration.file_name}: fails when rehearsed for the schema check: {message}"
                        f" (SQLSTATE {error.pgcode})",
                        migration=migration.name,
                        sqlstate=error.pgcode,
                        pg_message=message,
                    ) from error
        cursor.execute(
            "SELECT relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
            (SCRATCH_SCHEMA,),
        )
        tables = [row[0] for row in cursor.fetchall()]
        expected = _snapshot(cursor, SCRATCH_SCHEMA, tables)
        cursor.execute("SET LOCAL search_path = public")
        actual = _snapshot(cursor, "public", tables)
    finally:
        cursor.execute("ROLLBACK")
    present = {item.split(" ", 1)[0] for item in actual}
    absent = [table for table in tables if table not in present]
    differences = [f"table {table} does not exist" for table in absent]
    differences += [f"expected {item}" for item in sorted(expected - actual) if item.split(" ", 1)[0] in present]
    differences += [f"found {item}" for item in sorted(actual - expected)]
    return Comparison(tables=tables, absent=absent, differences=differences)


def adoptable(
    cursor: Cursor,
    targets: Sequence[Migration],
    prepared: Sequence[Prepared],
    tracking_table: tracking.TrackingTable,
) -> list[Migration]:
    """What the original Lambda did for a schema built before tracking: the migrations to record, if it matches.

    An empty ``public`` (the tracking table aside) is a new database: nothing to rehearse. Otherwise it
    rehearses the leading migrations that run in a transaction; when none of their tables exist this is a new
    database too. When all exist exactly as they would build them, those are returned, to be recorded without running.
    Anything in between is refused: applying over an unknown schema is a guess.
    """
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = 'public'"
        " AND NOT (schemaname = %s AND tablename = %s))",
        (tracking_table.schema, tracking_table.table),
    )
    (has_tables,) = cursor.fetchone()
    leading = next((i for i, built in enumerate(prepared) if not built.use_transaction), len(targets))
    comparison = compare(cursor, targets[:leading], prepared[:leading]) if leading and has_tables else None
    if comparison is None or all(table in comparison.absent for table in comparison.tables):
        return []
    if comparison.differences:
        raise mismatch(
            "the database has no migration history but already has tables the migrations create, and its"
            f" schema does not match what {leading} migration(s)",
            comparison,
            " (record what it has with `baseline --to NAME`)",
        )
    return list(targets[:leading])


def mismatch(what: str, comparison: Comparison, advice: str = "") -> SchemaMismatchError:
    """The error for a schema that differs from the migrations' rehearsal, with the first differences."""
    shown = "; ".join(comparison.differences[:5])
    more = f" (and {len(comparison.differences) - 5} more)" if len(comparison.differences) > 5 else ""
    return SchemaMismatchError(f"{what} would build: {shown}{more}{advice}", differences=comparison.differences)


def _snapshot(cursor: Cursor, schema: str, tables: list[str]) -> set[str]:
    cursor.execute(SNAPSHOT, {"schema": schema, "tables": tables})
    return {f"{table} {kind} {detail}" for table, kind, detail in cursor.fetchall()}
