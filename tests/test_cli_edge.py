"""The CLI edge as a user meets it: real `python -m automation` processes, real servers, a real
pseudo-terminal. Exit codes (0/1/2/64/130), one scrubbed line per failure, the traceback only
with --debug, the calm console on a terminal and JSON lines off it, and the report wrapper."""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import signal
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import asyncpg
import pytest

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours and cursor moves, not text
WRAPPER = ("tool", "version", "command", "arguments", "started_at", "ended_at", "exit_code")


def cli_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATABASE_URL", "TARGET_DATABASE_URL")}
    return {**base, "COLUMNS": "140", "TERM": "xterm-256color", **extra}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automation", *args], cwd=REPO, env=env or cli_env(),
                          capture_output=True, text=True, timeout=180)


def run_on_tty(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The command with stdin, stdout and stderr on a pseudo-terminal, as in a person's shell."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "automation", *args], cwd=REPO, env=env,
                               stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every holder of the terminal's other side has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    screen = ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")
    return process.wait(timeout=180), screen


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# -- usage errors: 64, and argparse never echoes a password ------------------------------------


@pytest.mark.parametrize("args", [
    ["verify", "postgresql://someone:Usage-Secret-41@127.0.0.1:5/db"],  # a URL without --source
    ["--source=postgresql://someone:Usage-Secret-41@127.0.0.1:5/db", "verify"],  # an option only commands know
    ["copy", "--jobs", "many", "--source", "postgresql://someone:Usage-Secret-41@127.0.0.1:5/db"],
    ["up", "--access", "open"],  # a subcommand's own choice error
    ["no-such-command"],
])
def test_usage_errors_exit_64_and_never_show_a_password(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 64, result.stderr
    assert "Usage-Secret-41" not in result.stdout + result.stderr
    [line] = error_lines(result.stderr)
    assert "fix: see `python -m automation" in line and "Traceback" not in result.stderr
    if "Usage-Secret" in " ".join(args) and args[0] != "copy":
        assert "someone:***@127.0.0.1" in line  # the argument is still named, its password masked


def test_version_and_help_name_the_exit_codes() -> None:
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"supabase-to-rds {metadata.version('supabase-to-rds')}"
    helped = run_cli("verify", "--help")
    assert helped.returncode == 0
    assert "64 usage error" in helped.stdout and "130 interrupted" in helped.stdout
    assert "--log-format {console,json}" in helped.stdout and "--quiet" in helped.stdout


# -- Ctrl-C: 130 and one line --------------------------------------------------------------------


def test_sigint_while_waiting_for_a_server_exits_130_with_one_line() -> None:
    """A server that accepts the connection and never answers: the command waits; Ctrl-C ends it."""
    password = "Sigint-Secret-" + secrets.token_hex(3)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        url = f"postgresql://someone:{password}@127.0.0.1:{port}/db"
        process = subprocess.Popen([sys.executable, "-m", "automation", "verify"], cwd=REPO,
                                   env=cli_env(SOURCE_DATABASE_URL=url, TARGET_DATABASE_URL=url),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listener.settimeout(60)
        held, _ = listener.accept()  # the command is now inside its connect
        try:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            held.close()
    assert process.returncode == 130, err
    [line] = error_lines(err)
    assert "interrupted" in line and "--resume" in line
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert password not in out + err


# -- exceptions no code anticipated: one line, exit 1; the traceback only with --debug -----------


@pytest.fixture
async def role_without_rights(target_db: str, pg18) -> tuple[str, str, str]:
    """A target database with a table, and a login role (a password-bearing URL) that may not read it."""
    password = "Nobody-Secret-" + secrets.token_hex(4)
    role = "nobody_" + secrets.token_hex(3)
    admin = await asyncpg.connect(pg18.url())
    owner = await asyncpg.connect(target_db)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await owner.execute("CREATE TABLE public.things (id int PRIMARY KEY); INSERT INTO public.things VALUES (1), (2)")
    finally:
        await admin.close()
        await owner.close()
    host_db = target_db.rsplit("@", 1)[1]
    return target_db, f"postgresql://{role}:{password}@{host_db}", password


async def test_a_database_refusal_is_one_line_and_the_traceback_needs_debug(role_without_rights) -> None:
    owner_url, nobody_url, password = role_without_rights
    env = cli_env(SOURCE_DATABASE_URL=owner_url, TARGET_DATABASE_URL=nobody_url)
    plain = run_cli("verify", "--tables", "things", env=env)
    assert plain.returncode == 1, plain.stderr
    [line] = error_lines(plain.stderr)
    assert "SQLSTATE 42501" in line and "permission denied" in line and "master user" in line
    # our own events are JSON lines off a terminal; anything else would be a library's noise
    assert [l for l in plain.stderr.splitlines() if l.strip() and not l.startswith("{")] == [line]
    debug = run_cli("verify", "--tables", "things", "--debug", env=env)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and error_lines(debug.stderr) == [line]
    for result in (plain, debug):
        assert password not in result.stdout + result.stderr


async def test_an_os_error_is_one_line_with_the_path(seeded_source: str, tmp_path: Path) -> None:
    """A report path that is a folder fails in the filesystem, not in our code: still one line."""
    env = cli_env(SOURCE_DATABASE_URL=seeded_source, TARGET_DATABASE_URL=seeded_source)
    result = run_cli("verify", "--report", str(tmp_path), env=env)
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "IsADirectoryError" in line and "fix:" in line and "Traceback" not in result.stderr


# -- the terminal: calm on a TTY, JSON lines off it ------------------------------------------------


@pytest.mark.parametrize("mode", ["default", "verbose", "quiet", "json"])
async def test_terminal_shape_on_a_tty(mode: str, seeded_source: str, target_db: str, tmp_path: Path) -> None:
    flags = {"default": [], "verbose": ["-v"], "quiet": ["--quiet"], "json": ["--log-json"]}[mode]
    report = tmp_path / "migrate.json"
    env = cli_env(SOURCE_DATABASE_URL=seeded_source, TARGET_DATABASE_URL=target_db)
    code, screen = run_on_tty("migrate", "--report", str(report), *flags, env=env)
    assert code == 0, screen[-3000:]
    assert json.loads(report.read_text())["exit_code"] == 0
    json_lines = [l for l in screen.splitlines() if l.startswith("{")]
    if mode == "json":
        assert json_lines and '"event": "summary"' in screen and "▸ schema" not in screen
        return
    assert not json_lines, screen[-3000:]
    if mode == "quiet":
        assert "▸" not in screen and "verification" not in screen and "migrated" not in screen
        return
    for heading in ("▸ schema", "▸ data", "▸ sequences", "▸ verification"):
        assert heading in screen
    assert "3000, called" in screen and "(3000, True)" not in screen  # sequences as values
    assert "schema: removed 5 RLS policies, 4 foreign keys to auth.users" in screen
    summary = [l for l in screen.splitlines() if l.strip().startswith("migrated ")]
    assert len(summary) == 1 and "9,080 rows, 5 sequences" in summary[0] and "verified · exit 0 (ok)" in summary[0]
    assert ("phase_done" in screen) == (mode == "verbose")  # the event stream only with -v


async def test_off_a_tty_stderr_is_json_lines_and_the_report_is_wrapped(seeded_source: str, target_db: str,
                                                                      tmp_path: Path) -> None:
    target_password = target_db.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    report = tmp_path / "migrate.json"
    result = run_cli("migrate", "--source", seeded_source, "--target", target_db, "--report", str(report),
                     "--no-checksums")
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]  # every line is JSON
    [summary] = [e for e in events if e["event"] == "summary"]
    assert summary["exit_code"] == 0 and summary["summary"].startswith("migrated 8 tables")
    body = json.loads(report.read_text())
    assert tuple(body)[:len(WRAPPER)] == WRAPPER
    assert body["tool"] == "supabase-to-rds" and body["version"] == metadata.version("supabase-to-rds")
    assert body["command"] == "migrate" and body["exit_code"] == 0
    assert body["started_at"] <= body["ended_at"]
    arguments = body["arguments"]
    assert arguments["proof"] == "counts" and arguments["report"] == str(report)
    assert arguments["target"].endswith(target_db.rsplit("@", 1)[1]) and ":***@" in arguments["target"]
    assert body["ok"] is True and body["verify"]["tables"]  # the command's own body follows the wrapper
    assert target_password not in report.read_text() + result.stderr + result.stdout


async def test_a_mismatch_report_records_exit_2(seeded_source: str, target_db: str, tmp_path: Path) -> None:
    """`verify` against a target that lacks the rows: exit 2 in the process and in its report."""
    conn = await asyncpg.connect(target_db)
    try:
        await conn.execute("CREATE TABLE public.teams (id int PRIMARY KEY)")
    finally:
        await conn.close()
    report = tmp_path / "verify.json"
    result = run_cli("verify", "--tables", "teams", "--no-checksums", "--report", str(report),
                     env=cli_env(SOURCE_DATABASE_URL=seeded_source, TARGET_DATABASE_URL=target_db))
    assert result.returncode == 2, result.stderr[-2000:]
    body = json.loads(report.read_text())
    assert body["command"] == "verify" and body["exit_code"] == 2 and body["ok"] is False


# -- the pieces the lines are made of ------------------------------------------------------------


def test_cleaning_is_summarised_by_kind_from_the_cleaners_own_records() -> None:
    from automation.sample import supabase_source_sql
    from automation.terminal import changes_by_kind
    from loaders.schema.clean import clean_sql

    cleaned = clean_sql(supabase_source_sql(), source_name="supabase_source.sql", rls="strip", skip_invalid=False)
    summary = changes_by_kind(cleaned.changes)
    assert summary.startswith("removed ")
    for part in ("6 RLS policies", "4 foreign keys to auth.users", "4 RLS switches", "1 auth trigger",
                 "2 Realtime publication statements", "2 Supabase schemas"):
        assert part in summary, summary
    assert sum(int(p.split(" ", 1)[0]) for p in summary.removeprefix("removed ").split(", ")) == len(cleaned.changes)


def test_every_exception_family_gets_a_cause_and_a_fix_without_secrets() -> None:
    import asyncpg.exceptions
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import CommandError

    from automation.cli import error_line, leaf
    from loaders.errors import MigrationError, VerificationMismatch
    from loaders.redaction import register_url_password

    url = "postgresql://u:Edge-Secret-77@db.example.com/app"
    register_url_password(url)
    denied = asyncpg.exceptions.InsufficientPrivilegeError("permission denied for schema supabase_to_rds")
    pulumi_failed = CommandError(CommandResult(stdout="Updating (dev)", stderr="error: no credentials\nmore", code=255))
    cases = {
        denied: ("SQLSTATE 42501", "master user", 1),
        FileNotFoundError(2, "No such file or directory", "/nope/report.json"): ("/nope/report.json", "path", 1),
        pulumi_failed: ("Pulumi failed (CommandError): no credentials", "--debug", 1),
        RuntimeError(f"lost {url}\nsecond line"): ("unexpected RuntimeError: lost postgresql://u:***@", "--debug", 1),
        VerificationMismatch("rows differ", "copy again"): ("rows differ — fix: copy again", "", 2),
        KeyboardInterrupt(): ("interrupted", "--resume", 130),
    }
    for exc, (cause, fix, code) in cases.items():
        line, exit_code = error_line(exc)
        assert line.startswith("error: ") and "\n" not in line and exit_code == code, line
        assert cause in line and fix in line and "Edge-Secret-77" not in line, line
    group = BaseExceptionGroup("tasks", [ValueError("x"), ExceptionGroup("inner", [MigrationError("bad", "fix it")])])
    assert isinstance(leaf(group), MigrationError)
    assert isinstance(leaf(BaseExceptionGroup("tasks", [MigrationError("a"), KeyboardInterrupt()])), KeyboardInterrupt)


@pytest.mark.parametrize("argv", [["sync", "status", "--log-format", "console"], ["sync", "cutover", "--yes", "-q"],
                                  ["-v", "sync", "abort", "--debug"]])
def test_output_options_work_after_a_nouns_step_too(argv: list[str]) -> None:
    from automation.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.step == argv[argv.index("sync") + 1]
    assert (args.log_format, args.quiet, args.verbose, args.debug) == (
        "console" if "console" in argv else None, "-q" in argv, int("-v" in argv), "--debug" in argv)
