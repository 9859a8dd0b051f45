"""Connecting: retries only what can pass, fails fast and clearly on what cannot, within the deadline."""

from __future__ import annotations

import socket
import time
from contextlib import closing
from dataclasses import replace

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from lambda_db_setup.connect import connect
from lambda_db_setup.credentials import AdminLogin
from lambda_db_setup.errors import ConnectError
from lambda_db_setup.settings import Settings
from tests.password_server import password_server_url

PASSWORD = "right-SENTINEL-password"


@pytest.fixture(scope="session")
def scram_url(request: pytest.FixtureRequest) -> str:
    url = password_server_url(request)
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS connect_admin")
        cursor.execute("CREATE ROLE connect_admin LOGIN PASSWORD %s", (PASSWORD,))
    return url


def settings(**changes: object) -> Settings:
    base = Settings.load(
        {"DB_SSLMODE": "disable", "DB_CONNECT_TIMEOUT_SECONDS": "2"},
        flags={"admin_secret_arn": "arn:admin"},
    )
    return replace(base, **changes)


def login_for(url: str, user: str = "connect_admin", password: str = PASSWORD, dbname: str = "postgres") -> AdminLogin:
    return AdminLogin(username=user, password=password, host=parse_dsn(url)["host"], port=5432, dbname=dbname)


def soon(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


def test_connects_with_the_password_and_application_name(scram_url: str) -> None:
    conn = connect(login_for(scram_url), settings(), deadline=soon(), application_name="lambda_db_setup test")
    with closing(conn), conn.cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('application_name')")
        assert cursor.fetchone() == ("connect_admin", "lambda_db_setup test")


def test_wrong_password_fails_at_once_with_28P01(scram_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = count_attempts(monkeypatch)
    with pytest.raises(ConnectError, match=r"refused: wrong password \(SQLSTATE 28P01\)") as raised:
        connect(login_for(scram_url, password="wrong-SENTINEL"), settings(), deadline=soon(), application_name="t")
    assert attempts == [1]
    assert "connect_admin" in str(raised.value) and "SENTINEL" not in str(raised.value)


def test_unknown_database_is_not_retried(scram_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = count_attempts(monkeypatch)
    with pytest.raises(ConnectError, match='database "nosuch" does not exist'):
        connect(login_for(scram_url, dbname="nosuch"), settings(), deadline=soon(), application_name="t")
    assert attempts == [1]


def test_unreachable_endpoint_is_retried_with_backoff_until_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = count_attempts(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConnectError, match=rf"^cannot reach 127\.0\.0\.1:{port} \(database postgres, user u\) after"):
        connect(
            AdminLogin("u", PASSWORD, "secret-host-not-used", 5432, "postgres"),
            settings(proxy_endpoint=f"127.0.0.1:{port}"),
            deadline=soon(5),
            application_name="t",
        )
    elapsed = time.monotonic() - started
    assert attempts[0] >= 3 and elapsed < 5


def test_no_time_left_does_not_try(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = count_attempts(monkeypatch)
    with pytest.raises(ConnectError, match=r"^no time left to connect to"):
        connect(AdminLogin("u", PASSWORD, "h", 5432, "d"), settings(), deadline=soon(1), application_name="t")
    assert attempts == [0]


def test_verify_full_passes_the_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_connect(**parameters: object) -> str:
        seen.update(parameters)
        return "connection"

    monkeypatch.setattr(psycopg2, "connect", fake_connect)
    login = AdminLogin("admin", PASSWORD, "cluster.example", 5432, "app")
    proxy = settings(sslmode="verify-full", ca_bundle="/var/task/certifi/cacert.pem", proxy_endpoint="proxy.example")
    assert connect(login, proxy, deadline=soon(), application_name="t") == "connection"
    assert {key: seen[key] for key in ("host", "port", "sslmode", "sslrootcert", "connect_timeout")} == {
        "host": "proxy.example",
        "port": 5432,
        "sslmode": "verify-full",
        "sslrootcert": "/var/task/certifi/cacert.pem",
        "connect_timeout": 2,
    }


def count_attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    attempts = [0]
    real_connect = psycopg2.connect

    def counting_connect(*args: object, **kwargs: object) -> object:
        attempts[0] += 1
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg2, "connect", counting_connect)
    return attempts
