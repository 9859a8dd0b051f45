"""DatabaseMigrations as a team uses it: several per stack and per app, any target, attributes, warnings, errors.

Real aws-cdk-lib synthesis of apps written here (not this repository's stack), with the constructs a team
has: a VPC, an RDS instance, an Aurora cluster, a proxy, imported resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk
import pytest
from aws_cdk import App, CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from aws_cdk.assertions import Annotations, Match, Template
from constructs import Construct

from lambda_db_setup.cdk import DDL, WRITE, AppGroup, AppUser, DatabaseMigrations, routes, tls
from lambda_db_setup.errors import ConfigurationError
from tests.tls_server import PROXY_SHAPE, RDS_SHAPE, make_chain

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = PROJECT_ROOT / "migrations"
BUNDLE_CACHE = PROJECT_ROOT / ".cdk-bundle-cache"
STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/{name}/51af3dc0-da77-11e4-872e-1234567db123"
STACK_ID_REF = {"Ref": "AWS::StackId"}
ENV = {"account": "123456789012", "region": "eu-west-1"}
ISOLATED = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
NO_BUNDLING = {"aws:cdk:bundling-stacks": []}  # synth without copying the asset, for tests of the template only
# Every property that names a resource physically, and the service's limit on its length. (An inline IAM
# policy's PolicyName is not among them: it need only differ among the policies of one role.)
NAME_LIMITS = {
    "FunctionName": 64,
    "LogGroupName": 512,
    "RoleName": 64,
    "StateMachineName": 80,
    "AlarmName": 255,
    "TopicName": 256,
    "GroupName": 255,
    "ManagedPolicyName": 128,
    "DBProxyName": 63,
    "RuleName": 64,
}


@dataclass
class TeamStack:
    """A team's stack: its network and databases, and the DatabaseMigrations added to it."""

    stack: Stack
    vpc: ec2.Vpc
    proxy: rds.DatabaseProxy
    instance: rds.DatabaseInstance
    cluster: rds.DatabaseCluster
    admin_secret: secretsmanager.ISecret
    endpoint: ec2.InterfaceVpcEndpoint


def team_stack(app: App, name: str) -> TeamStack:
    """An isolated VPC with a Secrets Manager endpoint, a PostgreSQL instance behind a proxy, an Aurora cluster."""
    stack = Stack(app, name, env=ENV)
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        max_azs=2,
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name="db", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
    )
    endpoint = vpc.add_interface_endpoint("SecretsManager", service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER)
    placed = {"vpc": vpc, "vpc_subnets": ISOLATED}
    engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16_13)
    instance = rds.DatabaseInstance(stack, "Instance", engine=engine, **placed)
    proxy = instance.add_proxy("Proxy", db_proxy_name=f"{name}-proxy", secrets=[instance.secret], **placed)
    cluster = rds.DatabaseCluster(
        stack,
        "Cluster",
        engine=rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_16_13),
        writer=rds.ClusterInstance.serverless_v2("Writer"),
        **placed,
    )
    return TeamStack(stack, vpc, proxy, instance, cluster, instance.secret, endpoint)


GROUPS = [AppGroup("readwrite", WRITE), AppGroup("tablecreator", DDL)]


def users(scope: Construct) -> list[AppUser]:
    """One user in each of `GROUPS`."""
    return [
        AppUser(name, secretsmanager.Secret(scope, f"{name}Secret"), group)
        for name, group in (("app_rw", "readwrite"), ("app_tc", "tablecreator"))
    ]


def migrations(scope: Construct, construct_id: str, team: TeamStack, target: Any, **extra: Any) -> DatabaseMigrations:
    options = {
        "vpc": team.vpc,
        "vpc_subnets": ISOLATED,
        "secrets_manager_endpoint": team.endpoint,
        "bundle_cache_dir": BUNDLE_CACHE,
        "migrations_dir": MIGRATIONS,
        **extra,
    }
    return DatabaseMigrations(
        scope,
        construct_id,
        target=target,
        admin_secret=team.admin_secret,
        app_groups=GROUPS,
        app_users=users(Construct(scope, f"{construct_id}Users")),
        **options,
    )


