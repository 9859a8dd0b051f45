"""The pytest plugin: a template migrated once, a copy per test, isolated and dropped afterwards."""

from __future__ import annotations

import psycopg2
import pytest

from lambda_db_setup.testing import scratch_database
from tests.helpers import applied_names, table_exists

pytest_plugins = ["pytester"]


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


def test_a_project_uses_the_plugin_with_its_own_migrations(
    pytester: pytest.Pytester, migrations_server_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an application team does: point the ini option at its migrations and ask for the fixture."""
    migrations = pytester.mkdir("db")
    (migrations / "1000_notes.sql").write_text("-- Up Migration\nCREATE TABLE notes (body text);\n")
    pytester.makeini("[pytest]\nlambda_db_setup_migrations = db\n")
    pytester.makepyfile(
        """
        def test_notes_exist(migrated_conn):
            with migrated_conn.cursor() as cursor:
                cursor.execute("SELECT name FROM pgmigrations")
                assert cursor.fetchall() == [("1000_notes",)]
                cursor.execute("INSERT INTO notes VALUES ('a')")

        def test_each_test_starts_from_the_template(migrated_conn):
            with migrated_conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM notes")
                assert cursor.fetchone() == (0,)
        """
    )
    monkeypatch.setenv("DATABASE_URL", migrations_server_url)
    result = pytester.runpytest("-p", "lambda_db_setup.testing", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
