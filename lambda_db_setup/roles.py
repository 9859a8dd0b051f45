"""The declared application roles and login users, ensured after migrating: what the other Lambdas connect as.

Each declared group (`rolespec.AppGroup`) is a NOLOGIN role holding CONNECT, and on each of its schemas the
privileges of its level, on every table and sequence now and, by default privileges, on those the admin
creates later. Each login user is a member of one group and gets its password from its own secret.
Everything runs in one transaction; attributes, memberships and passwords change only where they differ, so
a rerun changes nothing, and a rotated password is applied on the next run. Passwords travel as verifiers
made client-side, never as plaintext SQL that a statement log could keep.

Every role the run manages carries a mark (`rolemarks`) saying, per database, what it was declared as.
With it the run takes back what a group no longer declares (a lower level, a schema dropped) and retires
a group or user dropped from the declaration: a group loses its privileges here, a user its memberships
and, unless another database still declares it, LOGIN. Roles are kept: they may own objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extensions import encrypt_password

from . import passwords, rolemarks, tracking
from .credentials import UserLogin
from .errors import RolesError, pg_message
from .lock import LOCK_ID
from .rolemarks import Marks
from .rolespec import DDL, READ, WRITE, AppGroup

# Serialises concurrent runs: two GRANTs on one catalog row at once fail with "tuple concurrently updated".
ROLES_LOCK_ID = LOCK_ID + 1


@dataclass(frozen=True)
class Level:
    """The privileges of one level on a schema, on its tables and on its sequences."""

    schema: tuple[str, ...]
    tables: tuple[str, ...]
    sequences: tuple[str, ...]

    def minus(self, other: Level) -> Level:
        """What this level grants beyond ``other``: what going from this one to ``other`` must revoke."""
        return Level(*(tuple(p for p in mine if p not in theirs) for mine, theirs in zip(self, other, strict=True)))

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter((self.schema, self.tables, self.sequences))


NOTHING = Level((), (), ())
LEVELS = {
    READ: Level(("USAGE",), ("SELECT",), ("SELECT",)),
    WRITE: Level(("USAGE",), ("SELECT", "INSERT", "UPDATE", "DELETE"), ("USAGE", "SELECT")),
    DDL: Level(("USAGE", "CREATE"), ("SELECT", "INSERT", "UPDATE", "DELETE"), ("USAGE", "SELECT")),
}


@dataclass(frozen=True)
class AppUser:
    """A login user (its login read from its secret) and the group role it is a member of."""

    login: UserLogin
    group: str


@dataclass(frozen=True)
class RolesReport:
    """What a run changed (no passwords in it), the objects (``schema.name``) it could not grant on, and the
    members of declared groups it does not manage (made by hand, or before marks existed): left as they are."""

    changes: list[str]
    not_granted: list[str]
    unmanaged: list[str]


def ensure_roles(
    conn: Connection,
    groups: Sequence[AppGroup],
    users: Sequence[AppUser],
    tracking_table: tracking.TrackingTable = tracking.DEFAULT,
) -> RolesReport:
    """Make roles, users and privileges what the declaration says, in one transaction; the migration history
    (``tracking_table``) is never granted."""
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ROLES_LOCK_ID,))
            report = _apply(cursor, conn, groups, users, _Objects(cursor, tracking_table))
            cursor.execute("COMMIT")
        except psycopg2.Error as error:
            cursor.execute("ROLLBACK")
            raise RolesError(f"application roles not applied: {pg_message(error)} (SQLSTATE {error.pgcode})") from None
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    return report


def undeclared_roles(conn: Connection) -> list[str]:
    """Roles still marked as managed for this database: with nothing declared, the run only reports them."""
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        database = cursor.fetchone()[0]
        return sorted(name for name, entries in rolemarks.read(cursor).entries.items() if database in entries)


def _apply(
    cursor: Cursor, conn: Connection, groups: Sequence[AppGroup], users: Sequence[AppUser], objects: _Objects
) -> RolesReport:
    cursor.execute("SELECT current_database(), current_user")
    database, admin = cursor.fetchone()
    _refuse_admin(admin, [group.name for group in groups] + [user.login.username for user in users])
    _require_schemas(cursor, groups, database)
    marks = rolemarks.read(cursor)
    managed = {group.name for group in groups} | marks.names(database, rolemarks.GROUP)
    changes: list[str] = []
    for group in groups:
        changes += _ensure_role(cursor, group.name, login=False)
        changes += _take_back(cursor, objects, group, marks.entry(group.name, database))
        _grant(cursor, objects, group, database)
    can_read_verifiers = _can_read_verifiers(cursor)
    for user in users:
        changes += _ensure_role(cursor, user.login.username, login=True)
        changes += _ensure_membership(cursor, user, managed - marks.groups_elsewhere(user.login.username, database))
        changes += _ensure_password(cursor, conn, user.login, can_read_verifiers)
    declared = {group.name for group in groups} | {user.login.username for user in users}
    changes += _retire(cursor, objects, marks, database, declared, managed)
    rolemarks.write(cursor, marks, database, groups, [(user.login.username, user.group) for user in users])
    unmanaged = _members(cursor, {group.name for group in groups}) - declared - set(marks.entries)
    return RolesReport(changes=changes, not_granted=objects.not_granted, unmanaged=sorted(unmanaged))


def _refuse_admin(admin: str, names: list[str]) -> None:
    """A declared role named as the admin would take the admin's password from an app secret, or lose LOGIN."""
    if admin in names:
        raise RolesError(f"application roles not applied: {admin!r} is the admin user running them; declare another")


