"""Passwords never leave the process: real CLI subprocesses, real servers, every output read back.

A password with an unencoded `/`, `#` or `?` breaks URL parsing, and a parser's error used to
quote the piece it choked on; one with an unencoded `@` or `:` parses (the userinfo ends at
the last `@`). Either way nothing of it may reach stdout, stderr or a report. URLs come from
argv (warned about: visible in `ps`), a file (`--source-file`), or the environment.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

REPO = Path(__file__).resolve().parent.parent
ARGV_WARNING = "password_on_command_line"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATABASE_URL", "TARGET_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "automation", *args], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def pieces(password: str) -> list[str]:
    """The password and every run of it between special characters: a mis-split URL leaks pieces."""
    return [password, *(p for p in re.split(r"[/#?@:]", password) if len(p) >= 3)]


def assert_hidden(password: str, *texts: str) -> None:
    for text in texts:
        for piece in pieces(password):
            assert piece not in text, f"{piece!r} leaked"


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def password_with(special: str) -> str:
    return f"Qx{secrets.token_hex(3)}{special}Zr{secrets.token_hex(3)}"


@pytest.mark.parametrize("special", ["/", "#", "?", "/#?"])
@pytest.mark.parametrize("how", ["argv", "file", "env"])
def test_an_unparseable_password_never_appears(special: str, how: str, tmp_path: Path, pg18) -> None:
    password = password_with(special)
    url = f"postgresql://app:{password}@127.0.0.1:{pg18.port}/postgres"
    good = pg18.url()
    report = tmp_path / "report.json"
    url_file = tmp_path / "source.url"
    url_file.write_text(f"# the source\n{url}\n")
    url_file.chmod(0o600)
    given = {"argv": (["--source", url], {}), "file": (["--source-file", str(url_file)], {}),
             "env": ([], {"SOURCE_DATABASE_URL": url})}[how]
    result = run_cli("verify", *given[0], "--target", good, "--report", str(report), env=given[1])
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "source URL is not a valid PostgreSQL URL" in line and "unencoded /, # or ?" in line and "%2F" in line
    assert_hidden(password, result.stdout, result.stderr)
    assert not report.exists()


@pytest.mark.parametrize("url, cause", [
    ("postgresql://app:Hidden-pw-1@127.0.0.1/db?port=abc", "the port is not a number from 1 to 65535"),
    ("postgresql://app:Hidden-pw-1@127.0.0.1:99999/db", "the port is not a number from 1 to 65535"),
    ("postgresql://app:Hidden-pw-1@[::1/db", "the host cannot be read"),
    ("postgresql://app:Hidden-pw-1@127.0.0.1/db?sslmode=please", "sslmode must be one of"),
    ("mysql://app:Hidden-pw-1@127.0.0.1/db", "expected postgresql://"),
])
def test_other_bad_urls_are_one_line_without_the_password(url: str, cause: str) -> None:
    result = run_cli("verify", "--source", url, "--target", url)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert cause in line
    assert "Hidden-pw-1" not in result.stdout + result.stderr


@pytest.fixture
async def odd_password_dbs(source_db: str, target_db: str, pg15, pg18) -> tuple[str, str, str]:
    """A role on both servers whose password has unencoded `@` and `:`, and one equal table on each side."""
    password = f"Ab@{secrets.token_hex(3)}:Cd@{secrets.token_hex(3)}"
    role = "odd_" + secrets.token_hex(4)
    urls = []
    for server, db_url in ((pg15, source_db), (pg18, target_db)):
        admin_db = server.url(db_url.rsplit("/", 1)[1])
        conn = await asyncpg.connect(admin_db)
        try:
            await conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD $pw${password}$pw$")
            await conn.execute("CREATE TABLE public.things (id int PRIMARY KEY, note text);"
                               "INSERT INTO public.things SELECT g, 'n' || g FROM generate_series(1, 20) g")
        finally:
            await conn.close()
        host_db = admin_db.rsplit("@", 1)[1]
        urls.append(f"postgresql://{role}:{password}@{host_db}")
    return password, urls[0], urls[1]


async def test_odd_password_works_from_argv_with_a_warning_and_never_shows(odd_password_dbs, tmp_path: Path) -> None:
    password, source, target = odd_password_dbs
    report = tmp_path / "verify.json"
    result = run_cli("verify", "--source", source, "--target", target, "--json", "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert '"ok": true' in result.stdout
    assert result.stderr.count(ARGV_WARNING) == 2  # one line per side
    assert "SOURCE_DATABASE_URL" in result.stderr and "--target-file" in result.stderr
    assert_hidden(password, result.stdout, result.stderr, report.read_text())


async def test_env_and_file_are_quiet_and_a_readable_file_is_warned(odd_password_dbs, tmp_path: Path) -> None:
    password, source, target = odd_password_dbs
    url_file = tmp_path / "target.url"
    url_file.write_text(target + "\n")
    url_file.chmod(0o600)
    quiet = run_cli("verify", "--target-file", str(url_file), env={"SOURCE_DATABASE_URL": source})
    assert quiet.returncode == 0, quiet.stderr
    assert ARGV_WARNING not in quiet.stderr and "url_file_readable_by_others" not in quiet.stderr
    url_file.chmod(0o644)
    loud = run_cli("verify", "--target-file", str(url_file), env={"SOURCE_DATABASE_URL": source})
    assert loud.returncode == 0 and "url_file_readable_by_others" in loud.stderr and "chmod 600" in loud.stderr
    assert_hidden(password, quiet.stdout, quiet.stderr, loud.stdout, loud.stderr)


async def test_a_wrong_odd_password_is_named_without_it(odd_password_dbs) -> None:
    password, source, target = odd_password_dbs
    wrong = password[::-1]
    result = run_cli("verify", "--source", source.replace(password, wrong), "--target", target)
    assert result.returncode == 1
    assert "password authentication failed" in one_error_line(result.stderr)
    assert_hidden(password, result.stdout, result.stderr)
    assert_hidden(wrong, result.stdout, result.stderr)


def test_missing_and_double_urls_name_every_way(tmp_path: Path) -> None:
    missing = run_cli("verify", "--target", "postgresql://a:Hidden-pw-2@127.0.0.1/db")
    assert "no source database URL given — fix: set SOURCE_DATABASE_URL, or pass --source-file FILE" in missing.stderr
    unreadable = run_cli("verify", "--source-file", str(tmp_path / "nope"), "--target", "postgresql://a@127.0.0.1/db")
    assert "source URL file" in one_error_line(unreadable.stderr) and "cannot be read" in unreadable.stderr
    both = run_cli("verify", "--source", "postgresql://a:Hidden-pw-2@h/db", "--source-file", "f")
    assert both.returncode != 0 and "not allowed with argument" in both.stderr
    assert "Hidden-pw-2" not in missing.stderr + both.stderr + unreadable.stderr
