"""`audit-code`: every supabase-js call in a backend, translated to SQL and checked on the target.

Exit 0 when every database call is translated (and, with a target, accepted by it), 2 when some
are not; with `--gate`, 2 while any database call remains at all (`--strict`: Storage, Auth,
Realtime and Functions calls too) — the cutover's "no supabase. left" check for CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio
from rich.console import Console

from automation.commands.report import write_report
from automation.commands.urls import add_role_arguments, role_given, target_url
from loaders.audit.run import audit
from loaders.redaction import scrub


def handle(args: argparse.Namespace) -> int:
    target = target_url(args) if role_given(args, "target") else None
    report = anyio.run(audit, list(args.paths), target)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        report.render(Console(stderr=True))
    write_report(args.report, report.to_dict())
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scrub(report.to_markdown()))
    return report.exit_code(gate=args.gate, strict=args.strict)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit-code", help="find supabase-js calls in a backend, translate them to SQL, check them on the target",
        description="Parses TypeScript/JavaScript (tree-sitter) and reports every supabase-js call: database "
                    "chains and rpc() translated to parameterised SQL (PostgREST semantics), Storage/Auth/"
                    "Realtime/Functions calls with what replaces them. With a target, every table, column and "
                    "function is checked and every statement PREPAREd (never executed) in a rolled-back "
                    "transaction. Environment: TARGET_DATABASE_URL.",
        epilog="Exit codes: 0 all database calls translated (and valid on the target), 2 some not "
               "(with --gate: some database calls remain), 1 error.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="source folders or files")
    add_role_arguments(parser, "target", help="the RDS database to check against (as the backend's user)")
    parser.add_argument("--report", metavar="FILE", help="write the JSON report to this file")
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown checklist to this file")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--gate", action="store_true",
                        help="cutover gate: exit 2 while any database call remains in the code")
    parser.add_argument("--strict", action="store_true",
                        help="with --gate, Storage/Auth/Realtime/Functions calls count too")
    parser.set_defaults(handler=handle)
