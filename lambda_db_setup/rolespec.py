"""The application roles a team declares: groups (what they may do, on which schemas) and login users.

One declaration, checked by the same rules at synth (the CDK construct) and at run time (the handler, from
the custom resource's properties), so a bad name fails ``cdk synth`` before it can fail a deploy. The
construct sends it as the properties ``AppGroups`` and ``AppUsers`` (not the environment: no 4 KB limit,
and a changed declaration is a changed resource, so it runs even with ``migrationTrigger=content-hash``).

A user's login name is its declared ``name``: it is known at synth, where grants, checks and the proxy
warning need it, while the secret's ``username`` is known only at run time (generated, imported, rotated).
The secret may leave ``username`` out; if it holds one, it must be the same name (`credentials.user_login`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

READ = "read"
WRITE = "write"
DDL = "ddl"
PRIVILEGES = (READ, WRITE, DDL)
DEFAULT_SCHEMAS = ("public",)
NAME_MAX_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; a longer name would be cut silently
RESERVED_ROLE_NAMES = ("public", "none")  # CREATE ROLE refuses these, and every name starting with pg_
GROUPS_PROPERTY = "AppGroups"
USERS_PROPERTY = "AppUsers"


@dataclass(frozen=True)
class AppGroup:
    """A NOLOGIN group role: ``privilege`` ``read`` (SELECT), ``write`` (read + INSERT, UPDATE, DELETE and
    sequences) or ``ddl`` (write + CREATE on the schemas), on every table and sequence of ``schemas``,
    those the admin creates later included."""

    name: str
    privilege: str
    schemas: tuple[str, ...] = DEFAULT_SCHEMAS


@dataclass(frozen=True)
class DeclaredUser:
    """A login user as declared: its name (the login), its group, and the secret holding its password."""

    name: str
    group: str
    secret_arn: str


@dataclass(frozen=True)
class Declaration:
    """Everything declared; empty: roles are managed elsewhere, and the run leaves them alone."""

    groups: tuple[AppGroup, ...] = ()
    users: tuple[DeclaredUser, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.groups or self.users)


def check(groups: Sequence[AppGroup], users: Sequence[tuple[str, str]], where: str) -> None:
    """Names valid and unique, privileges known, each user's group declared; ``users`` as (name, group).

    ``where`` starts each message (``app_groups``, or the property at run time), so the error says what to fix.
    """
    names: dict[str, str] = {}
    for group in groups:
        _check_name(group.name, f"{where}: group {group.name!r}", "role")
        if group.privilege not in PRIVILEGES:
            raise ConfigurationError(
                f"{where}: group {group.name!r} has privilege {group.privilege!r}; one of {', '.join(PRIVILEGES)}"
            )
        if isinstance(group.schemas, str) or not group.schemas:
            raise ConfigurationError(f"{where}: group {group.name!r} needs a tuple of one or more schemas")
        for schema in group.schemas:
            _check_name(schema, f"{where}: group {group.name!r} schema {schema!r}", "schema")
        if len(set(group.schemas)) != len(group.schemas):
            raise ConfigurationError(f"{where}: group {group.name!r} lists a schema twice")
        _claim(names, group.name, "group", where)
    for name, group_name in users:
        _check_name(name, f"{where}: user {name!r}", "role")
        _claim(names, name, "user", where)
        if names.get(group_name) != "group":
            raise ConfigurationError(
                f"{where}: user {name!r} joins group {group_name!r}, which is not declared"
                f" (groups: {', '.join(group.name for group in groups) or 'none'})"
            )


def to_properties(groups: Sequence[AppGroup], users: Sequence[tuple[str, str, Any]]) -> dict[str, Any]:
    """The custom resource's properties; none at all when nothing is declared. ``users``: (name, group, ARN)."""
    properties: dict[str, Any] = {}
    if groups:
        properties[GROUPS_PROPERTY] = [
            {"Name": group.name, "Privilege": group.privilege, "Schemas": list(group.schemas)} for group in groups
        ]
    if users:
        properties[USERS_PROPERTY] = [{"Name": name, "Group": group, "SecretArn": arn} for name, group, arn in users]
    return properties


def from_properties(properties: Mapping[str, Any]) -> Declaration:
    """The declaration in a CloudFormation event's ResourceProperties, checked as at synth."""
    try:
        groups = tuple(
            AppGroup(_text(item["Name"]), _text(item["Privilege"]), tuple(map(_text, _list(item["Schemas"]))))
            for item in _items(properties, GROUPS_PROPERTY)
        )
        users = tuple(
            DeclaredUser(_text(item["Name"]), _text(item["Group"]), _text(item["SecretArn"]))
            for item in _items(properties, USERS_PROPERTY)
        )
    except (KeyError, TypeError) as error:
        raise ConfigurationError(
            f"resource properties {GROUPS_PROPERTY}/{USERS_PROPERTY} are malformed ({type(error).__name__}: {error});"
            " they are written by the DatabaseMigrations construct"
        ) from None
    check(groups, [(user.name, user.group) for user in users], f"resource property {GROUPS_PROPERTY}/{USERS_PROPERTY}")
    secrets = [user.secret_arn for user in users]
    for user in users:
        if secrets.count(user.secret_arn) > 1:
            raise ConfigurationError(f"resource property {USERS_PROPERTY}: user {user.name!r} shares its secret")
    return Declaration(groups, users)


def _items(properties: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return _list(properties.get(key, []))


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not a list")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _check_name(name: object, what: str, kind: str) -> None:
    """A name PostgreSQL takes as given (quoted): 1-63 bytes, no NUL, not reserved."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what}: a {kind} name must be a non-empty string")
    if len(name.encode()) > NAME_MAX_BYTES:
        raise ConfigurationError(f"{what}: longer than {NAME_MAX_BYTES} bytes, PostgreSQL would cut it")
    if any(ord(character) < 32 for character in name):
        raise ConfigurationError(f"{what}: holds a control character (NUL, newline, ...)")
    if name.startswith("pg_") or (kind == "role" and name in RESERVED_ROLE_NAMES):
        raise ConfigurationError(f"{what}: reserved by PostgreSQL (pg_*, {', '.join(RESERVED_ROLE_NAMES)})")


def _claim(names: dict[str, str], name: str, kind: str, where: str) -> None:
    """Groups and users share PostgreSQL's one namespace of roles: each name once."""
    if name in names:
        raise ConfigurationError(f"{where}: {kind} {name!r} is declared twice (already as a {names[name]})")
    names[name] = kind
