"""The Pulumi program's secure defaults, asserted on what it declares (mocked engine, real SDK)."""

from __future__ import annotations

import ipaddress
import runpy
from pathlib import Path

import pytest
import yaml

from infra.config import (ACCESS_WINDOW_KEY, ConfigError, config_key, load_settings, public_addresses,
                          replication_route_problem)
from infra.program import run
from tests.pulumi_harness import Deployment, run_program

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
RANDOM_ID = "random:index/randomId:RandomId"
BASE = {"allowedCidrs": ["10.20.0.0/16"]}


def deploy(**config: object) -> Deployment:
    return run_program(run, {**BASE, **config})


def db_security_group(d: Deployment):
    return next(r for r in d.of_type(SG) if r.name.endswith("-db"))


def test_ingress_is_5432_from_named_sources_only() -> None:
    d = deploy(allowedSecurityGroupIds=["sg-0123456789abcdef0"])
    rules = d.of_type(INGRESS)
    assert {(r.inputs["fromPort"], r.inputs["toPort"], r.inputs["ipProtocol"]) for r in rules} == {(5432, 5432, "tcp")}
    cidrs = [r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") for r in rules if "referencedSecurityGroupId" not in r.inputs]
    assert cidrs == ["10.20.0.0/16"]
    groups = {r.inputs["referencedSecurityGroupId"] for r in rules if "referencedSecurityGroupId" in r.inputs}
    assert groups == {"sg-0123456789abcdef0", d.outputs["clientSecurityGroupId"]}
    assert all(r.inputs["securityGroupId"] == d.outputs["securityGroupId"] for r in rules)


def test_database_group_has_no_inline_rules_so_no_egress() -> None:
    sg = db_security_group(deploy())
    assert not sg.inputs.get("ingress") and not sg.inputs.get("egress")


def test_no_internet_ingress_by_default_even_without_config() -> None:
    d = run_program(run, {})
    for rule in d.of_type(INGRESS):
        cidr = rule.inputs.get("cidrIpv4") or rule.inputs.get("cidrIpv6")
        assert cidr is None or ipaddress.ip_network(cidr).prefixlen > 0


def test_open_internet_needs_the_explicit_flag() -> None:
    with pytest.raises(ConfigError, match="allowPublicInternet"):
        deploy(allowedCidrs=["0.0.0.0/0"])
    d = deploy(allowedCidrs=["0.0.0.0/0", "::/0"], allowPublicInternet=True)
    assert {r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") for r in d.of_type(INGRESS)} >= {"0.0.0.0/0", "::/0"}


def test_instance_defaults_are_secure() -> None:
    i = deploy().one(INSTANCE).inputs
    assert i["engine"] == "postgres"
    assert i["engineVersion"] == "16" and i["autoMinorVersionUpgrade"] is True
    assert i["storageEncrypted"] is True and i["storageType"] == "gp3"
    assert i["allocatedStorage"] == 20 and i["maxAllocatedStorage"] > i["allocatedStorage"]
    assert i["publiclyAccessible"] is False
    assert i["backupRetentionPeriod"] == 7
    assert i["deletionProtection"] is True
    assert i["skipFinalSnapshot"] is False and i["finalSnapshotIdentifier"].startswith("supabase-to-rds-dev-final-")
    assert i["allowMajorVersionUpgrade"] is True
    assert set(i["enabledCloudwatchLogsExports"]) == {"postgresql", "upgrade"}
    assert i["manageMasterUserPassword"] is True and "password" not in i


def test_parameter_group_forces_tls_for_the_engine_family() -> None:
    d = deploy(engineVersion="17")
    group = d.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert group["family"] == "postgres17"
    params = {p["name"]: p["value"] for p in group["parameters"]}
    assert params["rds.force_ssl"] == "1"
    assert params["log_min_duration_statement"] == "1000"
    assert d.one(INSTANCE).inputs["parameterGroupName"] == d.outputs["parameterGroupName"]


def test_managed_password_exposes_only_the_secret_arn() -> None:
    d = deploy()
    assert d.outputs["masterSecretArn"].startswith("arn:aws:secretsmanager:")
    assert "masterPassword" not in d.outputs
    assert "databaseUrl" in d.secret_outputs
    assert d.outputs["databaseUrl"].endswith("?sslmode=require")


def test_random_password_is_a_secret_everywhere() -> None:
    d = deploy(passwordMode="random")
    assert d.of_type("random:index/randomPassword:RandomPassword")
    assert "manageMasterUserPassword" not in d.one(INSTANCE).inputs
    assert {"masterPassword", "databaseUrl"} <= d.secret_outputs
    assert d.outputs["masterPassword"] == "generated-master-password-0123456789"
    assert "generated-master-password-0123456789" in d.outputs["databaseUrl"]
    assert "masterSecretArn" not in d.outputs


def test_default_network_uses_default_subnets_across_azs() -> None:
    d = deploy()
    assert "aws:ec2/getVpc:getVpc" in d.invokes
    group = d.one("aws:rds/subnetGroup:SubnetGroup").inputs
    assert len(group["subnetIds"]) >= 2
    assert d.outputs["subnetIds"] == group["subnetIds"]
    assert d.outputs["vpcId"] == "vpc-default"


def test_default_vpc_with_one_subnet_is_refused() -> None:
    with pytest.raises(Exception, match="at least 2 availability zones"):
        run_program(run, BASE, default_subnets=1)


def test_missing_default_vpc_points_to_network_mode_new() -> None:
    with pytest.raises(Exception, match="no default VPC found.*network.mode: new"):
        run_program(run, BASE, default_subnets=0)


def test_new_network_has_private_subnets_in_distinct_azs() -> None:
    d = deploy(network={"mode": "new", "cidr": "10.60.0.0/16", "azCount": 3})
    subnets = d.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == 3
    assert len({s.inputs["availabilityZone"] for s in subnets}) == 3
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets)
    assert all(ipaddress.ip_network(s.inputs["cidrBlock"]).subnet_of(ipaddress.ip_network("10.60.0.0/16")) for s in subnets)
    assert not d.of_type("aws:ec2/internetGateway:InternetGateway")
    assert len(d.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"]) == 3


def test_public_new_network_gets_an_internet_route() -> None:
    d = deploy(network={"mode": "new"}, publiclyAccessible=True)
    assert d.of_type("aws:ec2/internetGateway:InternetGateway")
    assert d.one("aws:ec2/route:Route").inputs["destinationCidrBlock"] == "0.0.0.0/0"
    assert d.one(INSTANCE).inputs["publiclyAccessible"] is True


def test_tags_reach_every_taggable_resource() -> None:
    d = deploy(tags={"team": "payments"})
    for r in d.resources:
        if r.type in (INSTANCE, SG, "aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup"):
            assert r.inputs["tags"]["team"] == "payments" and r.inputs["tags"]["stack"] == "dev"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"network": {"mode": "shared"}}, "network.mode: unknown value 'shared'"),
        ({"allowedCidrs": ["10.0.0.300/8"]}, "allowedCidrs: '10.0.0.300/8' is not a network"),
        ({"allocatedStorage": 10}, "allocatedStorage: 10 is out of range 20..65536"),
        ({"engineVersion": "16.3"}, "give the major version only"),
        ({"allowedCIDRs": ["10.0.0.0/8"]}, "did you mean 'allowedCidrs'"),
        ({"passwordMode": "plain"}, "passwordMode: unknown value"),
        ({"maxAllocatedStorage": 20}, "must be above allocatedStorage"),
        ({"allowedSecurityGroupIds": ["default"]}, "is not a security group id"),
        ({"masterUsername": "rdsadmin"}, "reserved by RDS"),
        ({"deletionProtection": "maybe"}, "expected true or false"),
    ],
)
def test_config_errors_are_specific(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        run_program(run, config)
    assert message in str(info.value)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"network": {"mode": "x"}, "allocatedStorage": 5, "engineVersion": "15.4"})
    assert len(info.value.problems) == 3


