"""The Pulumi program: config → network → database → stack outputs.

Kept separate from `__main__.py` so that tests, `pulumi preview` and the automation
driver all run exactly this function.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from infra.config import (KNOWN_KEYS, PROJECT, StackSettings, access_window, decode, load_settings, raw_from_pulumi,
                          replication_route_problem)
from infra.database import PostgresDatabase
from infra.network import Network


def read_config() -> StackSettings:
    """All `supabase-to-rds:*` keys, including unknown ones so typos are caught."""
    everything: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = raw_from_pulumi(everything)
    config = pulumi.Config(PROJECT)
    for key in KNOWN_KEYS:
        value = config.get(key)
        if value is not None:
            raw[key] = decode(value)
    return load_settings(raw)


def default_tags(settings: StackSettings) -> dict[str, str]:
    return {"project": PROJECT, "stack": pulumi.get_stack(), "managed-by": "pulumi", **settings.tags}


def run() -> None:
    settings = read_config()
    tags = default_tags(settings)
    name = f"{PROJECT}-{pulumi.get_stack()}"
    network = Network(name, settings.network, public=settings.database.publicly_accessible, tags=tags)
    window = access_window(settings)
    db = PostgresDatabase(name, settings.database, settings.access, window=window,
                          vpc_id=network.vpc_id, subnet_ids=network.subnet_ids, tags=tags)
    route_problem = replication_route_problem(settings)
    if route_problem:
        pulumi.log.warn(route_problem)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("vpcCidr", network.vpc_cidr)
    pulumi.export("subnetIds", network.subnet_ids)
    pulumi.export("securityGroupId", db.security_group.id)
    pulumi.export("clientSecurityGroupId", db.client_security_group.id)
    pulumi.export("subnetGroupName", db.subnet_group.name)
    pulumi.export("parameterGroupName", db.parameter_group.name)
    pulumi.export("address", db.instance.address)
    pulumi.export("port", db.instance.port)
    pulumi.export("dbName", db.instance.db_name)
    pulumi.export("masterUsername", db.instance.username)
    pulumi.export("engineVersion", settings.database.engine_version)
    pulumi.export("passwordMode", settings.database.password_mode)
    pulumi.export("accessWindow", window.cidr if window else None)
    pulumi.export("publiclyAccessible", db.instance.publicly_accessible)
    if db.password is not None:
        pulumi.export("masterPassword", db.password)
    else:
        pulumi.export("masterSecretArn", db.secret_arn)
    pulumi.export("databaseUrl", db.database_url)
