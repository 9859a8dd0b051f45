"""One embedded PostgreSQL 16 per test session; a fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from lambda_db_setup import embedded


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of the session's embedded server (stopped when the test run ends)."""
    return embedded.start(tmp_path_factory.mktemp("pg") / "data", keep_running=False)


def _with_database(url: str, database: str) -> str:
    head, _, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{database}?{query}"


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(server_url, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit connection to the test's fresh database."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """An empty migrations directory for the test to fill."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    return directory
