"""Connecting to a cluster that resumes from auto-pause, and with an RDS IAM auth token instead of a password."""

from __future__ import annotations

import logging
import socket
import threading
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import boto3
import psycopg2
import pytest
from botocore.stub import Stubber
from psycopg2.extensions import parse_dsn

from lambda_db_setup import connect as connect_module
from lambda_db_setup.connect import Target, auth_token, connect
from lambda_db_setup.credentials import AdminLogin
from lambda_db_setup.settings import Settings
from tests.test_connect import PASSWORD, login_for, scram_url, settings, soon

__all__ = ["scram_url"]  # the fixture, imported for this module's tests
PAUSED_SECONDS = 3.0  # how long the "paused cluster" refuses connections


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with closing(source), closing(sink):
        while data := source.recv(65536):
            sink.sendall(data)


def _resuming_listener(port: int, unix_socket: Path, after: float) -> None:
    """Listen on 127.0.0.1:``port`` only ``after`` seconds from now, then forward to the server's socket."""

    def serve() -> None:
        time.sleep(after)
        listener = socket.create_server(("127.0.0.1", port))
        while True:
            client, _ = listener.accept()
            server = socket.socket(socket.AF_UNIX)
            server.connect(str(unix_socket))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, sink.dup()), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def test_waits_for_a_resuming_database_then_connects(scram_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = parse_dsn(scram_url)
    _resuming_listener(port, Path(dsn["host"]) / f".s.PGSQL.{dsn.get('port', 5432)}", PAUSED_SECONDS)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=connect_module.__name__):
        conn = connect(
            login_for(scram_url), settings(proxy_endpoint=f"127.0.0.1:{port}"), deadline=soon(30), application_name="t"
        )
    with closing(conn), conn.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == ("connect_admin",)
    assert time.monotonic() - started >= PAUSED_SECONDS
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("waiting for the database to resume: 127.0.0.1") for m in messages), messages
    assert any(m.startswith("the database resumed: connected after") for m in messages), messages


def test_iam_auth_connects_with_a_token_not_the_secrets_password(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(psycopg2, "connect", lambda **parameters: seen.update(parameters) or "connection")
    monkeypatch.setattr(connect_module, "auth_token", lambda where: f"token-for-{where.user}@{where.host}")
    login = AdminLogin("postgres", PASSWORD, "cluster.example", 5432, "app")
    iam = replace(settings(proxy_endpoint="proxy.example"), iam_auth=True)
    assert connect(login, iam, deadline=soon(), application_name="t") == "connection"
    assert seen["password"] == "token-for-postgres@proxy.example"


def test_auth_token_is_signed_for_the_target_host_port_and_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token generation signs locally (no request): the token is a presigned rds-db:connect URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # one an earlier test set up keeps its own credentials
    client = boto3.client("rds")
    monkeypatch.setattr(boto3, "client", lambda service: client)
    with Stubber(client) as stubber:  # no API call is expected: any would fail the stubber
        token = auth_token(Target("proxy.example", 5432, "app", "postgres"))
        stubber.assert_no_pending_responses()
    assert token.startswith("proxy.example:5432/?Action=connect&DBUser=postgres&")
    assert "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F" in token and "%2Feu-west-1%2Frds-db%2F" in token


def test_iam_auth_setting_reads_its_variable() -> None:
    assert Settings.load({}).iam_auth is False
    assert Settings.load({"DB_IAM_AUTH": "true"}).iam_auth is True