@dataclass
class TeamApp:
    app: App
    orders: TeamStack
    billing: TeamStack
    runs: dict[str, DatabaseMigrations]  # by the path of the construct
    outdir: Path

    def template(self, team: TeamStack) -> dict[str, Any]:
        return json.loads((self.outdir / f"{team.stack.stack_name}.template.json").read_text())


@pytest.fixture(scope="module")
def team_app(tmp_path_factory: pytest.TempPathFactory) -> TeamApp:
    """Two stacks; in one, three DatabaseMigrations (two with the same id in different scopes), one in the other."""
    outdir = tmp_path_factory.mktemp("team")
    app = App(outdir=str(outdir))
    orders, billing = team_stack(app, "Orders"), team_stack(app, "Billing")
    reporting = Construct(orders.stack, "Reporting")
    built = [
        migrations(orders.stack, "Migrations", orders, orders.proxy),
        migrations(reporting, "Migrations", orders, orders.instance),
        migrations(orders.stack, "ClusterMigrations", orders, orders.cluster),
        migrations(billing.stack, "Migrations", billing, billing.proxy),
    ]
    app.synth()
    return TeamApp(app, orders, billing, {run.node.path: run for run in built}, outdir)


def evaluate(expression: Any, stack_id: str) -> Any:
    """The value CloudFormation gives the intrinsics a physical name uses, in the stack ``stack_id``."""
    if not isinstance(expression, dict):
        return expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        assert argument == "AWS::StackId", f"a physical name depends on {argument}"
        return stack_id
    if function == "Fn::Join":
        return argument[0].join(evaluate(part, stack_id) for part in argument[1])
    if function == "Fn::Split":
        return evaluate(argument[1], stack_id).split(argument[0])
    if function == "Fn::Select":
        return evaluate(argument[1], stack_id)[argument[0]]
    raise AssertionError(f"unexpected intrinsic {function} in a physical name")


def physical_names(template: dict[str, Any], stack_id: str) -> list[tuple[str, str, str]]:
    """(resource type, property, value) of every physically named resource in ``template``.

    A name that refers to another resource (a proxy target group's ``DBProxyName``) names that one, not this.
    """
    found = []
    for resource in template["Resources"].values():
        for key, value in resource.get("Properties", {}).items():
            refers = isinstance(value, dict) and set(value) in ({"Ref"}, {"Fn::GetAtt"}) and value != STACK_ID_REF
            if key in NAME_LIMITS and not refers:
                found.append((resource["Type"], key, evaluate(value, stack_id)))
    return found


def test_every_physical_name_is_unique_and_within_its_limit(team_app: TeamApp) -> None:
    """Both stacks given the same stack id: the construct's path alone must tell the names apart."""
    names = []
    for team in (team_app.orders, team_app.billing):
        names += physical_names(team_app.template(team), STACK_ID.format(name="Same"))
    by_kind: dict[tuple[str, str], list[str]] = {}
    for resource_type, key, value in names:
        assert 0 < len(value) <= NAME_LIMITS[key], (resource_type, key, value)
        by_kind.setdefault((resource_type, key), []).append(value)
    for kind, values in by_kind.items():
        assert len(values) == len(set(values)), (kind, sorted(values))
    functions = by_kind[("AWS::Lambda::Function", "FunctionName")]
    assert len(functions) == 2 * len(team_app.runs)  # on_event and is_complete of each
    assert len(by_kind[("AWS::Logs::LogGroup", "LogGroupName")]) == len(functions)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in functions), functions  # Lambda's alphabet


