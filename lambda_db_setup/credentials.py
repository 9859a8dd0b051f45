"""Database logins read from Secrets Manager: the admin secret as RDS writes it, and the app users' secrets.

`read_secrets` fetches every secret a run needs in one BatchGetSecretValue call and checks each is a JSON
object; `admin_login` and `user_login` then check the keys each kind of login needs. Every error names the
secret and the environment variable pointing at it, and never contains a value read from a secret.
Passwords are left out of ``repr`` so a stray log of a login cannot leak one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
BATCH_LIMIT = 20  # the most ids BatchGetSecretValue takes in its SecretIdList
ARN_SUFFIX_LENGTH = 7  # "-" and the 6 random characters a secret's full ARN adds to its partial ARN


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


@dataclass(frozen=True)
class Secret:
    """A secret's JSON object, and how errors about it start, so a login's checks can still name it."""

    where: str  # "VARIABLE: secret ARN"
    document: dict[str, Any] = field(repr=False)


def secrets_client() -> Any:
    """A Secrets Manager client that fails within seconds when the service is unreachable (no VPC endpoint).

    boto3 is imported here, not at module level: it is most of the import time, and Delete never needs it.
    """
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("secretsmanager", config=config)


def read_secrets(client: Any, arns: Mapping[str, str]) -> dict[str, Secret]:
    """Each variable's secret (``{variable: ARN, name or partial ARN}``), in one call per 20 distinct secrets.

    One BatchGetSecretValue call rather than a GetSecretValue per secret: a round trip (through the VPC
    endpoint) less for each secret, at the start of every run. Variables sharing a secret share its read;
    an error names them all. The first secret that cannot be read, or is not a JSON object, raises.
    """
    variables: dict[str, list[str]] = {}
    for variable, arn in arns.items():
        variables.setdefault(arn, []).append(variable)
    where = {arn: f"{', '.join(names)}: secret {arn}" for arn, names in variables.items()}
    ids = list(where)
    documents: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH_LIMIT):
        documents |= _read_batch(client, ids[start : start + BATCH_LIMIT], where)
    return {variable: Secret(where[arn], documents[arn]) for variable, arn in arns.items()}


def read_admin_login(client: Any, arn: str, variable: str) -> AdminLogin:
    """The admin login alone, for the operator commands: they connect as the admin and need no other secret."""
    return admin_login(read_secrets(client, {variable: arn})[variable])


def admin_login(secret: Secret) -> AdminLogin:
    """The admin login in a secret RDS wrote; ``dbname`` defaults to postgres, as RDS leaves it out."""
    document, where = secret.document, secret.where
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


def user_login(secret: Secret, name: str) -> UserLogin:
    """The login of the application user declared as ``name``, its password from ``{"password": ...}``.

    The declared name is the login (see `rolespec`); a ``username`` in the secret must be the same, or the
    application reading the secret would log in as a role that was never granted anything.
    """
    _require_keys(secret.document, ("password",), secret.where)
    if "username" in secret.document:
        username = _text(secret.document, "username", secret.where)
        if username != name:
            raise SecretError(
                f"{secret.where}: 'username' is {username!r} but the user is declared as {name!r}; the declared"
                " name is the login: make the secret's username the same (or leave it out)"
            )
    return UserLogin(username=name, password=_text(secret.document, "password", secret.where))


def _read_batch(client: Any, ids: list[str], where: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One BatchGetSecretValue call: id -> JSON object. The call reports a secret it cannot read in ``Errors``."""
    listed = "; ".join(where[secret_id] for secret_id in ids)
    try:
        response = client.batch_get_secret_value(SecretIdList=ids)
    except ClientError as error:  # the call as a whole, e.g. a role without secretsmanager:BatchGetSecretValue
        code = error.response.get("Error", {}).get("Code", "")
        denied = code == "AccessDeniedException"
        hint = " (the role needs secretsmanager:BatchGetSecretValue on Resource *)" if denied else ""
        raise SecretError(
            f"{listed} {_reason(code)}: the BatchGetSecretValue call itself failed, so none was read{hint}"
        ) from None
    except BotoCoreError as error:
        raise SecretError(f"{listed}: Secrets Manager not reachable ({type(error).__name__}: {error})") from None
    values = _by_identifier(response.get("SecretValues", []))
    errors = {entry.get("SecretId"): entry.get("ErrorCode", "") for entry in response.get("Errors", [])}
    documents = {}
    for secret_id in ids:
        if secret_id in errors:
            raise SecretError(f"{where[secret_id]} {_reason(errors[secret_id])}")
        if secret_id not in values:
            raise SecretError(f"{where[secret_id]} is missing from Secrets Manager's answer (no value, no error)")
        documents[secret_id] = _json_object(values[secret_id], where[secret_id])
    return documents


def _reason(code: str) -> str:
    return CLIENT_ERROR_REASONS.get(code, f"cannot be read ({code})")


def _by_identifier(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each returned value under every id that may have asked for it: its ARN, its name, its partial ARN.

    The SecretIdList may hold any of the three; the answer gives only ARN and Name. An ARN or name given
    exactly wins over another secret's partial ARN that looks the same (a name ending in "-" and 6 characters).
    """
    by_id: dict[str, dict[str, Any]] = {}
    for entry in values:
        by_id[entry["ARN"][:-ARN_SUFFIX_LENGTH]] = entry
    for entry in values:
        by_id[entry["Name"]] = entry
    for entry in values:
        by_id[entry["ARN"]] = entry
    return by_id


def _json_object(value: dict[str, Any], where: str) -> dict[str, Any]:
    """The secret's SecretString as a JSON object; errors say what is wrong, never what is there."""
    text = value.get("SecretString")
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
