"""The Pulumi program's secure defaults, asserted on what it declares (mocked engine, real SDK)."""

from __future__ import annotations

import ipaddress
import runpy
from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, load_settings
from infra.program import run
from tests.pulumi_harness import Deployment, run_program

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
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
    assert i["skipFinalSnapshot"] is False and i["finalSnapshotIdentifier"].endswith("-dev-final")
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
