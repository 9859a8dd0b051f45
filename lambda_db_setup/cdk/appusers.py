"""The construct's application roles: declared groups and users, checked at synth, sent as resource properties.

Optional: with none declared the run touches no role and reads no user secret, and the role gets no grant
for one. What can be checked at synth is: names and references (`rolespec.check`), the admin's name, one
secret per user, a secret generated in the app whose ``username`` is not the declared name, and a user
secret the target proxy does not hold (a warning: the proxy would refuse that user's logins).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Annotations, Stack, Token
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from lambda_db_setup.errors import ConfigurationError
from lambda_db_setup.rolespec import AppGroup, check, to_properties

SECRET_NOT_IN_PROXY = "lambda-db-setup:appUserSecretNotInProxy"  # the warning's id, to acknowledge it


@dataclass(frozen=True)
class AppUser:
    """A login user the run creates or updates: its login ``name`` (the secret's ``username``, if it has one,
    must be the same), the secret holding its password, and the declared group it joins."""

    name: str
    secret: secretsmanager.ISecret
    group: str


def declare(
    scope: Construct, target: object, groups: Sequence[AppGroup], users: Sequence[AppUser], admin_username: str
) -> dict[str, Any]:
    """The checked declaration as the custom resource's properties (none when nothing is declared).

    Errors fail the synth; a user secret the target proxy does not hold is a warning (`warn_unregistered`).
    """
    where = f"DatabaseMigrations {scope.node.path}"
    for item, kind in [(group, AppGroup) for group in groups] + [(user, AppUser) for user in users]:
        if not isinstance(item, kind):
            raise ConfigurationError(f"{where}: {item!r} is not an {kind.__name__}")
    check(groups, [(user.name, user.group) for user in users], where)
    for name in [group.name for group in groups] + [user.name for user in users]:
        if name == admin_username:
            raise ConfigurationError(f"{where}: {name!r} is the admin user (admin_username); declare another name")
    stack = Stack.of(scope)
    seen: dict[str, str] = {}
    for user in users:
        arn = json.dumps(stack.resolve(user.secret.secret_arn), sort_keys=True)
        if arn in seen:
            raise ConfigurationError(f"{where}: users {seen[arn]!r} and {user.name!r} share one secret")
        seen[arn] = user.name
        username = _generated_username(user.secret)
        if username is not None and username != user.name:
            raise ConfigurationError(
                f"{where}: user {user.name!r}: secret {user.secret.node.path} generates username {username!r};"
                " the declared name is the login: make them the same"
            )
    warn_unregistered(scope, target, users)
    return to_properties(groups, [(user.name, user.group, user.secret.secret_arn) for user in users])


def warn_unregistered(scope: Construct, target: object, users: Sequence[AppUser]) -> None:
    """Warn about each user secret a proxy built in this app does not hold; an imported proxy cannot be checked.

    Secrets compare as the template refers to them (a secret and its attachment to a database count as one).
    """
    if not isinstance(target, rds.DatabaseProxy):
        return
    stack = Stack.of(scope)
    auth = target.node.default_child.auth
    registered = {json.dumps(stack.resolve(entry.secret_arn), sort_keys=True) for entry in auth or []}
    for user in users:
        if not _identities(stack, user.secret) & registered:
            Annotations.of(scope).add_warning_v2(
                SECRET_NOT_IN_PROXY,
                f"app user {user.name}: secret {user.secret.node.path} is not one of the secrets of proxy"
                f" {target.node.path}, which will refuse that user's logins: add it to the proxy's secrets",
            )


def _identities(stack: Stack, secret: secretsmanager.ISecret) -> set[str]:
    """How the template may refer to ``secret``: itself, and for an attachment the secret it attaches."""
    identities = {json.dumps(stack.resolve(secret.secret_arn), sort_keys=True)}
    if isinstance(secret, secretsmanager.SecretTargetAttachment):
        identities.add(json.dumps(stack.resolve(secret.node.scope.secret_arn), sort_keys=True))
    return identities


def _generated_username(secret: secretsmanager.ISecret) -> str | None:
    """The ``username`` a secret made in this app holds from the start; None when that cannot be known."""
    owner = secret.node.scope if isinstance(secret, secretsmanager.SecretTargetAttachment) else secret
    resource = owner.node.default_child
    if not isinstance(resource, secretsmanager.CfnSecret):
        return None  # imported: the run checks it (credentials.user_login)
    template = getattr(resource.generate_secret_string, "secret_string_template", None)
    text = template if template is not None else resource.secret_string
    if not isinstance(text, str) or Token.is_unresolved(text):
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    username = document.get("username") if isinstance(document, dict) else None
    return username if isinstance(username, str) else None
