"""One embedded PostgreSQL 16 per test session; a fresh database per test; the package's pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from lambda_db_setup import testing

pytest_plugins = ["lambda_db_setup.testing"]


@pytest.fixture(scope="session")
def migrations_server_url() -> Iterator[str]:
    """The session's embedded server (never ``DATABASE_URL``: the suite needs a superuser it may wreck)."""
    with testing.throwaway_server(testing.xdist_run_id()) as url:
        yield url


@pytest.fixture(scope="session")
def server_url(migrations_server_url: str) -> str:
    """URL of the session's embedded server, stopped and deleted when the test run ends."""
    return migrations_server_url


def new_database(server_url: str, prefix: str) -> AbstractContextManager[str]:
    """Create a database on the embedded server, yield its URL, drop it (with any sessions left) afterwards."""
    return testing.scratch_database(server_url, prefix)


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    with new_database(server_url, "t") as url:
        yield url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit connection to the test's fresh database."""
    with testing.autocommit_connection(database_url) as connection:
        yield connection


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """An empty migrations directory for the test to fill."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    return directory
