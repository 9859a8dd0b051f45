"""The guard in front of `down`: a revert that drops or empties tables still holding rows needs an explicit force.

Two checks. Before any down runs, the DROP TABLE statements its SQL text names are counted (so a `down` of
several refuses before reverting any). And inside each transactional down, just before COMMIT and in the
same round trip, `Guard` checks what the transaction actually did: every table that had rows when the
command began must still exist and still have a row, whatever SQL (DROP SCHEMA … CASCADE, a DO block,
TRUNCATE, DELETE) got there. A down without a transaction cannot be rolled back, so only the text check
applies to it. ``up`` pays for neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from .discovery import Migration
from .errors import DataLossError
from .prepare import Prepared
from .session import Session
from .sqltext import dropped_tables

ROW_COUNT_CAP = 1_000_000  # counting stops here: "over 1,000,000 rows" is enough to refuse
DATA_LOSS = "PGM01"  # the SQLSTATE the guard raises, so the executor can tell it from a migration's error
# Tables the session can read that could hold rows (a table never written has no pages), but the tracking table.
CANDIDATES = r"""
    SELECT c.oid, n.nspname, c.relname
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%%'
      AND NOT (n.nspname = %(tracking_schema)s AND c.relname = %(tracking_table)s)
      AND pg_catalog.pg_relation_size(c.oid) > 0 AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
"""
GUARD = """DO $guard$ DECLARE lost text[] := '{}'; t oid; has boolean; BEGIN
FOREACH t IN ARRAY ARRAY[{oids}]::oid[] LOOP
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = t) THEN lost := lost || ('drop ' || t);
  ELSE
    EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s)', t::regclass) INTO has;
    IF NOT has THEN lost := lost || ('empty ' || t); END IF;
  END IF;
END LOOP;
IF pg_catalog.cardinality(lost) > 0 THEN
  RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = pg_catalog.array_to_string(lost, ',');
END IF; END $guard$"""


@dataclass(frozen=True)
class Guard:
    """The tables (oid: (schema, name)) that held rows when the command began; checked before each down commits."""

    tables: dict[int, tuple[str, str]]

    @classmethod
    def take(cls, session: Session) -> Guard | None:
        """Snapshot the tables with rows (two round trips); None when there are none: nothing to lose."""
        cursor = session.cursor
        table = session.options.tracking
        cursor.execute(CANDIDATES, {"tracking_schema": table.schema, "tracking_table": table.table})
        candidates = {oid: (schema, table) for oid, schema, table in cursor.fetchall()}
        if not candidates:
            return None
        cursor.execute(
            sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {} WHERE EXISTS (SELECT 1 FROM {})").format(sql.Literal(oid), sql.Identifier(*name))
                for oid, name in candidates.items()
            )
        )
        tables = {oid: candidates[oid] for (oid,) in cursor.fetchall()}
        return cls(tables) if tables else None

    @property
    def sql(self) -> str:
        """A DO block raising `DATA_LOSS` naming every snapshot table the transaction dropped or emptied."""
        return GUARD.replace("{oids}", ", ".join(map(str, self.tables))).replace("{code}", DATA_LOSS)

    def refusal(self, session: Session, migration: Migration, error: psycopg2.Error) -> DataLossError:
        """The error for a guard that fired; call after the rollback, which brought the rows back."""
        lost = [part.split(" ") for part in (error.diag.message_primary or "").split(",") if part]
        losses = [f"{verb} {_described(session, *self.tables[int(oid)])}" for verb, oid in lost]
        anyway = "drop them anyway" if all(verb == "drop" for verb, _ in lost) else "lose those rows anyway"
        return DataLossError(
            f"{migration.file_name}: down would {', '.join(losses)}; pass --force to {anyway}",
            migration=migration.name,
        )


def refuse_data_loss(session: Session, migration: Migration, prepared: Prepared) -> None:
    """Raise `DataLossError` naming each table ``prepared``'s SQL drops that has rows, and how many."""
    losses = [loss for statement in prepared.statements for loss in _losses(session, statement)]
    if losses:
        raise DataLossError(
            f"{migration.file_name}: down would drop {', '.join(losses)}; pass --force to drop them anyway",
            migration=migration.name,
        )


def _losses(session: Session, text: str) -> list[str]:
    cursor = session.cursor
    losses = []
    for table in dropped_tables(text):
        cursor.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = pg_catalog.to_regclass(%s)",
            (table,),
        )
        found = cursor.fetchone()
        if found is not None and (described := _described(session, *found, only_with_rows=True)):
            losses.append(described)
    return losses


def _described(session: Session, schema: str, table: str, *, only_with_rows: bool = False) -> str:
    """``schema.table (N rows)``, counting up to the cap; "" for an empty table when ``only_with_rows``."""
    session.cursor.execute(
        sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS sample").format(sql.Identifier(schema, table)),
        (ROW_COUNT_CAP + 1,),
    )
    (rows,) = session.cursor.fetchone()
    if not rows and only_with_rows:
        return ""
    amount = f"over {ROW_COUNT_CAP:,}" if rows > ROW_COUNT_CAP else f"{rows:,}"
    return f"{schema}.{table} ({amount} row{'' if rows == 1 else 's'})"
