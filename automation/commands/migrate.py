"""`migrate`: schema → copy → post-data → sequences → verify; exit 2 when anything differs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import anyio

from automation import terminal as term
from automation.commands.options import add_pipeline_arguments, migrate_options
from automation.commands.report import write_report
from automation.app_password import (LocalPasswordStore, PasswordStore, apply_app_password, backend_env_line,
                                     resolve_app_password)
from automation.commands.urls import add_url_arguments, source_url, target_url
from automation.stack import confirm
from loaders.dsn import DatabaseUrl
from loaders.migrate import MigrateOptions, MigrationFailed, MigrationReport, last_verified_run, migrate, with_resume
from loaders.progress import RichProgress, default_progress
from loaders.errors import MigrationError
from loaders.live import drop_created, recorded_baseline


async def run_migration(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions) -> MigrationReport:
    """The pipeline with a progress display (bars on a terminal, log events otherwise)."""
    progress = default_progress()
    options.copy.progress = progress
    with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
        return await migrate(source, target, options)


def migration_summary(report: MigrationReport) -> str:
    """The run in one line: what moved, how long, and the verdict."""
    if report.error:
        return f"stopped after {report.seconds:.1f} s; what was applied before the error is in the report"
    if not report.schema_equal:
        differences = len(report.schema.diff.differences)  # type: ignore[union-attr]
        return f"schema differs from the source in {term.count(differences, 'object')} — nothing copied"
    copied = report.copy.tables if report.copy else []
    skipped = len(report.copy.skipped) if report.copy else 0
    what = f"migrated {term.count(len(copied), 'table')}" + (f" ({skipped} already copied earlier)" if skipped else "")
    rows = report.copy.rows if report.copy else 0
    what += f", {term.count(rows, 'row')}, {term.count(len(report.sequences), 'sequence')}"
    mismatches = len(report.verify.mismatches()) if report.verify else 0
    verdict = "verified" if report.ok else f"NOT verified ({term.count(mismatches, 'difference')})"
    return f"{what} in {report.seconds:.1f} s — {verdict}"


def summarize(report: MigrationReport, report_path: Path | None) -> None:
    """On a terminal the verification table and what schema cleaning changed, by kind; the JSON report
    on disk (also for a failed run: what was applied before it); and the run's one summary line, which
    the CLI edge prints with the exit code."""
    terminal = term.current()
    if report.verify is not None and terminal.human:
        report.verify.render(terminal.console)
    if report.schema is not None and report.schema.changes:
        terminal.note(f"schema: {term.changes_by_kind(report.schema.changes)} — details in the report",
                      "schema_cleaned", changes=len(report.schema.changes))
    if report.schema is not None and report.schema.seeded_tables:
        state = "emptied, refilled from the source" if report.schema.seeded_tables_emptied else "kept"
        terminal.note(f"rows written by the migration files in {', '.join(report.schema.seeded_tables)}: {state}",
                      "seeded_tables", tables=report.schema.seeded_tables)
    if report.copy is not None:
        for warning in report.copy.warnings:
            terminal.note(f"warning: {warning}", "copy_warning")
    if report_path is not None:
        write_report(report_path, report.to_dict())
    terminal.summary(migration_summary(report), report=report_path)


def run_or_report(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions, report_path: Path | None) -> MigrationReport:
    """Run; on failure write the report of what was applied before it, then re-raise."""
    try:
        return anyio.run(run_migration, source, target, options)
    except MigrationFailed as failed:
        summarize(failed.report, report_path)
        raise


def fresh_target(target: DatabaseUrl, args: argparse.Namespace) -> None:
    """`--fresh`: after a yes, drop what the last verified run created on the target (nothing else)."""
    run = anyio.run(last_verified_run, target)
    baseline = recorded_baseline(run.report if run else None)
    if baseline is None:
        raise MigrationError(f"--fresh: target {target.safe} has no verified migration recorded with the objects it created",
                             "drop and recreate the target database yourself, or run without --fresh")
    print(f"--fresh drops {len(baseline.created)} object(s) the migration of {baseline.recorded_at} created on "
          f"{target.safe} (with every row in them, the application's too) and the tool's bookkeeping, then copies again",
          file=sys.stderr)
    confirm("Drop them and migrate from scratch?", yes=args.yes, action="drop migrated objects")
    anyio.run(drop_created, target, baseline)


def handle(args: argparse.Namespace) -> int:
    source, target = source_url(args), target_url(args)
    if args.fresh:
        fresh_target(target, args)
    report = run_or_report(source, target, migrate_options(args), args.report)
    summarize(report, args.report)
    report.raise_for_mismatch()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate", help="schema, data, sequences and verification in one run",
        description="Apply the cleaned schema (pre-data), copy every table from one source snapshot, build "
                    "indexes and constraints, set sequences, then verify counts and checksums. "
                    "Environment: SOURCE_DATABASE_URL, TARGET_DATABASE_URL, APP_ROLE_PASSWORD.",
        epilog="Exit codes: 0 verified, 1 error, 2 schema or data differ.",
    )
    add_url_arguments(parser)
    add_pipeline_arguments(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="start over on a target that already has a verified (possibly live) migration: drop what "
                             "the tool created there — and only that — then migrate again (asks, or --yes)")
    parser.add_argument("--yes", action="store_true", help="with --fresh: drop without asking")
    parser.set_defaults(handler=handle)


@dataclass
class AppRoleSetup:
    """What `up` settled about the app role before the run: the options carrying its password, and
    the backend URL whose env file was written in the same step (None without --app-role)."""

    options: MigrateOptions
    app_url: DatabaseUrl | None
    env_file: Path


def prepare_app_role(target: DatabaseUrl, args: argparse.Namespace, *, out_dir: Path,
                     store: PasswordStore | None = None) -> AppRoleSetup:
    """The app role keeps its password (see automation/app_password.py); when the role gets one, the
    backend's env file (mode 0600) is written in the same step — before the run, so a run that stops
    later (mismatch, live target) never leaves the two apart."""
    env_file = out_dir / "backend.env"
    if not args.app_role:
        return AppRoleSetup(migrate_options(args), None, env_file)
    store = store or LocalPasswordStore(out_dir / f"{args.app_role}.password")
    chosen = resolve_app_password(store, rotate=getattr(args, "rotate_app_password", False))
    app_url = anyio.run(apply_app_password, target, args.app_role, chosen, env_file)
    return AppRoleSetup(migrate_options(args, app_role_password=chosen.password), app_url, env_file)


def print_backend_env(setup: AppRoleSetup, args: argparse.Namespace) -> None:
    if setup.app_url is not None:
        print(backend_env_line(setup.app_url, show_secrets=args.show_secrets))
        term.current().print(f"the backend's .env line (with the password) is in {setup.env_file}")


def migrate_and_report(source: DatabaseUrl, target: DatabaseUrl, args: argparse.Namespace, *, out_dir: Path,
                       store: PasswordStore | None = None) -> int:
    """`up`'s migration: resumable by default, so a rerun continues or re-verifies; `--fresh` first
    drops what the last verified run created."""
    if getattr(args, "fresh", False):
        fresh_target(target, args)
    setup = prepare_app_role(target, args, out_dir=out_dir, store=store)
    report_path = args.report or out_dir / f"migrate-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    report = run_or_report(source, target, with_resume(setup.options), report_path)
    summarize(report, report_path)
    report.raise_for_mismatch()
    print_backend_env(setup, args)
    return 0
