"""Reading the admin and app secrets (moto's Secrets Manager): one call for all, each failure says which, never a value.

Where moto cannot answer as Secrets Manager would (AccessDenied, DecryptionFailure), botocore's Stubber
gives the answer on a real client; it checks that answer against the service's model.
"""

from __future__ import annotations

import json
import re
import socket
import traceback
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from lambda_db_setup.credentials import (
    BATCH_LIMIT,
    CLIENT_ERROR_REASONS,
    AdminLogin,
    UserLogin,
    admin_login,
    read_admin_login,
    read_secrets,
    secrets_client,
    user_login,
)
from lambda_db_setup.errors import SecretError

PASSWORD = "s3cr3t-SENTINEL-value"
SECRETS = "arn:aws:secretsmanager:eu-central-1:123456789012:secret"  # an ARN without the secret's name
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


def real_client(**options: Any) -> Any:
    """A client outside moto: for botocore's Stubber, or for an endpoint that does not answer."""
    return boto3.client(
        "secretsmanager", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x", **options
    )


def read_user_login(client: Any, arn: str, variable: str, name: str = "app_rw") -> UserLogin:
    return user_login(read_secrets(client, {variable: arn})[variable], name)


def secrets_calls(client: Any) -> list[tuple[str, list[str]]]:
    """Every Secrets Manager call ``client`` makes from now on: the operation, and the ids it asked for."""
    calls: list[tuple[str, list[str]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, json.loads(params["body"] or b"{}").get("SecretIdList", [])))

    client.meta.events.register("before-call.secrets-manager.*", record)
    return calls


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
    login = read_user_login(client, arn, "app user app_rw")
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


def test_the_declared_name_is_the_login_and_the_secret_may_leave_it_out(client: Any) -> None:
    arn = put(client, {"password": PASSWORD}, name="app-no-username")
    assert read_user_login(client, arn, "app user app_rw") == UserLogin("app_rw", PASSWORD)


@pytest.mark.parametrize("username", ["app_ro", "APP_RW", "app_rw ", "äpp_rw"])
def test_a_secret_naming_another_login_is_refused_naming_both(client: Any, username: str) -> None:
    arn = put(client, {"username": username, "password": PASSWORD}, name="app-other")
    with pytest.raises(SecretError) as raised:
        read_user_login(client, arn, "app user app_rw")
    assert str(raised.value) == (
        f"app user app_rw: secret {arn}: 'username' is {username!r} but the user is declared as 'app_rw'; the"
        " declared name is the login: make the secret's username the same (or leave it out)"
    )
    assert shows_no_value(raised.value)


@pytest.mark.parametrize("username", ["", 7, None, "app\x00rw"])
def test_a_username_that_is_no_name_is_refused(client: Any, username: object) -> None:
    arn = put(client, {"username": username, "password": PASSWORD}, name="app-bad-username")
    with pytest.raises(SecretError, match=r"'username' (must be a non-empty string|holds a NUL character)"):
        read_user_login(client, arn, "app user app_rw")


def test_app_secret_without_password(client: Any) -> None:
    arn = put(client, {"username": "app_tc"}, name="app-tc")
    with pytest.raises(SecretError, match=f"^app user app_tc: secret {arn} lacks key\\(s\\) password$"):
        read_user_login(client, arn, "app user app_tc", "app_tc")


@pytest.mark.parametrize("password", ["before\x00after", "\x00", "trailing\x00"])
def test_a_password_postgres_would_cut_at_a_nul_is_refused_without_showing_it(client: Any, password: str) -> None:
    arn = put(client, {"username": "app_rw", "password": password}, name="app-rw-nul")
    with pytest.raises(SecretError) as raised:
        read_user_login(client, arn, "app user app_rw")
    assert str(raised.value) == (
        f"app user app_rw: secret {arn}: 'password' holds a NUL character, which PostgreSQL cannot store as given"
    )
    assert "before" not in str(raised.value) and "trailing" not in str(raised.value)


def test_binary_secret(client: Any) -> None:
    arn = client.create_secret(Name="binary", SecretBinary=b"\x00\x01")["ARN"]
    with pytest.raises(SecretError, match=r"holds binary data, not a JSON SecretString$"):
        read_user_login(client, arn, "app user app_rw")


def test_access_denied_is_named() -> None:
    """moto allows everything, so the AccessDenied answer is stubbed on a real client."""
    client = real_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "batch_get_secret_value", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(SecretError, match=r"^DB_SECRET_ARN: secret arn:x not readable by this function"):
            read_admin_login(client, "arn:x", "DB_SECRET_ARN")