def test_dev_stack_file_evaluates_main_under_mocks() -> None:
    stack_config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    d = run_program(lambda: runpy.run_path(str(ROOT / "__main__.py")), stack_config)
    instance = d.one(INSTANCE).inputs
    assert instance["instanceClass"] == "db.t4g.micro"
    assert instance["engineVersion"] == "16"
    assert {"vpcId", "subnetIds", "securityGroupId", "subnetGroupName", "address", "port",
            "dbName", "masterUsername", "masterSecretArn", "databaseUrl"} <= set(d.outputs)
    assert "databaseUrl" in d.secret_outputs


def rule_cidr(rule) -> str | None:
    return rule.inputs.get("cidrIpv4") or rule.inputs.get("cidrIpv6")


@pytest.mark.parametrize("cidrs", [
    ["0.0.0.0/1", "128.0.0.0/1"],
    ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2"],
    ["8.0.0.0/7"],                       # two public /8s
    ["10.0.0.0/8", "11.0.0.0/8", "12.0.0.0/8"],  # private spelling does not hide two public /8s
    ["::/1", "8000::/1"],
    ["2000::/3"],
    ["2a05::/16"],
])
def test_internet_in_any_spelling_is_refused(cidrs: list[str]) -> None:
    with pytest.raises(ConfigError, match="allowedCidrs: .*large part of it.*allowPublicInternet"):
        deploy(allowedCidrs=cidrs)


