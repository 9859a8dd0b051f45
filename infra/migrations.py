"""The migration run: a Lambda in the VPC called by a CloudFormation custom resource on deploy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_cdk import Acknowledgment, Aws, CfnOutput, CustomResource, Duration, Fn, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra import bundling
from infra.database import Database
from infra.network import Network
from lambda_db_setup.settings import BY_NAME, environment_variable

TASK_ROOT = "/var/task"  # where Lambda unpacks the asset
HANDLER_MODULE = "lambda_db_setup.handler"
ALWAYS = "always"
CONTENT_HASH = "content-hash"
TRIGGERS = (ALWAYS, CONTENT_HASH)
MANAGED_POLICY_ARN = "arn:<AWS::Partition>:iam::aws:policy"  # as cdk-nag spells AWS-managed policies
FRAMEWORK_WAITERS = ("framework-isComplete", "framework-onTimeout")  # Provider children its state machine invokes
SERVICE_NAME = BY_NAME["service_name"].default  # powertools adds it to every metric as dimension "service"
FUNCTION_NAME_MAX = 64  # Lambda's limit on a function name

# The time budget of one run. CloudFormation waits at most an hour for a custom resource (ServiceTimeout,
# 1-3600 s). The Provider framework calls on_event once, then is_complete, waiting QUERY_INTERVAL between
# calls for at most PROVIDER_TOTAL_TIMEOUT in all (Step Functions' retry waits). So a run whose last
# is_complete starts at the end of those waits ends, at the latest, after
#   ON_EVENT_TIMEOUT + PROVIDER_TOTAL_TIMEOUT + QUERY_INTERVAL + IS_COMPLETE_TIMEOUT + FRAMEWORK_MARGIN
# = 600 + 2250 + 30 + 600 + 120 = 3600 s = SERVICE_TIMEOUT, and the framework's FAILED (or SUCCESS) reaches
# CloudFormation before it gives up. The margin covers the framework's own functions, the state machine's
# transitions and the response upload. The waits do not include the is_complete calls in between: a run
# with several long is_complete calls must stop itself; RUN_BUDGET_SECONDS tells the handler how long it has.
CLOUDFORMATION_CUSTOM_RESOURCE_LIMIT = Duration.hours(1)
FUNCTION_TIMEOUT = Duration.minutes(10)  # the longest one migration may take
ON_EVENT_TIMEOUT = FUNCTION_TIMEOUT
IS_COMPLETE_TIMEOUT = FUNCTION_TIMEOUT
QUERY_INTERVAL = Duration.seconds(30)
FRAMEWORK_MARGIN = Duration.minutes(2)
SERVICE_TIMEOUT = CLOUDFORMATION_CUSTOM_RESOURCE_LIMIT
PROVIDER_TOTAL_TIMEOUT = Duration.seconds(
    SERVICE_TIMEOUT.to_seconds()
    - ON_EVENT_TIMEOUT.to_seconds()
    - QUERY_INTERVAL.to_seconds()
    - IS_COMPLETE_TIMEOUT.to_seconds()
    - FRAMEWORK_MARGIN.to_seconds()
)  # 2250 s = 37.5 min, 75 polls of 30 s
RUN_BUDGET = Duration.seconds(SERVICE_TIMEOUT.to_seconds() - FRAMEWORK_MARGIN.to_seconds())  # from on_event's start
# Construct id -> handler entry point, Lambda timeout, description.
FUNCTIONS = {
    "OnEvent": ("on_event", ON_EVENT_TIMEOUT, "Starts a migration run"),
    "IsComplete": ("is_complete", IS_COMPLETE_TIMEOUT, "Reports whether the migration run is done"),
}


@dataclass(frozen=True)
class MigrationSettings:
    """What the deployer may tune (see the stack's context keys)."""

    trigger: str
    lock_timeout_ms: int
    statement_timeout_ms: int
    metrics_namespace: str
    log_level: str
    log_retention: logs.RetentionDays
    reserved_concurrency: int
    lint_before_apply: bool  # squawk in the asset; the handler refuses migrations it flags
    adopt_existing_schema: bool  # record a schema built before tracking instead of migrating it


class Migrations(Construct):
    """Runs the pending migrations through the proxy on every deploy (or when the code changes).

    CloudFormation calls the Provider framework, which calls ``on_event`` and then polls
    ``is_complete`` until the run is done, within the budget above (CloudFormation's cap is one hour).
    The handler answers with ``Data`` holding ``AppliedCount`` and ``LastMigration``.

    Each function logs to its own group ``/aws/lambda/<function name>``: that is the group the Provider
    framework names in a failure's Reason (``Logs: /aws/lambda/...``). The names end in a piece of the
    stack's id, so a stack created again (after a failed first create, say) does not collide with the
    groups the earlier one retained.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        database: Database,
        settings: MigrationSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.asset = bundling.lambda_asset(self, "Code", lint=settings.lint_before_apply)
        security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False, description="Migration Lambda"
        )
        database.allow_clients(security_group, "Migration Lambda to RDS Proxy")
        network.allow_secrets_manager_from(security_group)
        role = self._role(database)

        common = {
            "code": lambda_.Code.from_bucket_v2(self.asset.bucket, self.asset.s3_object_key),
            "runtime": lambda_.Runtime.PYTHON_3_12,
            "architecture": lambda_.Architecture.ARM_64,
            "memory_size": 512,
            "role": role,
            "vpc": network.vpc,
            "vpc_subnets": network.subnets,
            "security_groups": [security_group],
            "environment": self._environment(database, settings),
            # Unset by default: the advisory lock already serializes runs, and an account with the
            # default concurrency quota of 10 cannot reserve any.
            "reserved_concurrent_executions": settings.reserved_concurrency or None,
        }
        self.log_groups: dict[str, logs.LogGroup] = {}
        functions = {
            function_id: self._function(function_id, settings.log_retention, common) for function_id in FUNCTIONS
        }
        self.on_event, self.is_complete = functions["OnEvent"], functions["IsComplete"]
        # what `python -m lambda_db_setup --lambda` invokes; whoever may lambda:InvokeFunction it runs operator commands
        CfnOutput(self, "MigrationFunctionName", value=self.on_event.function_name).override_logical_id(
            "MigrationFunctionName"
        )

        provider = self._provider(settings)
        self.resource = CustomResource(
            self,
            "Run",
            service_token=provider.service_token,
            resource_type="Custom::DbMigrations",
            service_timeout=SERVICE_TIMEOUT,
            properties={
                "Trigger": self.asset.asset_hash if settings.trigger == CONTENT_HASH else _now(),
                "MigrationsHash": bundling.migrations_fingerprint(),
            },
        )
        # Run only once the database, the proxy and every security-group rule on the path exist.
        self.resource.node.add_dependency(network, database, security_group)
        self._acknowledge_findings(role, provider)

    def _function(self, function_id: str, retention: logs.RetentionDays, common: dict[str, Any]) -> lambda_.Function:
        """One handler entry point, logging to ``/aws/lambda/<its name>``, the group a failure's Reason names."""
        entry_point, timeout, description = FUNCTIONS[function_id]
        name = _function_name(self, function_id)
        self.log_groups[function_id] = logs.LogGroup(
            self, f"{function_id}Logs", log_group_name=f"/aws/lambda/{name}", retention=retention
        )
        return lambda_.Function(
            self,
            function_id,
            function_name=name,
            handler=f"{HANDLER_MODULE}.{entry_point}",
            description=description,
            timeout=timeout,
            log_group=self.log_groups[function_id],
            **common,
        )

    def _role(self, database: Database) -> iam.Role:
        """One role for both functions: VPC access, their logs, and reading the three secrets."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole")
            ],
        )
        for secret in database.secrets:
            secret.grant_read(role)
        return role

    def _provider(self, settings: MigrationSettings) -> cr.Provider:
        """The framework that calls on_event, then polls is_complete, within the run's time budget."""
        framework_logs = logs.LogGroup(self, "ProviderLogs", retention=settings.log_retention)
        return cr.Provider(
            self,
            "Provider",
            on_event_handler=self.on_event,
            is_complete_handler=self.is_complete,
            query_interval=QUERY_INTERVAL,
            total_timeout=PROVIDER_TOTAL_TIMEOUT,
            log_group=framework_logs,
            framework_lambda_logging_level=lambda_.ApplicationLogLevel.INFO,  # each request and response
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(destination=framework_logs, level=sfn.LogLevel.ALL),
        )

    @staticmethod
    def _environment(database: Database, settings: MigrationSettings) -> dict[str, str]:
        """The contract with ``lambda_db_setup.handler``: each variable named by the settings table."""
        values: dict[str, object] = {
            "admin_secret_arn": database.admin_secret.secret_arn,
            "proxy_endpoint": database.proxy.endpoint,
            "app_rw_secret_arn": database.app_secrets["app_rw"].secret_arn,
            "app_tc_secret_arn": database.app_secrets["app_tc"].secret_arn,
            "ca_bundle": f"{TASK_ROOT}/certifi/cacert.pem",
            "migrations_dir": f"{TASK_ROOT}/migrations",
            "lock_timeout_ms": settings.lock_timeout_ms,
            "statement_timeout_ms": settings.statement_timeout_ms,
            "adopt_existing_schema": settings.adopt_existing_schema,
            "service_name": SERVICE_NAME,
            "metrics_namespace": settings.metrics_namespace,
            "log_level": settings.log_level,
            "run_budget_seconds": int(RUN_BUDGET.to_seconds()),
        }
        if settings.lint_before_apply:
            values |= {"lint_before_apply": True, "squawk_binary": f"{TASK_ROOT}/{bundling.SQUAWK_BINARY}"}
        return {environment_variable(name): _env_text(value) for name, value in values.items()}

    def _acknowledge_findings(self, role: iam.Role, provider: cr.Provider) -> None:
        """cdk-nag findings (and one CDK warning) kept on purpose, each with its reason."""
        Validations.of(self.asset).acknowledge(
            Acknowledgment(
                id="Annotation::@aws-cdk/aws-lambda:codeFromBucketObjectVersionNotSpecified",
                reason="The object key is the asset's content hash: new code is a new key, so the functions update.",
            )
        )
        for function in (self.on_event, self.is_complete):
            Validations.of(function).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-L1",
                    reason="Python 3.12 on purpose: the bundled binary wheels (psycopg2) are built for CPython 3.12; "
                    "move the runtime and bundling.PIP_TARGET_ARGS together.",
                )
            )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM4[Policy::{MANAGED_POLICY_ARN}/service-role/AWSLambdaVPCAccessExecutionRole]",
                reason="AWS-maintained policy for a Lambda in a VPC: its own logs and the network interfaces Lambda "
                "manages in the subnets (those EC2 actions accept no narrower resource).",
            )
        )
        # The Provider framework's own functions, roles and state machine, as aws-cdk-lib builds them.
        invoked = [self.on_event, self.is_complete, *(provider.node.find_child(name) for name in FRAMEWORK_WAITERS)]
        Validations.of(provider).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM4[Policy::{MANAGED_POLICY_ARN}/service-role/AWSLambdaBasicExecutionRole]",
                reason="The Provider framework's functions write their logs with the AWS-maintained basic policy.",
            ),
            *(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{_logical_id(function)}.Arn>:*]",
                    reason="The Provider framework invokes this one function, any version or alias of it.",
                )
                for function in invoked
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="The waiter state machine's log delivery: CloudWatch Logs' vended-log actions "
                "(logs:CreateLogDelivery and co.) accept only Resource '*'.",
            ),
            Acknowledgment(
                id="AwsSolutions-SF2",
                reason="The framework's waiter state machine offers no X-Ray setting; its runs are logged (ALL) "
                "in the provider log group.",
            ),
        )


def _env_text(value: object) -> str:
    """An environment variable's text, as ``Settings`` parses it back (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _now() -> str:
    """A value that differs on every synth, so CloudFormation calls the handler on every deploy."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _function_name(scope: Construct, construct_id: str) -> str:
    """``<stack name>-<construct id>-<8 hex digits of the stack's id>``, within Lambda's 64 characters."""
    suffix = f"-{construct_id}-"
    stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
    prefix = Stack.of(scope).stack_name[: FUNCTION_NAME_MAX - len(suffix) - 8]
    return Fn.join("", [prefix, suffix, Fn.select(0, Fn.split("-", stack_uuid))])


def _logical_id(function: lambda_.IFunction) -> str:
    """The CloudFormation logical ID cdk-nag prints for a function (e.g. in ``<Fn.Arn>:*``)."""
    stack = Stack.of(function)
    return stack.resolve(stack.get_logical_id(function.node.default_child))