# -- all secrets in one call ---------------------------------------------------------------------------


def three_secrets(client: Any) -> dict[str, str]:
    """The handler's three variables -> the ARNs of their secrets; every password is PASSWORD."""
    return {
        "DB_SECRET_ARN": put(client, RDS_SECRET),
        "app user app_rw": put(client, {"username": "app_rw", "password": PASSWORD}, name="app-rw"),
        "app user app_tc": put(client, {"username": "app_tc", "password": PASSWORD}, name="app-tc"),
    }


def shows_no_value(error: BaseException) -> bool:
    return PASSWORD not in "".join(traceback.format_exception(error))


def test_three_secrets_are_read_in_one_call(client: Any) -> None:
    arns = three_secrets(client)
    calls = secrets_calls(client)
    secrets = read_secrets(client, arns)
    assert calls == [("BatchGetSecretValue", list(arns.values()))]
    assert admin_login(secrets["DB_SECRET_ARN"]) == AdminLogin("postgres", PASSWORD, RDS_SECRET["host"], 5432, "app")
    assert user_login(secrets["app user app_rw"], "app_rw") == UserLogin("app_rw", PASSWORD)
    assert user_login(secrets["app user app_tc"], "app_tc") == UserLogin("app_tc", PASSWORD)
    assert PASSWORD not in repr(secrets)


def test_one_secret_for_two_variables_is_asked_for_once(client: Any) -> None:
    arn = put(client, {"username": "app", "password": PASSWORD}, name="app")
    calls = secrets_calls(client)
    secrets = read_secrets(client, {"app user app_rw": arn, "app user app_tc": arn})
    assert calls == [("BatchGetSecretValue", [arn])]
    assert (
        user_login(secrets["app user app_rw"], "app")
        == user_login(secrets["app user app_tc"], "app")
        == UserLogin("app", PASSWORD)
    )


def test_a_missing_secret_shared_by_two_variables_names_both(client: Any) -> None:
    arn = f"{SECRETS}:app-AbCdEf"
    with pytest.raises(SecretError, match=f"^app user app_rw, app user app_tc: secret {arn} not found$"):
        read_secrets(client, {"app user app_rw": arn, "app user app_tc": arn})


@pytest.mark.parametrize("variable", ["DB_SECRET_ARN", "app user app_rw", "app user app_tc"])
def test_a_missing_secret_among_three_is_named(client: Any, variable: str) -> None:
    arns = three_secrets(client)
    client.delete_secret(SecretId=arns[variable], ForceDeleteWithoutRecovery=True)
    calls = secrets_calls(client)
    with pytest.raises(SecretError, match=f"^{variable}: secret {arns[variable]} not found$") as raised:
        read_secrets(client, arns)
    assert len(calls) == 1
    assert shows_no_value(raised.value)  # the other two were read, and stay out of the message


def test_a_secret_scheduled_for_deletion_says_so(client: Any) -> None:
    arns = three_secrets(client)
    client.delete_secret(SecretId=arns["app user app_rw"])  # the default 30-day recovery window
    reason = re.escape(CLIENT_ERROR_REASONS["InvalidRequestException"])
    with pytest.raises(SecretError, match=f"^app user app_rw: secret {arns['app user app_rw']} {reason}$"):
        read_secrets(client, arns)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("not json " + PASSWORD, "is not valid JSON"), (json.dumps([PASSWORD]), "is JSON but not an object")],
)
def test_an_unusable_secret_among_three_is_named_without_any_value(client: Any, text: str, reason: str) -> None:
    arns = three_secrets(client)
    client.put_secret_value(SecretId=arns["app user app_tc"], SecretString=text)
    with pytest.raises(SecretError, match=f"^app user app_tc: secret {arns['app user app_tc']} {reason}") as raised:
        read_secrets(client, arns)
    assert shows_no_value(raised.value)


