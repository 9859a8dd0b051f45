"""The private network: isolated subnets only, so nothing in it can reach or be reached from the internet."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct


class Network(Construct):
    """A two-AZ VPC without NAT or internet gateway, with flow logs and a Secrets Manager endpoint.

    The database, its proxy and the migration Lambda live in the isolated subnets; the only AWS API
    they need is Secrets Manager, reached through an interface endpoint with private DNS, so the
    SDK's default endpoint name resolves to it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, cidr: str, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            max_azs=2,  # RDS and RDS Proxy need subnets in two AZs
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
            ],
            restrict_default_security_group=True,
        )
        self.flow_log_group = logs.LogGroup(self, "FlowLogs", retention=log_retention)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        # Not open to the whole VPC: each client is allowed by security group where it is created.
        self.secrets_manager_endpoint = self.vpc.add_interface_endpoint(
            "SecretsManager",
            service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            private_dns_enabled=True,
            open=False,
            subnets=self.subnets,
        )

    def allow_secrets_manager_from(self, client: ec2.IConnectable) -> None:
        """Let ``client`` call Secrets Manager (HTTPS to the endpoint)."""
        self.secrets_manager_endpoint.connections.allow_default_port_from(client, "Secrets Manager API")
