"""The single entry point: argparse subcommands, one-line errors, exit codes 0 / 1 / 2 / 64 / 130.

Each subcommand lives in `automation/commands/<name>.py` and registers itself; a handler
returns an exit code. This module is the edge every failure passes: a `MigrationError` (a
failure the user can act on) and any other exception alike become exactly one scrubbed line
on stderr naming the cause and the fix — a password can never reach the terminal through a
traceback, and `--debug` shows the traceback, scrubbed, when the line is not enough. Usage
errors exit 64 (argparse's own 2 would read as "mismatch"), Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import structlog

from automation import logs
from automation import terminal as term
from automation.commands import report as reports
from loaders.errors import MigrationError
from loaders.redaction import register_url_password, scrub

COMMAND_MODULES: tuple[str, ...] = (
    "automation.commands.stack",
    "automation.commands.schema",
    "automation.commands.copy",
    "automation.commands.verify",
    "automation.commands.migrate",
    "automation.commands.drift",
    "automation.commands.audit",
    "automation.commands.local",
    "automation.commands.sync",
)

EXIT_OK, EXIT_ERROR, EXIT_MISMATCH, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 64, 130
EXIT_CODES_HELP = ("Exit codes: 0 success, 1 error (one line: cause and fix), 2 verification mismatch or drift "
                   "found, 64 usage error, 130 interrupted (Ctrl-C).")
INTERRUPTED = ("interrupted — fix: run the same command again (copy and migrate continue with --resume; "
               "up --local resumes by itself)")
MAX_CAUSE = 400


class UsageParser(argparse.ArgumentParser):
    """argparse that exits 64 on a usage error and never echoes a password it was given: its
    messages quote the offending argument ("unrecognized arguments: postgresql://u:pw@…")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {scrub(message)} — fix: see `{self.prog} --help`\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(scrub(message))
        raise SystemExit(status)


