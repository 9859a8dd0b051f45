"""The stack's variants: Aurora Serverless v2 with IAM authentication, and a named stage from cdk.json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from app import CDK_JSON
from infra.stack import StackConfig
from tests.test_infra import CFN_LINT, CFN_LINT_IGNORED, Synth, _statements, _user_functions, synthesize

STAGES = json.loads(CDK_JSON.read_text())["context"]["stages"]


@pytest.fixture(scope="module")
def aurora(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Aurora Serverless v2 that may auto-pause, behind a proxy that requires IAM authentication."""
    context = {"engine": "aurora-serverless-v2", "minCapacity": "0", "maxCapacity": "4", "iamAuth": "true"}
    return synthesize(tmp_path_factory.mktemp("aurora"), **context)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """cdk.json's dev stage: Aurora Serverless v2 at 0-2 ACUs, passwords (no IAM authentication)."""
    return synthesize(tmp_path_factory.mktemp("dev"), stage="dev")


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("prod"), stage="prod")


def test_aurora_is_postgres_16_with_a_serverless_v2_writer_that_may_pause(aurora: Synth) -> None:
    aurora.template.resource_count_is("AWS::RDS::DBInstance", 1)  # the writer
    (cluster,) = aurora.resources("AWS::RDS::DBCluster").values()
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["EngineVersion"].startswith("16.")
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0, "MaxCapacity": 4}
    assert (cluster["StorageEncrypted"], cluster["DatabaseName"], cluster["Port"]) == (True, "app", 5432)
    assert cluster["EnableIAMDatabaseAuthentication"] is True
    (writer,) = aurora.resources("AWS::RDS::DBInstance").values()
    assert (writer["DBInstanceClass"], writer["PubliclyAccessible"]) == ("db.serverless", False)
    aurora.template.has_resource_properties(
        "AWS::RDS::DBClusterParameterGroup", {"Family": "aurora-postgresql16", "Parameters": {"rds.force_ssl": "1"}}
    )
    (proxy_target,) = aurora.resources("AWS::RDS::DBProxyTargetGroup").values()
    assert proxy_target["DBClusterIdentifiers"] == [aurora.ref(aurora.stack.database.cluster.cluster_identifier)]


def test_iam_auth_proxy_requires_it_and_the_lambda_may_connect_as_the_admin(aurora: Synth) -> None:
    (proxy,) = aurora.resources("AWS::RDS::DBProxy").values()
    assert {auth["IAMAuth"] for auth in proxy["Auth"]} == {"REQUIRED"}
    for function in _user_functions(aurora).values():
        assert function["Environment"]["Variables"]["DB_IAM_AUTH"] == "true"
    connects = [s for s in _statements(aurora) if "rds-db:connect" in json.dumps(s["Action"])]
    (statement,) = connects
    resource = json.dumps(statement["Resource"])
    assert ":dbuser:" in resource and "/postgres" in resource, resource
    proxy_id = aurora.ref(aurora.stack.database.proxy.node.default_child.ref)["Ref"]
    assert proxy_id in resource, resource  # the prx- id comes from this proxy's ARN


def test_without_iam_auth_no_token_and_no_rds_db_permission(prod: Synth) -> None:
    assert not [s for s in _statements(prod) if "rds-db:connect" in json.dumps(s["Action"])]
    for function in _user_functions(prod).values():
        assert "DB_IAM_AUTH" not in function["Environment"]["Variables"]


def test_a_stage_names_the_stack_and_applies_its_settings(prod: Synth) -> None:
    assert prod.stack.stack_name == "DbMigrations-prod"
    settings = STAGES["prod"]
    prod.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "DBInstanceClass": f"db.{settings['instanceClass']}",
            "MultiAZ": settings["multiAz"],
            "DeletionProtection": settings["deletionProtection"],
            "BackupRetentionPeriod": settings["backupRetentionDays"],
        },
    )
    retentions = {group.get("RetentionInDays") for group in prod.resources("AWS::Logs::LogGroup").values()}
    assert retentions == {settings["logRetentionDays"]}


def test_stages_deploy_side_by_side_from_one_app() -> None:
    names = {StackConfig.from_context(App(context={"stage": stage, "stages": STAGES}).node) for stage in STAGES}
    assert {config.full_stack_name for config in names} == {f"DbMigrations-{stage}" for stage in STAGES}
    assert StackConfig.from_context(App(context={"stages": STAGES}).node).full_stack_name == "DbMigrations"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "qa"}, "stage 'qa' is not in stages"),
        ({"stage": "dev", "stages": {"dev": {"instanceSize": "big"}}}, "stages.dev has unknown keys instanceSize"),
        ({"engine": "mysql"}, "engine must be one of postgres, aurora-serverless-v2"),
        ({"minCapacity": "-1"}, "minCapacity and maxCapacity must be"),
    ],
)
def test_invalid_stage_or_engine_is_refused(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StackConfig.from_context(App(context={"stages": STAGES, **context}).node)


def test_the_dev_stage_is_an_aurora_cluster_that_pauses(dev: Synth) -> None:
    assert dev.stack.stack_name == "DbMigrations-dev"
    (cluster,) = dev.resources("AWS::RDS::DBCluster").values()
    assert cluster["ServerlessV2ScalingConfiguration"]["MinCapacity"] == STAGES["dev"]["minCapacity"] == 0
    (proxy,) = dev.resources("AWS::RDS::DBProxy").values()
    assert {auth["IAMAuth"] for auth in proxy["Auth"]} == {"DISABLED"}


def test_cdk_nag_and_cfn_lint_pass_on_every_variant(aurora: Synth, dev: Synth, prod: Synth, tmp_path: Path) -> None:
    for result in (aurora, dev, prod):
        report = json.loads((result.outdir / "validation-report.json").read_text())
        failures = [r for r in report["pluginReports"] if r["conclusion"] != "success"]
        assert failures == [], json.dumps(failures, indent=2)
        template = tmp_path / f"{result.stack.stack_name}.json"
        template.write_text(json.dumps(result.json))
        lint = subprocess.run(
            [CFN_LINT, "--ignore-checks", *CFN_LINT_IGNORED, "--", str(template)], capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
