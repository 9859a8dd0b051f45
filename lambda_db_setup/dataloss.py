"""The guard in front of `down`: a revert that drops tables still holding rows needs an explicit force."""

from __future__ import annotations

from psycopg2 import sql

from .builder import MigrationBuilder
from .discovery import Migration
from .errors import DataLossError
from .session import Session
from .sqltext import dropped_tables

ROW_COUNT_CAP = 1_000_000  # counting stops here: "over 1,000,000 rows" is enough to refuse


def refuse_data_loss(session: Session, migration: Migration, builder: MigrationBuilder) -> None:
    """Raise `DataLossError` naming each table ``builder``'s SQL drops that has rows, and how many."""
    losses = [loss for statement in builder.statements for loss in _losses(session, session.text(statement))]
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
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(%s)",
            (table,),
        )
        found = cursor.fetchone()
        if found is None:
            continue
        cursor.execute(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS sample").format(sql.Identifier(*found)),
            (ROW_COUNT_CAP + 1,),
        )
        (rows,) = cursor.fetchone()
        if rows:
            amount = f"over {ROW_COUNT_CAP:,}" if rows > ROW_COUNT_CAP else f"{rows:,}"
            losses.append(f"{found[0]}.{found[1]} ({amount} row{'' if rows == 1 else 's'})")
    return losses
