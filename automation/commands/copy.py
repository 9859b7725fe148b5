"""`copy`: stream every selected table from one source snapshot into the target, then sequences;
`copy --restore`: put back what a crashed run left set aside (triggers, indexes, FKs)."""

from __future__ import annotations

import argparse
import contextlib

import anyio

from automation import terminal as term
from automation.commands.report import write_report
from loaders.data.catalog import TableRef, parse_schema_list, parse_table_list
from loaders.data.copy import (DEFAULT_LOCK_TIMEOUT, FORMATS, CopyOptions, CopyReport, build_copy_plan, copy_tables,
                               default_jobs, restore_after_failure)
from loaders.data.stream import DEFAULT_STALL_SECONDS
from loaders.runguard import run_guard
from automation.commands.urls import add_url_arguments, source_url, target_url
from loaders.errors import MigrationError
from loaders.progress import RichProgress, default_progress
from loaders.data.sequences import sync_sequences
from loaders.data.snapshot import open_snapshot


def csv(value: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in value.split(",")) if part)


def schema_list(value: str | None) -> tuple[str, ...] | None:
    """`--schemas`: SQL identifiers, comma-separated (`public,"App Data"`). Bad input is a
    one-line error (exit 1), like every other input the tool refuses."""
    if value is None:
        return None
    try:
        return parse_schema_list(value)
    except ValueError as exc:
        raise MigrationError(f"--schemas: {exc}", "quote names with capitals, spaces or commas: '\"App Data\"'") from None


def table_list(value: str | None) -> tuple[TableRef, ...] | None:
    """`--tables`: qualified SQL names, comma-separated (`public.orders,"a.b".c`)."""
    if value is None:
        return None
    try:
        return parse_table_list(value)
    except ValueError as exc:
        raise MigrationError(f"--tables: {exc}",
                             "write schema.table, quoting names with dots, capitals or spaces: 'a.\"b.c\"'") from None


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """`--schemas`/`--tables`, one meaning for copy, verify and migrate (parsed by `schema_list`/`table_list`)."""
    parser.add_argument("--schemas", help="comma-separated schemas, SQL identifiers "
                        "(default: all user schemas)")
    parser.add_argument("--tables", help="comma-separated tables, schema.table or table, SQL "
                        "identifiers: quote dots, capitals and spaces ('a.\"b.c\"'); a partitioned table means its partitions")


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    """Copy options, shared with `migrate`."""
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="tables (or ranges) copied at once")
    add_selection_arguments(parser)
    parser.add_argument("--truncate", action="store_true", help="replace rows of non-empty target tables")
    parser.add_argument("--resume", action="store_true", help="skip tables an interrupted run finished")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="COPY format (auto: binary when safe)")
    parser.add_argument("--split-mb", type=int, default=256, help="split tables at least this big into ranges")
    parser.add_argument("--keep-indexes", action="store_true", help="don't drop secondary indexes for the load")
    parser.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_SECONDS, metavar="SECONDS",
                        help="redo a table (or range) whose COPY moves no data this long while not waiting on a lock")
    parser.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                        help="longest wait for a lock on the target per attempt (retried, then an error)")
    parser.add_argument("--no-large-objects", action="store_true",
                        help="don't copy large objects (the report warns; verify skips them too)")
    parser.add_argument("--fresh-snapshot", action="store_true",
                        help="re-copy every table from this run's snapshot (replaces what an earlier run copied)")


def copy_options(args: argparse.Namespace) -> CopyOptions:
    return CopyOptions(
        jobs=args.jobs, schemas=schema_list(args.schemas), tables=table_list(args.tables), truncate=args.truncate, resume=args.resume,
        format=args.format, split_bytes=args.split_mb * 1024 * 1024, drop_indexes=not args.keep_indexes,
        stall_seconds=args.stall_timeout, lock_timeout=args.lock_timeout,
        large_objects=not args.no_large_objects, fresh_snapshot=args.fresh_snapshot,
    )


async def run_copy(args: argparse.Namespace) -> CopyReport:
    source, target = source_url(args), target_url(args)
    options = copy_options(args)
    progress = default_progress()
    options.progress = progress
    with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
        async with run_guard(target, source=source, jobs=options.jobs) as running, \
                open_snapshot(source, readers=running.jobs or options.jobs) as snap:
            options.jobs = running.jobs or options.jobs
            plan = await build_copy_plan(snap, target, options)
            report = await copy_tables(snap, target, plan, options)
            sequences = await sync_sequences(snap, target, schemas=options.schemas,
                                             sequences=plan.catalog.sequences, values=plan.sequence_values)
    write_report(args.report, {**report.to_dict(), "sequences": [vars(s) for s in sequences]})
    return report


def restore(args: argparse.Namespace) -> int:
    """Only the target is touched: nothing is copied, the source isn't needed."""
    summary = anyio.run(restore_after_failure, target_url(args))
    write_report(args.report, {"restored": summary.restored, "restore_failed": [str(f) for f in summary.failed]})
    restored = ", ".join(f"{len(v)} {k}(s)" for k, v in summary.restored.items()) or "nothing was set aside"
    if summary.failed:
        raise MigrationError(f"{len(summary.failed)} object(s) could not be put back: "
                             + "; ".join(str(f) for f in summary.failed[:3]),
                             "fix the cause (e.g. the rows an FK rejects), then run `copy --restore` again")
    term.current().summary(f"restored {restored}", report=args.report)
    return 0


def handle(args: argparse.Namespace) -> int:
    if args.restore:
        return restore(args)
    report = anyio.run(run_copy, args)
    if report.restore_failed:
        raise MigrationError(f"the data is copied, but {len(report.restore_failed)} object(s) set aside for the "
                             "load could not be put back: " + "; ".join(report.restore_failed[:3]),
                             "fix the cause (e.g. the rows an FK rejects), then run `copy --restore`")
    for warning in report.warnings:
        term.current().note(f"warning: {warning}", "copy_warning")
    term.current().summary(
        f"copied {term.count(len(report.tables), 'table')}, {term.count(report.rows, 'row')} "
        f"({report.bytes / 1e6:.1f} MB) in {report.seconds:.1f} s" + (f"; skipped {len(report.skipped)} already done" if report.skipped else ""),
        report=args.report)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("copy", help="copy table data from one source snapshot into the target")
    add_url_arguments(parser)
    add_copy_arguments(parser)
    parser.add_argument("--report", help="write the copy report as JSON to this file")
    parser.add_argument("--restore", action="store_true",
                        help="copy nothing: put back the triggers, indexes and foreign keys a crashed run left set aside")
    parser.set_defaults(handler=handle)


__all__ = ["add_copy_arguments", "add_selection_arguments", "add_url_arguments", "copy_options", "csv", "register",
           "run_copy", "schema_list", "table_list"]