def test_names_read_as_stack_path_function_and_stack_id(team_app: TeamApp) -> None:
    template = team_app.template(team_app.orders)
    stack_id = STACK_ID.format(name="Orders")
    functions = {value for _, key, value in physical_names(template, stack_id) if key == "FunctionName"}
    pattern = r"Orders-(Reporting-)?(Cluster)?Migrations-[0-9A-F]{8}-(OnEvent|IsComplete)-51af3dc0"
    assert all(re.fullmatch(pattern, name) for name in functions), functions
    groups = {value for _, key, value in physical_names(template, stack_id) if key == "LogGroupName"}
    assert groups == {f"/aws/lambda/{name}" for name in functions}


def test_names_stay_within_64_characters_for_the_longest_stack_name_and_a_deep_path(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path), context=NO_BUNDLING)
    team = team_stack(app, "S" * 128)  # CloudFormation's longest stack name
    deep = Construct(Construct(team.stack, "Ä" * 60 + "Team"), "Databäse" * 8)
    migrations(deep, "Migrations" * 6, team, team.proxy)
    migrations(deep, "Migrations" * 6 + "2", team, team.instance)
    migrations(team.stack, "Orders-Migrations", team, team.proxy)  # ids that read alike once punctuation goes
    migrations(team.stack, "Orders.Migrations", team, team.proxy)
    template = Template.from_stack(team.stack).to_json()
    names = [value for _, key, value in physical_names(template, STACK_ID.format(name="S")) if key == "FunctionName"]
    assert len(names) == len(set(names)) == 8
    assert all(len(name) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in names), names


# --- the CA bundle, by target kind --------------------------------------------------------------------------


def handler_environment(template: dict[str, Any], run: DatabaseMigrations) -> dict[str, str]:
    stack = Stack.of(run)
    logical_id = stack.resolve(run.on_event.node.default_child.logical_id)
    return template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]


def asset_dir(outdir: Path, run: DatabaseMigrations) -> Path:
    return outdir / f"asset.{run.asset.asset_hash}"


def test_the_bundle_follows_the_target_kind(team_app: TeamApp) -> None:
    template = team_app.template(team_app.orders)
    expected = {
        "Orders/Migrations": tls.CERTIFI_BUNDLE,  # a proxy: Amazon Root CAs
        "Orders/Reporting/Migrations": tls.RDS_BUNDLE,  # an instance's own endpoint: the RDS CAs
        "Orders/ClusterMigrations": tls.RDS_BUNDLE,  # a cluster's endpoint: the RDS CAs
    }
    for path, bundle in expected.items():
        run = team_app.runs[path]
        for function in (run.on_event, run.is_complete):
            logical_id = Stack.of(run).resolve(function.node.default_child.logical_id)
            env = template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
            assert env["DB_CA_BUNDLE"] == f"/var/task/{bundle}", path
        assert (asset_dir(team_app.outdir, run) / bundle).is_file(), path
    instance_run = team_app.runs["Orders/Reporting/Migrations"]
    shipped = (PROJECT_ROOT / "lambda_db_setup" / "certs" / "rds-global-bundle.pem").read_bytes()
    assert (asset_dir(team_app.outdir, instance_run) / tls.RDS_BUNDLE).read_bytes() == shipped
    endpoint = handler_environment(template, instance_run)["DB_PROXY_ENDPOINT"]
    assert endpoint == Stack.of(instance_run).resolve(team_app.orders.instance.instance_endpoint.socket_address)


