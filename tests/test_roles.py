"""Declared application roles and users: levels, schemas, idempotence, retirement, rotation, races, an RDS-like admin.

Roles are server-wide, so every test uses its own role names and drops them afterwards.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extras
import pytest
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

from lambda_db_setup import rolemarks
from lambda_db_setup.credentials import UserLogin
from lambda_db_setup.errors import RolesError
from lambda_db_setup.roles import AppUser, ensure_roles, undeclared_roles
from lambda_db_setup.rolespec import DDL, READ, WRITE, AppGroup
from tests.conftest import new_database
from tests.password_server import login, password_server_url


@dataclass
class Cast:
    """One test's group roles and users (unique names), with their passwords."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    groups: list[AppGroup] = field(default_factory=list)
    users: list[AppUser] = field(default_factory=list)

    def name(self, base: str) -> str:
        return f"{base}_{self.suffix}"

    def group(self, base: str, privilege: str, schemas: tuple[str, ...] = ("public",)) -> str:
        self.groups.append(AppGroup(self.name(base), privilege, schemas))
        return self.name(base)

    def user(self, base: str, group: str) -> str:
        self.users.append(AppUser(UserLogin(self.name(base), f"pw-{uuid.uuid4().hex}"), group))
        return self.name(base)

    def role_names(self) -> list[str]:
        return [group.name for group in self.groups] + [user.login.username for user in self.users]

    def with_password(self, username: str, password: str) -> list[AppUser]:
        return [
            AppUser(UserLogin(username, password), user.group) if user.login.username == username else user
            for user in self.users
        ]


def pair() -> Cast:
    """This repository's own pair: readwrite (write) and tablecreator (ddl), one user each."""
    cast = Cast()
    cast.user("app_rw", cast.group("readwrite", WRITE))
    cast.user("app_tc", cast.group("tablecreator", DDL))
    return cast


