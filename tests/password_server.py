"""A second embedded PostgreSQL that checks passwords, for the tests that need a login to be refused.

The session server of ``conftest.py`` trusts every local connection, so no password can be wrong there.
This one trusts only ``postgres`` on its socket and asks every other role for its password (SCRAM).
Started once per test session, by whichever test module asks first.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from lambda_db_setup import embedded

PG_HBA = "local all postgres trust\nlocal all all scram-sha-256\n"
_started: dict[str, str] = {}


def password_server_url(request: pytest.FixtureRequest) -> str:
    """URL (as the superuser ``postgres``) of the password-checking server; call from a session fixture.

    Like conftest's server, its data lives outside pytest's private tmp tree (the server runs as another
    OS user when the tests run as root); the first caller's session teardown stops and deletes it.
    """
    if "url" not in _started:
        data_dir = Path(tempfile.mkdtemp(prefix="lambda-db-setup-password-")) / "data"
        url = embedded.start(data_dir, keep_running=False)
        request.addfinalizer(lambda: _remove(data_dir))
        (data_dir / "pg_hba.conf").write_text(PG_HBA)
        with closing(psycopg2.connect(url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_reload_conf()")
        _wait_until_passwords_are_checked(url)
        _started["url"] = url
    return _started["url"]


def _remove(data_dir: Path) -> None:
    embedded.stop(data_dir)
    shutil.rmtree(data_dir.parent, ignore_errors=True)
    _started.clear()


def login(url: str, user: str, password: str, dbname: str = "postgres") -> psycopg2.extensions.connection:
    """Log in to the server of ``url`` as ``user`` with ``password`` (over its socket)."""
    return psycopg2.connect(host=parse_dsn(url)["host"], dbname=dbname, user=user, password=password)


def _wait_until_passwords_are_checked(url: str) -> None:
    """pg_reload_conf() only signals the postmaster: wait until a wrong password is refused."""
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE ROLE reload_probe LOGIN PASSWORD 'right'")
    for _ in range(100):
        try:
            login(url, "reload_probe", "wrong").close()
        except psycopg2.OperationalError:
            return
        time.sleep(0.05)
    raise RuntimeError("the password server still accepts wrong passwords after reloading pg_hba.conf")
