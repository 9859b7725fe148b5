"""`drift`: infrastructure (Pulumi refresh + no-change preview), schema and data, one verdict.

Exit 0 clean, 2 drift found, 1 could not check — so a nightly job fails exactly when
someone has to look. Benign differences (AWS minor upgrades, storage autoscaling) are
listed but do not fail the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table as RichTable

from automation import stack as pulumi_stack
from automation import terminal as term
from automation.commands.report import write_report
from automation.commands.urls import add_role_arguments, role_given, source_url, target_url
from automation.drift_infra import findings_from_events
from loaders.drift import (DriftFinding, DriftReport, accept_baseline, require_master, schema_drift, source_drift,
                           target_drift)
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError


def infrastructure_findings(stack_name: str) -> list[DriftFinding]:
    """Refresh preview (live vs recorded) and a preview expecting no changes (program vs live)."""
    from pulumi import automation as auto

    pulumi_stack.check_prerequisites(aws=True)
    stack = pulumi_stack.open_stack(stack_name, create=False)
    events: list[Any] = []
    stack.preview_refresh(on_event=events.append)
    try:
        stack.preview(expect_no_changes=True, on_event=events.append)
    except auto.CommandError:
        pass  # the preview fails when it finds changes; its events say which
    config = {key: value.value for key, value in stack.get_all_config().items() if not value.secret}
    resources = (stack.export_stack().deployment or {}).get("resources") or []
    fix = f"python -m automation up --stack {stack_name} (puts back what the program declares)"
    return [DriftFinding("infrastructure", f"{f.resource}.{f.property}", f.kind, f.reason, f.severity,
                         fix if f.kind == "drift" else "nothing to do (AWS manages it)")
            for f in findings_from_events(events, config=config, resources=resources)]


def _target(args: argparse.Namespace) -> DatabaseUrl | None:
    if role_given(args, "target"):
        return target_url(args)
    if args.stack:
        stack = pulumi_stack.open_stack(args.stack, create=False)
        outputs = pulumi_stack.plain_outputs(stack.outputs())
        return pulumi_stack.master_url(pulumi_stack.connection_from_outputs(outputs, ca_bundle=args.ca_bundle))
    return None


async def database_findings(source: DatabaseUrl | None, target: DatabaseUrl, report: DriftReport,
                            *, checksums: bool, compare_target: bool) -> None:
    """Default (day two): the target's schema against the recorded one, and the old source
    against the verified baseline. `compare_target`: schema and rows against the live source."""
    await require_master(target)
    report.checked.append("schema" + (" (against the source)" if compare_target else " (against the recorded migration)"))
    report.findings += await schema_drift(source if compare_target else None, target)
    if source is None:
        return
    how = " (checksums)" if checksums else " (row counts)"
    report.checked.append("old source since the verified migration" + how)
    report.findings += await source_drift(source, target, checksums=checksums)
    if compare_target:
        report.checked.append("target against source" + how)
        report.findings += await target_drift(source, target, checksums=checksums)


def render(report: DriftReport, console: Console) -> None:
    grid = RichTable(title="drift")
    for column in ("area", "object", "kind", "severity", "detail", "fix"):
        grid.add_column(column)
    for f in report.findings:
        grid.add_row(f.area, f.object, f.kind, f.severity, f.detail, f.fix)
    console.print(grid)


SEVERITY_ORDER = ("critical", "warning", "info")


def drift_summary(report: DriftReport) -> str:
    """The check in one line: what was checked, drift findings by severity (worst first), and the
    benign differences that do not fail it; the CLI edge adds the exit code's meaning."""
    checked = ", ".join(report.checked)
    if not report.drift:
        verdict = "no drift"
    else:
        by_severity: dict[str, int] = {}
        for finding in report.drift:
            by_severity[finding.severity] = by_severity.get(finding.severity, 0) + 1
        ordered = sorted(by_severity, key=lambda s: (SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 99, s))
        verdict = (f"{term.count(len(report.drift), 'drift finding')} ("
                   + ", ".join(f"{by_severity[s]} {s}" for s in ordered) + ")")
    benign = len(report.findings) - len(report.drift)
    if benign:
        verdict += f"; {benign} benign, not failed"
    return f"drift check of {checked}: {verdict}"


def accept(args: argparse.Namespace, target: DatabaseUrl | None, source: DatabaseUrl | None) -> int:
    if target is None:
        raise MigrationError("--accept needs the target", "pass --target URL (the master URL) or --stack NAME")
    anyio.run(require_master, target)
    anyio.run(lambda: accept_baseline(source, target, checksums=args.checksums))
    print(f"new baseline recorded on {target.safe}" + (" (with the source's rows" + (" and checksums)" if args.checksums else ")")
          if source else "") + ": the next drift check compares with it", file=sys.stderr)
    return 0


def handle(args: argparse.Namespace) -> int:
    if args.accept:
        return accept(args, _target(args), source_url(args) if role_given(args, "source") else None)
    report = DriftReport()
    if args.stack:
        report.checked.append("infrastructure")
        report.findings += infrastructure_findings(args.stack)
    target = _target(args)
    source = source_url(args) if role_given(args, "source") else None
    if target is not None:
        anyio.run(lambda: database_findings(source, target, report, checksums=args.checksums,
                                            compare_target=args.compare_target))
    if not report.checked:
        raise MigrationError("nothing to check", "pass --stack NAME and/or --target URL (with --source for data drift)")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        render(report, Console(stderr=True))
    if args.report:
        write_report(args.report, report.to_dict())
    if args.markdown:
        Path(args.markdown).write_text(report.to_markdown())
    term.current().summary(drift_summary(report), report=args.report)
    return 2 if report.drift else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drift", help="check infrastructure, schema and data drift (exit 2 on drift)",
        description="Infrastructure drift with --stack (Pulumi refresh + preview); schema drift with --target "
                    "(against the schema recorded by the last verified migrate); with --source, whether the old "
                    "source still receives writes (against the verified baseline: the cutover alarm); "
                    "--compare-target also compares target with source. Environment: SOURCE_DATABASE_URL, TARGET_DATABASE_URL, PULUMI_BACKEND_URL, "
                    "PULUMI_CONFIG_PASSPHRASE, AWS credentials.",
        epilog="Exit codes: 0 clean, 2 drift found, 1 could not check.",
    )
    parser.add_argument("--stack", help="Pulumi stack to check (also resolves the target when --target is absent)")
    add_role_arguments(parser, "source", help="the old Supabase database (read-only window)")
    add_role_arguments(parser, "target", help="the RDS database")
    parser.add_argument("--checksums", action="store_true", help="compare content checksums, not only row counts")
    parser.add_argument("--compare-target", action="store_true",
                        help="also compare the target with the source, schema and rows (before cutover or during a "
                             "freeze; after cutover the app's own writes make them differ)")
    parser.add_argument("--accept", action="store_true",
                        help="record the target as it is now (and, with --source, the source's rows) as the new "
                             "baseline, after a deliberate repair or change")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--report", help="write the JSON report to this file")
    parser.add_argument("--markdown", help="write a markdown summary (for a CI job summary) to this file")
    parser.set_defaults(handler=handle)
