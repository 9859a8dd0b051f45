"""DatabaseMigrations: a Lambda in the VPC, called by a CloudFormation custom resource on every deploy.

Importable from the installed package (``from lambda_db_setup.cdk import DatabaseMigrations``) by any CDK
Python app: it takes the network, the target (an RDS Proxy, or an instance's or cluster's endpoint), the
secrets and the migrations directory as interfaces, so resources imported with ``from_*_attributes`` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, CustomResource, Duration, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct, IDependable

from lambda_db_setup.cdk import appusers, bundling, naming, routes, tls
from lambda_db_setup.cdk.appusers import AppUser
from lambda_db_setup.cdk.background import BackgroundMigrations
from lambda_db_setup.cdk.observability import MigrationObservability
from lambda_db_setup.errors import ConfigurationError
from lambda_db_setup.rolespec import AppGroup
from lambda_db_setup.settings import BY_NAME, PROXY_PORT, environment_variable
from lambda_db_setup.tracking import TrackingTable

TASK_ROOT = "/var/task"  # where Lambda unpacks the asset
HANDLER_MODULE = "lambda_db_setup.handler"
ALWAYS = "always"
CONTENT_HASH = "content-hash"
TRIGGERS = (ALWAYS, CONTENT_HASH)
MANAGED_POLICY_ARN = "arn:<AWS::Partition>:iam::aws:policy"  # as cdk-nag spells AWS-managed policies
FRAMEWORK_WAITERS = ("framework-isComplete", "framework-onTimeout")  # Provider children its state machine invokes
SERVICE_NAME = BY_NAME["service_name"].default  # powertools adds it to every metric as dimension "service"
BATCH_READ_POLICY = "BatchGetSecretValue"  # the role's policy for the handler's one read of all its secrets

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
# Properties named as the settings table names them, which reach the Lambda's environment as they are.
PASSED_SETTINGS = (
    "lock_timeout_ms", "statement_timeout_ms", "adopt_existing_schema", "metrics_namespace", "log_level", "iam_auth",
    "lint_before_apply", "single_transaction",
)  # fmt: skip
FUNCTIONS = {
    "OnEvent": ("on_event", ON_EVENT_TIMEOUT, "Starts a migration run"),
    "IsComplete": ("is_complete", IS_COMPLETE_TIMEOUT, "Reports whether the migration run is done"),
}

OPTIONAL_SWITCHES = ("iam_auth", "lint_before_apply", "single_transaction")
Target = rds.IDatabaseProxy | rds.IDatabaseInstance | rds.IDatabaseCluster


class DatabaseMigrations(Construct):
    """Runs the pending migrations against ``target`` on every deploy (or when the code changes).

    CloudFormation calls the Provider framework, which calls ``on_event`` and then polls
    ``is_complete`` until the run is done, within the budget above (CloudFormation's cap is one hour).
    The handler answers with ``Data`` holding ``AppliedCount`` and ``LastMigration``.

    Each function logs to its own group ``/aws/lambda/<function name>``: that is the group the Provider
    framework names in a failure's Reason (``Logs: /aws/lambda/...``). The names come from the construct's
    path (``naming``), so several per stack and per app do not collide, and end in a piece of the stack's
    id, so a stack created again (after a failed first create, say) does not collide with the groups the
    earlier one retained.

    For an app to follow the run: ``applied_count`` and ``last_migration`` (the custom resource's
    attributes), ``resource`` (for ``node.add_dependency``), ``security_group``, ``on_event_function_name``
    and ``is_complete_function_name``; ``observability``, the Logs Insights saved queries and the dashboard
    over its log groups.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        target: Target,
        admin_secret: secretsmanager.ISecret,
        migrations_dir: str | Path,
        app_groups: Sequence[AppGroup] = (),
        app_users: Sequence[AppUser] = (),
        vpc_subnets: ec2.SubnetSelection | None = None,
        port: int = PROXY_PORT,
        target_security_group: ec2.ISecurityGroup | None = None,
        secrets_manager_endpoint: ec2.IConnectable | None = None,
        trigger: str = ALWAYS,
        iam_auth: bool = BY_NAME["iam_auth"].default,
        admin_username: str = "postgres",
        lock_timeout_ms: int = BY_NAME["lock_timeout_ms"].default,
        statement_timeout_ms: int = BY_NAME["statement_timeout_ms"].default,
        adopt_existing_schema: bool = BY_NAME["adopt_existing_schema"].default,
        single_transaction: bool = BY_NAME["single_transaction"].default,
        migrations_schema: str = BY_NAME["migrations_schema"].default,
        migrations_table: str = BY_NAME["migrations_table"].default,
        lint_before_apply: bool = BY_NAME["lint_before_apply"].default,
        metrics_namespace: str = BY_NAME["metrics_namespace"].default,
        log_level: str = BY_NAME["log_level"].default,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        reserved_concurrency: int = 0,
        depends_on: Sequence[IDependable] = (),
        bundle_cache_dir: str | Path = bundling.DEFAULT_CACHE_DIR,
        ca_bundle: str | Path | None = None,
        background_migrations: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        migrations = _checked(trigger, migrations_dir)
        declared = appusers.declare(self, target, app_groups, app_users, admin_username)
        team_bundle = tls.checked_bundle(ca_bundle)  # a missing or empty file fails the synth here
        self.asset = bundling.lambda_asset(
            self, "Code", migrations, lint=lint_before_apply, cache_dir=bundle_cache_dir, ca_bundle=team_bundle
        )
        self.security_group = self._network_access(
            vpc, vpc_subnets, target_security_group or target, port, secrets_manager_endpoint
        )
        role = self._role(admin_secret, app_users, target if iam_auth else None, admin_username)
        settings = _tracking_table(migrations_schema, migrations_table) | _reach(admin_secret, target, team_bundle)
        settings |= {name: value for name, value in locals().items() if name in PASSED_SETTINGS}  # as they are
        common = _function_options(role, vpc, vpc_subnets, _environment(settings), reserved_concurrency)
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.on_event, self.is_complete = (self._function(name, log_retention, common) for name in FUNCTIONS)
        self.observability = MigrationObservability(self, "Observability", log_groups=list(self.log_groups.values()))
        self.background = (
            self._background(admin_secret, common, metrics_namespace, log_retention) if background_migrations else None
        )
        provider = self._provider(log_retention)
        self.resource = self._run(provider, trigger, migrations, declared)
        self.resource.node.add_dependency(target, self.security_group, *depends_on)  # the path exists first
        self._acknowledge_findings(role, provider)

    @property
    def applied_count(self) -> str:
        """How many migrations the last deploy applied (the custom resource's ``AppliedCount``), as text."""
        return self.resource.get_att_string("AppliedCount")

    @property
    def last_migration(self) -> str:
        """The name of the last migration the last deploy applied, or empty (``LastMigration``)."""
        return self.resource.get_att_string("LastMigration")

    @property
    def on_event_function_name(self) -> str:
        """The function that starts a run, and runs the CLI's operator commands (``--lambda``)."""
        return self.on_event.function_name

    @property
    def is_complete_function_name(self) -> str:
        """The function the Provider framework polls until the run is done."""
        return self.is_complete.function_name

    def _background(
        self,
        admin_secret: secretsmanager.ISecret,
        common: dict[str, Any],
        metrics_namespace: str,
        log_retention: logs.RetentionDays,
    ) -> BackgroundMigrations:
        """The state machine that finishes queued background work; is_complete starts it after a deploy, an
        operator's ``background resume`` or ``retry`` through ``--lambda`` (on_event) after a pause or failure."""
        return BackgroundMigrations(
            self,
            "Background",
            function=self.on_event,
            starters=[self.on_event, self.is_complete],  # is_complete after a deploy, on_event for `resume`
            asset=self.asset,
            admin_secret=admin_secret,
            environment=common["environment"],
            vpc=common["vpc"],
            vpc_subnets=common["vpc_subnets"],
            security_group=self.security_group,
            metrics_namespace=metrics_namespace,
            service_name=SERVICE_NAME,
            log_retention=log_retention,
        )

    def _run(self, provider: cr.Provider, trigger: str, migrations: Path, declared: dict[str, Any]) -> CustomResource:
        """The custom resource: a new Trigger on every synth, or the code's hash (``content-hash``).

        The declared roles are properties too, so a changed declaration runs even in ``content-hash`` mode.
        """
        return CustomResource(
            self,
            "Run",
            service_token=provider.service_token,
            resource_type="Custom::DbMigrations",
            service_timeout=SERVICE_TIMEOUT,
            properties={
                "Trigger": self.asset.asset_hash if trigger == CONTENT_HASH else _now(),
                "MigrationsHash": bundling.fingerprint(migrations),
                **declared,
            },
        )

    def _network_access(
        self,
        vpc: ec2.IVpc,
        vpc_subnets: ec2.SubnetSelection | None,
        target: ec2.IConnectable,
        port: int,
        endpoint: ec2.IConnectable | None,
    ) -> ec2.SecurityGroup:
        """The functions' security group: to the target on ``port``, and HTTPS to Secrets Manager (with a synth
        warning when the subnets have no route to it).

        An imported proxy is not connectable (``from_database_proxy_attributes`` keeps its groups to
        itself), so its security group comes as ``target_security_group``.
        """
        routes.warn_without_secrets_manager_route(self, vpc, vpc_subnets, endpoint)
        security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False, description="Migration Lambda"
        )
        target.connections.allow_from(security_group, ec2.Port.tcp(port), "Migration Lambda to the database")
        if endpoint is not None:
            endpoint.connections.allow_default_port_from(security_group, "Secrets Manager API")
        else:  # no endpoint given: the Secrets Manager API by whatever route the subnets have (NAT, say)
            security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "Secrets Manager API")
        return security_group

    def _function(self, function_id: str, retention: logs.RetentionDays, common: dict[str, Any]) -> lambda_.Function:
        """One handler entry point, logging to ``/aws/lambda/<its name>``, the group a failure's Reason names."""
        entry_point, timeout, description = FUNCTIONS[function_id]
        name = naming.function_names(self, FUNCTIONS)[function_id]
        self.log_groups[function_id] = logs.LogGroup(
            self, f"{function_id}Logs", log_group_name=naming.log_group_name(name), retention=retention
        )
        return lambda_.Function(
            self,
            function_id,
            function_name=name,
            handler=f"{HANDLER_MODULE}.{entry_point}",
            description=description,
            timeout=timeout,
            log_group=self.log_groups[function_id],
            code=lambda_.Code.from_bucket_v2(self.asset.bucket, self.asset.s3_object_key),
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            memory_size=512,
            security_groups=[self.security_group],
            **common,
        )

    def _role(
        self,
        admin_secret: secretsmanager.ISecret,
        app_users: Sequence[AppUser],
        iam_auth_target: Target | None,
        admin_username: str,
    ) -> iam.Role:
        """One role for both functions: VPC access, their logs, reading the admin's and declared users' secrets,
        and (``iam_auth_target``) ``rds-db:connect`` as the admin on the target (a proxy: its prx- resource id)."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole")
            ],
        )
        for secret in (admin_secret, *(user.secret for user in app_users)):
            secret.grant_read(role)
        if iam_auth_target is not None:
            iam_auth_target.grant_connect(role, admin_username)
        # The handler reads the secrets in one BatchGetSecretValue call. That action takes no resource, and
        # Secrets Manager still checks GetSecretValue (granted above) on each secret it returns. In its own
        # policy, a child of the role (so the functions wait for it), whose one finding is acknowledged alone.
        iam.Policy(
            role,
            BATCH_READ_POLICY,
            roles=[role],
            statements=[iam.PolicyStatement(actions=["secretsmanager:BatchGetSecretValue"], resources=["*"])],
        )
        return role

    def _provider(self, log_retention: logs.RetentionDays) -> cr.Provider:
        """The framework that calls on_event, then polls is_complete, within the run's time budget."""
        framework_logs = logs.LogGroup(self, "ProviderLogs", retention=log_retention)
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
        Validations.of(role.node.find_child(BATCH_READ_POLICY)).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="secretsmanager:BatchGetSecretValue accepts only Resource '*'; Secrets Manager also checks "
                "GetSecretValue on each secret, which the role has on exactly the admin's and the app users' secrets.",
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