@pytest.mark.parametrize("cidrs", [
    ["3.0.0.0/8"],                                       # exactly the threshold
    ["3.0.0.0/8", "3.0.0.0/9", "3.128.0.0/9"],           # the same /8 spelled three ways counts once
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"],  # private and shared space
    ["2a05:d018::/32"],                                  # one IPv6 /32
    ["fd00::/8", "fe80::/10"],                           # unique-local and link-local IPv6
])
def test_own_and_private_networks_are_accepted(cidrs: list[str]) -> None:
    d = deploy(allowedCidrs=cidrs)
    assert sorted(rule_cidr(r) for r in d.of_type(INGRESS) if rule_cidr(r)) == sorted(cidrs)


def test_public_addresses_are_counted_not_spelled() -> None:
    whole = public_addresses(["0.0.0.0/0"])
    assert public_addresses(["0.0.0.0/1", "128.0.0.0/1"]) == whole
    # 0/8, 10/8, 127/8, 100.64/10, 172.16/12, two /16s, 198.18/15, four /24s, 224/4 and 240/4, each once
    non_public = 3 * 2 ** 24 + 2 ** 22 + 2 ** 20 + 2 * 2 ** 16 + 2 ** 17 + 4 * 2 ** 8 + 2 * 2 ** 28
    assert whole[0] == 2 ** 32 - non_public
    assert public_addresses(["10.0.0.0/8", "192.168.1.0/24"]) == (0, 0)
    assert public_addresses(["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/32"]) == (0, 0)
    assert public_addresses(["1.2.3.4/32", "2a05:d018::1/128"]) == (1, 1)


def test_split_internet_is_allowed_with_the_explicit_flag() -> None:
    d = deploy(allowedCidrs=["0.0.0.0/1", "128.0.0.0/1"], allowPublicInternet=True)
    assert {rule_cidr(r) for r in d.of_type(INGRESS)} >= {"0.0.0.0/1", "128.0.0.0/1"}


def test_client_group_may_reach_only_the_database_group() -> None:
    d = deploy()
    clients = next(r for r in d.of_type(SG) if r.name.endswith("-db-clients"))
    assert clients.inputs["egress"] == [{
        "protocol": "tcp", "fromPort": 5432, "toPort": 5432,
        "securityGroups": [d.outputs["securityGroupId"]], "description": "PostgreSQL to the migrated database",
    }]
    assert not d.of_type(EGRESS)  # and the database group itself has no egress at all


def test_final_snapshot_name_comes_from_state_and_differs_after_a_recreate() -> None:
    first, second = deploy(), deploy()  # a destroy drops the RandomId; the next stack gets a new one
    names = [d.one(INSTANCE).inputs["finalSnapshotIdentifier"] for d in (first, second)]
    suffix = first.one(RANDOM_ID)
    assert suffix.inputs["byteLength"] == 4
    assert names[0] != names[1]
    for name in names:
        tail = name.removeprefix("supabase-to-rds-dev-final-")
        assert len(tail) == 8 and all(c in "0123456789abcdef" for c in tail)
        assert name[0].isalpha() and "--" not in name and len(name) <= 255  # RDS identifier rules


def test_skipped_final_snapshot_has_no_name() -> None:
    i = deploy(skipFinalSnapshot=True).one(INSTANCE).inputs
    assert i["skipFinalSnapshot"] is True and "finalSnapshotIdentifier" not in i


# -- access window: the first `up` (window config set) and the second (config removed) --------

def window_rules(d: Deployment) -> list:
    return [r for r in d.of_type(INGRESS) if r.name.endswith("-db-window")]


def test_window_opens_exactly_the_operator_address_and_public_access() -> None:
    # the very key the driver sets through the Automation API before the first `up`
    assert config_key(ACCESS_WINDOW_KEY) == "supabase-to-rds:accessWindowCidr"
    opened = run_program(run, {**BASE, config_key(ACCESS_WINDOW_KEY): "198.51.99.7/32"})
    (rule,) = window_rules(opened)
    assert rule.inputs["cidrIpv4"] == "198.51.99.7/32" and "cidrIpv6" not in rule.inputs
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (5432, 5432, "tcp")
    assert rule.inputs["securityGroupId"] == opened.outputs["securityGroupId"]
    assert opened.one(INSTANCE).inputs["publiclyAccessible"] is True
    assert opened.outputs["accessWindow"] == "198.51.99.7/32" and opened.outputs["publiclyAccessible"] is True
    # every other rule is the stack's own, unchanged by the window
    assert sorted(rule_cidr(r) for r in opened.of_type(INGRESS) if rule_cidr(r)) == ["10.20.0.0/16", "198.51.99.7/32"]

    closed = deploy()
    assert window_rules(closed) == []
    assert all(rule_cidr(r) != "198.51.99.7/32" for r in closed.of_type(INGRESS))
    assert closed.one(INSTANCE).inputs["publiclyAccessible"] is False
    assert closed.outputs["accessWindow"] is None and closed.outputs["publiclyAccessible"] is False
    assert {r.name for r in opened.resources} - {r.name for r in closed.resources} == {rule.name}


