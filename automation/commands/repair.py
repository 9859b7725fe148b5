"""`schema --repair` and `up --repair`: print the plan, confirm what is new, apply, report.

Recreating what the verified migration had needs no confirmation — it is what was verified;
objects the source gained since change the target's schema, so they are listed first and
applied only after a yes (or `--yes`).
"""

from __future__ import annotations

import argparse
import sys

import anyio

from automation.commands.options import schema_options
from automation.commands.report import write_report
from automation.stack import confirm
from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.live import recorded_baseline
from loaders.migrate import last_verified_run
from loaders.repair import RepairPlan, apply_repair, plan_repair
from loaders.schema.clean import CleanStatement
from loaders.schema.stage import plan_schema
from loaders.schema.target import TargetServer, adapt_to_target

REPAIR_HELP = ("recreate the indexes, constraints, triggers, functions and grants the verified migration had, "
               "and (after a confirmation, or --yes) what the source gained since; instead of migrating")


async def source_statements(source: DatabaseUrl, target: DatabaseUrl, args: argparse.Namespace) -> list[CleanStatement]:
    """The source's cleaned schema (migrations folder or dump), adapted to the target server."""
    plan = await plan_schema(source, schema_options(args))
    async with connection(target) as conn:
        server = await TargetServer.read(conn)
    statements, _changes = adapt_to_target([s for u in plan.units for s in u.cleaned.statements], server)
    return statements


async def build_plan(source: DatabaseUrl | None, target: DatabaseUrl, args: argparse.Namespace) -> RepairPlan:
    run = await last_verified_run(target)
    baseline = recorded_baseline(run.report if run else None)
    if baseline is None and source is None:
        raise MigrationError(f"target {target.safe} has no verified migration recorded (with its objects) to repair from",
                             "pass --source URL to add what the source has, or run `migrate` first")
    statements = await source_statements(source, target, args) if source is not None else []
    return await plan_repair(target, baseline, statements, getattr(args, "app_role", None))


def repair(source: DatabaseUrl | None, target: DatabaseUrl, args: argparse.Namespace) -> int:
    plan = anyio.run(build_plan, source, target, args)
    for line in plan.describe():
        print(f"repair plan: {line}", file=sys.stderr)
    if not plan.steps:
        print("repair: nothing missing on the target" + ("; grants refreshed" if plan.app_role else ""), file=sys.stderr)
    new = [s for s in plan.steps if s.origin == "source"]
    if new:
        confirm(f"Create these {len(new)} object(s) the source gained on the target?", yes=args.yes,
                action="change the target's schema")
    anyio.run(apply_repair, target, plan)
    for step in plan.steps:
        print(f"repair: {step.status} {step.kind} {step.name}" + (f" — {step.error}" if step.error else ""), file=sys.stderr)
    write_report(getattr(args, "report", None), plan.to_dict())
    failed = [s for s in plan.steps if s.status == "failed"]
    if failed:
        raise MigrationError(f"{len(failed)} repair step(s) failed: " + "; ".join(f"{s.kind} {s.name}: {s.error}" for s in failed[:3]),
                             "fix what blocks them (e.g. duplicate rows for a unique index) and rerun --repair")
    if plan.steps:
        print("repaired; once you have checked it, record it as the new baseline: python -m automation drift --accept",
              file=sys.stderr)
    return 0
