"""`verify`: exact counts and content checksums on both servers; exit 2 on any difference."""

from __future__ import annotations

import argparse

import anyio
from rich.console import Console

from automation import terminal as term
from automation.commands.copy import add_selection_arguments, schema_list, table_list
from automation.commands.options import add_proof_argument
from automation.commands.urls import add_url_arguments, source_url, target_url
from automation.commands.report import write_report
from loaders.data.verify import VerifyReport, verify


async def run_verify(args: argparse.Namespace) -> VerifyReport:
    source, target = source_url(args), target_url(args)
    return await verify(source, target, proof=args.proof, repair=args.repair, schemas=schema_list(args.schemas),
                        tables=table_list(args.tables), large_objects=not args.no_large_objects)


def handle(args: argparse.Namespace) -> int:
    report = anyio.run(run_verify, args)
    if args.json:
        print(report.to_json())
    else:
        report.render(Console())
    write_report(args.report, report.to_dict())
    verdict = "equal" if report.ok else f"{term.count(len(report.mismatches()), 'difference')}"
    term.current().summary(f"verified {term.count(len(report.tables), 'table')} and "
                           f"{term.count(len(report.sequences), 'sequence')} — {verdict}", report=args.report)
    report.raise_for_mismatch()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="prove the target holds the same rows as the source")
    add_url_arguments(parser)
    add_selection_arguments(parser)
    add_proof_argument(parser)
    parser.add_argument("--repair", action="store_true",
                        help="copy again only the key ranges that differ (tables with a primary key), then verify again")
    parser.add_argument("--no-large-objects", action="store_true",
                        help="don't compare large objects (the report warns that they were not checked)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--report", help="also write the report as JSON to this file")
    parser.set_defaults(handler=handle)