def drop_roles(conn: psycopg2.extensions.connection, names: list[str]) -> None:
    """Undo a test's roles: what they own or were granted in this database, then the roles themselves."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))
        for (name,) in cursor.fetchall():
            role = sql.Identifier(name)
            cursor.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
            cursor.execute(sql.SQL("DROP OWNED BY {}").format(role))
            cursor.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.fixture
def cast(conn) -> Iterator[Cast]:
    roles = pair()
    yield roles
    drop_roles(conn, roles.role_names())


@pytest.fixture
def custom(conn) -> Iterator[Cast]:
    """An empty cast the test fills; every role it ever declared is dropped afterwards."""
    roles = Cast()
    yield roles
    drop_roles(conn, roles.role_names())


def run(conn, cast: Cast, users: list[AppUser] | None = None, groups: list[AppGroup] | None = None):
    return ensure_roles(conn, cast.groups if groups is None else groups, cast.users if users is None else users)


def fetch(conn, query: str, *params: object) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def execute(conn, *statements: str) -> None:
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def as_user(database_url: str, user: str) -> psycopg2.extensions.connection:
    """A session as ``user`` (the session server trusts local logins; LOGIN is still required)."""
    dsn = parse_dsn(database_url)
    connection = psycopg2.connect(host=dsn["host"], dbname=dsn["dbname"], user=user)
    connection.autocommit = True
    return connection


def can(database_url: str, user: str, statement: str) -> bool:
    """Whether ``user`` may run ``statement`` (a permission error says no)."""
    with closing(as_user(database_url, user)) as session, session.cursor() as cursor:
        try:
            cursor.execute(statement)
        except psycopg2.errors.InsufficientPrivilege:
            return False
        return True


# -- the pair this repository declares --------------------------------------------------------------


def test_creates_groups_users_and_privileges(conn, cast: Cast) -> None:
    rw, tc = (user.login.username for user in cast.users)
    readwrite, tablecreator = (group.name for group in cast.groups)
    execute(conn, "CREATE TABLE before (id serial PRIMARY KEY)")
    report = run(conn, cast)
    assert report.changes == [
        f"created role {readwrite} (NOLOGIN)",
        f"created role {tablecreator} (NOLOGIN)",
        f"created role {rw} (LOGIN)",
        f"granted {readwrite} to {rw}",
        f"set password of {rw}",
        f"created role {tc} (LOGIN)",
        f"granted {tablecreator} to {tc}",
        f"set password of {tc}",
    ]
    execute(conn, "CREATE TABLE later (id serial PRIMARY KEY)")  # default privileges cover it
    rows = fetch(
        conn,
        "SELECT r.rolname, r.rolcanlogin, has_database_privilege(r.rolname, current_database(), 'CONNECT'),"
        " has_schema_privilege(r.rolname, 'public', 'USAGE'), has_schema_privilege(r.rolname, 'public', 'CREATE'),"
        " has_table_privilege(r.rolname, 'before', 'SELECT, INSERT, UPDATE, DELETE'),"
        " has_table_privilege(r.rolname, 'later', 'SELECT, INSERT, UPDATE, DELETE'),"
        " has_table_privilege(r.rolname, 'later', 'TRUNCATE'),"
        " has_sequence_privilege(r.rolname, 'before_id_seq', 'USAGE, SELECT'),"
        " has_sequence_privilege(r.rolname, 'later_id_seq', 'USAGE, SELECT')"
        " FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY r.rolname",
        cast.role_names(),
    )
    #                     connect usage  create  dml-before dml-later truncate seq-before seq-later
    writer = (True, True, False, True, True, False, True, True)
    creator = (True, True, True, True, True, False, True, True)
    assert {row[0]: row[1:] for row in rows} == {
        rw: (True, *writer),
        tc: (True, *creator),
        readwrite: (False, *writer),
        tablecreator: (False, *creator),
    }


def test_every_managed_role_is_marked_for_its_database(conn, cast: Cast) -> None:
    run(conn, cast)
    (database,) = fetch(conn, "SELECT current_database()")[0]
    rows = fetch(
        conn,
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = ANY(%s)",
        cast.role_names(),
    )
    marks = {name: json.loads(text.removeprefix(rolemarks.PREFIX)) for name, text in rows}
    readwrite, tablecreator = (group.name for group in cast.groups)
    assert marks == {
        readwrite: {database: {"kind": "group", "privilege": "write", "schemas": ["public"]}},
        tablecreator: {database: {"kind": "group", "privilege": "ddl", "schemas": ["public"]}},
        cast.users[0].login.username: {database: {"kind": "user", "group": readwrite}},
        cast.users[1].login.username: {database: {"kind": "user", "group": tablecreator}},
    }
    assert undeclared_roles(conn) == sorted(cast.role_names())


def test_migration_history_stays_out_of_the_applications_reach(conn, cast: Cast) -> None:
    execute(conn, "CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255), run_on timestamp)")
    query = "SELECT has_table_privilege(%s, 'pgmigrations', 'SELECT, INSERT, UPDATE, DELETE')"
    rw = cast.users[0].login.username
    run(conn, cast)
    assert fetch(conn, query, rw) == [(False,)]
    with conn.cursor() as cursor:  # as the JavaScript system's grant on all tables left it
        cursor.execute(sql.SQL("GRANT ALL ON pgmigrations TO {}").format(sql.Identifier(cast.groups[0].name)))
    run(conn, cast)
    assert fetch(conn, query, rw) == [(False,)]


def snapshot(conn, cast: Cast) -> list[list[tuple[Any, ...]]]:
    """Everything ensure_roles may touch, including the row versions (xmin) of the roles themselves."""
    return [
        fetch(
            conn,
            "SELECT rolname, rolcanlogin, rolpassword, xmin::text, shobj_description(oid, 'pg_authid')"
            " FROM pg_authid WHERE rolname = ANY(%s) ORDER BY 1",
            cast.role_names(),
        ),
        fetch(
            conn,
            "SELECT g.rolname, u.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = ANY(%s) ORDER BY 1, 2",
            cast.role_names(),
        ),
        fetch(conn, "SELECT relname, relacl::text FROM pg_class WHERE relnamespace <> 'pg_catalog'::regnamespace"),
        fetch(conn, "SELECT nspname, nspacl::text FROM pg_namespace ORDER BY 1"),
        fetch(conn, "SELECT datacl::text FROM pg_database WHERE datname = current_database()"),
        fetch(conn, "SELECT defaclnamespace::regnamespace::text, defaclobjtype, defaclacl::text FROM pg_default_acl"),
    ]


def test_second_run_changes_nothing(conn, cast: Cast) -> None:
    execute(conn, "CREATE TABLE t (id serial PRIMARY KEY)")
    run(conn, cast)
    before = snapshot(conn, cast)
    report = run(conn, cast)
    assert report.changes == []
    assert snapshot(conn, cast) == before


def test_repairs_attributes_and_memberships(conn, cast: Cast) -> None:
    run(conn, cast)
    readwrite, rw, tc = cast.groups[0].name, cast.users[0].login.username, cast.users[1].login.username
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(readwrite)))
        cursor.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(tc)))
        cursor.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(readwrite), sql.Identifier(rw)))
    assert run(conn, cast).changes == [
        f"made role {readwrite} NOLOGIN",
        f"granted {readwrite} to {rw}",
        f"made role {tc} LOGIN",
    ]


def test_failure_rolls_everything_back(conn, cast: Cast) -> None:
    broken = [AppUser(cast.users[0].login, "no_such_group_role")]
    with pytest.raises(RolesError, match=r'^application roles not applied: role "no_such_group_role" does not exist'):
        run(conn, cast, broken)
    assert fetch(conn, "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", cast.role_names()) == [(0,)]


def test_no_plaintext_password_is_sent_to_the_server(database_url: str, conn, cast: Cast) -> None:
    """The server's statement log would keep `PASSWORD 'plaintext'`; only verifiers are sent."""
    statements = io.StringIO()
    logging_conn = psycopg2.connect(database_url, connection_factory=psycopg2.extras.LoggingConnection)
    with closing(logging_conn):
        logging_conn.initialize(statements)
        run(logging_conn, cast)
    password_statements = [text for text in statements.getvalue().splitlines() if "PASSWORD" in text]
    assert len(password_statements) == 2 and all("'SCRAM-SHA-256$4096:" in text for text in password_statements)
    for user in cast.users:
        assert user.login.password not in statements.getvalue()


