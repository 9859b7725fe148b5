"""`migrate`: schema → copy → post-data → sequences → verify; exit 2 when anything differs."""

from __future__ import annotations

import argparse
import contextlib
import secrets
from datetime import datetime, timezone
from pathlib import Path

import anyio
from rich.console import Console

from automation.commands.options import add_pipeline_arguments, migrate_options
from automation.commands.report import write_report
from automation.commands.urls import add_url_arguments, source_url, target_url
from loaders.dsn import DatabaseUrl
from loaders.migrate import MigrateOptions, MigrationReport, migrate, with_resume
from loaders.progress import RichProgress, default_progress
from loaders.redaction import MASK


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
        for warning in report.copy.warnings:
            console.print(f"warning: {warning}")
    console.print(f"{'verified' if report.ok else 'NOT verified'} in {report.seconds:.1f}s "
                  + " ".join(f"{k}={v:.1f}s" for k, v in report.phases.items()))
    if report_path is not None:
        write_report(report_path, report.to_dict())
        console.print(f"report: {report_path}")


def handle(args: argparse.Namespace) -> int:
    source, target = source_url(args), target_url(args)
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
    parser.set_defaults(handler=handle)


def migrate_and_report(source: DatabaseUrl, target: DatabaseUrl, args: argparse.Namespace, *, out_dir: Path) -> int:
    """`up`'s migration: resumable by default, so a rerun continues or re-verifies; writes the
    report and the backend's env file (mode 0600), and prints the DATABASE_URL line masked."""
    app_password = secrets.token_urlsafe(24) if args.app_role else None
    options = with_resume(migrate_options(args, app_role_password=app_password))
    report = anyio.run(run_migration, source, target, options)
    summarize(report, args.report or out_dir / f"migrate-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json")
    report.raise_for_mismatch()
    if args.app_role and app_password:
        app_url = target.with_credentials(args.app_role, app_password)
        env_file = out_dir / "backend.env"
        env_file.write_text(backend_env_line(app_url, show_secrets=True) + "\n")
        env_file.chmod(0o600)
        print(backend_env_line(app_url, show_secrets=args.show_secrets))
        Console(stderr=True).print(f"the backend's .env line (with the password) is in {env_file}")
    return 0


def backend_env_line(app_url: DatabaseUrl, *, show_secrets: bool) -> str:
    shown = app_url.dsn() if show_secrets else app_url.dsn(with_password=False).replace("@", f":{MASK}@", 1)
    return f"DATABASE_URL={shown}"
