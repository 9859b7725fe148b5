"""`copy`: stream every selected table from one source snapshot into the target, then sequences."""

from __future__ import annotations

import argparse
import contextlib
import sys

import anyio

from automation.commands.report import write_report
from loaders.data.copy import FORMATS, CopyOptions, CopyReport, build_copy_plan, copy_tables, default_jobs
from automation.commands.urls import add_url_arguments, source_url, target_url
from loaders.progress import RichProgress, default_progress
from loaders.data.sequences import sync_sequences
from loaders.data.snapshot import open_snapshot


def csv(value: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in value.split(",")) if part)


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    """Copy options, shared with `migrate`."""
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="tables (or ranges) copied at once")
    parser.add_argument("--schemas", type=csv, help="comma-separated schemas (default: all user schemas)")
    parser.add_argument("--tables", type=csv, help="comma-separated tables (schema.table or table)")
    parser.add_argument("--truncate", action="store_true", help="replace rows of non-empty target tables")
    parser.add_argument("--resume", action="store_true", help="skip tables an interrupted run finished")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="COPY format (auto: binary when safe)")
    parser.add_argument("--split-mb", type=int, default=256, help="split tables at least this big into ranges")
    parser.add_argument("--keep-indexes", action="store_true", help="don't drop secondary indexes for the load")
    parser.add_argument("--no-large-objects", action="store_true",
                        help="don't copy large objects (the report warns; verify skips them too)")
    parser.add_argument("--fresh-snapshot", action="store_true",
                        help="re-copy every table from this run's snapshot (replaces what an earlier run copied)")


def copy_options(args: argparse.Namespace) -> CopyOptions:
    return CopyOptions(
        jobs=args.jobs, schemas=args.schemas, tables=args.tables, truncate=args.truncate, resume=args.resume,
        format=args.format, split_bytes=args.split_mb * 1024 * 1024, drop_indexes=not args.keep_indexes,
        large_objects=not args.no_large_objects, fresh_snapshot=args.fresh_snapshot,
    )


async def run_copy(args: argparse.Namespace) -> CopyReport:
    source, target = source_url(args), target_url(args)
    options = copy_options(args)
    progress = default_progress()
    options.progress = progress
    with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
        async with open_snapshot(source, readers=options.jobs) as snap:
            plan = await build_copy_plan(snap, target, options)
            report = await copy_tables(snap, target, plan, options)
            sequences = await sync_sequences(snap, target, schemas=options.schemas,
                                             sequences=plan.catalog.sequences, values=plan.sequence_values)
    write_report(args.report, {**report.to_dict(), "sequences": [vars(s) for s in sequences]})
    return report


def handle(args: argparse.Namespace) -> int:
    report = anyio.run(run_copy, args)
    print(f"copied {len(report.tables)} table(s), {report.rows} rows, {report.bytes} bytes in {report.seconds:.1f}s"
          + (f"; skipped {len(report.skipped)} already done" if report.skipped else ""), file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("copy", help="copy table data from one source snapshot into the target")
    add_url_arguments(parser)
    add_copy_arguments(parser)
    parser.add_argument("--report", help="write the copy report as JSON to this file")
    parser.set_defaults(handler=handle)


__all__ = ["add_copy_arguments", "add_url_arguments", "copy_options", "csv", "register", "run_copy"]
