"""The synthesized CloudFormation of the stack: real aws-cdk-lib synthesis, no AWS account, no Docker.

Each module-scoped fixture synthesizes once (with cdk-nag registered, as app.py does) and the tests
read the result. Synthesis bundles the Lambda asset; its pip step is cached in .cdk-bundle-cache/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from app import build
from infra.stack import DbMigrationsStack
from lambda_db_setup.cdk import bundling
from lambda_db_setup.cdk import construct as migrations
from lambda_db_setup.settings import SETTINGS

ASSET_LIMIT_BYTES = 30 * 1024 * 1024  # measured ~24 MB; boto3 + botocore alone would add ~25 MB more
HANDLER_ENV_KEYS = {
    "ADOPT_EXISTING_SCHEMA",
    "DB_SECRET_ARN",
    "DB_PROXY_ENDPOINT",
    "DB_CA_BUNDLE",
    "MIGRATIONS_DIR",
    "LOCK_TIMEOUT_MS",
    "STATEMENT_TIMEOUT_MS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "RUN_BUDGET_SECONDS",  # not read by the handler yet: the whole run's budget, from on_event's start
}
LINT_ENV = {"LINT_BEFORE_APPLY": "true", "SQUAWK_BINARY": "/var/task/bin/squawk"}  # only with lintBeforeApply
ELF_MACHINE_AARCH64 = 0xB7  # e_machine, the 2 little-endian bytes at offset 18 of an ELF header
# cfn-lint W3005: aws-cdk-lib adds DependsOn on roles that a GetAtt already implies; redundant, harmless.
CFN_LINT_IGNORED = ("W3005",)
CFN_LINT = str(Path(sys.executable).with_name("cfn-lint"))  # the venv's, beside this interpreter
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("lambda_db_setup", "migrations")  # what the asset holds beside its dependencies
STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/DbMigrations/51af3dc0-da77-11e4-872e-1234567db123"
ALARM_EMAIL = "db-oncall@example.com"


@dataclass(frozen=True)
class Synth:
    stack: DbMigrationsStack
    template: Template
    json: dict[str, Any]  # the template, read once
    outdir: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical ID -> Properties of every resource of one type."""
        return {
            logical_id: resource.get("Properties", {})
            for logical_id, resource in self.json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def ref(self, token: Any) -> Any:
        """The CloudFormation expression a CDK token becomes in this template."""
        return self.stack.resolve(token)

    def trigger(self) -> str:
        (run,) = self.resources("Custom::DbMigrations").values()
        return run["Trigger"]

    def asset_dir(self) -> Path:
        return self.outdir / f"asset.{self.stack.migrations.asset.asset_hash}"


def synthesize(outdir: Path, **context: Any) -> Synth:
    """Synthesize like app.py (cdk.json's context under ``context``); cdk-nag errors raise here."""
    app, stack = build(context=context, outdir=str(outdir))
    app.synth()
    template = Template.from_stack(stack)
    return Synth(stack, template, template.to_json(), outdir)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default configuration, as `npx cdk synth` would build it."""
    started = time.perf_counter()
    result = synthesize(tmp_path_factory.mktemp("default"))
    print(f"\nsynthesis (default context): {time.perf_counter() - started:.1f} s")
    return result


@pytest.fixture(scope="module")
def content_hash_synths(tmp_path_factory: pytest.TempPathFactory) -> list[Synth]:
    """Two synths in content-hash mode, with the non-default switches flipped (lintBeforeApply among them)."""
    context = {
        "migrationTrigger": "content-hash",
        "deletionProtection": True,
        "multiAz": True,
        "lintBeforeApply": True,
        "reservedConcurrency": 1,
        "adoptExistingSchema": False,
        "singleTransaction": True,
        "alarmEmail": ALARM_EMAIL,
        "metricsNamespace": "Team/Db",
    }
    return [synthesize(tmp_path_factory.mktemp(f"content-hash-{n}"), **context) for n in range(2)]


# --- database ----------------------------------------------------------------------------------


def test_database_is_postgres_16_encrypted_and_private(synth: Synth) -> None:
    synth.template.resource_count_is("AWS::RDS::DBInstance", 1)
    synth.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Engine": "postgres",
            "EngineVersion": Match.string_like_regexp(r"^16(\.\d+)?$"),
            "StorageEncrypted": True,
            "PubliclyAccessible": False,
            "DeletionProtection": False,  # off by default, so a failed first create can roll back
            "MultiAZ": False,
            "BackupRetentionPeriod": 7,
            "DBInstanceClass": "db.t4g.micro",
            "DBName": "app",
        },
    )


def test_deletion_protection_and_multi_az_follow_context(content_hash_synths: list[Synth]) -> None:
    content_hash_synths[0].template.has_resource_properties(
        "AWS::RDS::DBInstance", {"DeletionProtection": True, "MultiAZ": True}
    )


def test_a_deleted_or_replaced_instance_leaves_a_snapshot(synth: Synth, content_hash_synths: list[Synth]) -> None:
    for result in (synth, content_hash_synths[0]):
        (instance,) = (r for r in result.json["Resources"].values() if r["Type"] == "AWS::RDS::DBInstance")
        assert (instance["DeletionPolicy"], instance["UpdateReplacePolicy"]) == ("Snapshot", "Snapshot")


def test_parameter_group_forces_tls(synth: Synth) -> None:
    synth.template.has_resource_properties(
        "AWS::RDS::DBParameterGroup", {"Family": "postgres16", "Parameters": {"rds.force_ssl": "1"}}
    )


def test_admin_secret_names_user_and_database(synth: Synth) -> None:
    secrets = synth.resources("AWS::SecretsManager::Secret").values()
    templates = [json.loads(secret["GenerateSecretString"]["SecretStringTemplate"]) for secret in secrets]
    assert {"username": "postgres", "dbname": "app"} in templates


def test_app_user_secrets_are_generated_without_connection_string_breakers(synth: Synth) -> None:
    generated = [secret["GenerateSecretString"] for secret in synth.resources("AWS::SecretsManager::Secret").values()]
    usernames = {json.loads(spec["SecretStringTemplate"])["username"] for spec in generated}
    assert {"app_rw", "app_tc"} <= usernames
    for spec in generated:
        assert spec["GenerateStringKey"] == "password"
        assert set("@/:\"'\\ %") <= set(spec["ExcludeCharacters"])


def test_proxy_requires_tls_and_holds_the_three_secrets(synth: Synth) -> None:
    (proxy,) = synth.resources("AWS::RDS::DBProxy").values()
    database = synth.stack.database
    assert proxy["RequireTLS"] is True
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert [auth["SecretArn"] for auth in proxy["Auth"]] == [synth.ref(s.secret_arn) for s in database.secrets]


def _schedules(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """Secret ARN expression (as JSON) -> (logical ID, Properties) of its rotation schedule."""
    return {
        json.dumps(props["SecretId"]): (logical_id, props)
        for logical_id, props in synth.resources("AWS::SecretsManager::RotationSchedule").items()
    }


def test_admin_secret_rotates_without_racing_the_deploy(synth: Synth) -> None:
    _, schedule = _schedules(synth)[json.dumps(synth.ref(synth.stack.database.admin_secret.secret_arn))]
    assert schedule["HostedRotationLambda"]["RotationType"] == "PostgreSQLSingleUser"
    assert schedule["RotateImmediatelyOnUpdate"] is False


def test_app_secrets_rotate_only_after_the_run_created_their_users(synth: Synth) -> None:
    schedules = _schedules(synth)
    assert len(schedules) == 3  # the admin secret and the two application users
    (run_id,) = synth.resources("Custom::DbMigrations")
    rotation_group = synth.ref(synth.stack.database.rotation_security_group.security_group_id)
    for secret in synth.stack.database.app_secrets.values():
        logical_id, schedule = schedules[json.dumps(synth.ref(secret.secret_arn))]
        assert schedule["HostedRotationLambda"]["RotationType"] == "PostgreSQLSingleUser"
        assert schedule["HostedRotationLambda"]["VpcSecurityGroupIds"] == rotation_group  # reaches the instance
        assert schedule["RotateImmediatelyOnUpdate"] is False
        assert run_id in synth.json["Resources"][logical_id]["DependsOn"]


def test_app_secrets_hold_database_and_instance_for_one_secret_connections(synth: Synth) -> None:
    instance_ref = synth.ref(synth.stack.database.instance.instance_identifier)
    attachments = synth.resources("AWS::SecretsManager::SecretTargetAttachment")
    secrets = synth.resources("AWS::SecretsManager::Secret")
    for user, secret in synth.stack.database.app_secrets.items():
        # The attachment adds engine, host (the instance, which rotation connects to) and port.
        attachment = attachments[synth.ref(secret.secret_arn)["Ref"]]
        assert (attachment["TargetId"], attachment["TargetType"]) == (instance_ref, "AWS::RDS::DBInstance")
        template = json.loads(secrets[attachment["SecretId"]["Ref"]]["GenerateSecretString"]["SecretStringTemplate"])
        assert template == {"username": user, "dbname": "app"}


# --- network and security groups ---------------------------------------------------------------


def test_network_is_isolated_with_flow_logs_and_secrets_endpoint(synth: Synth) -> None:
    for absent in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EIP"):
        synth.template.resource_count_is(absent, 0)
    assert all(subnet["MapPublicIpOnLaunch"] is False for subnet in synth.resources("AWS::EC2::Subnet").values())
    synth.template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    synth.template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"PrivateDnsEnabled": True, "VpcEndpointType": "Interface"}
    )
    (endpoint,) = synth.resources("AWS::EC2::VPCEndpoint").values()
    assert "secretsmanager" in json.dumps(endpoint["ServiceName"])


def _ingress_rules(synth: Synth) -> list[dict[str, Any]]:
    """Every ingress rule, inline or standalone, as {GroupId, Source, FromPort, ToPort}."""
    rules = [
        {"GroupId": rule["GroupId"], "Source": rule.get("SourceSecurityGroupId", rule.get("CidrIp")), **rule}
        for rule in synth.resources("AWS::EC2::SecurityGroupIngress").values()
    ]
    for logical_id, group in synth.resources("AWS::EC2::SecurityGroup").items():
        for rule in group.get("SecurityGroupIngress", []):
            group_id = {"Fn::GetAtt": [logical_id, "GroupId"]}
            rules.append({"GroupId": group_id, "Source": rule.get("SourceSecurityGroupId", rule.get("CidrIp")), **rule})
    return rules


def test_only_lambda_to_proxy_to_database_on_5432(synth: Synth) -> None:
    database, migrations, network = synth.stack.database, synth.stack.migrations, synth.stack.network
    group = {
        "database": synth.ref(database.instance.connections.security_groups[0].security_group_id),
        "proxy": synth.ref(database.proxy.connections.security_groups[0].security_group_id),
        "rotation": synth.ref(database.rotation_security_group.security_group_id),
        "lambda": synth.ref(migrations.on_event.connections.security_groups[0].security_group_id),
        "endpoint": synth.ref(network.secrets_manager_endpoint.connections.security_groups[0].security_group_id),
    }
    instance_port = {"Fn::GetAtt": [synth.ref(database.instance.instance_identifier)["Ref"], "Endpoint.Port"]}
    (instance,) = synth.resources("AWS::RDS::DBInstance").values()
    assert instance["Port"] == "5432"

    allowed: dict[str, set[str]] = {}
    for rule in _ingress_rules(synth):
        target = next(name for name, ref in group.items() if ref == rule["GroupId"])
        source = next(name for name, ref in group.items() if ref == rule["Source"])  # never a CIDR
        port = 443 if target == "endpoint" else 5432
        assert rule["IpProtocol"] == "tcp"
        assert rule["FromPort"] == rule["ToPort"]
        assert rule["FromPort"] in (port, instance_port), rule
        allowed.setdefault(target, set()).add(source)

    assert allowed == {
        "database": {"proxy", "rotation"},
        "proxy": {"lambda"},
        "endpoint": {"lambda", "proxy", "rotation"},
    }


def test_lambda_security_group_egress_only_to_proxy_and_endpoint(synth: Synth) -> None:
    group_ref = synth.ref(synth.stack.migrations.on_event.connections.security_groups[0].security_group_id)
    group = synth.resources("AWS::EC2::SecurityGroup")[group_ref["Fn::GetAtt"][0]]
    assert "SecurityGroupEgress" not in group  # no allow-all rule
    egress = [
        rule for rule in synth.resources("AWS::EC2::SecurityGroupEgress").values() if rule["GroupId"] == group_ref
    ]
    assert sorted(rule["FromPort"] for rule in egress) == [443, 5432]


# --- the migration Lambda and the custom resource ----------------------------------------------


def _user_functions(synth: Synth) -> dict[str, dict[str, Any]]:
    functions = synth.resources("AWS::Lambda::Function").values()
    return {fn["Handler"]: fn for fn in functions if fn.get("Handler", "").startswith("lambda_db_setup.")}


def test_migration_functions_run_python_312_on_arm_in_the_vpc(synth: Synth) -> None:
    functions = _user_functions(synth)
    assert set(functions) == {"lambda_db_setup.handler.on_event", "lambda_db_setup.handler.is_complete"}
    isolated = [synth.ref(subnet.subnet_id) for subnet in synth.stack.network.vpc.isolated_subnets]
    for function in functions.values():
        assert function["Runtime"] == "python3.12"
        assert function["Architectures"] == ["arm64"]
        assert function["MemorySize"] == 512
        assert function["Timeout"] <= 14 * 60
        assert "ReservedConcurrentExecutions" not in function  # a concurrency quota of 10 reserves none
        assert function["VpcConfig"]["SubnetIds"] == isolated
    log_groups = {json.dumps(synth.ref(group.log_group_name)) for group in synth.stack.migrations.log_groups.values()}
    assert {json.dumps(fn["LoggingConfig"]["LogGroup"]) for fn in functions.values()} == log_groups  # one each


def test_reserved_concurrency_follows_context(content_hash_synths: list[Synth]) -> None:
    for function in _user_functions(content_hash_synths[0]).values():
        assert function["ReservedConcurrentExecutions"] == 1


def _evaluate(expression: Any) -> Any:
    """The value CloudFormation gives the few intrinsics the function names use, in stack STACK_ID."""
    if isinstance(expression, str):
        return expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        assert argument == "AWS::StackId", argument
        return STACK_ID
    if function == "Fn::Join":
        return argument[0].join(_evaluate(part) for part in argument[1])
    if function == "Fn::Split":
        return _evaluate(argument[1]).split(argument[0])
    if function == "Fn::Select":
        return _evaluate(argument[1])[argument[0]]
    raise AssertionError(f"unexpected intrinsic {function}")


def test_each_function_logs_where_the_failure_reason_points(synth: Synth) -> None:
    """The Provider framework appends ``Logs: /aws/lambda/<function name>`` to a failure's Reason."""
    log_groups = synth.resources("AWS::Logs::LogGroup")
    names = set()
    for function in _user_functions(synth).values():
        name = _evaluate(function["FunctionName"])
        group = log_groups[function["LoggingConfig"]["LogGroup"]["Ref"]]
        assert _evaluate(group["LogGroupName"]) == f"/aws/lambda/{name}"
        assert group["RetentionInDays"] == 30
        # the construct's path (stack name, a hash of the path), the function, a piece of the stack's id
        assert re.fullmatch(r"DbMigrations-[0-9A-F]{8}-(OnEvent|IsComplete)-51af3dc0", name), name
        names.add(name)
    assert len(names) == 2


def test_handler_environment_is_the_contract(synth: Synth) -> None:
    database = synth.stack.database
    for function in _user_functions(synth).values():
        env = function["Environment"]["Variables"]
        assert set(env) == HANDLER_ENV_KEYS
        assert env["DB_SECRET_ARN"] == synth.ref(database.admin_secret.secret_arn)
        assert env["DB_PROXY_ENDPOINT"] == synth.ref(database.proxy.endpoint)
        assert env["DB_CA_BUNDLE"] == "/var/task/certifi/cacert.pem"
        assert env["MIGRATIONS_DIR"] == "/var/task/migrations"
        assert (env["LOCK_TIMEOUT_MS"], env["STATEMENT_TIMEOUT_MS"]) == ("5000", "0")
        assert env["POWERTOOLS_SERVICE_NAME"] == "db-migrations"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "DbMigrations"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
        assert env["ADOPT_EXISTING_SCHEMA"] == "true"
        assert set(env) <= {setting.env for setting in SETTINGS}  # every variable is a setting the handler reads
        assert env["RUN_BUDGET_SECONDS"] == "3480"


def test_adopt_existing_schema_follows_context(content_hash_synths: list[Synth]) -> None:
    for function in _user_functions(content_hash_synths[0]).values():
        assert function["Environment"]["Variables"]["ADOPT_EXISTING_SCHEMA"] == "false"


def test_single_transaction_follows_context(synth: Synth, content_hash_synths: list[Synth]) -> None:
    for function in _user_functions(content_hash_synths[0]).values():
        assert function["Environment"]["Variables"]["SINGLE_TRANSACTION"] == "true"
    for function in _user_functions(synth).values():
        assert "SINGLE_TRANSACTION" not in function["Environment"]["Variables"]  # off: unset, as the handler reads it


def test_lint_before_apply_sets_the_switch_and_bundles_arm64_squawk(
    synth: Synth, content_hash_synths: list[Synth]
) -> None:
    linted = content_hash_synths[0]
    for function in _user_functions(linted).values():
        env = function["Environment"]["Variables"]
        assert set(env) == HANDLER_ENV_KEYS | set(LINT_ENV) | {"SINGLE_TRANSACTION"}
        assert {key: env[key] for key in LINT_ENV} == LINT_ENV
    squawk = linted.asset_dir() / bundling.SQUAWK_BINARY
    assert squawk.is_file() and os.access(squawk, os.X_OK)  # cdk-assets zips the file's mode with it
    with squawk.open("rb") as binary:
        header = binary.read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64
    # Without the switch: no squawk in the asset (and no variable: test_handler_environment_is_the_contract).
    assert not (synth.asset_dir() / "bin").exists()
    # The lint requirements feed the hash only with the switch: the two assets differ by that file alone.
    assert linted.stack.migrations.asset.asset_hash != synth.stack.migrations.asset.asset_hash


def test_the_stacks_roles_travel_as_resource_properties(synth: Synth) -> None:
    """readwrite and tablecreator are this stack's declaration, not the construct's rule."""
    (run,) = synth.resources("Custom::DbMigrations").values()
    secrets = synth.stack.database.app_secrets
    assert run["AppGroups"] == [
        {"Name": "readwrite", "Privilege": "write", "Schemas": ["public"]},
        {"Name": "tablecreator", "Privilege": "ddl", "Schemas": ["public"]},
    ]
    assert run["AppUsers"] == [
        {"Name": "app_rw", "Group": "readwrite", "SecretArn": synth.ref(secrets["app_rw"].secret_arn)},
        {"Name": "app_tc", "Group": "tablecreator", "SecretArn": synth.ref(secrets["app_tc"].secret_arn)},
    ]
    Annotations.from_stack(synth.stack).has_no_warning("*", Match.string_like_regexp("not one of the secrets of proxy"))


def test_provider_framework_calls_both_handlers(synth: Synth) -> None:
    migrations = synth.stack.migrations
    on_event, is_complete = synth.ref(migrations.on_event.function_arn), synth.ref(migrations.is_complete.function_arn)
    framework = {
        logical_id: fn
        for logical_id, fn in synth.resources("AWS::Lambda::Function").items()
        if fn.get("Environment", {}).get("Variables", {}).get("USER_ON_EVENT_FUNCTION_ARN") == on_event
    }
    entry = next(i for i, fn in framework.items() if "WAITER_STATE_MACHINE_ARN" in fn["Environment"]["Variables"])
    assert all(
        fn["Environment"]["Variables"]["USER_IS_COMPLETE_FUNCTION_ARN"] == is_complete for fn in framework.values()
    )
    (run,) = synth.resources("Custom::DbMigrations").values()
    assert run["ServiceToken"] == {"Fn::GetAtt": [entry, "Arn"]}
    (state_machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    assert state_machine["LoggingConfiguration"]["Level"] == "ALL"


def test_custom_resource_waits_for_database_and_proxy(synth: Synth) -> None:
    (run_id,) = synth.resources("Custom::DbMigrations")
    depends_on = set(synth.json["Resources"][run_id]["DependsOn"])
    database = synth.stack.database
    for construct in (database.instance, database.proxy):
        assert synth.ref(construct.node.default_child.ref)["Ref"] in depends_on
    assert any(synth.json["Resources"][d]["Type"] == "AWS::RDS::DBProxyTargetGroup" for d in depends_on)


def test_trigger_changes_on_every_synth_by_default(synth: Synth, tmp_path: Path) -> None:
    again = synthesize(tmp_path)
    assert synth.trigger() != again.trigger()


def test_trigger_is_the_code_hash_in_content_hash_mode(content_hash_synths: list[Synth]) -> None:
    first, second = content_hash_synths
    assert first.trigger() == second.trigger() == first.stack.migrations.asset.asset_hash
    (run,) = first.resources("Custom::DbMigrations").values()
    assert run["MigrationsHash"] == bundling.fingerprint(PROJECT_ROOT / "migrations")


def test_outputs_for_operators(synth: Synth) -> None:
    outputs = synth.json["Outputs"]
    run_id = next(iter(synth.resources("Custom::DbMigrations")))
    assert outputs["AppliedCount"]["Value"] == {"Fn::GetAtt": [run_id, "AppliedCount"]}
    assert outputs["LastMigration"]["Value"] == {"Fn::GetAtt": [run_id, "LastMigration"]}
    log_groups = synth.stack.migrations.log_groups
    assert outputs["MigrationLogGroupName"]["Value"] == synth.ref(log_groups["OnEvent"].log_group_name)
    assert outputs["MigrationIsCompleteLogGroupName"]["Value"] == synth.ref(log_groups["IsComplete"].log_group_name)
    assert {"ProxyEndpoint", "AdminSecretArn", "AppRwSecretArn", "AppTcSecretArn"} <= set(outputs)
    database = synth.stack.database
    assert outputs["ProxyEndpoint"]["Value"] == synth.ref(database.proxy.endpoint)
    proxy_group = database.proxy.connections.security_groups[0].security_group_id
    assert outputs["ProxySecurityGroupId"]["Value"] == synth.ref(proxy_group)
    assert outputs["VpcId"]["Value"] == synth.ref(synth.stack.network.vpc.vpc_id)
    assert outputs["MigrationFunctionName"]["Value"] == synth.ref(synth.stack.migrations.on_event.function_name)
    assert outputs["AlarmTopicArn"]["Value"] == synth.ref(synth.stack.alarm.topic.topic_arn)


# --- the one-hour budget -----------------------------------------------------------------------


def test_the_whole_run_ends_before_cloudformation_stops_waiting(synth: Synth) -> None:
    (run,) = synth.resources("Custom::DbMigrations").values()
    service_timeout = int(run["ServiceTimeout"])
    functions = {fn["Handler"].rsplit(".", 1)[1]: fn for fn in _user_functions(synth).values()}
    (state_machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    definition = json.dumps(state_machine["DefinitionString"])
    (retry,) = re.findall(r'IntervalSeconds\\":(\d+),\\"MaxAttempts\\":(\d+)', definition)
    interval, attempts = map(int, retry)
    total_timeout = interval * attempts  # what the Provider waits between is_complete calls, in all
    margin = migrations.FRAMEWORK_MARGIN.to_seconds()
    worst_end = functions["on_event"]["Timeout"] + total_timeout + interval + functions["is_complete"]["Timeout"]
    assert worst_end + margin <= service_timeout <= 3600
    assert (service_timeout, interval, total_timeout, margin) == (3600, 30, 2250, 120)
    env = functions["on_event"]["Environment"]["Variables"]
    assert worst_end <= int(env["RUN_BUDGET_SECONDS"]) <= service_timeout - margin


# --- the failure alarm -------------------------------------------------------------------------


def test_alarm_on_failed_runs(synth: Synth, content_hash_synths: list[Synth]) -> None:
    for result, namespace in ((synth, "DbMigrations"), (content_hash_synths[0], "Team/Db")):
        (alarm,) = result.resources("AWS::CloudWatch::Alarm").values()
        assert alarm["Namespace"] == namespace
        assert alarm["MetricName"] == "MigrationsFailed"
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "db-migrations"}]  # powertools' default
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [result.ref(result.stack.alarm.topic.topic_arn)]


def test_dashboard_shows_the_failed_run_alarm_state(synth: Synth) -> None:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["DashboardBody"])
    assert '\\"type\\":\\"alarm\\"' in body  # an alarm status widget
    assert json.dumps(synth.ref(synth.stack.alarm.alarm.alarm_arn)) in body
    assert re.fullmatch(
        r"DbMigrations-Observability-[0-9A-F]{8}", dashboard["DashboardName"]
    )  # Names drops "Migrations"


