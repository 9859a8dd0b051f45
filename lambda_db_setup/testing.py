"""A pytest plugin: your migrations applied once per test session, and a copy of that database for each test.

Installed with the package it is active in every pytest run (entry point ``pytest11``); in this repository
``tests/conftest.py`` loads it. Each test that asks for ``migrated_database_url`` (or ``migrated_conn``)
gets its own database, cloned from a template migrated once (``CREATE DATABASE ... TEMPLATE``: a few
milliseconds instead of running every migration again), and dropped after the test.

The server is ``DATABASE_URL`` (a role that may create databases), else an embedded PostgreSQL 16 started
for the session. The migrations directory is ``--migrations-dir-for-tests`` / the ini option
``lambda_db_setup_migrations`` (default ``migrations``, relative to pytest's root directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from .engine import Engine

INI_OPTION = "lambda_db_setup_migrations"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_OPTION, "migrations directory for migrated_database_url", default="migrations")
    parser.addoption("--migrations-dir-for-tests", default=None, help=f"overrides the ini option {INI_OPTION}")


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url`` (its query string kept)."""
    head, _, query = server_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@contextmanager
def scratch_database(server_url: str, prefix: str, *, template: str | None = None) -> Iterator[str]:
    """Create a database (a copy of ``template`` when given), yield its URL, drop it (sessions and all)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    try:
        with admin.cursor() as cursor:
            cursor.execute(create)
        try:
            yield database_url(server_url, name)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


@contextmanager
def throwaway_server(shared_by: str | None = None) -> Iterator[str]:
    """An embedded PostgreSQL 16 for this test run, its data deleted afterwards.

    Processes passing the same ``shared_by`` (pytest-xdist's workers: their test run's id) share one server;
    the last to leave stops it. Its data lives outside pytest's tmp tree: the server runs as another OS user
    when tests run as root, and pytest's private (0700) directories would lock it out of its own data.
    """
    from . import embedded

    if shared_by:
        root = Path(tempfile.gettempdir()) / f"lambda-db-setup-pytest-{shared_by}"
        root.mkdir(exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="lambda-db-setup-pytest-"))
    data_dir = root / "data"
    try:
        yield embedded.start(data_dir, keep_running=False, throwaway=True)
    finally:
        embedded.stop(data_dir)
        if not (data_dir / "postmaster.pid").exists():  # this process was the last one using it
            shutil.rmtree(root, ignore_errors=True)


def xdist_run_id() -> str | None:
    """The id pytest-xdist gives every worker of one run (None without xdist)."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID")


@pytest.fixture(scope="session")
def migrations_server_url() -> Iterator[str]:
    """``DATABASE_URL``, else a throw-away embedded PostgreSQL 16 for this session."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with throwaway_server(xdist_run_id()) as url:
        yield url


@pytest.fixture(scope="session")
def migrations_dir_for_tests(request: pytest.FixtureRequest) -> Path:
    configured = request.config.getoption("--migrations-dir-for-tests") or request.config.getini(INI_OPTION)
    return request.config.rootpath / configured


@pytest.fixture(scope="session")
def migrated_template(migrations_server_url: str, migrations_dir_for_tests: Path) -> Iterator[str]:
    """The name of a database with every migration applied, made once per session (a migration error fails
    every test that needs it, naming the migration)."""
    with scratch_database(migrations_server_url, "migrated_template") as url:
        conn = psycopg2.connect(url)
        try:
            Engine(conn, migrations_dir_for_tests).up()
        finally:
            conn.close()  # CREATE DATABASE ... TEMPLATE needs the template to have no sessions
        yield url.partition("?")[0].rsplit("/", 1)[1]


@pytest.fixture
def migrated_database_url(migrations_server_url: str, migrated_template: str) -> Iterator[str]:
    """A database of this test's own, migrated (a copy of the session's template), dropped afterwards."""
    with scratch_database(migrations_server_url, "migrated", template=migrated_template) as url:
        yield url


@contextmanager
def autocommit_connection(url: str) -> Iterator[Connection]:
    """A connection in autocommit mode (each statement its own transaction, as a test usually wants), closed after."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def migrated_conn(migrated_database_url: str) -> Iterator[Connection]:
    """An autocommit connection to this test's migrated database."""
    with autocommit_connection(migrated_database_url) as conn:
        yield conn
