"""The PostgreSQL 16 database, its credentials, and the RDS Proxy every client goes through."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.network import Network

POSTGRES_PORT = 5432
ADMIN_USERNAME = "postgres"
APP_USERS = ("app_rw", "app_tc")
# Characters that break a libpq connection string or URL when they appear in a password.
PASSWORD_EXCLUDED_CHARACTERS = " %+~`#$&*()|[]{}:;<>?!'/@\"\\"


@dataclass(frozen=True)
class DatabaseSettings:
    """What the deployer may tune (see the stack's context keys)."""

    database_name: str
    instance_class: str
    allocated_storage_gib: int
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int
    iam_auth: bool
    admin_rotation_days: int


class Database(Construct):
    """RDS PostgreSQL 16 behind an RDS Proxy that requires TLS.

    Security groups open one path, on 5432: clients -> proxy -> database (and the admin secret's
    rotation function -> database, as it changes the instance's own password). The proxy holds three
    secrets: the generated admin secret (used by the migrations) and one per application role
    (``app_rw``, ``app_tc``), whose passwords the migration handler sets in PostgreSQL.
    """

    def __init__(self, scope: Construct, construct_id: str, *, network: Network, settings: DatabaseSettings) -> None:
        super().__init__(scope, construct_id)
        # A full version, as RDS lists it (cfn-lint flags a bare major "16"). RDS still applies minor
        # upgrades in the maintenance window; when raising this pin, pick one at least as new as the
        # instance already runs, or CloudFormation's update would be a downgrade.
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16_13)
        parameters = rds.ParameterGroup(
            self, "Parameters", engine=engine, description="TLS only", parameters={"rds.force_ssl": "1"}
        )
        # Generated like Credentials.from_generated_secret's, plus "dbname": the handler connects to it.
        admin_secret = rds.DatabaseSecret(
            self,
            "AdminSecret",
            username=ADMIN_USERNAME,
            dbname=settings.database_name,
            exclude_characters=PASSWORD_EXCLUDED_CHARACTERS,
        )
        database_sg = ec2.SecurityGroup(
            self, "DatabaseSecurityGroup", vpc=network.vpc, allow_all_outbound=False, description="PostgreSQL"
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=engine,
            auto_minor_version_upgrade=True,
            instance_type=ec2.InstanceType(settings.instance_class),
            allocated_storage=settings.allocated_storage_gib,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[database_sg],
            publicly_accessible=False,
            port=POSTGRES_PORT,
            credentials=rds.Credentials.from_secret(admin_secret),
            database_name=settings.database_name,
            parameter_group=parameters,
            iam_authentication=settings.iam_auth,
            multi_az=settings.multi_az,
            deletion_protection=settings.deletion_protection,
            backup_retention=Duration.days(settings.backup_retention_days),
            copy_tags_to_snapshot=True,
        )
        self.admin_secret = self.instance.secret
        self.app_secrets = {user: self._app_user_secret(user) for user in APP_USERS}
        self.rotation_security_group = self._rotate_admin_secret(network, settings.admin_rotation_days)

        proxy_sg = ec2.SecurityGroup(
            self, "ProxySecurityGroup", vpc=network.vpc, allow_all_outbound=False, description="RDS Proxy"
        )
        self.proxy = self.instance.add_proxy(
            "Proxy",
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[proxy_sg],
            secrets=self.secrets,
            require_tls=True,
            iam_auth=False,
        )
        # add_proxy already opened the instance's port to the proxy's security group.
        # The proxy fetches its secrets itself; allowing it the endpoint keeps that working in a VPC
        # where Secrets Manager is only reachable through the endpoint.
        network.allow_secrets_manager_from(self.proxy)
        self._acknowledge_findings(settings)

    @property
    def secrets(self) -> list[secretsmanager.ISecret]:
        """The admin secret and the application users' secrets, in that order."""
        return [self.admin_secret, *self.app_secrets.values()]

    def allow_clients(self, client: ec2.IConnectable, description: str) -> None:
        """Let ``client`` connect to the proxy (and so to PostgreSQL); nothing reaches the instance directly."""
        self.proxy.connections.allow_from(client, ec2.Port.tcp(POSTGRES_PORT), description)

    def _app_user_secret(self, username: str) -> secretsmanager.Secret:
        return secretsmanager.Secret(
            self,
            "".join(part.title() for part in username.split("_")) + "Secret",
            description=f"PostgreSQL role {username}; the migration handler sets this password in the database",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": username}),
                generate_string_key="password",
                exclude_characters=PASSWORD_EXCLUDED_CHARACTERS,
                password_length=32,
            ),
        )

    def _rotate_admin_secret(self, network: Network, every_days: int) -> ec2.SecurityGroup:
        """Rotate the admin password with Secrets Manager's hosted PostgreSQL single-user rotation.

        The rotation Lambda runs in the isolated subnets: it reaches Secrets Manager through the
        endpoint and the instance directly (it rotates the instance's own password). The first
        rotation waits for the schedule, so a deploy never races a rotation.
        """
        rotation_sg = ec2.SecurityGroup(
            self, "RotationSecurityGroup", vpc=network.vpc, allow_all_outbound=False, description="Secret rotation"
        )
        self.admin_secret.add_rotation_schedule(
            "Rotation",
            hosted_rotation=secretsmanager.HostedRotation.postgre_sql_single_user(
                vpc=network.vpc,
                vpc_subnets=network.subnets,
                security_groups=[rotation_sg],
                exclude_characters=PASSWORD_EXCLUDED_CHARACTERS,
            ),
            automatically_after=Duration.days(every_days),
            rotate_immediately_on_update=False,
        )
        self.instance.connections.allow_from(rotation_sg, ec2.Port.tcp(POSTGRES_PORT), "Admin secret rotation")
        network.allow_secrets_manager_from(rotation_sg)
        return rotation_sg

    def _acknowledge_findings(self, settings: DatabaseSettings) -> None:
        """cdk-nag findings kept on purpose, each with its reason."""
        acknowledgments = [
            Acknowledgment(
                id="AwsSolutions-RDS11",
                reason="RDS Proxy for PostgreSQL listens on 5432 only; a non-default instance port would hide "
                "nothing, since only the proxy's and the rotation function's security groups reach the instance.",
            ),
        ]
        if not settings.multi_az:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS3",
                    reason="Multi-AZ is the context switch multiAz, off by default to keep small stacks cheap; "
                    "turn it on for production.",
                )
            )
        if not settings.deletion_protection:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS10",
                    reason="Deletion protection was turned off with the context switch deletionProtection=false "
                    "(throw-away stacks); it is on by default.",
                )
            )
        Validations.of(self.instance).acknowledge(*acknowledgments)
        for secret in self.app_secrets.values():
            Validations.of(secret).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-SMG4",
                    reason="The migration handler creates this role and sets its password from this secret, so "
                    "single-user rotation could run before the role exists. To rotate, put a new password in the "
                    "secret: the next migration run applies it.",
                )
            )