# -- groups as data: levels, schemas, any number --------------------------------------------------------


def test_a_read_only_group_on_its_own_schema(database_url: str, conn, custom: Cast) -> None:
    execute(conn, "CREATE SCHEMA app", "CREATE TABLE app.before (id int)", "CREATE TABLE public.elsewhere (id int)")
    reader = custom.user("reader", custom.group("readers", READ, ("app",)))
    run(conn, custom)
    execute(conn, "CREATE TABLE app.later (id serial PRIMARY KEY)")
    for table in ("app.before", "app.later"):
        assert can(database_url, reader, f"SELECT * FROM {table}")
        assert not can(database_url, reader, f"INSERT INTO {table} VALUES (1)")
        assert not can(database_url, reader, f"DELETE FROM {table}")
    assert not can(database_url, reader, "SELECT nextval('app.later_id_seq')")  # nextval writes: USAGE withheld
    assert not can(database_url, reader, "CREATE TABLE app.mine (id int)")
    assert not can(database_url, reader, "SELECT * FROM public.elsewhere")  # public is not its schema


def test_many_users_and_groups_each_get_their_level(database_url: str, conn, custom: Cast) -> None:
    execute(conn, "CREATE SCHEMA sales", "CREATE SCHEMA audit", "CREATE TABLE sales.orders (id int)")
    execute(conn, "CREATE TABLE audit.log (id int)")
    readers = custom.group("readers", READ, ("sales", "audit"))
    writers = custom.group("writers", WRITE, ("sales",))
    owners = custom.group("owners", DDL, ("audit",))
    users = {custom.user(f"user{n}", group): group for n, group in enumerate([readers, readers, writers, owners])}
    report = run(conn, custom)
    assert len([change for change in report.changes if change.startswith("set password")]) == 4
    expected = {
        readers: (True, False, True, False, False),
        writers: (True, True, False, False, False),
        owners: (False, False, True, True, True),
    }
    for user, group in users.items():
        seen = (
            can(database_url, user, "SELECT * FROM sales.orders"),
            can(database_url, user, "INSERT INTO sales.orders VALUES (1)"),
            can(database_url, user, "SELECT * FROM audit.log"),
            can(database_url, user, "INSERT INTO audit.log VALUES (1)"),
            can(database_url, user, f"CREATE TABLE audit.t_{user} (id int)"),
        )
        assert seen == expected[group], user


def test_names_with_quotes_spaces_and_non_ascii_are_taken_as_given(database_url: str, conn, custom: Cast) -> None:
    execute(conn, 'CREATE SCHEMA "Zürich data"', 'CREATE TABLE "Zürich data".t (id int)')
    group = custom.group('lecteurs "ç"', READ, ("Zürich data",))
    user = custom.user("Ärger user", group)
    run(conn, custom)
    assert can(database_url, user, 'SELECT * FROM "Zürich data".t')
    assert not can(database_url, user, 'INSERT INTO "Zürich data".t VALUES (1)')


