"""The PostgreSQL 16 database, its credentials, and the RDS Proxy every client goes through."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IDependable

from infra.network import Network

POSTGRES = "postgres"
AURORA_SERVERLESS_V2 = "aurora-serverless-v2"
ENGINES = (POSTGRES, AURORA_SERVERLESS_V2)

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
    engine: str = POSTGRES
    min_capacity: float = 0.5  # Aurora Serverless v2 ACUs; 0 pauses the cluster when idle
    max_capacity: float = 2.0


class Database(Construct):
    """RDS PostgreSQL 16 behind an RDS Proxy that requires TLS.

    Security groups open one path, on 5432: clients -> proxy -> database (and the secrets' rotation
    functions -> database: each logs in as its user to change that user's password). The proxy holds
    three secrets: the generated admin secret (used by the migrations) and one per application role
    (``app_rw``, ``app_tc``), whose passwords the migration handler sets in PostgreSQL.

    The application secrets are attached to the instance, so they hold ``engine``, ``host``, ``port``
    and ``dbname`` beside the credentials. ``host`` is the instance, not the proxy, on purpose: the
    single-user rotation connects to ``host``, and through the proxy its test login with the pending
    password would fail (the proxy only knows the current one); and the proxy endpoint in a secret the
    proxy reads would be a dependency cycle. Applications take the host from the ``ProxyEndpoint``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, network: Network, settings: DatabaseSettings) -> None:
        super().__init__(scope, construct_id)
        database_sg = ec2.SecurityGroup(
            self, "DatabaseSecurityGroup", vpc=network.vpc, allow_all_outbound=False, description="PostgreSQL"
        )
        admin_secret = rds.DatabaseSecret(
            self,
            "AdminSecret",
            username=ADMIN_USERNAME,
            dbname=settings.database_name,
            exclude_characters=PASSWORD_EXCLUDED_CHARACTERS,
        )  # generated like Credentials.from_generated_secret's, plus "dbname": the handler connects to it
        self.instance: rds.DatabaseInstance | None = None
        self.cluster: rds.DatabaseCluster | None = None
        if settings.engine == AURORA_SERVERLESS_V2:
            self.cluster = self._cluster(network, settings, database_sg, admin_secret)
        else:
            self.instance = self._instance(network, settings, database_sg, admin_secret)
        self.target = self.cluster or self.instance
        self.admin_secret = self.target.secret
        self.app_secrets = {user: self._app_user_secret(user, settings.database_name) for user in APP_USERS}
        self.rotation_security_group = self._rotate_admin_secret(network, settings.admin_rotation_days)

        proxy_sg = ec2.SecurityGroup(
            self, "ProxySecurityGroup", vpc=network.vpc, allow_all_outbound=False, description="RDS Proxy"
        )
        self.proxy = self.target.add_proxy(
            "Proxy",
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[proxy_sg],
            secrets=self.secrets,
            require_tls=True,
            iam_auth=settings.iam_auth,  # then clients log in with a token: rds-db:connect on the proxy
        )
        # add_proxy already opened the instance's port to the proxy's security group.
        # The proxy fetches its secrets itself; allowing it the endpoint keeps that working in a VPC
        # where Secrets Manager is only reachable through the endpoint.
        network.allow_secrets_manager_from(self.proxy)
        self._acknowledge_findings(settings)

    def _instance(
        self,
        network: Network,
        settings: DatabaseSettings,
        database_sg: ec2.SecurityGroup,
        admin_secret: secretsmanager.ISecret,
    ) -> rds.DatabaseInstance:
        """PostgreSQL 16, TLS only, encrypted and private, with a generated admin secret attached."""
        # A full version, as RDS lists it (cfn-lint flags a bare major "16"). RDS still applies minor
        # upgrades in the maintenance window; when raising this pin, pick one at least as new as the
        # instance already runs, or CloudFormation's update would be a downgrade.
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16_13)
        parameters = self._tls_only("Parameters", engine)
        return rds.DatabaseInstance(
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
            # Off by default: on at creation, a failed first create cannot roll back (RDS refuses the
            # delete, ROLLBACK_FAILED). Turned on by context once the database exists; SNAPSHOT keeps the
            # data of a deleted or replaced instance either way.
            deletion_protection=settings.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            backup_retention=Duration.days(settings.backup_retention_days),
            copy_tags_to_snapshot=True,
        )

    def _tls_only(self, construct_id: str, engine: rds.IEngine) -> rds.ParameterGroup:
        """The parameter group both engines get: the server refuses connections without TLS."""
        return rds.ParameterGroup(
            self, construct_id, engine=engine, description="TLS only", parameters={"rds.force_ssl": "1"}
        )

    def _cluster(
        self,
        network: Network,
        settings: DatabaseSettings,
        database_sg: ec2.SecurityGroup,
        admin_secret: secretsmanager.ISecret,
    ) -> rds.DatabaseCluster:
        """Aurora PostgreSQL 16 with one Serverless v2 writer: TLS only, encrypted, private; may auto-pause."""
        # 16.3 or later for a minimum capacity of 0 (auto-pause); the same pin rule as the instance's.
        engine = rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_16_13)
        parameters = self._tls_only("ClusterParameters", engine)
        return rds.DatabaseCluster(
            self,
            "Cluster",
            engine=engine,
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            serverless_v2_min_capacity=settings.min_capacity,
            serverless_v2_max_capacity=settings.max_capacity,
            storage_encrypted=True,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[database_sg],
            port=POSTGRES_PORT,
            credentials=rds.Credentials.from_secret(admin_secret),
            default_database_name=settings.database_name,
            parameter_group=parameters,
            iam_authentication=settings.iam_auth,
            deletion_protection=settings.deletion_protection,  # off by default: see the instance's
            removal_policy=RemovalPolicy.SNAPSHOT,
            backup=rds.BackupProps(retention=Duration.days(settings.backup_retention_days)),
            copy_tags_to_snapshot=True,
        )

    @property
    def secrets(self) -> list[secretsmanager.ISecret]:
        """The admin secret and the application users' secrets, in that order."""
        return [self.admin_secret, *self.app_secrets.values()]

    def allow_clients(self, client: ec2.IConnectable, description: str) -> None:
        """Let ``client`` connect to the proxy (and so to PostgreSQL); nothing reaches the instance directly."""
        self.proxy.connections.allow_from(client, ec2.Port.tcp(POSTGRES_PORT), description)

    def _app_user_secret(self, username: str, database_name: str) -> secretsmanager.ISecret:
        """A generated password for ``username``; attaching it to the instance adds engine, host and port."""
        secret = secretsmanager.Secret(
            self,
            "".join(part.title() for part in username.split("_")) + "Secret",
            description=f"PostgreSQL role {username}; the migration handler sets this password in the database. "
            "Connect through the stack's ProxyEndpoint; host is the instance, for the rotation function.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": username, "dbname": database_name}),
                generate_string_key="password",
                exclude_characters=PASSWORD_EXCLUDED_CHARACTERS,
                password_length=32,
            ),
        )
        return secret.attach(self.target)

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
        self.target.connections.allow_from(rotation_sg, ec2.Port.tcp(POSTGRES_PORT), "Admin secret rotation")
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
        if self.cluster is not None and not settings.iam_auth:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS6",
                    reason="IAM database authentication is the context switch iamAuth (the proxy then requires it and "
                    "the migrations log in with a token); off by default, clients use the rotated secrets.",
                )
            )
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
                    reason="Deletion protection is off by default so that a failed first create can roll back "
                    "(RDS refuses to delete a protected instance: ROLLBACK_FAILED); the removal policy SNAPSHOT "
                    "keeps the data. Production turns it on with deletionProtection=true once the database exists.",
                )
            )
        Validations.of(self.target).acknowledge(*acknowledgments)


class AppSecretRotation(Construct):
    """Hosted single-user rotation of the application users' secrets, scheduled after ``after``.

    ``after`` is the migration run, which creates the users: a schedule created before them could
    rotate the password of a role that does not exist yet. Outside the ``Database`` construct because
    the run depends on all of that (instance, proxy, security-group rules) and this depends on the run.
    The rotation functions share the admin rotation's security group: they reach the instance directly
    (``host`` in the secret) and Secrets Manager through the endpoint.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database: Database,
        network: Network,
        every_days: int,
        after: IDependable,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedules: dict[str, secretsmanager.RotationSchedule] = {}
        for user, secret in database.app_secrets.items():
            schedule = secretsmanager.RotationSchedule(
                self,
                "".join(part.title() for part in user.split("_")),
                secret=secret,
                hosted_rotation=secretsmanager.HostedRotation.postgre_sql_single_user(
                    vpc=network.vpc,
                    vpc_subnets=network.subnets,
                    security_groups=[database.rotation_security_group],
                    exclude_characters=PASSWORD_EXCLUDED_CHARACTERS,
                ),
                automatically_after=Duration.days(every_days),
                rotate_immediately_on_update=False,
            )
            schedule.node.add_dependency(after)
            self.schedules[user] = schedule