def _endpoint(target: Target) -> str:
    """Where the handler connects (``DB_PROXY_ENDPOINT``): the proxy's host, else the endpoint's host:port."""
    if hasattr(target, "db_proxy_arn"):
        return target.endpoint
    if hasattr(target, "cluster_endpoint"):
        return target.cluster_endpoint.socket_address
    return target.instance_endpoint.socket_address


def _tracking_table(schema: str, table: str) -> dict[str, str]:
    """The tracking table's settings that differ from node-pg-migrate's default (unset: the handler's default),
    checked as the handler will read them, so a bad name fails the synth."""
    values = {"migrations_schema": schema, "migrations_table": table}
    try:
        for name, value in values.items():
            BY_NAME[name].parse(value, name)
        TrackingTable(schema, table)
    except ConfigurationError as error:
        raise ValueError(str(error)) from None
    return {name: value for name, value in values.items() if value != BY_NAME[name].default}


def _checked(trigger: str, migrations_dir: str | Path) -> Path:
    """The migrations directory, absolute; a missing directory or a bad trigger fails the synth, each by name.

    A relative ``migrations_dir`` is taken from the working directory of the synth (where ``cdk synth``
    runs the app), so the message names both.
    """
    if not str(migrations_dir).strip():
        raise ConfigurationError("migrations_dir is empty: give the directory of the migration files")
    migrations = Path(migrations_dir).resolve()
    if not migrations.is_dir():
        state = "is not a directory" if migrations.exists() else "does not exist"
        raise ConfigurationError(
            f"migrations_dir {str(migrations_dir)!r} {state}: {migrations} (relative to the working directory "
            f"{Path.cwd()})"
        )
    if trigger not in TRIGGERS:
        raise ConfigurationError(f"trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}")
    return migrations


