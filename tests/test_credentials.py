"""Reading the admin and app secrets (moto's Secrets Manager): each failure says which, never a value."""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambda_db_setup.credentials import (
    AdminLogin,
    UserLogin,
    read_admin_login,
    read_user_login,
    secrets_client,
)
from lambda_db_setup.errors import SecretError

PASSWORD = "s3cr3t-SENTINEL-value"
RDS_SECRET = {
    "username": "postgres",
    "password": PASSWORD,
    "engine": "postgres",
    "host": "dbstack-cluster.cluster-abc.eu-central-1.rds.amazonaws.com",
    "port": 5432,
    "dbname": "app",
    "dbClusterIdentifier": "dbstack-cluster",
}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield secrets_client()


def put(client: Any, value: object, *, name: str = "db-admin") -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return client.create_secret(Name=name, SecretString=text)["ARN"]


def test_reads_the_secret_rds_writes(client: Any) -> None:
    login = read_admin_login(client, put(client, RDS_SECRET), "DB_SECRET_ARN")
    assert login == AdminLogin("postgres", PASSWORD, RDS_SECRET["host"], 5432, "app")
    assert PASSWORD not in repr(login)


def test_dbname_defaults_to_postgres_and_port_may_be_a_string(client: Any) -> None:
    secret = {key: value for key, value in RDS_SECRET.items() if key != "dbname"} | {"port": "6543"}
    login = read_admin_login(client, put(client, secret), "DB_SECRET_ARN")
    assert (login.dbname, login.port) == ("postgres", 6543)


def test_reads_an_app_user_secret(client: Any) -> None:
    arn = put(client, {"username": "app_rw", "password": PASSWORD}, name="app-rw")
    login = read_user_login(client, arn, "APP_RW_SECRET_ARN")
    assert login == UserLogin("app_rw", PASSWORD)
    assert PASSWORD not in repr(login)


def test_missing_secret(client: Any) -> None:
    arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:db-admin-AbCdEf"
    with pytest.raises(SecretError, match=f"^DB_SECRET_ARN: secret {arn} not found$"):
        read_admin_login(client, arn, "DB_SECRET_ARN")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"username": "postgres", "password": "' + PASSWORD + '",', r"is not valid JSON \(.* at character \d+\)$"),
        (json.dumps([PASSWORD]), "is JSON but not an object$"),
        (json.dumps({"username": "postgres", "password": PASSWORD}), "lacks key\\(s\\) host, port$"),
        (json.dumps(RDS_SECRET | {"port": "fivefourthreetwo"}), "'port' is not a TCP port number$"),
        (json.dumps(RDS_SECRET | {"port": True}), "'port' is not a TCP port number$"),
        (json.dumps(RDS_SECRET | {"password": ""}), "'password' must be a non-empty string$"),
        (json.dumps(RDS_SECRET | {"host": 42}), "'host' must be a non-empty string$"),
    ],
)
def test_unusable_admin_secret_says_why_without_its_values(client: Any, text: str, reason: str) -> None:
    arn = put(client, text)
    with pytest.raises(SecretError, match=f"^DB_SECRET_ARN: secret {arn}.*{reason}") as raised:
        read_admin_login(client, arn, "DB_SECRET_ARN")
    assert PASSWORD not in "".join(traceback.format_exception(raised.value))  # nor in a chained JSON error


def test_app_secret_without_password(client: Any) -> None:
    arn = put(client, {"username": "app_tc"}, name="app-tc")
    with pytest.raises(SecretError, match=f"^APP_TC_SECRET_ARN: secret {arn} lacks key\\(s\\) password$"):
        read_user_login(client, arn, "APP_TC_SECRET_ARN")


@pytest.mark.parametrize("password", ["before\x00after", "\x00", "trailing\x00"])
def test_a_password_postgres_would_cut_at_a_nul_is_refused_without_showing_it(client: Any, password: str) -> None:
    arn = put(client, {"username": "app_rw", "password": password}, name="app-rw-nul")
    with pytest.raises(SecretError) as raised:
        read_user_login(client, arn, "APP_RW_SECRET_ARN")
    assert str(raised.value) == (
        f"APP_RW_SECRET_ARN: secret {arn}: 'password' holds a NUL character, which PostgreSQL cannot store as given"
    )
    assert "before" not in str(raised.value) and "trailing" not in str(raised.value)


def test_binary_secret(client: Any) -> None:
    arn = client.create_secret(Name="binary", SecretBinary=b"\x00\x01")["ARN"]
    with pytest.raises(SecretError, match=r"holds binary data, not a JSON SecretString$"):
        read_user_login(client, arn, "APP_RW_SECRET_ARN")


def test_access_denied_is_named() -> None:
    """moto allows everything, so the AccessDenied answer is stubbed on a real client."""
    from botocore.stub import Stubber

    client = boto3.client(
        "secretsmanager", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", service_error_code="AccessDeniedException", http_status_code=400)
        with pytest.raises(SecretError, match=r"^DB_SECRET_ARN: secret arn:x not readable by this function"):
            read_admin_login(client, "arn:x", "DB_SECRET_ARN")