def test_a_teams_own_bundle_goes_into_the_asset_and_the_hash(tmp_path: Path, team_app: TeamApp) -> None:
    bundle = tmp_path / "govcloud-ca.pem"
    bundle.write_bytes(make_chain(RDS_SHAPE).root_pem)
    app = App(outdir=str(tmp_path / "out"))
    team = team_stack(app, "GovCloud")
    own = migrations(team.stack, "Migrations", team, team.instance, ca_bundle=bundle)
    app.synth()
    template = json.loads((tmp_path / "out" / "GovCloud.template.json").read_text())
    assert handler_environment(template, own)["DB_CA_BUNDLE"] == f"/var/task/{tls.TEAM_BUNDLE}"
    assert (asset_dir(tmp_path / "out", own) / tls.TEAM_BUNDLE).read_text() == bundle.read_text()
    # the same code with another bundle is another asset: the functions get the new CAs on deploy
    default = team_app.runs["Orders/Reporting/Migrations"]
    assert own.asset.asset_hash != default.asset.asset_hash


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"ca_bundle .*missing\.pem is not a file \(from the working directory "),
        ("", "holds no PEM certificate"),
        ("not a certificate\n", "holds no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "holds no PEM certificate"),
        ("ünïcode\n", "holds no PEM certificate"),
    ],
)
def test_a_bad_bundle_fails_the_synth_naming_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    bundle = tmp_path / "missing.pem"
    if content is not None:
        bundle.write_text(content)
    app = App(outdir=str(tmp_path / "out"), context=NO_BUNDLING)
    team = team_stack(app, "Orders")
    with pytest.raises(ConfigurationError, match=message):
        migrations(team.stack, "Migrations", team, team.proxy, ca_bundle=bundle)


def test_a_server_certificate_alone_is_not_a_bundle(tmp_path: Path) -> None:
    leaf = make_chain(PROXY_SHAPE).server_chain_pem.split(b"-----END CERTIFICATE-----\n")[0]
    bundle = tmp_path / "leaf.pem"
    bundle.write_bytes(leaf + b"-----END CERTIFICATE-----\n")
    app = App(outdir=str(tmp_path / "out"), context=NO_BUNDLING)
    team = team_stack(app, "Orders")
    with pytest.raises(ConfigurationError, match=f"ca_bundle {re.escape(str(bundle))} holds no CA certificate"):
        migrations(team.stack, "Migrations", team, team.proxy, ca_bundle=bundle)


# --- what an app follows ------------------------------------------------------------------------------------


def test_attributes_an_app_follows(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path), context=NO_BUNDLING)
    team = team_stack(app, "Orders")
    run = migrations(team.stack, "Migrations", team, team.proxy)
    config = ssm.StringParameter(team.stack, "SchemaVersion", string_value=run.last_migration)
    config.node.add_dependency(run)  # as the README shows: the app's resource waits for the migrations
    CfnOutput(team.stack, "Applied", value=run.applied_count)
    CfnOutput(team.stack, "Group", value=run.security_group.security_group_id)
    CfnOutput(team.stack, "OnEvent", value=run.on_event_function_name)
    CfnOutput(team.stack, "IsComplete", value=run.is_complete_function_name)
    template = Template.from_stack(team.stack).to_json()
    resources, outputs = template["Resources"], template["Outputs"]
    (run_id,) = [i for i, r in resources.items() if r["Type"] == "Custom::DbMigrations"]
    assert outputs["Applied"]["Value"] == {"Fn::GetAtt": [run_id, "AppliedCount"]}
    (parameter,) = [r for r in resources.values() if r["Type"] == "AWS::SSM::Parameter"]
    assert parameter["Properties"]["Value"] == {"Fn::GetAtt": [run_id, "LastMigration"]}
    assert run_id in parameter["DependsOn"]
    (group_id,) = [i for i, r in resources.items() if r["Properties"].get("GroupDescription") == "Migration Lambda"]
    assert outputs["Group"]["Value"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    handlers = {
        r["Properties"]["Handler"].rsplit(".", 1)[1]: i
        for i, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith("lambda_db_setup.")
    }
    assert outputs["OnEvent"]["Value"] == {"Ref": handlers["on_event"]}
    assert outputs["IsComplete"]["Value"] == {"Ref": handlers["is_complete"]}


# --- the Secrets Manager route warning ---------------------------------------------------------------------

Placement = tuple[ec2.IVpc, ec2.SubnetSelection | None]


def _isolated_vpc(stack: Stack) -> ec2.Vpc:
    subnets = [ec2.SubnetConfiguration(name="db", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)]
    return ec2.Vpc(stack, "Bare", max_azs=2, nat_gateways=0, subnet_configuration=subnets)


def _isolated(stack: Stack) -> Placement:
    return _isolated_vpc(stack), None


def _nat(stack: Stack) -> Placement:
    return ec2.Vpc(stack, "Nat", max_azs=2, nat_gateways=1), None  # private subnets behind a NAT


def _isolated_beside_nat(stack: Stack) -> Placement:
    """A VPC with both kinds, the functions placed in its isolated subnets."""
    return ec2.Vpc(stack, "Mixed", max_azs=2, nat_gateways=1, subnet_configuration=MIXED), ISOLATED


def _nat_beside_isolated(stack: Stack) -> Placement:
    egress = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
    return ec2.Vpc(stack, "Mixed", max_azs=2, nat_gateways=1, subnet_configuration=MIXED), egress


def _imported_isolated(stack: Stack) -> Placement:
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Imported", vpc_id="vpc-0a1b", availability_zones=["eu-west-1a"], isolated_subnet_ids=["subnet-0a1b"]
    )
    return vpc, None