def test_alarm_topic_is_encrypted_and_mailed_only_when_asked(synth: Synth, content_hash_synths: list[Synth]) -> None:
    (topic_id, topic), *_ = synth.resources("AWS::SNS::Topic").items()
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    (key,) = (props for logical_id, props in synth.resources("AWS::KMS::Key").items() if logical_id == key_id)
    assert key["EnableKeyRotation"] is True
    cloudwatch = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= {a for s in cloudwatch for a in _as_list(s["Action"])}
    (policy,) = synth.resources("AWS::SNS::TopicPolicy").values()
    assert policy["PolicyDocument"]["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert synth.resources("AWS::SNS::Subscription") == {}
    (subscription,) = content_hash_synths[0].resources("AWS::SNS::Subscription").values()
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", ALARM_EMAIL)
    assert topic_id in json.dumps(synth.json["Outputs"]["AlarmTopicArn"])


# --- least privilege, cdk-nag, cfn-lint --------------------------------------------------------


def _statements(synth: Synth) -> Iterator[dict[str, Any]]:
    for policy in synth.resources("AWS::IAM::Policy").values():
        yield from policy["PolicyDocument"]["Statement"]
    for role in synth.resources("AWS::IAM::Role").values():
        for policy in role.get("Policies", []):
            yield from policy["PolicyDocument"]["Statement"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_secrets_manager_statements_name_only_the_three_secrets(synth: Synth) -> None:
    """Only BatchGetSecretValue, which takes no resource, is on '*': it returns what GetSecretValue allows."""
    secrets = [synth.ref(secret.secret_arn) for secret in synth.stack.database.secrets]
    named = []
    wildcard_actions = []
    for statement in _statements(synth):
        actions = _as_list(statement["Action"])
        if any(action.startswith("secretsmanager:") for action in actions):
            assert statement["Effect"] == "Allow"
            for resource in _as_list(statement["Resource"]):
                if resource == "*":
                    wildcard_actions += actions
                    continue
                assert resource in secrets, f"secretsmanager statement on {resource}"
                named.append(resource)
    assert all(secret in named for secret in secrets)
    assert wildcard_actions == ["secretsmanager:BatchGetSecretValue"]


def test_migration_role_reads_exactly_the_three_secrets(synth: Synth) -> None:
    role_ref = synth.ref(synth.stack.migrations.on_event.role.role_name)
    secrets = [synth.ref(secret.secret_arn) for secret in synth.stack.database.secrets]
    statements = [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if role_ref in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    readable = [
        resource
        for statement in statements
        if "secretsmanager:GetSecretValue" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]
    assert sorted(map(json.dumps, readable)) == sorted(map(json.dumps, secrets))
    batch = {"Action": "secretsmanager:BatchGetSecretValue", "Effect": "Allow", "Resource": "*"}
    assert [statement for statement in statements if "BatchGetSecretValue" in json.dumps(statement)] == [batch]


def test_cdk_nag_reports_no_unacknowledged_error(synth: Synth, content_hash_synths: list[Synth]) -> None:
    for result in (synth, *content_hash_synths):
        assert Annotations.from_stack(result.stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []
        report = json.loads((result.outdir / "validation-report.json").read_text())
        failures = [r for r in report["pluginReports"] if r["conclusion"] != "success"]
        assert failures == [], json.dumps(failures, indent=2)


def test_cfn_lint_passes(synth: Synth, tmp_path: Path) -> None:
    template = tmp_path / "template.json"
    template.write_text(json.dumps(synth.json))
    result = subprocess.run(
        [CFN_LINT, "--ignore-checks", *CFN_LINT_IGNORED, "--", str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the bundled asset -------------------------------------------------------------------------


def test_asset_holds_arm64_psycopg2_code_migrations_and_ca_bundle(synth: Synth) -> None:
    asset = synth.asset_dir()
    assert list(asset.glob("psycopg2/_psycopg*aarch64*.so")), "no arm64 psycopg2 extension"
    assert (asset / "lambda_db_setup" / "handler.py").is_file()
    assert (asset / "certifi" / "cacert.pem").is_file()  # DB_CA_BUNDLE
    bundled = sorted(p.relative_to(asset).as_posix() for p in (asset / "migrations").rglob("*") if p.is_file())
    expected = sorted(
        p.relative_to(PROJECT_ROOT).as_posix()
        for p in (PROJECT_ROOT / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert bundled == expected and bundled, "migrations/ not bundled as in the project"
    assert not list(asset.rglob("__pycache__"))


def test_asset_leaves_out_what_the_runtime_has(synth: Synth) -> None:
    asset = synth.asset_dir()
    for provided in ("boto3", "botocore", "s3transfer"):
        assert not (asset / provided).exists(), f"{provided} is in the Lambda runtime; do not bundle it"


def test_asset_size(synth: Synth) -> None:
    files = [p for p in synth.asset_dir().rglob("*") if p.is_file()]
    unzipped = sum(p.stat().st_size for p in files)
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(synth.asset_dir()).as_posix())
    print(f"\nLambda asset: {len(files)} files, {unzipped / 1e6:.1f} MB unzipped, {buffer.tell() / 1e6:.1f} MB zipped")
    assert unzipped <= ASSET_LIMIT_BYTES


@pytest.fixture(scope="module")
def local_runtime(synth: Synth) -> Path:
    """The asset's code over a local-architecture install of its requirements plus boto3 (as Lambda has)."""
    started = time.perf_counter()
    dependencies = bundling.pip_install(bundling.REQUIREMENTS, "boto3")
    print(f"\nlocal-architecture requirements (cached): {time.perf_counter() - started:.1f} s")
    return dependencies


def test_handler_imports_with_only_the_bundled_dependencies(synth: Synth, local_runtime: Path, tmp_path: Path) -> None:
    task_root = tmp_path / "task"
    shutil.copytree(local_runtime, task_root)
    for name in CODE_DIRS:
        shutil.copytree(synth.asset_dir() / name, task_root / name)
    # -I -S: no user site, no site-packages, no environment; sys.path is the stdlib plus the task root.
    code = (
        f"import sys; sys.path.insert(0, {str(task_root)!r}); "
        "import lambda_db_setup.handler as handler; handler.on_event; handler.is_complete"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
