"""Application roles and users: privileges, idempotence, password rotation, races, an RDS-like admin.

Roles are cluster-wide, so every test uses its own role names and drops them afterwards.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extras
import pytest
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

from lambda_db_setup.credentials import UserLogin
from lambda_db_setup.errors import RolesError
from lambda_db_setup.roles import AppUser, GroupRole, ensure_roles
from tests.password_server import login, password_server_url


@dataclass
class Cast:
    """One test's group roles and users (unique names), with their passwords."""

    groups: tuple[GroupRole, GroupRole]
    users: list[AppUser]

    @property
    def readwrite(self) -> str:
        return self.groups[0].name

    @property
    def tablecreator(self) -> str:
        return self.groups[1].name

    @property
    def app_rw(self) -> str:
        return self.users[0].login.username

    @property
    def app_tc(self) -> str:
        return self.users[1].login.username

    def role_names(self) -> list[str]:
        return [group.name for group in self.groups] + [user.login.username for user in self.users]

    def with_password(self, username: str, password: str) -> list[AppUser]:
        return [
            AppUser(UserLogin(username, password), user.group) if user.login.username == username else user
            for user in self.users
        ]


def new_cast() -> Cast:
    suffix = uuid.uuid4().hex[:8]
    groups = (GroupRole(f"readwrite_{suffix}", can_create=False), GroupRole(f"tablecreator_{suffix}", can_create=True))
    users = [
        AppUser(UserLogin(f"app_rw_{suffix}", f"rw-{uuid.uuid4().hex}"), groups[0].name),
        AppUser(UserLogin(f"app_tc_{suffix}", f"tc-{uuid.uuid4().hex}"), groups[1].name),
    ]
    return Cast(groups, users)


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
    roles = new_cast()
    yield roles
    drop_roles(conn, roles.role_names())


def run(conn, cast: Cast, users: list[AppUser] | None = None):
    return ensure_roles(conn, cast.users if users is None else users, cast.groups)


def fetch(conn, query: str, *params: object) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def test_creates_groups_users_and_privileges(conn, cast: Cast) -> None:
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE before (id serial PRIMARY KEY)")
    report = run(conn, cast)
    assert report.changes == [
        f"created role {cast.readwrite} (NOLOGIN)",
        f"created role {cast.tablecreator} (NOLOGIN)",
        f"created role {cast.app_rw} (LOGIN)",
        f"granted {cast.readwrite} to {cast.app_rw}",
        f"set password of {cast.app_rw}",
        f"created role {cast.app_tc} (LOGIN)",
        f"granted {cast.tablecreator} to {cast.app_tc}",
        f"set password of {cast.app_tc}",
    ]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE later (id serial PRIMARY KEY)")  # default privileges cover it
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
    #                     login  connect usage  create  dml-before dml-later truncate seq-before seq-later
    reader = (True, True, False, True, True, False, True, True)
    creator = (True, True, True, True, True, False, True, True)
    assert {row[0]: row[1:] for row in rows} == {
        cast.app_rw: (True, *reader),
        cast.app_tc: (True, *creator),
        cast.readwrite: (False, *reader),
        cast.tablecreator: (False, *creator),
    }


def test_migration_history_stays_out_of_the_applications_reach(conn, cast: Cast) -> None:
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE pgmigrations (id serial PRIMARY KEY, name varchar(255), run_on timestamp)")
    query = "SELECT has_table_privilege(%s, 'pgmigrations', 'SELECT, INSERT, UPDATE, DELETE')"
    run(conn, cast)
    assert fetch(conn, query, cast.app_rw) == [(False,)]
    with conn.cursor() as cursor:  # as the JavaScript system's grant on all tables left it
        cursor.execute(sql.SQL("GRANT ALL ON pgmigrations TO {}").format(sql.Identifier(cast.readwrite)))
    run(conn, cast)
    assert fetch(conn, query, cast.app_rw) == [(False,)]


