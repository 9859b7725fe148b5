"""The single entry point: argparse subcommands, one-line errors, exit codes 0 / 1 / 2.

Each subcommand lives in `automation/commands/<name>.py` and registers itself; a handler
returns an exit code. Every user-facing failure is a `MigrationError` and becomes exactly
one scrubbed line on stderr, so a password can never reach the terminal via a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from automation import logs
from loaders.errors import MigrationError
from loaders.redaction import scrub

COMMAND_MODULES: tuple[str, ...] = (
    "automation.commands.stack",
    "automation.commands.schema",
    "automation.commands.copy",
    "automation.commands.verify",
    "automation.commands.migrate",
    "automation.commands.drift",
    "automation.commands.sync",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m automation",
        description="Move a Supabase Postgres database onto Amazon RDS and prove nothing was lost.",
        epilog="Exit codes: 0 success, 1 error, 2 verification mismatch or drift found.",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", default=None, help="JSON log lines even on a terminal")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(json_lines=args.log_json, level=args.log_level)
    try:
        return int(args.handler(args))
    except MigrationError as exc:
        print(f"error: {scrub(exc.one_line())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted — fix: rerun the same command with --resume to continue", file=sys.stderr)
        return 1