def test_a_schema_that_does_not_exist_fails_naming_the_group(conn, custom: Cast) -> None:
    group = custom.group("readers", READ, ("public", "nowhere"))
    custom.user("reader", group)
    with pytest.raises(RolesError, match=f"group '{group}' names schema 'nowhere', which does not exist in database"):
        run(conn, custom)
    assert fetch(conn, "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", custom.role_names()) == [(0,)]


@pytest.mark.parametrize("as_a", ["user", "group"])
def test_the_admin_itself_is_never_declared(conn, custom: Cast, as_a: str) -> None:
    (admin,) = fetch(conn, "SELECT current_user")[0]
    custom.role_names = lambda: ["g_" + custom.suffix]  # type: ignore[method-assign]
    group = admin if as_a == "group" else "g_" + custom.suffix
    custom.groups.append(AppGroup(group, READ))
    custom.users.append(AppUser(UserLogin(admin if as_a == "user" else "u_" + custom.suffix, "pw"), group))
    with pytest.raises(RolesError, match=f"'{admin}' is the admin user running them"):
        run(conn, custom)
    assert fetch(conn, "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = current_user") == [(True, True)]


# -- a declaration that changes: taking back, retiring ------------------------------------------------


def test_a_lower_level_and_a_dropped_schema_are_taken_back(database_url: str, conn, custom: Cast) -> None:
    execute(conn, "CREATE SCHEMA app", "CREATE TABLE app.t (id int)", "CREATE TABLE public.p (id int)")
    group = custom.group("team", DDL, ("public", "app"))
    user = custom.user("member", group)
    run(conn, custom)
    assert can(database_url, user, "INSERT INTO app.t VALUES (1)")
    custom.groups[0] = AppGroup(group, READ, ("app",))
    report = run(conn, custom)
    assert report.changes == [
        f"revoked ddl of {group} on schema app down to read",
        f"revoked ddl of {group} on schema public down to nothing",
    ]
    assert can(database_url, user, "SELECT * FROM app.t")
    assert not can(database_url, user, "INSERT INTO app.t VALUES (1)")
    assert not can(database_url, user, "CREATE TABLE app.new (id int)")
    assert not can(database_url, user, "SELECT * FROM public.p")
    execute(conn, "CREATE TABLE app.after (id int)")  # the default privileges went down too
    assert can(database_url, user, "SELECT * FROM app.after")
    assert not can(database_url, user, "INSERT INTO app.after VALUES (1)")
    assert run(conn, custom).changes == []


def test_a_grant_a_migration_made_is_not_taken_back(database_url: str, conn, custom: Cast) -> None:
    """Only what an earlier declaration granted is revoked: a migration's own GRANT to a group stays."""
    execute(conn, "CREATE TABLE audit (id int)")
    group = custom.group("readers", READ)
    user = custom.user("reader", group)
    run(conn, custom)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("GRANT INSERT ON audit TO {}").format(sql.Identifier(group)))
    assert run(conn, custom).changes == []
    assert can(database_url, user, "INSERT INTO audit VALUES (1)")


def test_a_user_dropped_from_the_declaration_is_retired(database_url: str, conn, cast: Cast) -> None:
    execute(conn, "CREATE TABLE t (id int)")
    run(conn, cast)
    rw, tc = (user.login.username for user in cast.users)
    readwrite = cast.groups[0].name
    report = run(conn, cast, users=cast.users[1:])
    assert report.changes == [f"retired user {rw}: revoked {readwrite}, made NOLOGIN; the role is kept"]
    assert fetch(conn, "SELECT rolcanlogin, pg_has_role(oid, %s, 'USAGE') FROM pg_roles WHERE rolname = %s",
                 readwrite, rw) == [(False, False)]  # fmt: skip
    with pytest.raises(psycopg2.OperationalError, match="not permitted to log in"):
        as_user(database_url, rw)
    assert can(database_url, tc, "INSERT INTO t VALUES (1)")
    assert run(conn, cast, users=cast.users[1:]).changes == []  # retired once
    assert undeclared_roles(conn) == sorted(name for name in cast.role_names() if name != rw)

    assert run(conn, cast).changes == [f"made role {rw} LOGIN", f"granted {readwrite} to {rw}"]  # declared again
    assert can(database_url, rw, "INSERT INTO t VALUES (1)")


def test_a_user_moved_to_another_group_leaves_the_old_one(database_url: str, conn, cast: Cast) -> None:
    execute(conn, "CREATE TABLE t (id int)")
    run(conn, cast)
    readwrite, tablecreator = (group.name for group in cast.groups)
    rw = cast.users[0].login.username
    moved = [AppUser(cast.users[0].login, tablecreator), cast.users[1]]
    assert run(conn, cast, users=moved).changes == [f"granted {tablecreator} to {rw}", f"revoked {readwrite} from {rw}"]
    assert can(database_url, rw, "CREATE TABLE mine (id int)")