def snapshot(conn, cast: Cast) -> list[list[tuple[Any, ...]]]:
    """Everything ensure_roles may touch, including the row versions (xmin) of the roles themselves."""
    return [
        fetch(
            conn,
            "SELECT rolname, rolcanlogin, rolpassword, xmin::text FROM pg_authid WHERE rolname = ANY(%s) ORDER BY 1",
            cast.role_names(),
        ),
        fetch(
            conn,
            "SELECT g.rolname, u.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = ANY(%s) ORDER BY 1, 2",
            cast.role_names(),
        ),
        fetch(
            conn, "SELECT relname, relacl::text FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        ),
        fetch(conn, "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'"),
        fetch(conn, "SELECT datacl::text FROM pg_database WHERE datname = current_database()"),
        fetch(conn, "SELECT defaclobjtype, defaclacl::text FROM pg_default_acl ORDER BY 1"),
    ]


def test_second_run_changes_nothing(conn, cast: Cast) -> None:
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id serial PRIMARY KEY)")
    run(conn, cast)
    before = snapshot(conn, cast)
    report = run(conn, cast)
    assert report.changes == []
    assert snapshot(conn, cast) == before


def test_repairs_attributes_and_memberships(conn, cast: Cast) -> None:
    run(conn, cast)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(cast.readwrite)))
        cursor.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(cast.app_tc)))
        cursor.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(cast.readwrite), sql.Identifier(cast.app_rw)))
    assert run(conn, cast).changes == [
        f"made role {cast.readwrite} NOLOGIN",
        f"granted {cast.readwrite} to {cast.app_rw}",
        f"made role {cast.app_tc} LOGIN",
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
    try:
        run(scram_conn, cast)
        old_password = cast.users[0].login.password
        login(scram_url, cast.app_rw, old_password).close()
        verifier_query = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
        old_verifier = fetch(scram_conn, verifier_query, cast.app_rw)

        new_password = f"rotated-{uuid.uuid4().hex}"
        rotated = cast.with_password(cast.app_rw, new_password)
        assert run(scram_conn, cast, rotated).changes == [f"set password of {cast.app_rw}"]
        login(scram_url, cast.app_rw, new_password).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(scram_url, cast.app_rw, old_password)
        new_verifier = fetch(scram_conn, verifier_query, cast.app_rw)
        assert new_verifier != old_verifier

        assert run(scram_conn, cast, rotated).changes == []
        assert fetch(scram_conn, verifier_query, cast.app_rw) == new_verifier  # same salt: not set again
        with closing(login(scram_url, cast.app_tc, cast.users[1].login.password)) as app, app.cursor() as cursor:
            cursor.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (cast.tablecreator,))
            assert cursor.fetchone() == (True,)
    finally:
        drop_roles(scram_conn, cast.role_names())


# -- concurrency and an admin that is no superuser -----------------------------------------------------


def test_a_role_created_concurrently_is_taken_as_it_is(database_url: str, conn, cast: Cast) -> None:
    """Another session creates app_rw while we run: our CREATE waits, then finds it there and goes on."""
    other = psycopg2.connect(database_url)
    with closing(other), other.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(cast.app_rw)))  # not committed yet
        outcome: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: outcome.update(report=run(conn, cast)))
        runner.start()
        wait_until_blocked(database_url, conn)
        other.commit()
        runner.join(timeout=10)
    assert "report" in outcome, "ensure_roles did not finish"
    changes = outcome["report"].changes
    assert f"created role {cast.app_rw} (LOGIN)" not in changes
    assert f"granted {cast.readwrite} to {cast.app_rw}" in changes and f"set password of {cast.app_rw}" in changes


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
            with closing(psycopg2.connect(host=host, dbname=dbname, user=cast.app_tc)) as app, app.cursor() as cursor:
                cursor.execute("CREATE TABLE by_app (id serial PRIMARY KEY)")
                app.commit()

            report = run(admin_conn, cast)

        assert report.not_granted == ["by_app", "by_app_id_seq"]
        assert report.changes == [
            f"set password of {user.login.username} (current one not readable without SELECT on pg_authid)"
            for user in cast.users
        ]
        assert fetch(conn, "SELECT has_table_privilege(%s, 'by_admin', 'INSERT')", cast.app_rw) == [(True,)]
    finally:
        drop_roles(conn, [*cast.role_names(), admin])
