"""A consumer's CDK app, the README's example verbatim: imported VPC, proxy and secrets, its own migrations.

Run as its own process in a directory of its own (as ``cdk synth`` would run it), once against this source
tree and once against the package built as a wheel and installed elsewhere, so neither the README nor the
wheel can drift from what works. cdk-nag runs in the example itself: a finding fails the synth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.test_cdk_construct import physical_names

PROJECT_ROOT = Path(__file__).resolve().parent.parent
README = PROJECT_ROOT / "README.md"
CONSUMER_MIGRATION = "1767225600000_create_orders.sql"
PROXY_SECURITY_GROUP = "sg-0a1b2c3d"
SECRETS_MANAGER_SECURITY_GROUP = "sg-0e1f2a3b"


def readme_example() -> str:
    """The first Python block of the README's "Use it in your own CDK app" section."""
    section = README.read_text().split("## Use it in your own CDK app", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python example in the README section"
    assert "AwsSolutionsChecks(app)" in match.group(1)  # cdk-nag fails the example's synth on any finding
    return match.group(1)


def synth_consumer(app_dir: Path, pythonpath: list[Path]) -> tuple[dict[str, Any], Path, str]:
    """Write and synthesize the consumer app; the template, the cloud assembly and the package it imported."""
    (app_dir / "migrations").mkdir(parents=True)
    (app_dir / "migrations" / CONSUMER_MIGRATION).write_text(
        "-- Up Migration\nCREATE TABLE orders (id bigint PRIMARY KEY);\n-- Down Migration\nDROP TABLE orders;\n"
    )
    probe = "\nimport lambda_db_setup, sys; print('PACKAGE', lambda_db_setup.__file__, file=sys.stderr)\n"
    (app_dir / "app.py").write_text(readme_example() + probe)
    (app_dir / ".cdk-bundle-cache").symlink_to(PROJECT_ROOT / ".cdk-bundle-cache")  # the pip step, done once
    outdir = app_dir / "cdk.out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "CDK_OUTDIR": str(outdir)}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=app_dir, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    package = re.search(r"^PACKAGE (.*)$", result.stderr, re.MULTILINE).group(1)
    return json.loads((outdir / "Orders.template.json").read_text()), outdir, package


def check_consumer_template(template: dict[str, Any], outdir: Path) -> Path:
    """The run targets the imported proxy and bundles the consumer's migrations, not this project's; the asset."""
    resources = template["Resources"].values()
    functions = [r["Properties"] for r in resources if r["Type"] == "AWS::Lambda::Function"]
    handlers = [fn for fn in functions if fn.get("Handler", "").startswith("lambda_db_setup.handler.")]
    assert len(handlers) == 2
    for function in handlers:
        env = function["Environment"]["Variables"]
        assert env["MIGRATIONS_DIR"] == "/var/task/migrations"
        assert env["DB_PROXY_ENDPOINT"] == "orders.proxy-c0ffee.eu-west-1.rds.amazonaws.com"
        assert env["DB_SECRET_ARN"].endswith(":secret:orders/admin-AbCdEf")
        assert function["VpcConfig"]["SubnetIds"] == ["subnet-0a1b", "subnet-2c3d"]
    ingress = [r["Properties"] for r in resources if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert sorted((rule["GroupId"], rule["FromPort"]) for rule in ingress) == [
        (PROXY_SECURITY_GROUP, 5432),
        (SECRETS_MANAGER_SECURITY_GROUP, 443),  # the endpoint the functions read their secrets through
    ]
    (asset_dir,) = [path for path in outdir.glob("asset.*") if (path / "lambda_db_setup").is_dir()]
    assert sorted(p.name for p in (asset_dir / "migrations").iterdir()) == [CONSUMER_MIGRATION]
    assert (asset_dir / "lambda_db_setup" / "handler.py").is_file()
    assert not (asset_dir / "lambda_db_setup" / "cdk").exists() and not (asset_dir / "aws_cdk").exists()
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [r for r in report["pluginReports"] if r["conclusion"] != "success"] == []
    assert synth_messages(outdir) == []  # no warning either (a route to Secrets Manager, say)
    return asset_dir


def synth_messages(outdir: Path) -> list[tuple[str, str, str]]:
    """(construct path, level, text) of every annotation the synth wrote into the cloud assembly."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    levels = ("aws:cdk:warning", "aws:cdk:error")
    return [
        (path, entry["type"], str(entry["data"]))
        for artifact in manifest["artifacts"].values()
        for path, entries in artifact.get("metadata", {}).items()
        for entry in entries
        if entry["type"] in levels
    ]


def test_the_readme_example_synthesizes_with_imported_resources(tmp_path: Path, database_url: str) -> None:
    template, outdir, package = synth_consumer(tmp_path / "consumer", [PROJECT_ROOT])
    assert Path(package).is_relative_to(PROJECT_ROOT)
    asset = check_consumer_template(template, outdir)
    # The bundled migrations directory is what the engine runs (the handler's MIGRATIONS_DIR).
    command = ["--database-url", database_url, "--migrations-dir", str(asset / "migrations"), "up"]
    result = subprocess.run([sys.executable, "-m", "lambda_db_setup", *command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT name FROM pgmigrations")
        assert cursor.fetchall() == [(CONSUMER_MIGRATION.removesuffix(".sql"),)]
        cursor.execute("SELECT to_regclass('orders') IS NOT NULL")
        assert cursor.fetchone() == (True,)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (pyproject, README, the package), installed with --target."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PROJECT_ROOT / "lambda_db_setup", source / "lambda_db_setup", ignore=ignore)
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("lambda_db_setup-0.1.0-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lambda_db_setup/cdk/requirements-lambda.txt" in names
    assert "lambda_db_setup/certs/rds-global-bundle.pem" in names  # for targets without a proxy
    (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
    requires = zipfile.ZipFile(wheel).read(metadata_name).decode()
    assert re.search(r'^Requires-Dist: cdk-nag\b.*; extra == "cdk"$', requires, re.MULTILINE)  # the example's import
    assert not [name for name in names if name.startswith(("migrations/", "infra/", "tests/"))]
    target = tmp_path_factory.mktemp("site")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def test_the_wheel_gives_the_cli(installed_wheel: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    script = installed_wheel / "bin" / "lambda-db-setup"
    command = [sys.executable, str(script), "--version"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lambda-db-setup 0.1.0"


def test_the_wheel_registers_the_pytest_plugin(installed_wheel: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    probe = (
        "from importlib.metadata import entry_points;"
        "print([e.value for e in entry_points(group='pytest11') if e.name == 'lambda_db_setup.testing'])"
    )
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.stdout.strip() == "['lambda_db_setup.testing']", found.stderr


def test_a_consumer_app_synthesizes_from_the_installed_wheel(installed_wheel: Path, tmp_path: Path) -> None:
    template, outdir, package = synth_consumer(tmp_path / "consumer", [installed_wheel])
    assert Path(package).is_relative_to(installed_wheel), package
    check_consumer_template(template, outdir)


TEAM_APP = """
import sys
from aws_cdk import App, Stack, Validations, aws_ec2 as ec2, aws_rds as rds, aws_secretsmanager as sm
from cdk_nag import AwsSolutionsChecks
import lambda_db_setup
from lambda_db_setup.cdk import READ, AppGroup, AppUser, DatabaseMigrations

app = App()
stack = Stack(app, "Shop", env={"account": "123456789012", "region": "eu-west-1"})
vpc = ec2.Vpc.from_vpc_attributes(
    stack, "Vpc", vpc_id="vpc-0a1b2c3d", availability_zones=["eu-west-1a", "eu-west-1b"],
    isolated_subnet_ids=["subnet-0a1b", "subnet-2c3d"],
)
endpoint = ec2.InterfaceVpcEndpoint.from_interface_vpc_endpoint_attributes(
    stack, "SecretsManager", vpc_endpoint_id="vpce-0a1b2c3d", port=443,
    security_groups=[ec2.SecurityGroup.from_security_group_id(stack, "EndpointSg", "sg-0e1f2a3b")],
)
database_sg = ec2.SecurityGroup.from_security_group_id(stack, "DatabaseSg", "sg-0a1b2c3d")
proxy = rds.DatabaseProxy.from_database_proxy_attributes(
    stack, "OrdersProxy", db_proxy_name="orders", security_groups=[database_sg],
    db_proxy_arn="arn:aws:rds:eu-west-1:123456789012:db-proxy:prx-0a1b2c3d",
    endpoint="orders.proxy-c0ffee.eu-west-1.rds.amazonaws.com",
)
instance = rds.DatabaseInstance.from_database_instance_attributes(
    stack, "Reporting", instance_identifier="reporting", port=5432, security_groups=[database_sg],
    instance_endpoint_address="reporting.c0ffee.eu-west-1.rds.amazonaws.com",
)


def secret(name):
    return sm.Secret.from_secret_complete_arn(
        stack, name, f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbCdEf"
    )


# Orders: through the proxy, one user in a custom read-only group; Reporting: the instance itself, no roles.
roles = {
    "OrdersMigrations": {
        "app_groups": [AppGroup("analysts", READ)],
        "app_users": [AppUser("orders_analyst", secret("orders/analyst"), "analysts")],
    },
    "ReportingMigrations": {},
}
for construct_id, target in (("OrdersMigrations", proxy), ("ReportingMigrations", instance)):
    prefix = construct_id.removesuffix("Migrations").lower()
    DatabaseMigrations(
        stack, construct_id, vpc=vpc, target=target, target_security_group=database_sg,
        admin_secret=secret(f"{prefix}/admin"), migrations_dir=f"db/{prefix}",
        secrets_manager_endpoint=endpoint, trigger="content-hash", **roles[construct_id],
    )
Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
print("PACKAGE", lambda_db_setup.__file__, file=sys.stderr)
"""
TEAM_RUNS = (  # each run's migrations, its target's endpoint, and the CA bundle for that kind of target
    ("orders", "orders.proxy-c0ffee.eu-west-1.rds.amazonaws.com", "certifi/cacert.pem"),
    ("reporting", "reporting.c0ffee.eu-west-1.rds.amazonaws.com:5432", "lambda_db_setup/certs/rds-global-bundle.pem"),
)


def test_a_team_app_with_a_proxy_and_an_instance_synthesizes_from_the_installed_wheel(
    installed_wheel: Path, tmp_path: Path
) -> None:
    """Two DatabaseMigrations in one stack, one through a proxy, one to an instance: cdk-nag clean, no warning,
    unique names within Lambda's limit, and each asset with its own migrations and the CA bundle its target needs.
    """
    app_dir = tmp_path / "shop"
    for prefix in ("orders", "reporting"):
        (app_dir / "db" / prefix).mkdir(parents=True)
        (app_dir / "db" / prefix / f"1767225600000_{prefix}.sql").write_text(f"CREATE TABLE {prefix} (id int);\n")
    (app_dir / "app.py").write_text(TEAM_APP)
    (app_dir / ".cdk-bundle-cache").symlink_to(PROJECT_ROOT / ".cdk-bundle-cache")
    outdir = app_dir / "cdk.out"
    env = {**os.environ, "PYTHONPATH": str(installed_wheel), "CDK_OUTDIR": str(outdir)}
    result = subprocess.run([sys.executable, "app.py"], cwd=app_dir, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(re.search(r"^PACKAGE (.*)$", result.stderr, re.MULTILINE).group(1)).is_relative_to(installed_wheel)
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [violation for r in report["pluginReports"] for violation in r["violations"]] == []  # none, warnings too
    assert synth_messages(outdir) == []
    template = json.loads((outdir / "Shop.template.json").read_text())
    stack_id = "arn:aws:cloudformation:eu-west-1:123456789012:stack/Shop/51af3dc0-da77-11e4-872e-1234567db123"
    names = physical_names(template, stack_id)
    assert len({value for _, _, value in names}) == len(names) == 8  # 4 functions, 4 log groups
    assert all(len(value) <= 64 for _, key, value in names if key == "FunctionName")
    for prefix, endpoint, bundle in TEAM_RUNS:
        (asset,) = [
            path for path in outdir.glob("asset.*") if (path / "migrations" / f"1767225600000_{prefix}.sql").exists()
        ]
        assert (asset / bundle).is_file()
        variables = [
            resource["Properties"]["Environment"]["Variables"]
            for resource in template["Resources"].values()
            if resource.get("Properties", {}).get("Code", {}).get("S3Key") == f"{asset.name.removeprefix('asset.')}.zip"
        ]
        assert [(env["DB_PROXY_ENDPOINT"], env["DB_CA_BUNDLE"]) for env in variables] == 2 * [
            (endpoint, f"/var/task/{bundle}")
        ]
    runs = {key: r["Properties"] for key, r in template["Resources"].items() if r["Type"] == "Custom::DbMigrations"}
    (orders,) = [properties for key, properties in runs.items() if key.startswith("OrdersMigrations")]
    (reporting,) = [properties for key, properties in runs.items() if key.startswith("ReportingMigrations")]
    assert orders["AppGroups"] == [{"Name": "analysts", "Privilege": "read", "Schemas": ["public"]}]
    assert [user["Name"] for user in orders["AppUsers"]] == ["orders_analyst"]
    assert "AppGroups" not in reporting and "AppUsers" not in reporting  # migrations only: no roles, no user secret
    shipped = installed_wheel / "lambda_db_setup" / "certs" / "rds-global-bundle.pem"
    assert (asset / bundle).read_bytes() == shipped.read_bytes()  # the instance's run, last in TEAM_RUNS
