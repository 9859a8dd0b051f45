"""The deployable stack and its settings, read from CDK context."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct, Node

from infra.database import ADMIN_USERNAME, ENGINES, AppSecretRotation, Database, DatabaseSettings
from infra.monitoring import MigrationAlarm
from infra.network import Network
from lambda_db_setup.cdk import DDL, TRIGGERS, WRITE, AppGroup, AppUser, DatabaseMigrations
from lambda_db_setup.settings import BY_NAME, LOG_LEVELS

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"  # this project's own migrations
STAGES = "stages"  # context: stage name -> the settings that stage changes
# This stack's application roles (the construct has no fixed ones): DML, and DML plus CREATE, on public.
APP_GROUPS = (AppGroup("readwrite", WRITE), AppGroup("tablecreator", DDL))
USER_GROUPS = {"app_rw": "readwrite", "app_tc": "tablecreator"}

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
    stage: str = ""  # with a stage: its settings from context "stages", and the stack DbMigrations-<stage>
    engine: str = "postgres"
    min_capacity: float = 0.5
    max_capacity: float = 2.0
    vpc_cidr: str = "10.0.0.0/16"
    database_name: str = "app"
    instance_class: str = "t4g.micro"
    allocated_storage_gib: int = 20
    multi_az: bool = False
    deletion_protection: bool = False
    backup_retention_days: int = 7
    iam_auth: bool = BY_NAME["iam_auth"].default
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
    single_transaction: bool = BY_NAME["single_transaction"].default
    migrations_schema: str = BY_NAME["migrations_schema"].default
    migrations_table: str = BY_NAME["migrations_table"].default
    alarm_email: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.engine not in ENGINES:
            problems.append(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if not 0 <= self.min_capacity <= self.max_capacity <= 256:
            problems.append("minCapacity and maxCapacity must be 0 <= minCapacity <= maxCapacity <= 256 (ACUs)")
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
        """Read the settings from context, where ``-c key=value`` gives strings and cdk.json gives JSON.

        With ``stage``, that stage's entries under ``stages`` win over the top-level keys.
        """
        kinds = {field.name: type(field.default) for field in fields(cls)}
        overrides = _stage_overrides(node, set(cls.context_keys().values()))
        values = {}
        for name, key in cls.context_keys().items():
            raw = overrides.get(key, node.try_get_context(key))
            if raw is not None:
                values[name] = _coerce(raw, kinds[name], key)
        return cls(**values)

    @property
    def full_stack_name(self) -> str:
        """``stackName``, or ``stackName-stage`` so that stages deploy side by side from one app."""
        return f"{self.stack_name}-{self.stage}" if self.stage else self.stack_name

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
            engine=self.engine,
            min_capacity=self.min_capacity,
            max_capacity=self.max_capacity,
        )


class DbMigrationsStack(Stack):
    """Network, database and the deploy-time migration run, with the values an operator needs as outputs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = Network(self, "Network", cidr=config.vpc_cidr, log_retention=config.log_retention)
        self.database = Database(self, "Database", network=self.network, settings=config.database)
        self.migrations = DatabaseMigrations(
            self,
            "Migrations",
            vpc=self.network.vpc,
            vpc_subnets=self.network.subnets,
            target=self.database.proxy,
            admin_secret=self.database.admin_secret,
            app_groups=APP_GROUPS,
            app_users=[AppUser(user, secret, USER_GROUPS[user]) for user, secret in self.database.app_secrets.items()],
            migrations_dir=MIGRATIONS_DIR,
            secrets_manager_endpoint=self.network.secrets_manager_endpoint,
            trigger=config.migration_trigger,
            iam_auth=config.iam_auth,
            admin_username=ADMIN_USERNAME,
            lock_timeout_ms=config.lock_timeout_ms,
            statement_timeout_ms=config.statement_timeout_ms,
            adopt_existing_schema=config.adopt_existing_schema,
            single_transaction=config.single_transaction,
            migrations_schema=config.migrations_schema,
            migrations_table=config.migrations_table,
            lint_before_apply=config.lint_before_apply,
            metrics_namespace=config.metrics_namespace,
            log_level=config.log_level,
            log_retention=config.log_retention,
            reserved_concurrency=config.reserved_concurrency,
            depends_on=[self.network, self.database],
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
        self.migrations.observability.add_alarm(self.alarm.alarm)

        outputs = {
            "VpcId": self.network.vpc.vpc_id,
            "ProxyEndpoint": self.database.proxy.endpoint,
            "ProxySecurityGroupId": self.database.proxy.connections.security_groups[0].security_group_id,
            "AdminSecretArn": self.database.admin_secret.secret_arn,
            "AppRwSecretArn": self.database.app_secrets["app_rw"].secret_arn,
            "AppTcSecretArn": self.database.app_secrets["app_tc"].secret_arn,
            "MigrationLogGroupName": self.migrations.log_groups["OnEvent"].log_group_name,
            "MigrationIsCompleteLogGroupName": self.migrations.log_groups["IsComplete"].log_group_name,
            # what `--lambda` invokes: whoever may lambda:InvokeFunction runs operator commands
            "MigrationFunctionName": self.migrations.on_event_function_name,
            "AlarmTopicArn": self.alarm.topic.topic_arn,
            "AppliedCount": self.migrations.applied_count,
            "LastMigration": self.migrations.last_migration,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def _camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _stage_overrides(node: Node, keys: set[str]) -> dict[str, Any]:
    """The chosen stage's settings (none without ``stage``); an unknown stage or key is an error."""
    stage = node.try_get_context("stage")
    if not stage:
        return {}
    stages = node.try_get_context(STAGES) or {}
    if stage not in stages:
        raise ValueError(f"Invalid CDK context: stage {stage!r} is not in {STAGES} ({', '.join(sorted(stages))})")
    unknown = set(stages[stage]) - keys - {"stage"}
    if unknown:
        raise ValueError(f"Invalid CDK context: {STAGES}.{stage} has unknown keys {', '.join(sorted(unknown))}")
    return stages[stage]


def _coerce(raw: object, kind: type, key: str) -> object:
    """Context from the command line is always a string; turn it into the field's type."""
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    text = str(raw).strip().lower()
    if kind is bool and text in ("true", "false"):
        return text == "true"
    if kind is int and text.lstrip("-").isdigit():
        return int(text)
    if kind is float and not isinstance(raw, bool) and text.replace(".", "", 1).lstrip("-").isdigit():
        return float(text)
    if kind is str:
        return str(raw)
    expected = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
    raise ValueError(f"Invalid CDK context: {key} must be {expected}, not {raw!r}")
