"""A migration's statements as the server will receive them, checked before anything is sent.

A transactional migration travels in one query string with the engine's own statements after it (the row,
the lock check, COMMIT). Text that ends inside a quote, a comment or a BEGIN ATOMIC body would swallow them,
and a NUL would cut the query short: so each statement is rendered once, here, and refused with its file
and place unless it is whole, encodable and something a migration can run.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2.extensions import connection as Connection
from psycopg2.extensions import encodings
from psycopg2.sql import Composable

from .discovery import Direction, Migration
from .errors import IrreversibleMigrationError, MigrationFileError
from .sqltext import (
    copies_with_client,
    discards_session,
    excerpt,
    is_transaction_control,
    read_statements,
    where,
)

EXCERPT = 80
NO_TRANSACTION_HINT = "call pgm.no_transaction() / add '-- pgm:no-transaction'"


@dataclass(frozen=True)
class Prepared:
    """A built migration: its statements as the SQL text the server receives, and whether it runs in a
    transaction."""

    statements: tuple[str, ...]
    use_transaction: bool = True


def prepare(migration: Migration, direction: Direction, conn: Connection) -> Prepared:
    """Build the migration's ``direction`` and check every statement; raise `MigrationFileError` naming the
    file and statement for the first that cannot be sent."""
    try:
        builder = migration.build(direction)
    except IrreversibleMigrationError as error:
        raise IrreversibleMigrationError(
            f"{error}; down refused, nothing was changed", migration=migration.name
        ) from error
    texts = tuple(_render(migration, number, statement, conn) for number, statement in enumerate(builder.statements, 1))
    for number, text in enumerate(texts, 1):
        _check(migration, f"statement {number}", text, conn, in_transaction=builder.use_transaction)
    return Prepared(texts, builder.use_transaction)


def _render(migration: Migration, number: int, statement: Composable, conn: Connection) -> str:
    """A builder statement as text; a value psycopg2 cannot quote (a NUL, a character the connection's
    encoding lacks) names the file."""
    try:
        return statement.as_string(conn)
    except (ValueError, UnicodeError) as error:
        raise MigrationFileError(
            f"{migration.file_name}: statement {number}: a value cannot be sent: {error}", migration=migration.name
        ) from None


def _check(migration: Migration, which: str, text: str, conn: Connection, *, in_transaction: bool) -> None:
    """Refuse a statement that cannot be sent whole, cannot be encoded, or would break the engine's run."""

    def refuse(why: str) -> MigrationFileError:
        return MigrationFileError(
            f"{migration.file_name}: {which} ({excerpt(text, EXCERPT)}): {why}", migration=migration.name
        )

    statements, problem = read_statements(text)
    if problem:
        raise refuse(f"{problem.where(text)}: {problem.what}")
    try:
        text.encode(encodings.get(conn.encoding, "utf_8"))
    except UnicodeEncodeError as error:
        encoding = conn.info.parameter_status("client_encoding")
        raise refuse(
            f"{where(text, error.start)}: {text[error.start]!r} cannot be sent over a connection whose encoding is"
            f" {encoding}: write it as an escape (E'\\u....') or use a UTF8 database"
        ) from None
    for part in statements:
        if copies_with_client(part):
            raise refuse(
                "COPY FROM STDIN / TO STDOUT moves rows to or from the client, which a migration cannot do:"
                " use INSERT ... SELECT, or COPY from a server file"
            )
        if discards_session(part):
            raise refuse("DISCARD ALL would release the migration lock the run holds: remove it")
        if in_transaction and is_transaction_control(part):
            raise MigrationFileError(
                f"{migration.file_name}: ends or opens a transaction itself ({excerpt(part, EXCERPT)}); the engine"
                f" runs each migration in its own transaction: remove it, or {NO_TRANSACTION_HINT}",
                migration=migration.name,
            )