def test_secrets_are_matched_by_arn_name_and_partial_arn(client: Any) -> None:
    admin = put(client, RDS_SECRET)
    put(client, {"username": "app_rw", "password": PASSWORD}, name="app-rw")
    tc = put(client, {"username": "app_tc", "password": PASSWORD}, name="app-tc")
    # a secret named like another's ARN suffix: its partial ARN is the admin secret's full ARN
    look_alike = put(client, {"username": "other", "password": PASSWORD}, name=admin.rsplit(":", 1)[1])
    asked = {"DB_SECRET_ARN": admin, "app user app_rw": "app-rw", "app user app_tc": tc[:-7], "OTHER": look_alike}
    secrets = read_secrets(client, asked)
    assert admin_login(secrets["DB_SECRET_ARN"]).username == "postgres"  # the exact ARN, not the look-alike
    users = {name: secrets[name].document["username"] for name in ("app user app_rw", "app user app_tc", "OTHER")}
    assert users == {"app user app_rw": "app_rw", "app user app_tc": "app_tc", "OTHER": "other"}


@pytest.mark.parametrize(("code", "reason"), CLIENT_ERROR_REASONS.items())
def test_each_error_secrets_manager_reports_for_one_secret_is_named(code: str, reason: str) -> None:
    """The per-secret Errors of BatchGetSecretValue (AccessDenied, DecryptionFailure: moto sends neither)."""
    names = {"DB_SECRET_ARN": "db-admin", "app user app_rw": "app-rw", "app user app_tc": "app-tc"}
    arns = {variable: f"{SECRETS}:{name}-AbCdEf" for variable, name in names.items()}
    values = [
        {"ARN": arns["DB_SECRET_ARN"], "Name": "db-admin", "SecretString": json.dumps(RDS_SECRET)},
        {"ARN": arns["app user app_tc"], "Name": "app-tc", "SecretString": json.dumps({"password": PASSWORD})},
    ]
    # the service's own message is never passed on
    errors = [{"SecretId": arns["app user app_rw"], "ErrorCode": code, "Message": f"stub: {PASSWORD}"}]
    client = real_client()
    with Stubber(client) as stub:
        answer = {"SecretValues": values, "Errors": errors}
        stub.add_response("batch_get_secret_value", answer, {"SecretIdList": list(arns.values())})
        with pytest.raises(SecretError) as raised:
            read_secrets(client, arns)
    assert str(raised.value) == f"app user app_rw: secret {arns['app user app_rw']} {reason}"
    assert shows_no_value(raised.value)


def test_a_secret_left_out_of_the_answer_is_named() -> None:
    arns = {"DB_SECRET_ARN": "db-admin", "app user app_rw": "app-rw"}
    client = real_client()
    with Stubber(client) as stub:
        value = {"ARN": f"{SECRETS}:db-admin-AbCdEf", "Name": "db-admin", "SecretString": "{}"}
        stub.add_response("batch_get_secret_value", {"SecretValues": [value], "Errors": []})
        with pytest.raises(SecretError, match=r"^app user app_rw: secret app-rw is missing from Secrets Manager's"):
            read_secrets(client, arns)


def test_a_refused_call_names_every_secret_and_the_permission() -> None:
    arns = {"DB_SECRET_ARN": "arn:a", "app user app_rw": "arn:b", "app user app_tc": "arn:b"}
    client = real_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "batch_get_secret_value", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(SecretError) as raised:
            read_secrets(client, arns)
    assert str(raised.value) == (
        "DB_SECRET_ARN: secret arn:a; app user app_rw, app user app_tc: secret arn:b not readable by this"
        " function (AccessDenied): the BatchGetSecretValue call itself failed, so none was read (the role needs"
        " secretsmanager:BatchGetSecretValue on Resource *)"
    )


def test_an_unreachable_service_names_every_secret() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the client tries it
    config = Config(connect_timeout=1, retries={"max_attempts": 1})
    client = real_client(endpoint_url=f"http://127.0.0.1:{port}", config=config)
    where = "DB_SECRET_ARN: secret arn:a; app user app_rw: secret arn:b"
    with pytest.raises(SecretError, match=rf"^{where}: Secrets Manager not reachable \(EndpointConnectionError: "):
        read_secrets(client, {"DB_SECRET_ARN": "arn:a", "app user app_rw": "arn:b"})


def test_more_than_twenty_secrets_take_one_call_per_twenty(client: Any) -> None:
    arns = {f"SECRET_{n}": put(client, {"n": n}, name=f"s{n}") for n in range(BATCH_LIMIT + 5)}
    calls = secrets_calls(client)
    secrets = read_secrets(client, arns)
    assert [len(ids) for _, ids in calls] == [BATCH_LIMIT, 5]
    assert [secret.document["n"] for secret in secrets.values()] == list(range(BATCH_LIMIT + 5))