def _subnets_by_id(stack: Stack) -> Placement:
    """Subnets the VPC does not classify: their routes are unknown, so no warning."""
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Imported", vpc_id="vpc-0a1b", availability_zones=["eu-west-1a"])
    subnet = ec2.Subnet.from_subnet_attributes(stack, "ById", subnet_id="subnet-0a1b", availability_zone="eu-west-1a")
    return vpc, ec2.SubnetSelection(subnets=[subnet])


def _endpoint_without_private_dns(stack: Stack) -> Placement:
    vpc = _isolated_vpc(stack)
    service = ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER
    ec2.InterfaceVpcEndpoint(stack, "NoDns", vpc=vpc, service=service, private_dns_enabled=False)
    return vpc, None


def _endpoint_elsewhere_in_the_app(stack: Stack) -> Placement:
    vpc = _isolated_vpc(stack)
    ec2.InterfaceVpcEndpoint(stack, "Sm", vpc=vpc, service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER)
    return vpc, None


def _endpoint_in_another_vpc(stack: Stack) -> Placement:
    other = ec2.Vpc(stack, "Other", max_azs=1, nat_gateways=0, subnet_configuration=MIXED[1:])
    other.add_interface_endpoint("Sm", service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER)
    return _isolated_vpc(stack), None


def _endpoint_for_another_service(stack: Stack) -> Placement:
    vpc = _isolated_vpc(stack)
    vpc.add_interface_endpoint("Kms", service=ec2.InterfaceVpcEndpointAwsService.KMS)
    return vpc, None