def _require_schemas(cursor: Cursor, groups: Sequence[AppGroup], database: str) -> None:
    """Schemas are the migrations' to create; a group naming one that does not exist fails, naming both."""
    wanted = sorted({schema for group in groups for schema in group.schemas})
    cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (wanted,))
    present = {row[0] for row in cursor.fetchall()}
    for group in groups:
        for schema in group.schemas:
            if schema not in present:
                raise RolesError(
                    f"application roles not applied: group {group.name!r} names schema {schema!r}, which does not"
                    f" exist in database {database!r}: create it in a migration"
                )


class _Objects:
    """The tables and sequences of each schema the admin can grant on, looked up once per run."""

    def __init__(self, cursor: Cursor, history: tracking.TrackingTable) -> None:
        self._cursor = cursor
        self.history = history
        self._by_schema: dict[str, tuple[list[str], list[str]]] = {}
        self.not_granted: list[str] = []
        self.history_grantable = False  # the migration history table exists and the admin can grant on it

    def of(self, schema: str) -> tuple[list[str], list[str]]:
        """(tables and views, sequences) of ``schema``, the migration history left out."""
        if schema not in self._by_schema:
            tables, sequences, not_granted = _grantable_objects(self._cursor, schema)
            if schema == self.history.schema and self.history.table in tables:
                tables.remove(self.history.table)  # the application may not rewrite the migration history
                self.history_grantable = True
            self._by_schema[schema] = (tables, sequences)
            self.not_granted += [f"{schema}.{name}" for name in not_granted]
        return self._by_schema[schema]


def _grantable_objects(cursor: Cursor, schema: str) -> tuple[list[str], list[str], list[str]]:
    """Tables (and views) and sequences of ``schema`` the current user can grant on, and those it cannot.

    Granted one by one rather than ``ON ALL TABLES IN SCHEMA``: that form fails on the first object the
    admin neither owns nor holds with grant option (on RDS the admin is no superuser, so every table a
    ``ddl`` user creates is one), and would fail every later deploy.
    """
    cursor.execute(
        """
        SELECT c.relname, c.relkind = 'S',
               CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE WITH GRANT OPTION')
                    ELSE has_table_privilege(c.oid, 'SELECT WITH GRANT OPTION') END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
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


def _grant(cursor: Cursor, objects: _Objects, group: AppGroup, database: str) -> None:
    """Grant the group's level on each of its schemas (a GRANT already held changes nothing), in one round trip."""
    role = sql.Identifier(group.name)
    statements = [sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)]
    for schema in group.schemas:
        statements += _privilege_statements(objects, schema, LEVELS[group.privilege], role, grant=True)
    if objects.history.schema in group.schemas and objects.history_grantable:  # a JavaScript-era grant taken back
        statements.append(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(objects.history.identifier, role))
    cursor.execute(sql.SQL("; ").join(statements))


def _privilege_statements(
    objects: _Objects, schema: str, level: Level, role: sql.Identifier, *, grant: bool
) -> list[sql.Composable]:
    """GRANT (or REVOKE) ``level`` on ``schema``, its grantable objects and the admin's default privileges."""
    namespace = sql.Identifier(schema)
    verb, preposition = (sql.SQL("GRANT"), sql.SQL("TO")) if grant else (sql.SQL("REVOKE"), sql.SQL("FROM"))
    tables, sequences = objects.of(schema)
    statements: list[sql.Composable] = []
    if level.schema:
        statements.append(
            sql.SQL("{} {} ON SCHEMA {} {} {}").format(verb, _words(level.schema), namespace, preposition, role)
        )
    for words, kind, names in ((level.tables, "TABLE", tables), (level.sequences, "SEQUENCE", sequences)):
        if not words:
            continue
        default = sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} {} {} ON {}S {} {}")
        statements.append(default.format(namespace, verb, _words(words), sql.SQL(kind), preposition, role))
        if names:
            listed = sql.SQL(", ").join(sql.Identifier(schema, name) for name in names)
            statements.append(
                sql.SQL("{} {} ON {} {} {} {}").format(verb, _words(words), sql.SQL(kind), listed, preposition, role)
            )
    return statements