def test_a_group_dropped_from_the_declaration_loses_its_privileges(database_url: str, conn, cast: Cast) -> None:
    execute(conn, "CREATE TABLE t (id int)")
    run(conn, cast)
    readwrite, tablecreator = (group.name for group in cast.groups)
    rw, tc = (user.login.username for user in cast.users)
    report = run(conn, cast, users=cast.users[1:], groups=cast.groups[1:])
    assert report.changes == [
        f"retired group {readwrite}: its privileges in this database revoked; the role is kept",
        f"retired user {rw}: revoked {readwrite}, made NOLOGIN; the role is kept",
    ]
    privileges = "SELECT has_table_privilege(%s, 't', 'SELECT'), has_schema_privilege(%s, 'public', 'USAGE')"
    # public's USAGE is PUBLIC's in PostgreSQL 16: only the table privilege tells
    assert fetch(conn, privileges, readwrite, readwrite) == [(False, True)]
    assert fetch(conn, "SELECT count(*) FROM pg_default_acl WHERE defaclacl::text LIKE %s", f"%{readwrite}=%") == [(0,)]
    assert can(database_url, tc, "INSERT INTO t VALUES (1)")
    assert run(conn, cast, users=cast.users[1:], groups=cast.groups[1:]).changes == []
    assert tablecreator in undeclared_roles(conn)


def test_a_role_without_the_mark_is_never_retired(database_url: str, conn, custom: Cast) -> None:
    hand_made = custom.name("by_hand")
    custom.role_names = lambda: [hand_made, *(g.name for g in custom.groups)]  # type: ignore[method-assign]
    execute(conn, f"CREATE ROLE {hand_made} LOGIN")
    custom.group("readers", READ)
    assert run(conn, custom).changes == [f"created role {custom.groups[0].name} (NOLOGIN)"]
    assert fetch(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", hand_made) == [(True,)]


def test_a_hand_made_member_of_a_declared_group_is_reported_as_unmanaged(database_url: str, conn, custom: Cast) -> None:
    """A user dropped in the same deploy that first marks roles (or made by hand) is reported, not silently kept."""
    hand_made = custom.name("by_hand")
    group = custom.group("readers", READ)
    declared = custom.user("declared", group)
    custom.role_names = lambda: [hand_made, group, declared]  # type: ignore[method-assign]
    execute(conn, "CREATE TABLE t (id int)", f"CREATE ROLE {hand_made} LOGIN")
    run(conn, custom)
    assert run(conn, custom).unmanaged == []
    execute(conn, f"GRANT {group} TO {hand_made}")
    report = run(conn, custom)
    assert (report.changes, report.unmanaged) == ([], [hand_made])
    assert can(database_url, hand_made, "SELECT * FROM t")  # left as it is


def test_a_comment_that_only_looks_like_a_mark_is_not_ours(conn, custom: Cast) -> None:
    group = custom.group("readers", READ)
    custom.role_names = lambda: [group]  # type: ignore[method-assign]
    run(conn, custom)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("COMMENT ON ROLE {} IS 'lambda_db_setup: not JSON'").format(sql.Identifier(group)))
    assert undeclared_roles(conn) == []
    assert run(conn, custom, groups=[]).changes == []  # unknown, so not retired either


def test_a_user_another_database_still_declares_keeps_its_login(server_url: str, conn, custom: Cast) -> None:
    """LOGIN is server-wide: retiring a user in one database must not lock out another database's application."""
    group = custom.group("readers", READ)
    user = custom.user("shared", group)
    with new_database(server_url, "other") as other_url, closing(psycopg2.connect(other_url)) as other:
        run(other, custom)
        run(conn, custom)
        report = run(conn, custom, users=[])
        expected = f"retired user {user}: LOGIN kept, as another database declares it; the role is kept"
        assert report.changes == [expected]
        assert fetch(conn, "SELECT rolcanlogin, pg_has_role(%s, %s, 'USAGE') FROM pg_roles WHERE rolname = %s",
                     user, group, user) == [(True, True)]  # fmt: skip
        assert run(other, custom).changes == []  # membership is server-wide: the other database keeps it


# -- real logins: the password-checking server -------------------------------------------------------


@pytest.fixture(scope="session")
def scram_url(request: pytest.FixtureRequest) -> str:
    return password_server_url(request)


