"""`migrate`: schema → copy → post-data → sequences → verify; exit 2 when anything differs."""

from __future__ import annotations

import argparse
import contextlib
import secrets
from datetime import datetime, timezone
from pathlib import Path

import anyio

from automation import terminal as term
from automation.commands.options import add_pipeline_arguments, migrate_options
from automation.commands.report import write_report
from automation.commands.urls import add_url_arguments, source_url, target_url
from loaders.dsn import DatabaseUrl
from loaders.migrate import MigrateOptions, MigrationFailed, MigrationReport, migrate, with_resume
from loaders.progress import RichProgress, default_progress
from loaders.redaction import MASK


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


def handle(args: argparse.Namespace) -> int:
    source, target = source_url(args), target_url(args)
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
    parser.set_defaults(handler=handle)


def migrate_and_report(source: DatabaseUrl, target: DatabaseUrl, args: argparse.Namespace, *, out_dir: Path) -> int:
    """`up`'s migration: resumable by default, so a rerun continues or re-verifies; writes the
    report and the backend's env file (mode 0600), and prints the DATABASE_URL line masked."""
    app_password = secrets.token_urlsafe(24) if args.app_role else None
    options = with_resume(migrate_options(args, app_role_password=app_password))
    report_path = args.report or out_dir / f"migrate-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    report = run_or_report(source, target, options, report_path)
    summarize(report, report_path)
    report.raise_for_mismatch()
    if args.app_role and app_password:
        app_url = target.with_credentials(args.app_role, app_password)
        env_file = out_dir / "backend.env"
        env_file.write_text(backend_env_line(app_url, show_secrets=True) + "\n")
        env_file.chmod(0o600)
        print(backend_env_line(app_url, show_secrets=args.show_secrets))
        term.current().print(f"the backend's .env line (with the password) is in {env_file}")
    return 0


def backend_env_line(app_url: DatabaseUrl, *, show_secrets: bool) -> str:
    shown = app_url.dsn() if show_secrets else app_url.dsn(with_password=False).replace("@", f":{MASK}@", 1)
    return f"DATABASE_URL={shown}"
