"""`schema`: clean and apply the schema to the target (from a migrations folder or a dump of
the source), create the application role, and diff the result against the source.

Run on its own it applies pre-data and post-data back to back (no data in between);
`migrate` calls the same facade with the data load between `prepare_schema` and
`finish_schema`. Exit 2 when the diff finds differences, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import anyio

from automation import terminal as term
from automation.commands.options import add_schema_arguments, schema_options
from automation.commands.repair import REPAIR_HELP, repair
from automation.commands.report import write_report
from automation.commands.urls import add_role_arguments, role_given, source_url, target_url
from loaders.dsn import DatabaseUrl
from loaders.schema.stage import SchemaFailed, SchemaPlan, SchemaReport, finish_schema, plan_schema, prepare_schema


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema", help="apply the cleaned Supabase schema to the target and diff it with the source",
        description="Clean Supabase-specific SQL with the Postgres parser and apply it to the target.",
    )
    add_role_arguments(parser, "target")
    add_role_arguments(parser, "source", help="source URL, dumped when no --migrations, diffed always")
    parser.add_argument("--dry-run", action="store_true", help="print the cleaned SQL and the changes; touch nothing")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    parser.add_argument("--repair", action="store_true", help=REPAIR_HELP)
    parser.add_argument("--yes", action="store_true", help="with --repair: create new source objects without asking")
    add_schema_arguments(parser)
    parser.set_defaults(handler=run)


def _source(args: argparse.Namespace) -> DatabaseUrl | None:
    if role_given(args, "source") or args.migrations is None:
        return source_url(args)
    return None


def print_changes(plan_or_report: SchemaPlan | SchemaReport) -> None:
    changes = plan_or_report.changes
    print(f"-- {len(changes)} change(s):", file=sys.stderr)
    for c in changes:
        print(f"{c.where}: {c.action} {c.kind} {c.object} — {c.reason}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    options = schema_options(args)
    source = _source(args)
    if args.dry_run:
        plan = await plan_schema(source, options)
        sys.stdout.write(plan.sql())
        print_changes(plan)
        return 0
    target = target_url(args)
    # Nothing is loaded between the two steps here, so one diff at the end covers both.
    try:
        report = await prepare_schema(source, target, replace(options, diff=False))
        report = await finish_schema(target, report, source if options.diff else None)
    except SchemaFailed as failed:
        # What was applied and committed before the failure, and the failure, in the report.
        print_changes(failed.report)
        write_report(args.report, failed.report.to_dict())
        raise
    print_changes(report)
    if report.extension_check:
        print(report.extension_check, file=sys.stderr)
    if report.diff is not None and report.diff.removed_on_purpose:
        print(f"{len(report.diff.removed_on_purpose)} source object(s) removed on purpose (see the changes above)",
              file=sys.stderr)
    print(f"applied: {', '.join(report.applied) or 'nothing new'}; already applied: {len(report.already_applied)}",
          file=sys.stderr)
    write_report(args.report, report.to_dict())
    term.current().summary(f"schema applied ({len(report.applied)} new, {len(report.already_applied)} already applied); "
                           f"{term.changes_by_kind(report.changes) or 'nothing cleaned'}", report=args.report)
    if report.diff is not None and not report.diff.equal:
        for difference in report.diff.differences:
            print(f"schema differs: {difference}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    if args.repair:
        return repair(source_url(args) if role_given(args, "source") else None, target_url(args), args)
    return anyio.run(_run, args)