def _reach(admin_secret: secretsmanager.ISecret, target: Target, team_bundle: Path | None) -> dict[str, object]:
    """The settings that say where the database is and how to trust it."""
    return {
        "admin_secret_arn": admin_secret.secret_arn,
        "proxy_endpoint": _endpoint(target),
        "ca_bundle": f"{TASK_ROOT}/{tls.bundle_in_asset(target, team_bundle)}",
    }


def _function_options(
    role: iam.IRole,
    vpc: ec2.IVpc,
    vpc_subnets: ec2.SubnetSelection | None,
    environment: dict[str, str],
    reserved_concurrency: int,
) -> dict[str, Any]:
    """What both functions (and the background runner) share."""
    return {
        "role": role,
        "vpc": vpc,
        "vpc_subnets": vpc_subnets,
        "environment": environment,
        "reserved_concurrent_executions": reserved_concurrency or None,  # 0: unset (see the README)
    }


def _environment(values: dict[str, object]) -> dict[str, str]:
    """The contract with ``lambda_db_setup.handler``: each variable named by the settings table.

    The switches that are off by default appear only when on, as the handler reads unset as off.
    """
    values = {name: value for name, value in values.items() if name not in OPTIONAL_SWITCHES or value}
    if values.get("lint_before_apply"):
        values["squawk_binary"] = f"{TASK_ROOT}/{bundling.SQUAWK_BINARY}"
    fixed = {
        "migrations_dir": f"{TASK_ROOT}/{bundling.MIGRATIONS}",
        "service_name": SERVICE_NAME,
        "run_budget_seconds": int(RUN_BUDGET.to_seconds()),
    }
    return {environment_variable(name): _env_text(value) for name, value in {**values, **fixed}.items()}


def _env_text(value: object) -> str:
    """An environment variable's text, as ``Settings`` parses it back (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _now() -> str:
    """A value that differs on every synth, so CloudFormation calls the handler on every deploy."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _logical_id(function: lambda_.IFunction) -> str:
    """The CloudFormation logical ID cdk-nag prints for a function (e.g. in ``<Fn.Arn>:*``)."""
    stack = Stack.of(function)
    return stack.resolve(stack.get_logical_id(function.node.default_child))
