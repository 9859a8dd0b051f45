"""Shared by the fault and bad-input tests: a faster fresh database, a catalog snapshot, the CLI as a subprocess.

``CREATE DATABASE`` costs about 0.3 s on the embedded server, which dominates tests that only need an empty
database. A module that imports ``database_url`` and ``module_database_url`` from here gets one database per
module instead, emptied before each test (other sessions ended, every schema dropped, ``public`` recreated:
a few milliseconds). conftest's ``conn`` then connects to it as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from tests.conftest import new_database
from tests.helpers import applied_names

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def module_database_url(server_url: str) -> Iterator[str]:
    with new_database(server_url, "m") as url:
        yield url


@pytest.fixture
def database_url(module_database_url: str) -> str:
    """The module's database, emptied: no other sessions (so no locks), no schemas but an empty public."""
    reset = psycopg2.connect(module_database_url)
    reset.autocommit = True
    try:
        with reset.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            cursor.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'"
            )
            for (schema,) in cursor.fetchall():
                cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            cursor.execute("CREATE SCHEMA public")
    finally:
        reset.close()
    return module_database_url


def catalog(conn) -> dict[str, list]:
    """What a migration could have changed: user relations with their columns, functions, recorded rows."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relkind, coalesce(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                   ', ' ORDER BY a.attnum), '')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relname NOT LIKE 'pgmigrations%'
            GROUP BY 1, 2 ORDER BY 1
            """
        )
        relations = cursor.fetchall()
        cursor.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public' ORDER BY 1"
        )
        functions = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT count(*) = 3 FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name = 'pgmigrations' AND column_name IN ('id', 'name', 'run_on')"
        )
        rows = applied_names(conn) if cursor.fetchone()[0] else []
    return {"relations": relations, "functions": functions, "pgmigrations": rows}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lambda_db_setup", *args]


def cli_env() -> dict[str, str]:
    """The environment for running the CLI from any directory (the package is not installed)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep + path if path else ''}"}


def run_cli(args: Sequence[str], *, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args), capture_output=True, text=True, cwd=cwd, env=cli_env(), timeout=timeout, check=False
    )
