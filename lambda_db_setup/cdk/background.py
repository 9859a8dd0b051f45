"""BackgroundMigrations: the Standard state machine that finishes what deploys queued, and its alarms.

The loop: invoke the migration Lambda with the background event (it runs batches until its deadline and
answers with where the queue stands), then choose: failed -> fail; long statements waiting -> an AWS CodeBuild
build in the VPC, awaited (``startBuild.sync``); more -> wait, invoke again; paused or finished -> succeed.
The deploy starts it (the handler, when a run leaves queued work); ``background resume`` is followed by a new
start the same way.

The function must know the machine's ARN and the machine must know the function's: a cycle in CloudFormation.
It is broken by naming the machine from the construct's path (`Names.unique_resource_name`), so the function's
environment and its IAM grant hold an ARN built from that name, not a reference to the machine.

Long statements run on CodeBuild, not ECS Fargate: a managed image (nothing to build, push or pull through
the isolated subnets' endpoints), the same S3 asset as the Lambda as its source, ``.sync`` support in Step
Functions, builds of up to 36 hours, and billing by the minute only while a build runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, ArnFormat, Duration, Names, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambda_db_setup.background.lambda_event import KEY, VERSION
from lambda_db_setup.settings import environment_variable

STATE_MACHINE_NAME_MAX = 80  # Step Functions' limit on a state machine's name
WAIT_BETWEEN_INVOCATIONS = Duration.seconds(30)  # lets autovacuum and replicas catch up between Lambda runs
LONG_STATEMENT_TIMEOUT = Duration.hours(36)  # CodeBuild's longest build
LONG_STATEMENT_COMMAND = "python3 -m lambda_db_setup.background.long_statements"
STALLED_PERIODS = 6  # of 5 minutes: half an hour without a batch while the machine runs is a stall
ANSWER = f"$.{KEY}"


class BackgroundMigrations(Construct):
    """The state machine, the long-statement CodeBuild project and the alarms, for one migration Lambda."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        starters: list[lambda_.Function],
        asset: s3_assets.Asset,
        admin_secret: secretsmanager.ISecret,
        environment: Mapping[str, str],
        vpc: ec2.IVpc,
        vpc_subnets: ec2.SubnetSelection | None,
        security_group: ec2.ISecurityGroup,
        metrics_namespace: str,
        service_name: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        name = Names.unique_resource_name(self, max_length=STATE_MACHINE_NAME_MAX, separator="-")
        self.state_machine_arn = Stack.of(self).format_arn(
            service="states", resource="stateMachine", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.project = self._project(asset, admin_secret, environment, vpc, vpc_subnets, security_group)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(function)),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(self, "StateMachineLogs", retention=log_retention), level=sfn.LogLevel.ALL
            ),
        )
        for starter in starters:
            starter.add_environment(environment_variable("background_state_machine_arn"), self.state_machine_arn)
            starter.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["states:StartExecution", "states:ListExecutions"], resources=[self.state_machine_arn]
                )
            )
        self.failed_alarm, self.stalled_alarm = self._alarms(metrics_namespace, service_name)
        self._acknowledge_findings(function)

    def _definition(self, function: lambda_.IFunction) -> sfn.IChainable:
        """Invoke, then choose on the answer: the Lambda's progress decides every branch."""
        invoke = tasks.LambdaInvoke(
            self,
            "RunBatches",
            lambda_function=function,
            payload=sfn.TaskInput.from_object({KEY: {"version": VERSION}}),
            result_selector={f"{KEY}.$": f"$.Payload.{KEY}"},
            retry_on_service_exceptions=True,
        )
        long_statements = tasks.CodeBuildStartBuild(
            self,
            "RunLongStatements",
            project=self.project,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,  # startBuild.sync: wait for the build
            result_path=sfn.JsonPath.DISCARD,
        )
        wait = sfn.Wait(self, "WaitBetweenRuns", time=sfn.WaitTime.duration(WAIT_BETWEEN_INVOCATIONS))
        choose = (
            sfn.Choice(self, "WhereIsTheQueue")
            .when(sfn.Condition.string_equals(f"{ANSWER}.state", "failed"), sfn.Fail(self, "Failed", error="Failed"))
            .when(sfn.Condition.boolean_equals(f"{ANSWER}.statements", True), long_statements.next(invoke))
            .when(sfn.Condition.boolean_equals(f"{ANSWER}.more", True), wait.next(invoke))
            .when(sfn.Condition.string_equals(f"{ANSWER}.state", "paused"), sfn.Succeed(self, "Paused"))
            .otherwise(sfn.Succeed(self, "Finished"))
        )
        return invoke.next(choose)

    def _project(
        self,
        asset: s3_assets.Asset,
        admin_secret: secretsmanager.ISecret,
        environment: Mapping[str, str],
        vpc: ec2.IVpc,
        vpc_subnets: ec2.SubnetSelection | None,
        security_group: ec2.ISecurityGroup,
    ) -> codebuild.Project:
        """The long-statement runner: the Lambda's asset unpacked where the Lambda has it, its environment, no limit
        of 15 minutes."""
        project = codebuild.Project(
            self,
            "LongStatements",
            source=codebuild.Source.s3(bucket=asset.bucket, path=asset.s3_object_key),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxArmBuildImage.AMAZON_LINUX_2023_STANDARD_3_0,
                compute_type=codebuild.ComputeType.SMALL,
            ),
            environment_variables={
                name: codebuild.BuildEnvironmentVariable(value=value) for name, value in environment.items()
            },
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "install": {"runtime-versions": {"python": "3.12"}},
                        "build": {
                            "commands": [
                                'ln -sfn "$CODEBUILD_SRC_DIR" /var/task',  # the paths in the environment
                                f"cd /var/task && {LONG_STATEMENT_COMMAND}",
                            ]
                        },
                    },
                }
            ),
            vpc=vpc,
            subnet_selection=vpc_subnets,
            security_groups=[security_group],
            timeout=LONG_STATEMENT_TIMEOUT,
            description="Runs the long statements background migrations queued (no Lambda time limit)",
        )
        # In the VPC the build fetches its source from S3 and writes logs: HTTPS out, through the subnets' routes
        # or endpoints (an isolated subnet needs the S3 gateway and the Logs interface endpoints).
        security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "S3 source and logs (CodeBuild)")
        admin_secret.grant_read(project)
        project.add_to_role_policy(iam.PolicyStatement(actions=["secretsmanager:BatchGetSecretValue"], resources=["*"]))
        return project

    def _acknowledge_findings(self, function: lambda_.IFunction) -> None:
        """cdk-nag findings on what aws-cdk-lib grants the project and the machine, each kept with its reason."""
        stack = Stack.of(self)
        project = stack.resolve(stack.get_logical_id(self.project.node.default_child))
        invoked = stack.resolve(stack.get_logical_id(function.node.default_child))
        reasons = {
            "AwsSolutions-IAM5[Action::s3:GetObject*]": "Reading the asset (the Lambda's code) as the build's source.",
            "AwsSolutions-IAM5[Action::s3:GetBucket*]": "Reading the asset bucket's location for the build's source.",
            "AwsSolutions-IAM5[Action::s3:List*]": "Listing the asset's key for the build's source.",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]":
                "CodeBuild in a VPC attaches network interfaces it creates; their ids are not known in advance.",
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:{stack.region}:{stack.account}:log-group:"
            f"/aws/codebuild/<{project}>:*]": "The build's own log group and its streams.",
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:codebuild:{stack.region}:{stack.account}:report-group/"
            f"<{project}>-*]": "The project's own report groups, as aws-cdk-lib grants them (none is used).",
            "AwsSolutions-IAM5[Resource::*]": "Actions that accept only '*': secretsmanager:BatchGetSecretValue (which"
            " still checks GetSecretValue, granted on the admin secret alone), X-Ray trace segments and CloudWatch"
            " Logs' log delivery for the state machine.",
            f"AwsSolutions-IAM5[Resource::<{invoked}.Arn>:*]": "The machine invokes this one function, any version.",
            "AwsSolutions-CB4": "The build makes no artifact: it runs SQL and logs to CloudWatch; the asset bucket has"
            " its own encryption.",
        }  # fmt: skip
        Validations.of(self).acknowledge(*(Acknowledgment(id=key, reason=text) for key, text in reasons.items()))

    def _alarms(self, namespace: str, service_name: str) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm]:
        """A failed background migration, and one that stopped making progress while its machine runs."""

        def metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"service": service_name},
                statistic=cloudwatch.Stats.SUM,
                period=Duration.minutes(5),
            )

        failed = cloudwatch.MathExpression(
            expression="failed + executions",
            using_metrics={"failed": metric("BackgroundFailed"), "executions": self.state_machine.metric_failed()},
            period=Duration.minutes(5),
        ).create_alarm(
            self,
            "FailedAlarm",
            alarm_description="A background migration failed: `lambda-db-setup background status` says which and why;"
            " fix the cause, then `background retry NAME`.",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        stalled = metric("BackgroundBatches").create_alarm(
            self,
            "StalledAlarm",
            alarm_description="The background state machine ran for 30 minutes without a batch (throttled, or every"
            " batch failing): `lambda-db-setup background status` shows why it waits.",
            threshold=1,
            evaluation_periods=STALLED_PERIODS,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,  # no invocation: nothing to do
        )
        return failed, stalled