def add_output_arguments(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """How output looks; accepted before and after the command (`-v up --local`, `up --local -v`).
    On a subcommand the defaults are suppressed so they never undo what was given before it."""
    default = (lambda value: value) if top else (lambda _value: argparse.SUPPRESS)
    given = parser._option_string_actions  # a command that defines one of these keeps its own
    group = parser.add_argument_group("output") if not top else parser
    if "--log-format" not in given:
        group.add_argument("--log-format", choices=logs.LOG_FORMATS, default=default(None),
                           help="console: headings, bars and a summary (default on a terminal); "
                                "json: one JSON event per line (default otherwise)")
    if "--log-json" not in given:
        group.add_argument("--log-json", dest="log_format", action="store_const", const="json",
                           default=default(None), help="same as --log-format json")
    if "--verbose" not in given and "-v" not in given:
        group.add_argument("-v", "--verbose", action="count", default=default(0),
                           help="on a terminal, also show the event stream (-vv: debug events)")
    if "--quiet" not in given and "-q" not in given:
        group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                           help="only warnings, errors and what the command prints on stdout")
    if "--debug" not in given:
        group.add_argument("--debug", action="store_true", default=default(False),
                           help="on an error, also print the traceback (scrubbed of secrets)")
    if "--log-level" not in given:
        group.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=default(None),
                           help="lowest event level recorded (default: info; warning with --quiet)")


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="python -m automation",
        description="Move a Supabase Postgres database onto Amazon RDS and prove nothing was lost.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"{reports.TOOL} {reports.tool_version()}")
    add_output_arguments(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in commands(sub):
        add_output_arguments(command, top=False)
        if command.epilog is None:
            command.epilog = EXIT_CODES_HELP
    return parser


def commands(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """Every command parser, the steps of a noun too (`sync status`): the output options must
    work after any of them, not only after a top-level command."""
    found: list[argparse.ArgumentParser] = []
    for command in dict.fromkeys(sub.choices.values()):
        found.append(command)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += commands(action)
    return found


def register_argv_secrets(argv: Sequence[str]) -> None:
    """Every password in a URL-shaped argument is known to `scrub` before argparse can quote it."""
    for arg in argv:
        register_url_password(arg.partition("=")[2] if arg.startswith("--") and "=" in arg else arg)


# -- the edge: every exception becomes one line ------------------------------------------------


def leaf(exc: BaseException) -> BaseException:
    """The exception that matters inside task groups: an interrupt first, then a user-facing
    `MigrationError`, else the first leaf."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []

    def walk(group: BaseExceptionGroup) -> None:
        for inner in group.exceptions:
            walk(inner) if isinstance(inner, BaseExceptionGroup) else leaves.append(inner)

    walk(exc)
    for wanted in (KeyboardInterrupt, MigrationError):
        for found in leaves:
            if isinstance(found, wanted):
                return found
    return leaves[0] if leaves else exc


def _families(exc: BaseException) -> set[str]:
    return {cls.__module__.split(".")[0] for cls in type(exc).__mro__}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _pulumi_line(exc: BaseException) -> str:
    """Pulumi's CommandError carries the CLI's whole output; its first `error:` line is the cause."""
    for line in str(exc).splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return _first_line(str(exc))


def describe_unexpected(exc: BaseException) -> tuple[str, str]:
    """(cause, fix) for an exception no code turned into a `MigrationError`."""
    name = type(exc).__name__
    families = _families(exc)
    message = _first_line(str(exc)) or name
    if families & {"asyncpg", "psycopg"}:
        sqlstate = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "diag", None), "sqlstate", None)
        cause = f"the database refused ({name}" + (f", SQLSTATE {sqlstate}" if sqlstate else "") + f"): {message}"
        if sqlstate == "42501":
            return cause, "connect as the database owner or master user (not the application role)"
        return cause, "act on the database's message; rerun with --debug for the traceback"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return (f"{name}: {exc.strerror or message}{where}",
                "check the path, host, port and permissions named; rerun with --debug for the traceback")
    if "pulumi" in families:
        return (f"Pulumi failed ({name}): {_pulumi_line(exc)}",
                "rerun with --debug for Pulumi's full output; check the AWS credentials and the stack's config")
    return f"unexpected {name}: {message}", "rerun with --debug to see the traceback, and report it"


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one scrubbed line for `exc` and the exit code it means."""
    if isinstance(exc, KeyboardInterrupt):
        return f"error: {INTERRUPTED}", EXIT_INTERRUPTED
    if isinstance(exc, MigrationError):
        text, code = exc.one_line(), exc.exit_code
    else:
        cause, fix = describe_unexpected(exc)
        text, code = f"{cause} — fix: {fix}", EXIT_ERROR
    text = " ".join(text.split())
    if len(text) > MAX_CAUSE * 2:
        text = text[:MAX_CAUSE] + " … " + text[-MAX_CAUSE:]
    return f"error: {scrub(text)}", code


def print_traceback(exc: BaseException) -> None:
    sys.stderr.write("".join(scrub(part) for part in traceback.format_exception(exc)))


def finish(code: int, terminal: term.Terminal) -> None:
    """The summary line (with the exit code's meaning) and the reports' end time and exit code."""
    try:
        reports.finish_run(code)
    except OSError:
        pass  # the report stays as written, with exit_code null: the truth about an unfinished report
    line = terminal.summary_text(code)
    if line is None:
        return
    if terminal.log_format == "json":
        structlog.get_logger(stage="summary").info("summary", summary=terminal.summary_line, exit_code=code,
                                                   report=str(terminal.report_path) if terminal.report_path else None)
    else:
        terminal.print(line, style="bold" if code == 0 else "bold red")


def run(args: argparse.Namespace) -> tuple[int, str | None]:
    """The handler's exit code, or the exit code and the one line its exception means."""
    try:
        return int(args.handler(args)), None
    except (KeyboardInterrupt, Exception, BaseExceptionGroup) as caught:
        exc = leaf(caught)
        if getattr(args, "debug", False) and not isinstance(exc, KeyboardInterrupt):
            print_traceback(caught)
        line, code = error_line(exc)
        return code, line


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    register_argv_secrets(argv)
    args = build_parser().parse_args(argv)
    verbosity = -1 if args.quiet else int(args.verbose or 0)
    terminal = logs.configure(log_format=args.log_format, verbosity=verbosity, level=args.log_level,
                              debug=args.debug)
    reports.begin_run(args)
    code, line = run(args)
    finish(code, terminal)
    if line is not None:
        print(line, file=sys.stderr)
    return code
