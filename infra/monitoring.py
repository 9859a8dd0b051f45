"""An alarm on failed migration runs, published to an encrypted SNS topic (optionally e-mailed)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from lambda_db_setup.cdk.construct import SERVICE_NAME

FAILED_METRIC = "MigrationsFailed"  # the handler emits 1 on a failed run, 0 on a successful one
ALARM_PERIOD = Duration.minutes(5)


class MigrationAlarm(Construct):
    """Alarms when any run in a 5-minute period failed; no data (no deploy) is not a failure.

    The metric is the handler's EMF ``MigrationsFailed`` with powertools' default dimension
    ``service`` (the POWERTOOLS_SERVICE_NAME value), in the configured namespace. CloudWatch can
    publish to an encrypted topic only with a customer-managed key whose policy lets it use the key
    (the AWS-managed ``alias/aws/sns`` key cannot be shared), hence the key.
    """

    def __init__(self, scope: Construct, construct_id: str, *, namespace: str, email: str) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the migration alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,  # nothing kept at rest depends on it: SNS messages are transient
        )
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Topic", display_name="DB migration failures", master_key=key, enforce_ssl=True)
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

        self.metric = cloudwatch.Metric(
            namespace=namespace,
            metric_name=FAILED_METRIC,
            dimensions_map={"service": SERVICE_NAME},
            statistic=cloudwatch.Stats.SUM,
            period=ALARM_PERIOD,
        )
        self.alarm = self.metric.create_alarm(
            self,
            "Failed",
            alarm_description="A deploy-time migration run failed; the stack event's Reason and the "
            "migration log groups say which migration and why.",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
