"""Where the database lives: the account's default VPC, or a new VPC with private subnets.

RDS needs a DB subnet group spanning at least two availability zones, whichever way the
network comes about; that is checked here rather than left to fail mid-`up`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.config import NetworkSettings

MIN_AZS = 2


def _require_two_azs(subnet_ids: Sequence[str]) -> list[str]:
    if len(subnet_ids) < MIN_AZS:
        raise pulumi.RunError(
            f"the default VPC has {len(subnet_ids)} default subnet(s); RDS needs subnets in at least "
            f"{MIN_AZS} availability zones — create default subnets (aws ec2 create-default-subnet) "
            "or set network.mode: new"
        )
    return sorted(subnet_ids)


def subnet_cidrs(vpc_cidr: str, count: int) -> list[str]:
    """Carve `count` equal blocks (4 bits smaller than the VPC, at most /28) out of the VPC range."""
    net = ipaddress.ip_network(vpc_cidr)
    new_prefix = min(net.prefixlen + 4, 28)
    return [str(block) for block, _ in zip(net.subnets(new_prefix=new_prefix), range(count))]


class Network(pulumi.ComponentResource):
    """VPC id, its CIDR and ≥2 subnet ids in distinct AZs, for the DB subnet group."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, settings: NetworkSettings, *, public: bool,
                 tags: Mapping[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("supabase-to-rds:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if settings.mode == "default":
            self._use_default_vpc(child)
        else:
            self._create_vpc(name, settings, public=public, tags=tags, opts=child)
        self.register_outputs({"vpcId": self.vpc_id, "subnetIds": self.subnet_ids})

    def _use_default_vpc(self, opts: pulumi.ResourceOptions) -> None:
        """Plain (blocking) invokes: a missing default VPC or subnet fails before anything is declared."""
        invoke = pulumi.InvokeOptions(parent=opts.parent)
        try:
            vpc = aws.ec2.get_vpc(default=True, opts=invoke)
        except Exception as exc:  # the provider reports "no matching EC2 VPC found" as a generic invoke error
            raise pulumi.RunError(
                f"no default VPC found in this region ({exc}); set network.mode: new to create one"
            ) from None
        subnets = aws.ec2.get_subnets(
            filters=[
                aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc.id]),
                aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
            ],
            opts=invoke,
        )
        self.vpc_id = pulumi.Output.from_input(vpc.id)
        self.vpc_cidr = pulumi.Output.from_input(vpc.cidr_block)
        self.subnet_ids = pulumi.Output.from_input(_require_two_azs(subnets.ids))

    def _create_vpc(self, name: str, settings: NetworkSettings, *, public: bool,
                    tags: Mapping[str, str], opts: pulumi.ResourceOptions) -> None:
        zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=self))
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=settings.cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, tags={**tags, "Name": f"{name}-vpc"}, opts=opts)
        routes = aws.ec2.RouteTable(f"{name}-db-routes", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-db"}, opts=opts)
        if public:
            gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=dict(tags), opts=opts)
            aws.ec2.Route(f"{name}-internet", route_table_id=routes.id, destination_cidr_block="0.0.0.0/0",
                          gateway_id=gateway.id, opts=opts)
        subnets = []
        for index, cidr in enumerate(subnet_cidrs(settings.cidr, settings.az_count)):
            subnet = aws.ec2.Subnet(
                f"{name}-db-{index}", vpc_id=vpc.id, cidr_block=cidr,
                availability_zone=zones.names.apply(lambda names, i=index: names[i % len(names)]),
                map_public_ip_on_launch=False, tags={**tags, "Name": f"{name}-db-{index}"}, opts=opts,
            )
            aws.ec2.RouteTableAssociation(f"{name}-db-{index}", subnet_id=subnet.id, route_table_id=routes.id, opts=opts)
            subnets.append(subnet)
        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.subnet_ids = pulumi.Output.all(*[s.id for s in subnets]).apply(list)
