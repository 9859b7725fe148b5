"""`sync start | status | cutover | abort`: online migration with a fenced, verified cutover.

Same URL options and environment variables as `migrate`. `start` leaves logical replication
running and exits; the other steps run later, from any process, off the state recorded on the
target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import anyio

from automation import terminal as term
from automation.app_password import PasswordStore
from automation.commands.migrate import (fresh_target, migration_summary, prepare_app_role, print_backend_env,
                                         summarize)
from automation.commands.options import add_pipeline_arguments, add_proof_argument, migrate_options
from automation.commands.report import write_report
from automation.commands.urls import add_url_arguments, source_url, target_url
from loaders.data.copy import default_jobs
from loaders.dsn import DatabaseUrl, parse_url
from loaders.migrate import MigrateOptions
from loaders.errors import MigrationError
from loaders.progress import RichProgress, default_progress
from loaders.sync.cutover import CutoverOptions, cutover
from loaders.sync.start import DEFAULT_CAUGHT_UP_BYTES, StartOptions, start
from loaders.sync.status import SyncStatus, sync_status
from loaders.sync.teardown import abort

NEXT_STEPS = "`sync status`, then `sync cutover` (or `sync abort`)"
EPILOG = "Exit codes: 0 ok, 1 error, 2 mismatch (cutover) or unhealthy/lagging (status)."


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} MB"


def start_options(args: argparse.Namespace, migrate: MigrateOptions) -> StartOptions:
    for_target = parse_url(args.source_for_target, "source") if args.source_for_target else None
    return StartOptions(migrate=migrate, source_for_target=for_target, identity_full=args.replica_identity_full,
                        timeout=getattr(args, "timeout", None) or StartOptions.timeout)


def run_start(source: DatabaseUrl, target: DatabaseUrl, options: StartOptions, report_path: Path | None) -> int:
    """`sync start` with a progress display; the migration's report and summary, then what to run next."""
    progress = default_progress()
    options.migrate.copy.progress = progress

    async def run():  # type: ignore[no-untyped-def]
        with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
            return await start(source, target, options)

    report = anyio.run(run)
    summarize(report.migration, report_path)
    term.current().summary(f"{migration_summary(report.migration)}; replication running from "
                           f"{report.state.consistent_lsn}", report=report_path)
    if report.resumed_from:
        term.current().note(f"resumed: the previous start stopped at phase {report.resumed_from}; copied again",
                            "sync_resumed", previous_phase=report.resumed_from)
    term.current().note(f"replication running from {report.state.consistent_lsn}; lag {_mb(report.lag_bytes)}. "
                        f"Next: {NEXT_STEPS}.", "sync_started", consistent_lsn=report.state.consistent_lsn,
                        lag_bytes=report.lag_bytes)
    return 0


def handle_start(args: argparse.Namespace) -> int:
    return run_start(source_url(args), target_url(args), start_options(args, migrate_options(args)), args.report)


def start_and_report(source: DatabaseUrl, target: DatabaseUrl, args: argparse.Namespace, *, out_dir: Path,
                     store: PasswordStore | None = None) -> int:
    """`up --online`: the app role and backend.env exactly as `up` handles them, then `sync start`
    (not resumable like `up`'s migrate: a new slot needs a copy from its own snapshot)."""
    if getattr(args, "fresh", False):
        fresh_target(target, args)
    setup = prepare_app_role(target, args, out_dir=out_dir, store=store)
    report_path = args.report or out_dir / f"sync-start-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    code = run_start(source, target, start_options(args, setup.options), report_path)
    print_backend_env(setup, args)
    return code


def add_start_arguments(parser: argparse.ArgumentParser) -> None:
    """What `sync start` takes beyond `migrate`'s options (also on `up --online`)."""
    parser.add_argument("--source-for-target", metavar="URL",
                        help="the source as the target connects to it (default: the source URL); needs the password")
    parser.add_argument("--replica-identity-full", action="store_true",
                        help="set REPLICA IDENTITY FULL on source tables without a primary key (a write to the source)")


def render_status(status: SyncStatus) -> None:
    """On a console: the state, one line per table and the problems (off it, `--json` is the detail)."""
    terminal = term.current()
    lag_s = "?" if status.lag_seconds is None else f"{status.lag_seconds:.1f}s"
    terminal.print(f"phase {status.phase}; lag {_mb(status.lag_bytes)} ({lag_s}); WAL kept for our slot "
                   f"{_mb(status.retained_bytes)}; apply worker {'running' if status.worker_pid else 'NOT running'}")
    for t in status.tables:
        terminal.print(f"  {t.table}: {t.state}, rows source {t.source_rows} / target {t.target_rows}")
    for problem in status.problems:
        terminal.print(f"problem: {problem}", style="red")


