"""A pytest plugin: the project's migrations applied once per test session, then a database per test or a
transaction per test.

Installed with the package (``pip install 'lambda-db-setup[testing]'``) it is active in every pytest run
(entry point ``pytest11``); in this repository ``tests/conftest.py`` loads it. Fixtures:

- ``migrated_conn`` / ``migrated_database_url``: a database of the test's own, a copy of a template migrated
  once (``CREATE DATABASE ... TEMPLATE``), dropped after the test; for tests that commit.
- ``migrated_rollback_conn``: a connection to one migrated database shared by the session, inside a
  transaction rolled back when the test ends; milliseconds, for tests that do not commit.

The server is the ``test_database_url`` setting (``--lambda-db-setup-test-url``, ``LAMBDA_DB_SETUP_TEST_URL``,
the ini key ``lambda_db_setup_test_url``, pyproject ``[tool.lambda_db_setup]``), else a throw-away embedded
PostgreSQL 16 for the run; never ``DATABASE_URL``, which may name a production database. The migrations are
the CLI's (``migrations_dir`` from the project root found from pytest's root directory up), unless
``--migrations-dir-for-tests`` or the ini key ``lambda_db_setup_migrations`` names others.
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
from .errors import ConfigurationError, MigrationError
from .options import EngineOptions
from .settings import Settings, project_settings
from .urls import describe_target

INI_OPTION = "lambda_db_setup_migrations"
TEST_URL_INI = "lambda_db_setup_test_url"
TEST_URL_OPTION = "--lambda-db-setup-test-url"
MIGRATIONS_OPTION = "--migrations-dir-for-tests"
COMMIT_REFUSED = (
    "migrated_rollback_conn: the test committed; its changes would outlive it in the database every test"
    " of the session shares: use migrated_conn (a database of the test's own) for a test that commits"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_OPTION, "migrations directory for the migrated_* fixtures, relative to the ini file")
    parser.addini(TEST_URL_INI, "server the migrated_* fixtures create their databases on (not DATABASE_URL)")
    group = parser.getgroup("lambda-db-setup")
    group.addoption(MIGRATIONS_OPTION, default=None, help=f"overrides the ini key {INI_OPTION}")
    group.addoption(TEST_URL_OPTION, default=None, help=f"overrides LAMBDA_DB_SETUP_TEST_URL and {TEST_URL_INI}")


def plugin_settings(config: pytest.Config) -> Settings:
    """The project's settings as the CLI reads them, with pytest's options as flags and its ini keys over
    pyproject's; the project root is looked for from pytest's root directory up."""
    flags: dict[str, object] = {}
    if config.getoption(MIGRATIONS_OPTION):
        flags["migrations_dir"] = config.invocation_params.dir / config.getoption(MIGRATIONS_OPTION)
    if config.getoption(TEST_URL_OPTION):
        flags["test_database_url"] = config.getoption(TEST_URL_OPTION)
    overrides: dict[str, str] = {}
    if config.getini(INI_OPTION):
        ini_dir = config.inipath.parent if config.inipath else config.rootpath
        overrides["migrations_dir"] = str(ini_dir / config.getini(INI_OPTION))
    if config.getini(TEST_URL_INI):
        overrides["test_database_url"] = config.getini(TEST_URL_INI)
    return project_settings(config.rootpath, flags, overrides)


def pytest_report_header(config: pytest.Config) -> str:
    """Which server and which migrations the fixtures use, before any test runs (no password shown)."""
    try:
        settings = plugin_settings(config)
        url = settings.test_database_url
        server = describe_target(url, "the test server URL") if url else "a throw-away embedded PostgreSQL 16"
    except ConfigurationError as error:
        return f"lambda-db-setup: {error}"
    return f"lambda-db-setup: server {server} (never DATABASE_URL); migrations {settings.migrations_dir}"


@contextmanager
def _fail_in_one_line() -> Iterator[None]:
    """A configuration or migration error fails the tests that need the fixture with its message, no traceback."""
    try:
        yield
    except MigrationError as error:
        raise pytest.fail.Exception(f"lambda-db-setup: {error}", pytrace=False) from None


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
        url = embedded.start(data_dir, keep_running=False, throwaway=True)
    except BaseException:
        if not shared_by:
            shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield url
    finally:
        embedded.stop(data_dir)
        if not (data_dir / "postmaster.pid").exists():  # this process was the last one using it
            shutil.rmtree(root, ignore_errors=True)


def xdist_run_id() -> str | None:
    """The id pytest-xdist gives every worker of one run (None without xdist)."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID")


@pytest.fixture(scope="session")
def lambda_db_setup_settings(request: pytest.FixtureRequest) -> Settings:
    """The settings the fixtures use (`plugin_settings`); a bad one fails them in one line naming it."""
    with _fail_in_one_line():
        return plugin_settings(request.config)


@pytest.fixture(scope="session")
def migrations_server_url(lambda_db_setup_settings: Settings) -> Iterator[str]:
    """The test server (`test_database_url`), else a throw-away embedded PostgreSQL 16 for this session."""
    if lambda_db_setup_settings.test_database_url:
        yield lambda_db_setup_settings.test_database_url
        return
    with _fail_in_one_line(), throwaway_server(xdist_run_id()) as url:
        yield url


@pytest.fixture(scope="session")
def migrations_dir_for_tests(lambda_db_setup_settings: Settings) -> Path:
    """The migrations the template gets (`plugin_settings`)."""
    return lambda_db_setup_settings.migrations_dir


@pytest.fixture(scope="session")
def migrated_template(
    migrations_server_url: str, migrations_dir_for_tests: Path, lambda_db_setup_settings: Settings
) -> Iterator[str]:
    """The name of a database with every migration applied, made once per session (per xdist worker); a
    migration error fails every test that needs it, naming the migration."""
    with scratch_database(migrations_server_url, "migrated_template") as url:
        conn = psycopg2.connect(url)
        try:
            with _fail_in_one_line():
                Engine(conn, migrations_dir_for_tests, EngineOptions.from_settings(lambda_db_setup_settings)).up()
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


@pytest.fixture(scope="session")
def migrated_shared_database_url(migrations_server_url: str, migrated_template: str) -> Iterator[str]:
    """One migrated database for the session (per xdist worker), which `migrated_rollback_conn`'s tests share."""
    with scratch_database(migrations_server_url, "migrated_shared", template=migrated_template) as url:
        yield url


class _NoCommitConnection(Connection):
    """A connection whose ``commit()`` fails the test: what it commits would leak into the next tests."""

    def commit(self) -> None:
        pytest.fail(COMMIT_REFUSED)


@contextmanager
def rolled_back_connection(url: str) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back at the end; a test that committed it anyway
    (``COMMIT`` in SQL) is failed at teardown, as its changes stay."""
    conn = psycopg2.connect(url, connection_factory=_NoCommitConnection)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT txid_current()")
            (transaction,) = cursor.fetchone()
        yield conn
        conn.rollback()
        with conn.cursor() as cursor:
            cursor.execute("SELECT txid_status(%s)", (transaction,))
            committed = cursor.fetchone() == ("committed",)
        if committed:
            pytest.fail(COMMIT_REFUSED, pytrace=False)
    finally:
        conn.close()


@pytest.fixture
def migrated_rollback_conn(migrated_shared_database_url: str) -> Iterator[Connection]:
    """A connection to the session's migrated database, in a transaction rolled back after the test: for tests
    that do not commit (sequences still advance: ``nextval`` is never rolled back)."""
    with rolled_back_connection(migrated_shared_database_url) as conn:
        yield conn