@pytest.fixture
def scram_conn(scram_url: str) -> Iterator[psycopg2.extensions.connection]:
    connection = psycopg2.connect(scram_url)
    connection.autocommit = True
    with closing(connection):
        yield connection


def test_rotated_password_is_applied_and_then_left_alone(scram_url: str, scram_conn, cast: Cast) -> None:
    rw, tc = (user.login.username for user in cast.users)
    try:
        run(scram_conn, cast)
        old_password = cast.users[0].login.password
        login(scram_url, rw, old_password).close()
        verifier_query = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
        old_verifier = fetch(scram_conn, verifier_query, rw)

        new_password = f"rotated-{uuid.uuid4().hex}"
        rotated = cast.with_password(rw, new_password)
        assert run(scram_conn, cast, rotated).changes == [f"set password of {rw}"]
        login(scram_url, rw, new_password).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(scram_url, rw, old_password)
        new_verifier = fetch(scram_conn, verifier_query, rw)
        assert new_verifier != old_verifier

        assert run(scram_conn, cast, rotated).changes == []
        assert fetch(scram_conn, verifier_query, rw) == new_verifier  # same salt: not set again
        with closing(login(scram_url, tc, cast.users[1].login.password)) as app, app.cursor() as cursor:
            cursor.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (cast.groups[1].name,))
            assert cursor.fetchone() == (True,)
    finally:
        drop_roles(scram_conn, cast.role_names())


# -- concurrency and an admin that is no superuser -----------------------------------------------------


def test_a_role_created_concurrently_is_taken_as_it_is(database_url: str, conn, cast: Cast) -> None:
    """Another session creates app_rw while we run: our CREATE waits, then finds it there and goes on."""
    rw, readwrite = cast.users[0].login.username, cast.groups[0].name
    other = psycopg2.connect(database_url)
    with closing(other), other.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(rw)))  # not committed yet
        outcome: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: outcome.update(report=run(conn, cast)))
        runner.start()
        wait_until_blocked(database_url, conn)
        other.commit()
        runner.join(timeout=10)
    assert "report" in outcome, "ensure_roles did not finish"
    changes = outcome["report"].changes
    assert f"created role {rw} (LOGIN)" not in changes
    assert f"granted {readwrite} to {rw}" in changes and f"set password of {rw}" in changes


def wait_until_blocked(database_url: str, conn) -> None:
    pid = conn.get_backend_pid()
    with closing(psycopg2.connect(database_url)) as observer, observer.cursor() as cursor:
        for _ in range(200):
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
            if cursor.fetchone() == ("Lock",):
                return
            observer.rollback()
            time.sleep(0.02)
    raise AssertionError("ensure_roles never waited for the concurrent CREATE ROLE")


def test_admin_without_superuser_as_on_rds(server_url: str, database_url: str, conn, cast: Cast) -> None:
    """RDS's admin has CREATEROLE, owns the database, cannot read pg_authid, and does not own app_tc's tables."""
    admin = f"rds_admin_{uuid.uuid4().hex[:8]}"
    host, dbname = parse_dsn(database_url)["host"], parse_dsn(database_url)["dbname"]
    rw, tc = (user.login.username for user in cast.users)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(admin)))
            cursor.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(admin))
            )
        admin_conn = psycopg2.connect(host=host, dbname=dbname, user=admin)
        with closing(admin_conn):
            with admin_conn.cursor() as cursor:
                cursor.execute("CREATE TABLE by_admin (id serial PRIMARY KEY)")
            admin_conn.commit()
            assert run(admin_conn, cast).not_granted == []
            with closing(psycopg2.connect(host=host, dbname=dbname, user=tc)) as app, app.cursor() as cursor:
                cursor.execute("CREATE TABLE by_app (id serial PRIMARY KEY)")
                app.commit()

            report = run(admin_conn, cast)
            retired = run(admin_conn, cast, users=cast.users[1:])  # the admin may retire what it made

        assert report.not_granted == ["public.by_app", "public.by_app_id_seq"]
        assert report.changes == [
            f"set password of {user.login.username} (current one not readable without SELECT on pg_authid)"
            for user in cast.users
        ]
        assert f"retired user {rw}: revoked {cast.groups[0].name}, made NOLOGIN; the role is kept" in retired.changes
        assert fetch(conn, "SELECT has_table_privilege(%s, 'by_admin', 'INSERT')", tc) == [(True,)]
    finally:
        drop_roles(conn, [*cast.role_names(), admin])
