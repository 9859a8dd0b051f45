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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
README = PROJECT_ROOT / "README.md"
CONSUMER_MIGRATION = "1767225600000_create_orders.sql"
PROXY_SECURITY_GROUP = "sg-0a1b2c3d"


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
    assert [(rule["GroupId"], rule["FromPort"]) for rule in ingress] == [(PROXY_SECURITY_GROUP, 5432)]
    (asset_dir,) = [path for path in outdir.glob("asset.*") if (path / "lambda_db_setup").is_dir()]
    assert sorted(p.name for p in (asset_dir / "migrations").iterdir()) == [CONSUMER_MIGRATION]
    assert (asset_dir / "lambda_db_setup" / "handler.py").is_file()
    assert not (asset_dir / "lambda_db_setup" / "cdk").exists() and not (asset_dir / "aws_cdk").exists()
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [r for r in report["pluginReports"] if r["conclusion"] != "success"] == []
    return asset_dir


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