MIXED = [
    ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
    ec2.SubnetConfiguration(name="db", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
]


def _synth_warnings(
    tmp_path: Path, place: Callable[[Stack], Placement], *, given_endpoint: bool = False, acknowledged: bool = False
) -> list[str]:
    """The route warnings on a DatabaseMigrations placed by ``place``, targeting an imported proxy."""
    app = App(outdir=str(tmp_path), context=NO_BUNDLING)
    stack = Stack(app, "Orders", env=ENV)
    vpc, subnets = place(stack)
    proxy_group = ec2.SecurityGroup.from_security_group_id(stack, "ProxySg", "sg-0a1b")
    proxy = rds.DatabaseProxy.from_database_proxy_attributes(
        stack,
        "Proxy",
        db_proxy_name="orders",
        db_proxy_arn="arn:aws:rds:eu-west-1:123456789012:db-proxy:prx-0a1b",
        endpoint="orders.proxy-c0ffee.eu-west-1.rds.amazonaws.com",
        security_groups=[proxy_group],
    )
    run = DatabaseMigrations(
        stack,
        "Migrations",
        vpc=vpc,
        vpc_subnets=subnets,
        target=proxy,
        target_security_group=proxy_group,
        admin_secret=secretsmanager.Secret(stack, "Admin"),
        app_groups=GROUPS,
        app_users=users(stack),
        migrations_dir=MIGRATIONS,
        secrets_manager_endpoint=ec2.InterfaceVpcEndpoint.from_interface_vpc_endpoint_attributes(
            stack, "Endpoint", vpc_endpoint_id="vpce-0a1b", port=443
        )
        if given_endpoint
        else None,
    )
    if acknowledged:
        aws_cdk.Annotations.of(run).acknowledge_warning(routes.NO_ROUTE_WARNING, "reached through a proxy server")
    found = Annotations.from_stack(stack).find_warning(
        "/Orders/Migrations", Match.string_like_regexp("no route to Secrets Manager")
    )
    return [message.entry.data for message in found]


@pytest.mark.parametrize(
    ("place", "warned"),
    [
        (_isolated, True),
        (_imported_isolated, True),
        (_isolated_beside_nat, True),
        (_endpoint_without_private_dns, True),
        (_endpoint_in_another_vpc, True),
        (_endpoint_for_another_service, True),
        (_endpoint_elsewhere_in_the_app, False),
        (_nat, False),
        (_nat_beside_isolated, False),
        (_subnets_by_id, False),
    ],
)
def test_synth_warns_when_the_subnets_have_no_route_to_secrets_manager(
    tmp_path: Path, place: Callable[[Stack], Placement], warned: bool
) -> None:
    warnings = _synth_warnings(tmp_path, place)
    assert len(warnings) == (1 if warned else 0), warnings
    if warned:
        assert routes.NO_ROUTE_WARNING in warnings[0]
        assert warnings[0].startswith("the migration functions run in ")


def test_a_given_endpoint_or_an_acknowledgment_silences_the_warning(tmp_path: Path) -> None:
    assert _synth_warnings(tmp_path / "given", _isolated, given_endpoint=True) == []
    assert _synth_warnings(tmp_path / "acknowledged", _isolated, acknowledged=True) == []


# --- errors that name the problem --------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["migrations", "mïgrations ü", "db/migrations"])
def test_a_missing_migrations_dir_names_the_path_and_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str
) -> None:
    monkeypatch.chdir(tmp_path)
    app = App(outdir=str(tmp_path / "out"), context=NO_BUNDLING)
    team = team_stack(app, "Orders")
    with pytest.raises(ConfigurationError) as raised:
        migrations(team.stack, "Migrations", team, team.proxy, migrations_dir=relative)
    message = str(raised.value)
    assert message.startswith(f"migrations_dir {relative!r} does not exist: {tmp_path / relative}"), message
    assert message.endswith(f"(relative to the working directory {tmp_path})")
    assert "\n" not in message and "trigger" not in message


def test_a_file_or_an_empty_path_as_migrations_dir_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "migrations.sql").write_text("")
    app = App(outdir=str(tmp_path / "out"), context=NO_BUNDLING)
    team = team_stack(app, "Orders")
    with pytest.raises(ConfigurationError, match=r"^migrations_dir 'migrations.sql' is not a directory: "):
        migrations(team.stack, "Migrations", team, team.proxy, migrations_dir="migrations.sql")
    with pytest.raises(ConfigurationError, match=r"^migrations_dir is empty"):
        migrations(team.stack, "Empty", team, team.proxy, migrations_dir="")


def test_a_bad_trigger_is_named_alone(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path / "out"), context=NO_BUNDLING)
    team = team_stack(app, "Orders")
    with pytest.raises(ConfigurationError, match=r"^trigger must be one of always, content-hash, not 'sometimes'$"):
        migrations(team.stack, "Migrations", team, team.proxy, trigger="sometimes")
