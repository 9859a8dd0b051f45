"""The construct's declared roles, synthesized with the real aws-cdk-lib: optional, any shape, checked at synth.

Each test builds a small stack of its own (a VPC, an instance behind a proxy, secrets) around one
``DatabaseMigrations``; the asset's pip step is cached in .cdk-bundle-cache/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from aws_cdk.assertions import Annotations, Match, Template

from lambda_db_setup.cdk import DDL, READ, WRITE, AppGroup, AppUser, DatabaseMigrations
from lambda_db_setup.cdk.appusers import SECRET_NOT_IN_PROXY
from lambda_db_setup.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = PROJECT_ROOT / "migrations"
ENV = {"account": "123456789012", "region": "eu-west-1"}


class World:
    """A stack with a VPC, a PostgreSQL instance, its admin secret, and a proxy holding ``proxy_secrets``."""

    def __init__(self, user_secrets: tuple[str, ...] = (), proxy_holds: tuple[str, ...] = ()) -> None:
        self.stack = Stack(App(), "Team", env=ENV)
        self.vpc = ec2.Vpc(self.stack, "Vpc", max_azs=2, nat_gateways=0)
        self.instance = rds.DatabaseInstance(
            self.stack,
            "Db",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16_13),
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        )
        self.secrets = {name: self._secret(name) for name in user_secrets}
        registered = [self.secrets[name] for name in proxy_holds]
        self.proxy = self.instance.add_proxy(
            "Proxy", vpc=self.vpc, secrets=[self.instance.secret, *registered], require_tls=True
        )

    def _secret(self, name: str, username: str | None = None) -> sm.ISecret:
        template = {"username": username or name} if username != "" else {}
        return sm.Secret(
            self.stack,
            f"Secret{name}",
            generate_secret_string=sm.SecretStringGenerator(
                secret_string_template=json.dumps(template), generate_string_key="password"
            ),
        )

    def migrations(self, **roles: Any) -> DatabaseMigrations:
        return DatabaseMigrations(
            self.stack,
            "Migrations",
            vpc=self.vpc,
            target=self.proxy,
            admin_secret=self.instance.secret,
            migrations_dir=MIGRATIONS,
            **roles,
        )

    def resource(self) -> dict[str, Any]:
        (run,) = Template.from_stack(self.stack).find_resources("Custom::DbMigrations").values()
        return run["Properties"]

    def readable_secrets(self, migrations: DatabaseMigrations) -> list[Any]:
        """What the migration role may GetSecretValue on, as the template refers to it."""
        template = Template.from_stack(self.stack).to_json()
        role = self.stack.resolve(migrations.on_event.role.role_name)
        return sorted(
            (
                json.dumps(resource)
                for policy in template["Resources"].values()
                if policy["Type"] == "AWS::IAM::Policy" and role in policy["Properties"]["Roles"]
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"])
                for resource in (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
            ),
        )

    def ref(self, secret: sm.ISecret) -> str:
        return json.dumps(self.stack.resolve(secret.secret_arn))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def handler_environments(stack: Stack) -> list[dict[str, str]]:
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    return [
        fn["Properties"]["Environment"]["Variables"]
        for fn in functions.values()
        if fn["Properties"].get("Handler", "").startswith("lambda_db_setup.handler.")
    ]


def test_no_users_no_roles_no_user_secret_in_the_policy() -> None:
    world = World()
    migrations = world.migrations()
    properties = world.resource()
    assert "AppGroups" not in properties and "AppUsers" not in properties
    assert world.readable_secrets(migrations) == [world.ref(world.instance.secret)]
    for env in handler_environments(world.stack):
        assert not [key for key in env if key.startswith("APP_")]
        assert env["DB_SECRET_ARN"] == world.stack.resolve(world.instance.secret.secret_arn)


def test_one_user_in_a_custom_read_only_group_on_schema_app() -> None:
    world = World(("reporter",), proxy_holds=("reporter",))
    secret = world.secrets["reporter"]
    migrations = world.migrations(
        app_groups=[AppGroup("reporting", READ, ("app",))], app_users=[AppUser("reporter", secret, "reporting")]
    )
    properties = world.resource()
    assert properties["AppGroups"] == [{"Name": "reporting", "Privilege": "read", "Schemas": ["app"]}]
    assert properties["AppUsers"] == [
        {"Name": "reporter", "Group": "reporting", "SecretArn": world.stack.resolve(secret.secret_arn)}
    ]
    assert world.readable_secrets(migrations) == sorted([world.ref(world.instance.secret), world.ref(secret)])
    Annotations.from_stack(world.stack).has_no_warning("*", Match.string_like_regexp(".*proxy.*"))


def test_many_users_and_groups() -> None:
    names = ("ana", "ben", "cy", "dee", "eve")
    world = World(names, proxy_holds=names)
    groups = [AppGroup("viewers", READ, ("public", "sales")), AppGroup("editors", WRITE), AppGroup("owners", DDL)]
    membership = dict(zip(names, ("viewers", "viewers", "editors", "owners", "owners"), strict=True))
    users = [AppUser(name, world.secrets[name], group) for name, group in membership.items()]
    migrations = world.migrations(app_groups=groups, app_users=users)
    properties = world.resource()
    assert [group["Name"] for group in properties["AppGroups"]] == ["viewers", "editors", "owners"]
    assert {user["Name"]: user["Group"] for user in properties["AppUsers"]} == membership
    expected = sorted([world.ref(world.instance.secret), *(world.ref(world.secrets[name]) for name in names)])
    assert world.readable_secrets(migrations) == expected


def test_a_user_secret_the_proxy_does_not_hold_is_a_synth_warning() -> None:
    world = World(("held", "missing"), proxy_holds=("held",))
    world.migrations(
        app_groups=[AppGroup("readers", READ)],
        app_users=[AppUser(name, world.secrets[name], "readers") for name in ("held", "missing")],
    )
    warnings = Annotations.from_stack(world.stack).find_warning("*", Match.string_like_regexp(".*proxy.*"))
    assert [w.entry.data for w in warnings] == [
        f"app user missing: secret Team/Secretmissing is not one of the secrets of proxy Team/Db/Proxy, which will"
        f" refuse that user's logins: add it to the proxy's secrets [ack: {SECRET_NOT_IN_PROXY}]"
    ]


def test_a_secret_attached_to_the_database_counts_as_the_proxys() -> None:
    world = World()
    secret = world._secret("attached").attach(world.instance)
    proxy = world.instance.add_proxy("Proxy2", vpc=world.vpc, secrets=[world.instance.secret, secret])
    DatabaseMigrations(
        world.stack,
        "Migrations",
        vpc=world.vpc,
        target=proxy,
        admin_secret=world.instance.secret,
        migrations_dir=MIGRATIONS,
        app_groups=[AppGroup("readers", READ)],
        app_users=[AppUser("attached", secret, "readers")],
    )
    assert Annotations.from_stack(world.stack).find_warning("*", Match.string_like_regexp(".*proxy.*")) == []


def bad(world: World, **roles: Any) -> str:
    with pytest.raises(ConfigurationError) as raised:
        world.migrations(**roles)
    return str(raised.value)


@pytest.mark.parametrize(
    ("groups", "users", "message"),
    [
        ([AppGroup("g", "admin")], [], "group 'g' has privilege 'admin'; one of read, write, ddl"),
        ([AppGroup("g", READ)], [("u", "nobody")], "user 'u' joins group 'nobody', which is not declared (groups: g)"),
        ([], [("u", "g")], "user 'u' joins group 'g', which is not declared (groups: none)"),
        ([AppGroup("g", READ), AppGroup("g", WRITE)], [], "group 'g' is declared twice (already as a group)"),
        ([AppGroup("g", READ)], [("g", "g")], "user 'g' is declared twice (already as a group)"),
        ([AppGroup("x" * 64, READ)], [], "longer than 63 bytes, PostgreSQL would cut it"),
        ([AppGroup("é" * 32, READ)], [], "longer than 63 bytes"),
        ([AppGroup("pg_readers", READ)], [], "reserved by PostgreSQL"),
        ([AppGroup("public", READ)], [], "reserved by PostgreSQL"),
        ([AppGroup("", READ)], [], "a role name must be a non-empty string"),
        ([AppGroup("g\nh", READ)], [], "holds a control character"),
        ([AppGroup("g", READ, ())], [], "needs a tuple of one or more schemas"),
        ([AppGroup("g", READ, "public")], [], "needs a tuple of one or more schemas"),
        ([AppGroup("g", READ, ("app", "app"))], [], "lists a schema twice"),
        ([AppGroup("g", READ, ("pg_catalog",))], [], "schema 'pg_catalog': reserved by PostgreSQL"),
        ([AppGroup("g", READ)], [("postgres", "g")], "'postgres' is the admin user (admin_username)"),
        ([AppGroup("postgres", READ)], [], "'postgres' is the admin user (admin_username)"),
    ],
)
def test_a_bad_declaration_fails_the_synth_naming_it(
    groups: list[AppGroup], users: list[tuple[str, str]], message: str
) -> None:
    world = World(tuple(name for name, _ in users))
    declared = [AppUser(name, world.secrets[name], group) for name, group in users]
    text = bad(world, app_groups=groups, app_users=declared)
    assert text.startswith("DatabaseMigrations Team/Migrations: ") and message in text, text


def test_two_users_sharing_one_secret_fail_the_synth() -> None:
    world = World(("a",))
    shared = world.secrets["a"]
    users = [AppUser("a", shared, "g"), AppUser("b", shared, "g")]
    assert "users 'a' and 'b' share one secret" in bad(world, app_groups=[AppGroup("g", READ)], app_users=users)


def test_a_generated_username_other_than_the_declared_name_fails_the_synth() -> None:
    world = World()
    secret = world._secret("other", username="app_other")
    text = bad(world, app_groups=[AppGroup("g", READ)], app_users=[AppUser("app_rw", secret, "g")])
    assert "user 'app_rw': secret Team/Secretother generates username 'app_other'" in text


def test_a_secret_without_a_username_or_imported_is_left_to_the_run() -> None:
    world = World()
    no_username = world._secret("nameless", username="")
    imported = sm.Secret.from_secret_complete_arn(
        world.stack, "Imported", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:team/app-AbCdEf"
    )
    users = [AppUser("nameless", no_username, "g"), AppUser("imported", imported, "g")]
    world.migrations(app_groups=[AppGroup("g", READ)], app_users=users)
    assert [user["Name"] for user in world.resource()["AppUsers"]] == ["nameless", "imported"]


def test_a_user_that_is_not_an_app_user_fails_the_synth() -> None:
    world = World(("a",))
    text = bad(world, app_groups=[AppGroup("g", READ)], app_users=[("a", world.secrets["a"], "g")])
    assert "('a', " in text and "is not an AppUser" in text
