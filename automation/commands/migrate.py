"""`migrate`: schema → copy → post-data → sequences → verify; exit 2 when anything differs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import datetime, timezone
from pathlib import Path

import anyio
from rich.console import Console

from automation.commands.options import add_pipeline_arguments, migrate_options
from automation.commands.report import write_report
from automation.app_password import (LocalPasswordStore, PasswordStore, apply_app_password, backend_env_line,
                                     resolve_app_password)
from automation.commands.urls import add_url_arguments, source_url, target_url
from automation.stack import confirm
from loaders.dsn import DatabaseUrl
from loaders.migrate import MigrateOptions, MigrationReport, last_verified_run, migrate, with_resume
from loaders.progress import RichProgress, default_progress
from loaders.errors import MigrationError
from loaders.live import drop_created, recorded_baseline


async def run_migration(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions) -> MigrationReport:
    """The pipeline with a progress display (bars on a terminal, log events otherwise)."""
    progress = default_progress()
    options.copy.progress = progress
    with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
        return await migrate(source, target, options)


def summarize(report: MigrationReport, report_path: Path | None) -> None:
    """The verification table and a one-line summary on stderr; the full report as JSON on disk."""
    console = Console(stderr=True)
    if report.verify is not None:
        report.verify.render(console)
    if report.schema is not None:
        console.print(f"schema: {report.schema.origin}, {len(report.schema.changes)} change(s) recorded "
                      f"(removed or rewritten Supabase-only statements)")
    if report.copy is not None:
        console.print(f"copied {report.copy.rows} rows ({report.copy.bytes / 1e6:.1f} MB) from "
                      f"{len(report.copy.tables)} table(s); {len(report.copy.skipped)} already done")
    console.print(f"{'verified' if report.ok else 'NOT verified'} in {report.seconds:.1f}s "
                  + " ".join(f"{k}={v:.1f}s" for k, v in report.phases.items()))
    if report_path is not None:
        write_report(report_path, report.to_dict())
        console.print(f"report: {report_path}")


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
    report = anyio.run(run_migration, source, target, migrate_options(args))
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


def migrate_and_report(source: DatabaseUrl, target: DatabaseUrl, args: argparse.Namespace, *, out_dir: Path,
                       store: PasswordStore | None = None) -> int:
    """`up`'s migration: resumable by default, so a rerun continues or re-verifies. The app role
    keeps its password (see automation/app_password.py); when the role gets one, the backend's
    env file (mode 0600) is written in the same step — before the migration, so a run that
    stops later (mismatch, live target) never leaves the two apart."""
    app_url = None
    env_file = out_dir / "backend.env"
    if args.app_role:
        store = store or LocalPasswordStore(out_dir / f"{args.app_role}.password")
        chosen = resolve_app_password(store, rotate=getattr(args, "rotate_app_password", False))
        app_url = anyio.run(apply_app_password, target, args.app_role, chosen, env_file)
        options = with_resume(migrate_options(args, app_role_password=chosen.password))
    else:
        options = with_resume(migrate_options(args))
    report = anyio.run(run_migration, source, target, options)
    summarize(report, args.report or out_dir / f"migrate-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json")
    report.raise_for_mismatch()
    if app_url is not None:
        print(backend_env_line(app_url, show_secrets=args.show_secrets))
        Console(stderr=True).print(f"the backend's .env line (with the password) is in {env_file}")
    return 0
