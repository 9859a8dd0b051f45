"""The deployable stack and its settings, read from CDK context."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct, Node

from infra.database import AppSecretRotation, Database, DatabaseSettings
from infra.migrations import TRIGGERS, Migrations, MigrationSettings
from infra.monitoring import MigrationAlarm
from infra.network import Network
from lambda_db_setup.settings import BY_NAME, LOG_LEVELS

# CloudWatch Logs accepts only these retention periods.
RETENTION_DAYS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # a plausibility check; SNS sends the confirmation


@dataclass(frozen=True)
class StackConfig:
    """Every deploy-time setting; each field is the context key of its camelCase name (cdk.json has them all)."""

    stack_name: str = "DbMigrations"
    vpc_cidr: str = "10.0.0.0/16"
    database_name: str = "app"
    instance_class: str = "t4g.micro"
    allocated_storage_gib: int = 20
    multi_az: bool = False
    deletion_protection: bool = False
    backup_retention_days: int = 7
    iam_auth: bool = False
    admin_rotation_days: int = 30
    app_rotation_days: int = 30
    log_retention_days: int = 30
    migration_trigger: str = "always"
    lock_timeout_ms: int = BY_NAME["lock_timeout_ms"].default
    statement_timeout_ms: int = BY_NAME["statement_timeout_ms"].default
    metrics_namespace: str = BY_NAME["metrics_namespace"].default
    log_level: str = BY_NAME["log_level"].default
    reserved_concurrency: int = 0
    lint_before_apply: bool = BY_NAME["lint_before_apply"].default
    adopt_existing_schema: bool = BY_NAME["adopt_existing_schema"].default
    alarm_email: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.migration_trigger not in TRIGGERS:
            problems.append(f"migrationTrigger must be one of {', '.join(TRIGGERS)}, not {self.migration_trigger!r}")
        if self.log_retention_days not in RETENTION_DAYS:
            problems.append(f"logRetentionDays must be one of {sorted(RETENTION_DAYS)}")
        if self.log_level not in LOG_LEVELS:
            problems.append(f"logLevel must be one of {', '.join(LOG_LEVELS)}")
        if not 1 <= self.backup_retention_days <= 35:
            problems.append("backupRetentionDays must be 1 to 35 (RDS's range; 0 would disable backups)")
        if not all(1 <= days <= 1000 for days in (self.admin_rotation_days, self.app_rotation_days)):
            problems.append("adminRotationDays and appRotationDays must be 1 to 1000 (Secrets Manager's range)")
        if self.alarm_email and not EMAIL.fullmatch(self.alarm_email):
            problems.append(f"alarmEmail must be an e-mail address or empty, not {self.alarm_email!r}")
        if self.allocated_storage_gib < 20:
            problems.append("allocatedStorageGib must be at least 20 (gp3's minimum)")
        if min(self.lock_timeout_ms, self.statement_timeout_ms, self.reserved_concurrency) < 0:
            problems.append("lockTimeoutMs, statementTimeoutMs and reservedConcurrency must not be negative")
        if problems:
            raise ValueError("Invalid CDK context: " + "; ".join(problems))

    @classmethod
    def context_keys(cls) -> dict[str, str]:
        """Field name -> context key."""
        return {field.name: _camel_case(field.name) for field in fields(cls)}

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        """Read the settings from context, where ``-c key=value`` gives strings and cdk.json gives JSON."""
        kinds = {field.name: type(field.default) for field in fields(cls)}
        values = {}
        for name, key in cls.context_keys().items():
            raw = node.try_get_context(key)
            if raw is not None:
                values[name] = _coerce(raw, kinds[name], key)
        return cls(**values)

    @property
    def log_retention(self) -> logs.RetentionDays:
        return RETENTION_DAYS[self.log_retention_days]

    @property
    def database(self) -> DatabaseSettings:
        return DatabaseSettings(
            database_name=self.database_name,
            instance_class=self.instance_class,
            allocated_storage_gib=self.allocated_storage_gib,
            multi_az=self.multi_az,
            deletion_protection=self.deletion_protection,
            backup_retention_days=self.backup_retention_days,
            iam_auth=self.iam_auth,
            admin_rotation_days=self.admin_rotation_days,
        )

    @property
    def migrations(self) -> MigrationSettings:
        return MigrationSettings(
            trigger=self.migration_trigger,
            lock_timeout_ms=self.lock_timeout_ms,
            statement_timeout_ms=self.statement_timeout_ms,
            metrics_namespace=self.metrics_namespace,
            log_level=self.log_level,
            log_retention=self.log_retention,
            reserved_concurrency=self.reserved_concurrency,
            lint_before_apply=self.lint_before_apply,
            adopt_existing_schema=self.adopt_existing_schema,
        )


class DbMigrationsStack(Stack):
    """Network, database and the deploy-time migration run, with the values an operator needs as outputs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = Network(self, "Network", cidr=config.vpc_cidr, log_retention=config.log_retention)
        self.database = Database(self, "Database", network=self.network, settings=config.database)
        self.migrations = Migrations(
            self, "Migrations", network=self.network, database=self.database, settings=config.migrations
        )
        # Rotation starts only once the migration run has created the users it rotates.
        self.app_rotation = AppSecretRotation(
            self,
            "AppSecretRotation",
            database=self.database,
            network=self.network,
            every_days=config.app_rotation_days,
            after=self.migrations.resource,
        )
        self.alarm = MigrationAlarm(self, "Alarm", namespace=config.metrics_namespace, email=config.alarm_email)

        outputs = {
            "VpcId": self.network.vpc.vpc_id,
            "ProxyEndpoint": self.database.proxy.endpoint,
            "ProxySecurityGroupId": self.database.proxy.connections.security_groups[0].security_group_id,
            "AdminSecretArn": self.database.admin_secret.secret_arn,
            "AppRwSecretArn": self.database.app_secrets["app_rw"].secret_arn,
            "AppTcSecretArn": self.database.app_secrets["app_tc"].secret_arn,
            "MigrationLogGroupName": self.migrations.log_groups["OnEvent"].log_group_name,
            "MigrationIsCompleteLogGroupName": self.migrations.log_groups["IsComplete"].log_group_name,
            "AlarmTopicArn": self.alarm.topic.topic_arn,
            "AppliedCount": self.migrations.resource.get_att_string("AppliedCount"),
            "LastMigration": self.migrations.resource.get_att_string("LastMigration"),
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def _camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _coerce(raw: object, kind: type, key: str) -> object:
    """Context from the command line is always a string; turn it into the field's type."""
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    text = str(raw).strip().lower()
    if kind is bool and text in ("true", "false"):
        return text == "true"
    if kind is int and text.lstrip("-").isdigit():
        return int(text)
    if kind is str:
        return str(raw)
    expected = {bool: "true or false", int: "a whole number"}[kind]
    raise ValueError(f"Invalid CDK context: {key} must be {expected}, not {raw!r}")