def test_ipv6_window_is_one_128_and_no_public_ipv4_address() -> None:
    d = deploy(accessWindowCidr="2a05:d018:1:2::7/128")
    (rule,) = window_rules(d)
    assert rule.inputs["cidrIpv6"] == "2a05:d018:1:2::7/128" and "cidrIpv4" not in rule.inputs
    assert d.one(INSTANCE).inputs["publiclyAccessible"] is False  # a public IPv4 address would not help it


def test_window_stays_private_where_public_access_cannot_help() -> None:
    # a private operator address (VPN, peering): the rule is enough
    d = deploy(accessWindowCidr="10.8.0.5/32")
    assert len(window_rules(d)) == 1 and d.one(INSTANCE).inputs["publiclyAccessible"] is False
    # a new VPC with private subnets has no internet route: public access would not reach it
    d = deploy(accessWindowCidr="198.51.99.7/32", network={"mode": "new"})
    assert len(window_rules(d)) == 1 and d.one(INSTANCE).inputs["publiclyAccessible"] is False
    assert not d.of_type("aws:ec2/internetGateway:InternetGateway")


@pytest.mark.parametrize("value, message", [
    ("198.51.99.0/24", "admits exactly one address"),
    ("0.0.0.0/0", "admits exactly one address"),
    ("2a05:d018::/64", "admits exactly one address"),
    ("my-laptop", "is not an address"),
])
def test_window_must_be_one_address(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"accessWindowCidr: .*{message}"):
        deploy(accessWindowCidr=value)


# -- replicationSourceCidrs: RDS as a subscriber connecting out to Supabase --------------------

def test_replication_sources_open_egress_to_exactly_those_ranges() -> None:
    d = deploy(replicationSourceCidrs=["2a05:d018:135e:1600::7/128", "52.1.2.3/32"])
    rules = d.of_type(EGRESS)
    assert sorted(rule_cidr(r) for r in rules) == ["2a05:d018:135e:1600::7/128", "52.1.2.3/32"]
    assert all((r.inputs["fromPort"], r.inputs["toPort"], r.inputs["ipProtocol"]) == (5432, 5432, "tcp") for r in rules)
    assert all(r.inputs["securityGroupId"] == d.outputs["securityGroupId"] for r in rules)
    assert not db_security_group(d).inputs.get("egress")  # separate rules only, none inline


def test_replication_sources_are_validated_like_allowed_cidrs() -> None:
    with pytest.raises(ConfigError, match="replicationSourceCidrs: .*large part of it"):
        deploy(replicationSourceCidrs=["0.0.0.0/1", "128.0.0.0/1"])
    with pytest.raises(ConfigError, match="replicationSourceCidrs: 'db.abc.supabase.co' is not a network"):
        deploy(replicationSourceCidrs=["db.abc.supabase.co"])


def test_replication_route_problems_are_named() -> None:
    def problem(**config: object) -> str | None:
        return replication_route_problem(load_settings(config))

    assert problem() is None
    assert problem(replicationSourceCidrs=["10.9.0.0/16"]) is None  # a peered or VPN network: routing is yours
    assert problem(replicationSourceCidrs=["52.1.2.3/32"], publiclyAccessible=True) is None
    assert "NAT gateway" in problem(replicationSourceCidrs=["52.1.2.3/32"])
    v6 = problem(replicationSourceCidrs=["2a05:d018:135e:1600::7/128"], publiclyAccessible=True)
    assert "dual-stack" in v6 and "IPv4 add-on" in v6


def test_dev_stack_allows_its_own_vpc_range() -> None:
    stack_config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    d = run_program(run, stack_config)
    vpc = ipaddress.ip_network(d.outputs["vpcCidr"])
    cidrs = [ipaddress.ip_network(rule_cidr(r)) for r in d.of_type(INGRESS) if rule_cidr(r)]
    assert cidrs and all(c.subnet_of(vpc) for c in cidrs)
