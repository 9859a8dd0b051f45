"""One embedded PostgreSQL 16 per test session; a fresh database per test."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from lambda_db_setup import embedded


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the session's embedded server, stopped and deleted when the test run ends.

    Its data lives outside pytest's tmp tree: the server runs as another OS user when tests run as
    root, and pytest's private (0700) directories would lock it out of its own data on shutdown.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="lambda-db-setup-tests-")) / "data"
    try:
        yield embedded.start(data_dir, keep_running=False)
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@contextmanager
def new_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create a database on the embedded server, yield its URL, drop it (with any sessions left) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        head, _, query = server_url.partition("?")
        yield f"{head.rsplit('/', 1)[0]}/{name}?{query}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    with new_database(server_url, "t") as url:
        yield url


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
