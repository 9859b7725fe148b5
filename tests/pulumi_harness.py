"""Run the real Pulumi program under `pulumi.runtime.set_mocks`: no CLI, no AWS.

The mocks play the engine's part only: they record every resource the program declares
(type, name, inputs) and answer with the attributes AWS would compute (ids, endpoint,
the managed secret's ARN). Assertions are then made on what the program asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings as runtime_settings

PROJECT = "supabase-to-rds"


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class Deployment:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    invokes: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Declared:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, got {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, deployment: Deployment, default_subnets: int) -> None:
        self.deployment = deployment
        self.default_subnets = default_subnets

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.deployment.resources.append(Declared(args.typ, args.name, dict(args.inputs)))
        state = dict(args.inputs)
        if args.typ == "aws:rds/instance:Instance":
            state.update(address=f"{args.name}.abc123.eu-west-1.rds.amazonaws.com", port=5432,
                         dbName=args.inputs.get("dbName"))
            if args.inputs.get("manageMasterUserPassword"):
                state["masterUserSecrets"] = [{
                    "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1234",
                    "secretStatus": "active", "kmsKeyId": "aws/secretsmanager",
                }]
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "generated-master-password-0123456789"
        if args.typ == "random:index/randomId:RandomId":
            # Like the provider: random per resource creation, then kept in state.
            state["hex"] = os.urandom(int(args.inputs.get("byteLength", 4))).hex()
        if args.typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup"):
            state["name"] = args.name
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list]:
        self.deployment.invokes.append(args.token)
        if args.token == "aws:ec2/getVpc:getVpc":
            if self.default_subnets == 0:
                return {}, [("default", "no matching EC2 VPC found")]
            return {"id": "vpc-default", "cidrBlock": "172.31.0.0/16", "default": True}, []
        if args.token == "aws:ec2/getSubnets:getSubnets":
            return {"id": "eu-west-1", "ids": [f"subnet-{i}" for i in range(self.default_subnets)]}, []
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"id": "eu-west-1", "names": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
                    "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"]}, []
        raise AssertionError(f"unexpected invoke {args.token}")


def flat_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Stack config as Pulumi hands it to a program: `project:key` → string (objects as JSON)."""
    flat = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        flat[full] = value if isinstance(value, str) else json.dumps(value)
    return flat


async def _collect(deployment: Deployment) -> None:
    stack = runtime_settings.get_root_resource()
    for name, value in stack.outputs.items():  # type: ignore[union-attr]
        output = pulumi.Output.from_input(value)
        deployment.outputs[name] = await output.future()
        if await output.is_secret():
            deployment.secret_outputs.add(name)


def _run(program: Callable[[], None], config: Mapping[str, Any], stack: str, default_subnets: int) -> Deployment:
    deployment = Deployment()
    runtime_config.set_all_config(flat_config({"aws:region": "eu-west-1", **config}))
    pulumi.runtime.set_mocks(RecordingMocks(deployment, default_subnets), project=PROJECT, stack=stack, preview=False)

    @pulumi.runtime.test
    def go() -> Any:
        program()
        return asyncio.ensure_future(_collect(deployment))

    go()
    return deployment


def run_program(program: Callable[[], None], config: Mapping[str, Any], *, stack: str = "dev",
                default_subnets: int = 3) -> Deployment:
    """Run `program` against mocks with the given stack config; raises what the program raises.

    Each run gets its own thread and event loop: Pulumi's settings live in context variables
    and its mocks drive their own loop, which must not meet the suite's asyncio loop."""

    def isolated() -> Deployment:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return _run(program, config, stack, default_subnets)
        finally:
            loop.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(isolated).result()
