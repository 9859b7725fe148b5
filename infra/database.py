"""The RDS PostgreSQL instance and what guards it: security group, subnet and parameter groups.

Secure by default: no ingress unless named, no egress unless a replication source is named,
TLS forced, storage encrypted, password never in state as plain text (managed by RDS in
Secrets Manager, or a Pulumi secret), backups kept, deletion protected, private unless the
stack (or a one-run access window) says otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import quote

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.config import PORT, AccessSettings, AccessWindow, DatabaseSettings

CA_CERT = "rds-ca-rsa2048-g1"
LOG_EXPORTS = ["postgresql", "upgrade"]
# RDS rejects '/', '@', '"' and spaces in master passwords.
PASSWORD_SPECIALS = "!#$%^&*()-_=+[]{}<>:?"


def parameters(settings: DatabaseSettings) -> list[aws.rds.ParameterGroupParameterArgs]:
    """TLS is forced explicitly (not left to the family's default) and slow queries are logged."""
    values = {
        "rds.force_ssl": "1",
        "log_min_duration_statement": str(settings.slow_query_ms),
        "log_connections": "1",
        "log_disconnections": "1",
    }
    return [aws.rds.ParameterGroupParameterArgs(name=k, value=v, apply_method="pending-reboot" if k == "rds.force_ssl" else "immediate")
            for k, v in values.items()]


def database_url(user: str, password: str | None, host: str, port: int, db: str) -> str:
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"postgresql://{auth}@{host}:{port}/{db}?sslmode=require"


def _cidr_args(cidr: str) -> dict[str, str]:
    """A security-group rule names an IPv4 and an IPv6 block in different fields."""
    return {"cidr_ipv6" if ipaddress.ip_network(cidr).version == 6 else "cidr_ipv4": cidr}


class PostgresDatabase(pulumi.ComponentResource):
    """One RDS PostgreSQL instance, reachable only from the networks and groups the stack names."""

    def __init__(self, name: str, settings: DatabaseSettings, access: AccessSettings, *,
                 vpc_id: pulumi.Input[str], subnet_ids: pulumi.Input[list[str]],
                 tags: Mapping[str, str], window: AccessWindow | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("supabase-to-rds:infra:PostgresDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(tags)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-db", vpc_id=vpc_id, description="PostgreSQL 5432 from the allowed networks only; no egress",
            tags={**tags, "Name": f"{name}-db"}, opts=child,
        )
        # Apps join this group to reach the database without widening allowedCidrs. Its one egress
        # rule leads to the database group only, inline so that an update also removes the
        # 0.0.0.0/0:5432 rule older versions of this stack declared.
        self.client_security_group = aws.ec2.SecurityGroup(
            f"{name}-db-clients", vpc_id=vpc_id, description="Members may connect to the migrated database",
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=PORT, to_port=PORT,
                                                    security_groups=[self.security_group.id],
                                                    description="PostgreSQL to the migrated database")],
            tags={**tags, "Name": f"{name}-db-clients"}, opts=child,
        )
        self._ingress(name, access, child)
        self.window_rule = self._window(name, window, child)
        self._replication_egress(name, access, child)
        self.subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=subnet_ids, description="Database subnets across at least two AZs",
            tags=tags, opts=child,
        )
        self.parameter_group = aws.rds.ParameterGroup(
            f"{name}-params", family=settings.parameter_family, parameters=parameters(settings),
            description=f"supabase-to-rds {settings.parameter_family}: TLS forced, slow queries logged",
            tags=tags, opts=child,
        )
        self.password = self._password(name, settings, child)
        # Kept in state, so it stays put while the instance lives and is new after a destroy:
        # a second destroy (after a re-create) never collides with the first one's snapshot.
        snapshot_suffix = random.RandomId(f"{name}-final-snapshot", byte_length=4, opts=child)
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=settings.engine_version,
            auto_minor_version_upgrade=True,
            # Raising engineVersion is a major upgrade; the driver asks before it applies one.
            allow_major_version_upgrade=True,
            instance_class=settings.instance_class,
            storage_type="gp3",
            allocated_storage=settings.allocated_storage,
            max_allocated_storage=settings.max_allocated_storage,
            storage_encrypted=True,
            kms_key_id=settings.kms_key_id,
            db_name=settings.db_name,
            username=settings.master_username,
            manage_master_user_password=True if settings.password_mode == "managed" else None,
            password=self.password,
            port=PORT,
            db_subnet_group_name=self.subnet_group.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=self.parameter_group.name,
            ca_cert_identifier=CA_CERT,
            # AWS applies PubliclyAccessible immediately whatever apply_immediately says, so an
            # access window opens and closes with its `up`, not at the next maintenance window.
            publicly_accessible=settings.publicly_accessible or bool(window and window.public),
            multi_az=settings.multi_az,
            backup_retention_period=settings.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=settings.deletion_protection,
            skip_final_snapshot=settings.skip_final_snapshot,
            final_snapshot_identifier=None if settings.skip_final_snapshot
            else pulumi.Output.concat(f"{name}-final-", snapshot_suffix.hex),
            enabled_cloudwatch_logs_exports=LOG_EXPORTS,
            # Changes wait for the maintenance window, except for one `up` the driver runs with
            # applyImmediately (a confirmed major upgrade, whose new parameter group family must
            # go in with the engine version).
            apply_immediately=settings.apply_immediately,
            tags=tags,
            opts=child,
        )
        self.secret_arn: pulumi.Output[str | None] = self.instance.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn if secrets else None
        )
        self.database_url = pulumi.Output.secret(pulumi.Output.all(
            self.instance.username, self.password, self.instance.address, self.instance.port, self.instance.db_name,
        ).apply(lambda v: database_url(*v)))
        self.register_outputs({"address": self.instance.address, "securityGroupId": self.security_group.id})

    def _ingress(self, name: str, access: AccessSettings, opts: pulumi.ResourceOptions) -> None:
        if access.opens_to_internet:
            pulumi.log.warn("allowPublicInternet is on: PostgreSQL accepts connections from anywhere on the internet",
                            resource=self)
        for index, cidr in enumerate(access.allowed_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-db-cidr-{index}", security_group_id=self.security_group.id, ip_protocol="tcp",
                from_port=PORT, to_port=PORT, **_cidr_args(cidr),
                description=f"PostgreSQL from {cidr}", opts=opts,
            )
        sources = [self.client_security_group.id, *access.allowed_security_group_ids]
        for index, group in enumerate(sources):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-db-group-{index}", security_group_id=self.security_group.id, ip_protocol="tcp",
                from_port=PORT, to_port=PORT, referenced_security_group_id=group,
                description="PostgreSQL from a trusted security group", opts=opts,
            )

    def _window(self, name: str, window: AccessWindow | None,
                opts: pulumi.ResourceOptions) -> aws.vpc.SecurityGroupIngressRule | None:
        """The one-run access window: exactly one address, removed by the `up` that closes it."""
        if window is None:
            return None
        pulumi.log.warn(f"access window open: {window.describe()}", resource=self)
        return aws.vpc.SecurityGroupIngressRule(
            f"{name}-db-window", security_group_id=self.security_group.id, ip_protocol="tcp",
            from_port=PORT, to_port=PORT, **_cidr_args(window.cidr),
            description="supabase-to-rds access window (one run; closed by the driver)", opts=opts,
        )

    def _replication_egress(self, name: str, access: AccessSettings, opts: pulumi.ResourceOptions) -> None:
        """RDS as a logical-replication subscriber connects out to the source's 5432."""
        for index, cidr in enumerate(access.replication_source_cidrs):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-db-replication-{index}", security_group_id=self.security_group.id, ip_protocol="tcp",
                from_port=PORT, to_port=PORT, **_cidr_args(cidr),
                description=f"PostgreSQL replication source {cidr}", opts=opts,
            )

    def _password(self, name: str, settings: DatabaseSettings,
                  opts: pulumi.ResourceOptions) -> pulumi.Output[str] | None:
        if settings.password_mode == "managed":
            return None
        generated = random.RandomPassword(f"{name}-master-password", length=32, special=True,
                                          override_special=PASSWORD_SPECIALS, opts=opts)
        return pulumi.Output.secret(generated.result)
