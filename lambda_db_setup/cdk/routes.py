"""A synth-time warning when the migration functions would have no way to Secrets Manager.

They read their secrets before anything else; without a route the SDK call hangs until the function times
out, and the deploy fails only after the custom resource's retries. Isolated subnets (CDK's
``PRIVATE_ISOLATED``: no NAT route) reach the API only through an interface endpoint with private DNS. (Public
subnets, where a function would get no public address either, Lambda itself refuses at synth.)
"""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

NO_ROUTE_WARNING = "lambda-db-setup:noRouteToSecretsManager"  # the id to acknowledge it by
SERVICE = "secretsmanager"


def warn_without_secrets_manager_route(
    scope: Construct, vpc: ec2.IVpc, subnets: ec2.SubnetSelection | None, endpoint: ec2.IConnectable | None
) -> None:
    """Warn when no endpoint is given, a chosen subnet is isolated, and the VPC has no such endpoint.

    Subnets the VPC does not classify (selected by id) are not warned about: their routes are unknown here.
    """
    if endpoint is not None or _has_secrets_manager_endpoint(vpc):
        return
    routeless = {subnet.subnet_id for subnet in vpc.isolated_subnets}
    chosen = vpc.select_subnets(**_selection_arguments(subnets)).subnets  # as the functions choose them
    stranded = [subnet.subnet_id for subnet in chosen if subnet.subnet_id in routeless]
    if stranded:
        Annotations.of(scope).add_warning_v2(
            NO_ROUTE_WARNING,
            f"the migration functions run in {len(stranded)} isolated subnet(s), which have no route to "
            "Secrets Manager, and no secrets_manager_endpoint is given nor a Secrets Manager interface endpoint "
            "with private DNS found in the VPC: the deploy would time out reading the secrets. Pass "
            "secrets_manager_endpoint=<the VPC's endpoint>, or vpc_subnets with a NAT route.",
        )


def _selection_arguments(selection: ec2.SubnetSelection | None) -> dict[str, object]:
    """A ``SubnetSelection`` as the keyword arguments of ``IVpc.select_subnets`` (jsii spreads the struct)."""
    fields = ("availability_zones", "one_per_az", "subnet_filters", "subnet_group_name", "subnet_type", "subnets")
    values = {name: getattr(selection, name) for name in fields} if selection else {}
    return {name: value for name, value in values.items() if value is not None}


def _has_secrets_manager_endpoint(vpc: ec2.IVpc) -> bool:
    """Whether this app defines a Secrets Manager interface endpoint with private DNS in ``vpc``."""
    return any(
        isinstance(child, ec2.CfnVPCEndpoint)
        and child.vpc_id == vpc.vpc_id
        and f".{SERVICE}" in child.service_name  # com.amazonaws.<region>.secretsmanager, tokens and all
        and child.private_dns_enabled is True
        for child in vpc.node.root.node.find_all()
    )
