"""The application's roles and login users, ensured after migrating: what the other Lambdas connect as.

Two NOLOGIN group roles hold the privileges: ``readwrite`` (CONNECT, USAGE on the schema, DML on every
table and sequence now and by default later) and ``tablecreator`` (the same plus CREATE on the schema).
Each login user is a member of one group and gets its password from its own secret. Everything runs in
one transaction; attributes, memberships and passwords are changed only where they differ, so a rerun
changes nothing, and a rotated password is applied on the next run. Passwords travel as verifiers made
client-side, never as plaintext SQL that a statement log could keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extensions import encrypt_password

from . import passwords, tracking
from .credentials import UserLogin
from .errors import RolesError, pg_message
from .lock import LOCK_ID

READWRITE = "readwrite"
TABLECREATOR = "tablecreator"
SCHEMA = "public"
TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
SEQUENCE_PRIVILEGES = sql.SQL("USAGE, SELECT")
# Serialises concurrent runs: two GRANTs on one catalog row at once fail with "tuple concurrently updated".
ROLES_LOCK_ID = LOCK_ID + 1


@dataclass(frozen=True)
class GroupRole:
    """A NOLOGIN role holding privileges; ``can_create`` adds CREATE on the schema."""

    name: str
    can_create: bool


@dataclass(frozen=True)
class AppUser:
    """A login user and the group role it is a member of."""

    login: UserLogin
    group: str


GROUPS = (GroupRole(READWRITE, can_create=False), GroupRole(TABLECREATOR, can_create=True))


@dataclass(frozen=True)
class RolesReport:
    """What a run changed (no passwords in it), and the objects it could not grant on."""

    changes: list[str]
    not_granted: list[str]


def ensure_roles(
    conn: Connection,
    users: Sequence[AppUser],
    groups: Sequence[GroupRole] = GROUPS,
    schema: str = SCHEMA,
    tracking_table: tracking.TrackingTable = tracking.DEFAULT,
) -> RolesReport:
    """Make roles, users and privileges what they should be, in one transaction."""
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ROLES_LOCK_ID,))
            changes: list[str] = []
            for group in groups:
                changes += _ensure_role(cursor, group.name, login=False)
            not_granted = _grant_group_privileges(cursor, groups, schema, tracking_table)
            can_read_verifiers = _can_read_verifiers(cursor)
            for user in users:
                changes += _ensure_role(cursor, user.login.username, login=True)
                changes += _ensure_membership(cursor, user)
                changes += _ensure_password(cursor, conn, user.login, can_read_verifiers)
            cursor.execute("COMMIT")
        except psycopg2.Error as error:
            cursor.execute("ROLLBACK")
            raise RolesError(f"application roles not applied: {pg_message(error)} (SQLSTATE {error.pgcode})") from None
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    return RolesReport(changes=changes, not_granted=not_granted)


def _ensure_role(cursor: Cursor, name: str, *, login: bool) -> list[str]:
    """Create the role if missing (tolerating a concurrent creator) and fix its LOGIN attribute."""
    cursor.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (name,))
    row = cursor.fetchone()
    role = sql.Identifier(name)
    login_keyword = sql.SQL("LOGIN" if login else "NOLOGIN")
    if row is None:
        cursor.execute("SAVEPOINT create_role")
        try:
            cursor.execute(sql.SQL("CREATE ROLE {} {}").format(role, login_keyword))
        except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
            cursor.execute("ROLLBACK TO SAVEPOINT create_role")  # created meanwhile by another session
        else:
            cursor.execute("RELEASE SAVEPOINT create_role")
            return [f"created role {name} ({login_keyword.string})"]
        cursor.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (name,))
        row = cursor.fetchone()
    if row[0] != login:
        cursor.execute(sql.SQL("ALTER ROLE {} {}").format(role, login_keyword))
        return [f"made role {name} {login_keyword.string}"]
    return []


def _grant_group_privileges(
    cursor: Cursor, groups: Sequence[GroupRole], schema: str, tracking_table: tracking.TrackingTable
) -> list[str]:
    """Grant the groups' privileges (a GRANT already held changes nothing); return what could not be granted.

    Tables and sequences are granted one by one rather than ``ON ALL TABLES IN SCHEMA``: that form fails
    on the first object the admin neither owns nor holds with grant option (on RDS the admin is no
    superuser, so every table ``app_tc`` creates is one), and would fail every later deploy.
    """
    everyone = sql.SQL(", ").join(sql.Identifier(group.name) for group in groups)
    creators = [sql.Identifier(group.name) for group in groups if group.can_create]
    namespace = sql.Identifier(schema)
    tables, sequences, not_granted = _grantable_objects(cursor, schema)
    cursor.execute("SELECT current_database()")
    statements = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(cursor.fetchone()[0]), everyone),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(namespace, everyone),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
            namespace, TABLE_PRIVILEGES, everyone
        ),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON SEQUENCES TO {}").format(
            namespace, SEQUENCE_PRIVILEGES, everyone
        ),
    ]
    if creators:
        statements.append(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(namespace, sql.SQL(", ").join(creators)))
    if tables:
        statements.append(
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(TABLE_PRIVILEGES, _names(schema, tables), everyone)
        )
    if sequences:
        statements.append(
            sql.SQL("GRANT {} ON SEQUENCE {} TO {}").format(SEQUENCE_PRIVILEGES, _names(schema, sequences), everyone)
        )
    if tracking_table.table in tables and schema == tracking_table.schema:
        # the application may not rewrite the migration history (a JavaScript-era grant is taken back too)
        statements.append(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(tracking_table.identifier, everyone))
    for statement in statements:
        cursor.execute(statement)
    return not_granted


def _grantable_objects(cursor: Cursor, schema: str) -> tuple[list[str], list[str], list[str]]:
    """Tables (and views) and sequences of ``schema`` the current user can grant on, and those it cannot."""
    cursor.execute(
        """
        SELECT c.relname, c.relkind = 'S',
               CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE WITH GRANT OPTION')
                    ELSE has_table_privilege(c.oid, 'SELECT WITH GRANT OPTION') END
        FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        ORDER BY c.relname
        """,
        (schema,),
    )
    tables, sequences, not_granted = [], [], []
    for name, is_sequence, grantable in cursor.fetchall():
        if not grantable:
            not_granted.append(name)
        else:
            (sequences if is_sequence else tables).append(name)
    return tables, sequences, not_granted


def _names(schema: str, names: list[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(schema, name) for name in names)


def _ensure_membership(cursor: Cursor, user: AppUser) -> list[str]:
    cursor.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
        " WHERE g.rolname = %s AND u.rolname = %s",
        (user.group, user.login.username),
    )
    if cursor.fetchone():
        return []
    cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(user.group), sql.Identifier(user.login.username)))
    return [f"granted {user.group} to {user.login.username}"]


def _can_read_verifiers(cursor: Cursor) -> bool:
    """Superusers can read ``pg_authid``; RDS's admin cannot, so there every run sets the passwords."""
    cursor.execute("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')")
    return cursor.fetchone()[0]


def _ensure_password(cursor: Cursor, conn: Connection, login: UserLogin, can_read_verifiers: bool) -> list[str]:
    if can_read_verifiers:
        cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (login.username,))
        if passwords.matches(cursor.fetchone()[0], login.username, login.password):
            return []
    # libpq hashes with the server's password_encryption (SCRAM-SHA-256 or MD5), so no plaintext is sent
    verifier = encrypt_password(login.password, login.username, conn)
    cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(login.username), sql.Literal(verifier)))
    if can_read_verifiers:
        return [f"set password of {login.username}"]
    return [f"set password of {login.username} (current one not readable without SELECT on pg_authid)"]
