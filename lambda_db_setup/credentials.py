"""Database logins read from Secrets Manager: the admin secret as RDS writes it, and the app users' secrets.

Every error names the secret and the environment variable pointing at it, and never contains a value
read from a secret. Passwords are left out of ``repr`` so a stray log of a login cannot leak one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import SecretError

DEFAULT_DBNAME = "postgres"
CLIENT_ERROR_REASONS = {
    "ResourceNotFoundException": "not found",
    "AccessDeniedException": "not readable by this function (AccessDenied)",
    "DecryptionFailure": "cannot be decrypted with its KMS key",
    "InvalidRequestException": "cannot be read now (is it scheduled for deletion?)",
}


@dataclass(frozen=True)
class AdminLogin:
    """The admin (master) user of the database, from the secret RDS generates."""

    username: str
    password: str = field(repr=False)
    host: str
    port: int
    dbname: str


@dataclass(frozen=True)
class UserLogin:
    """An application user's name and password."""

    username: str
    password: str = field(repr=False)


def secrets_client() -> Any:
    """A Secrets Manager client that fails within seconds when the service is unreachable (no VPC endpoint).

    boto3 is imported here, not at module level: it is most of the import time, and Delete never needs it.
    """
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("secretsmanager", config=config)


def read_admin_login(client: Any, arn: str, variable: str) -> AdminLogin:
    """The admin login from the secret ``arn`` (named by ``variable`` in errors); ``dbname`` defaults to postgres."""
    document = _read_json(client, arn, variable)
    where = f"{variable}: secret {arn}"
    _require_keys(document, ("username", "password", "host", "port"), where)
    port = document["port"]
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
        raise SecretError(f"{where}: 'port' is not a TCP port number")
    return AdminLogin(
        username=_text(document, "username", where),
        password=_text(document, "password", where),
        host=_text(document, "host", where),
        port=int(port),
        dbname=_text(document, "dbname", where) if "dbname" in document else DEFAULT_DBNAME,
    )


def read_user_login(client: Any, arn: str, variable: str) -> UserLogin:
    """An application user's login from a secret holding ``{"username": ..., "password": ...}``."""
    document = _read_json(client, arn, variable)
    where = f"{variable}: secret {arn}"
    _require_keys(document, ("username", "password"), where)
    return UserLogin(username=_text(document, "username", where), password=_text(document, "password", where))


def _read_json(client: Any, arn: str, variable: str) -> dict[str, Any]:
    where = f"{variable}: secret {arn}"
    try:
        response = client.get_secret_value(SecretId=arn)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise SecretError(f"{where} {CLIENT_ERROR_REASONS.get(code, f'cannot be read ({code})')}") from None
    except BotoCoreError as error:
        raise SecretError(f"{where}: Secrets Manager not reachable ({type(error).__name__}: {error})") from None
    text = response.get("SecretString")
    if text is None:
        raise SecretError(f"{where} holds binary data, not a JSON SecretString")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        # error.msg and the position only; the exception's text would quote the document
        raise SecretError(f"{where} is not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(document, dict):
        raise SecretError(f"{where} is JSON but not an object")
    return document


def _require_keys(document: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in document]
    if missing:
        raise SecretError(f"{where} lacks key(s) {', '.join(missing)}")


def _text(document: dict[str, Any], key: str, where: str) -> str:
    value = document[key]
    if not isinstance(value, str) or not value:
        raise SecretError(f"{where}: '{key}' must be a non-empty string")
    if "\x00" in value:  # libpq and PostgreSQL end a string there: the role would get a shorter password
        raise SecretError(f"{where}: '{key}' holds a NUL character, which PostgreSQL cannot store as given")
    return value
