"""The construct's Logs Insights saved queries and dashboard: real aws-cdk-lib synthesis, cdk-nag on.

Two DatabaseMigrations in one stack (imported VPC, proxy and secrets, as the README's consumer example),
one of them deep in a path of long construct ids: every name is unique, within CloudWatch's limits, and
each construct's queries and widgets read its own two log groups, never the other's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from aws_cdk.assertions import Annotations, Match, Template
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from lambda_db_setup.cdk import DDL, WRITE, AppGroup, AppUser, DatabaseMigrations
from lambda_db_setup.cdk.observability import DASHBOARD_NAME_MAX, QUERIES, QUERY_FOLDER, QUERY_NAME_MAX

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRETS = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders"
LONG_ID = "Reporting" + "X" * 120  # two of these in the path: a unique name over 255 characters, cut to fit
DASHBOARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def _migrations(scope: Construct, construct_id: str, stack: Stack, migrations_dir: Path) -> DatabaseMigrations:
    vpc = ec2.Vpc.from_vpc_attributes(
        scope, f"{construct_id}Vpc", vpc_id="vpc-0a1b", availability_zones=["eu-west-1a"], isolated_subnet_ids=["s-1"]
    )
    proxy_sg = ec2.SecurityGroup.from_security_group_id(scope, f"{construct_id}Sg", "sg-0a1b2c3d")
    proxy = rds.DatabaseProxy.from_database_proxy_attributes(
        scope,
        f"{construct_id}Proxy",
        db_proxy_name="orders",
        db_proxy_arn="arn:aws:rds:eu-west-1:123456789012:db-proxy:prx-0a1b2c3d",
        endpoint="orders.proxy-c0ffee.eu-west-1.rds.amazonaws.com",
        security_groups=[proxy_sg],
    )

    def secret(name: str) -> sm.ISecret:
        return sm.Secret.from_secret_complete_arn(scope, f"{construct_id}{name}", f"{SECRETS}/{name}-AbCdEf")

    return DatabaseMigrations(
        scope,
        construct_id,
        vpc=vpc,
        target=proxy,
        target_security_group=proxy_sg,
        admin_secret=secret("admin"),
        app_groups=[AppGroup("readwrite", WRITE), AppGroup("tablecreator", DDL)],
        app_users=[AppUser("app_rw", secret("rw"), "readwrite"), AppUser("app_tc", secret("tc"), "tablecreator")],
        migrations_dir=migrations_dir,
        trigger="content-hash",
        bundle_cache_dir=PROJECT_ROOT / ".cdk-bundle-cache",
    )


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, list[DatabaseMigrations], dict[str, Any]]:
    """One stack, two constructs: ``Orders/Migrations`` and one nested under two long ids."""
    migrations_dir = PROJECT_ROOT / "migrations"
    app = App(outdir=str(tmp_path_factory.mktemp("two-constructs")))
    stack = Stack(app, "Orders", env={"account": "123456789012", "region": "eu-west-1"})
    nested = Construct(Construct(stack, f"{LONG_ID}A"), f"{LONG_ID}B")
    constructs = [
        _migrations(stack, "Migrations", stack, migrations_dir),
        _migrations(nested, "Reports", stack, migrations_dir),
    ]
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    return stack, constructs, Template.from_stack(stack).to_json()


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def _refs(stack: Stack, migrations: DatabaseMigrations) -> list[dict[str, str]]:
    return [{"Ref": stack.get_logical_id(group.node.default_child)} for group in migrations.log_groups.values()]


def test_each_construct_saves_its_queries_over_its_own_log_groups(two) -> None:
    stack, constructs, template = two
    definitions = list(_resources(template, "AWS::Logs::QueryDefinition").values())
    assert len(definitions) == len(QUERIES) * len(constructs)
    for migrations in constructs:
        groups = _refs(stack, migrations)
        own = [d for d in definitions if d["LogGroupNames"] == groups]
        assert sorted(d["Name"].rsplit("/", 1)[1] for d in own) == sorted(QUERIES)
        prefix = {d["Name"].rsplit("/", 1)[0] for d in own}
        assert len(prefix) == 1 and prefix.pop().startswith(f"{QUERY_FOLDER}/Orders")
        strings = {d["Name"].rsplit("/", 1)[1]: d["QueryString"] for d in own}
        assert 'filter outcome = "failed"' in strings["failed runs"]
        assert "pg_message" in strings["failed runs"] and "sqlstate" in strings["failed runs"]
        assert "sort duration_ms desc" in strings["slowest migrations"]
        assert "by correlation_id" in strings["applied by each deploy"]
    assert len({d["Name"] for d in definitions}) == len(definitions)  # no two alike, though the titles repeat
    assert QUERY_NAME_MAX - 10 < max(len(d["Name"]) for d in definitions) <= QUERY_NAME_MAX  # the nested one: cut


def test_each_construct_has_a_dashboard_of_its_runs_with_a_unique_valid_name(two) -> None:
    stack, constructs, template = two
    dashboards = _resources(template, "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 2
    names = [dashboard["DashboardName"] for dashboard in dashboards.values()]
    assert len(set(names)) == 2
    assert all(DASHBOARD_NAME.fullmatch(name) for name in names), names
    longest = max(names, key=len)  # the nested one: its path is over 255 characters, so it is cut, its hash kept
    assert DASHBOARD_NAME_MAX - 10 < len(longest) <= DASHBOARD_NAME_MAX
    assert re.search(r"B-Reports-Observability-[0-9A-F]{8}$", longest), longest
    assert re.fullmatch(r"Orders-Migrations-Observability-[0-9A-F]{8}", min(names, key=len))
    for migrations in constructs:
        dashboard = migrations.observability.dashboard
        text = json.dumps(
            dashboards[stack.resolve(stack.get_logical_id(dashboard.node.default_child))]["DashboardBody"]
        )
        other = next(m for m in constructs if m is not migrations)
        assert all(json.dumps(ref) in text for ref in _refs(stack, migrations))
        assert not any(json.dumps(ref) in text for ref in _refs(stack, other))
        for title in ("Runs", "Failures", "Migrations applied", "Run duration (s)"):
            assert f'\\"title\\":\\"{title}\\"' in text


def test_cdk_nag_passes_with_the_queries_and_dashboards(two) -> None:
    stack, _, _ = two
    Annotations.from_stack(stack).has_no_error("*", Match.any_value())