def status_summary(status: SyncStatus) -> str:
    verdict = "healthy" if status.healthy else f"{term.count(len(status.problems), 'problem')}: {status.problems[0]}"
    return f"sync {status.phase}: lag {_mb(status.lag_bytes)}, WAL kept {_mb(status.retained_bytes)} — {verdict}"


def handle_status(args: argparse.Namespace) -> int:
    status = anyio.run(lambda: sync_status(source_url(args), target_url(args), max_lag=args.max_lag,
                                           counts=not args.no_counts))
    if args.json:
        print(json.dumps(status.to_dict(), indent=2, default=str))
    else:
        render_status(status)
    term.current().summary(status_summary(status))
    return 0 if status.healthy else 2


def _confirm(args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise MigrationError("cutover makes the source refuse writes to the migrated tables",
                             "pass --yes to confirm (off a terminal)")
    answer = input("Freeze writes on the source and cut over to the target? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise MigrationError("cutover not confirmed", "rerun and answer y, or pass --yes")


def handle_cutover(args: argparse.Namespace) -> int:
    _confirm(args)
    options = CutoverOptions(timeout=args.timeout, max_lag=args.max_lag, sequence_margin=args.sequence_margin,
                             proof=args.proof, jobs=args.jobs)
    source, target = source_url(args), target_url(args)
    report = anyio.run(lambda: cutover(source, target, options))
    terminal = term.current()
    if report.verify is not None and terminal.human:
        report.verify.render(terminal.console)
    write_report(args.report, report.to_dict())
    terminal.summary(f"cut over at {report.fence_lsn}: writes were frozen for {report.freeze_seconds:.2f} s ("
                     + ", ".join(f"{k} {v:.2f}s" for k, v in report.phases.items())
                     + "); the source stays read-only — point the app at the target", report=args.report)
    return 0


def handle_abort(args: argparse.Namespace) -> int:
    report = anyio.run(lambda: abort(source_url(args), target_url(args)))
    term.current().summary(
        f"aborted: subscription {'dropped' if report.subscription else 'none'}, slot "
        f"{'dropped' if report.slot else 'none'}, publication {'dropped' if report.publication else 'none'}, "
        f"fence lifted on {len(report.unfenced)} table(s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sync", help="online migration: copy, replicate, then a fenced, verified cutover",
        description="Copy inside a logical slot's snapshot, then keep the target following the source by native "
                    "logical replication until `sync cutover`. Writes to the source: one publication and one slot "
                    "(both named supabase_to_rds_sync) and, at cutover, a write fence. "
                    "Environment: SOURCE_DATABASE_URL, TARGET_DATABASE_URL.",
        epilog=EPILOG)
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    p = steps.add_parser("start", help="preflight, publication, slot, copy inside its snapshot, subscription",
                         epilog=EPILOG)
    add_url_arguments(p)
    add_pipeline_arguments(p)
    add_start_arguments(p)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for replication to start and catch up")
    p.set_defaults(handler=handle_start)

    p = steps.add_parser("status", help="lag, retained WAL, subscription and per-table state", epilog=EPILOG)
    add_url_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--max-lag", type=int, metavar="BYTES", help="exit 2 when the lag is over this")
    p.add_argument("--no-counts", action="store_true", help="skip exact row counts (faster on big tables)")
    p.set_defaults(handler=handle_status)

    p = steps.add_parser("cutover", help="fence source writes, catch up, set sequences, verify, detach",
                         epilog=EPILOG)
    add_url_arguments(p)
    p.add_argument("--yes", action="store_true", help="don't ask before freezing writes on the source")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for each wait (lag, fence LSN)")
    p.add_argument("--max-lag", type=int, default=DEFAULT_CAUGHT_UP_BYTES, metavar="BYTES",
                   help="fence only when the target is at most this far behind")
    p.add_argument("--sequence-margin", type=int, default=1000, metavar="N",
                   help="steps added to every sequence on the target (default 1000)")
    add_proof_argument(p)
    p.add_argument("--jobs", type=int, default=default_jobs(), help="tables verified at once")
    p.add_argument("--report", metavar="FILE", help="write the cutover report as JSON")
    p.set_defaults(handler=handle_cutover)

    p = steps.add_parser("abort", help="drop subscription, slot, publication; lift the fence", epilog=EPILOG)
    add_url_arguments(p)
    p.set_defaults(handler=handle_abort)