def _words(privileges: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(privilege) for privilege in privileges)  # from LEVELS only, never input


def _take_back(cursor: Cursor, objects: _Objects, group: AppGroup, previous: dict | None) -> list[str]:
    """Revoke what the group's previous declaration granted and this one does not (a level down, a schema gone)."""
    if not previous or previous.get("kind") != rolemarks.GROUP or previous.get("privilege") not in LEVELS:
        return []  # never declared here (or before marks existed): nothing known to take back
    role = sql.Identifier(group.name)
    cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(previous.get("schemas", [])),))
    existing = sorted(row[0] for row in cursor.fetchall())
    statements: list[sql.Composable] = []
    changes = []
    for schema in existing:
        now = LEVELS[group.privilege] if schema in group.schemas else NOTHING
        excess = LEVELS[previous["privilege"]].minus(now)
        if any(excess):
            statements += _privilege_statements(objects, schema, excess, role, grant=False)
            now_name = group.privilege if schema in group.schemas else "nothing"
            changes.append(f"revoked {previous['privilege']} of {group.name} on schema {schema} down to {now_name}")
    if statements:
        cursor.execute(sql.SQL("; ").join(statements))
    return changes


def _retire(
    cursor: Cursor, objects: _Objects, marks: Marks, database: str, declared: set[str], managed: set[str]
) -> list[str]:
    """Groups and users marked for this database but declared no more: privileges, memberships, LOGIN taken."""
    changes = []
    retiring = sorted(marks.for_database(database), key=lambda item: (item[1].get("kind") != rolemarks.GROUP, item[0]))
    for name, entry in retiring:
        if name in declared:
            continue
        if entry.get("kind") == rolemarks.GROUP:
            stand_in = AppGroup(name, READ, ())  # declared with no schemas: everything it had is taken back
            _take_back(cursor, objects, stand_in, entry)
            cursor.execute(
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(sql.Identifier(database), sql.Identifier(name))
            )
            changes.append(f"retired group {name}: its privileges in this database revoked; the role is kept")
        else:
            kept = marks.groups_elsewhere(name, database)
            changes += _retire_user(cursor, name, managed - kept, marks.declared_elsewhere(name, database))
    return changes


def _retire_user(cursor: Cursor, name: str, groups: set[str], elsewhere: bool) -> list[str]:
    """Out of ``groups``; NOLOGIN unless another database still declares it (LOGIN is server-wide)."""
    current = _memberships(cursor, name, groups)
    done = [f"revoked {group}" for group in current]
    for group in current:
        cursor.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(name)))
    cursor.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (name,))
    can_login = cursor.fetchone()[0]
    if elsewhere:
        done.append("LOGIN kept, as another database declares it")
    elif can_login:
        cursor.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))
        done.append("made NOLOGIN")
    return [f"retired user {name}: {', '.join(done) or 'nothing left to revoke'}; the role is kept"]


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


def _members(cursor: Cursor, groups: set[str]) -> set[str]:
    """Every direct member of ``groups``."""
    cursor.execute(
        "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = ANY(%s)",
        (sorted(groups),),
    )
    return {row[0] for row in cursor.fetchall()}


def _memberships(cursor: Cursor, user: str, groups: set[str]) -> list[str]:
    """The roles among ``groups`` that ``user`` is a direct member of."""
    cursor.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s AND g.rolname = ANY(%s) ORDER BY 1",
        (user, sorted(groups)),
    )
    return [row[0] for row in cursor.fetchall()]


def _ensure_membership(cursor: Cursor, user: AppUser, managed: set[str]) -> list[str]:
    """Member of its group, and of no other managed group (a user moved to another group leaves the old one)."""
    name = user.login.username
    current = _memberships(cursor, name, managed | {user.group})
    changes = []
    if user.group not in current:
        cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(user.group), sql.Identifier(name)))
        changes.append(f"granted {user.group} to {name}")
    for group in current:
        if group != user.group:
            cursor.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(name)))
            changes.append(f"revoked {group} from {name}")
    return changes


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
