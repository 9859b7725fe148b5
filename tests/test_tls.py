"""TLS on both sides: the default by host, verify-full with a CA, and one clear line when it fails.

The real connections go to a PG 15 server with ssl=on and a certificate from a CA made in this
run (tests/tls_support.py). The "remote host ⇒ require" default is tested twice: through the
decision function for every kind of host, and over a real connection that uses the mode
chosen for a remote host name, sent to a second loopback address (tests stay on loopback).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from loaders.connect import connect, connection, create_pool
from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.localpg import debian_bin_dir, embedded_bin_dir
from loaders.schema.export import choose_pg_dump, dump_command, dump_schema, run_pg_dump, speaks_tls
from tests.tls_support import TLS_USER, TlsServer, start_tls_server

REMOTE = "postgresql://postgres.abcd:s3cret-pw@db.abcdefgh.supabase.co:5432/postgres"


@pytest.fixture(scope="module")
async def tls(tmp_path_factory: pytest.TempPathFactory):
    bin_dir = debian_bin_dir(15)
    if bin_dir is None:
        pytest.fail("Debian postgresql-15 (built with OpenSSL) is needed for the TLS server")
    server = start_tls_server(tmp_path_factory.mktemp("tls"), bin_dir)
    admin = await asyncpg.connect(server.url(host="127.0.0.1"), ssl=False)
    try:
        await admin.execute(f"CREATE ROLE {TLS_USER} LOGIN PASSWORD $pw${server.server.password}$pw$")
    finally:
        await admin.close()
    yield server
    server.server.stop()


async def uses_tls(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


# --- the decision: which sslmode for which host ------------------------------------------------

@pytest.mark.parametrize("host, expected", [
    ("db.abcdefgh.supabase.co", "require"),
    ("aws-0-eu-west-1.pooler.supabase.com", "require"),
    ("mydb.abc123.eu-west-1.rds.amazonaws.com", "require"),
    ("10.0.3.7", "require"),
    ("[2001:db8::5]", "require"),
    ("vm", "require"),  # a name that may resolve to 127.0.0.1 is still judged remote (no DNS)
    ("127.0.0.1", "prefer"),
    ("127.0.0.53", "prefer"),
    ("localhost", "prefer"),
    ("[::1]", "prefer"),
])
@pytest.mark.parametrize("role", ["source", "target"])
def test_remote_hosts_require_tls_and_loopback_keeps_libpq_default(host: str, expected: str, role: str) -> None:
    url = parse_url(f"postgresql://u:pw-secret@{host}:5432/db", role)
    assert url.sslmode == expected
    assert url.libpq_env()["PGSSLMODE"] == expected
    assert f"sslmode={expected}" in url.dsn(with_password=False)


def test_unix_socket_is_local() -> None:
    assert parse_url("postgresql://u@/db?host=/var/run/postgresql", "source").sslmode == "prefer"


def test_a_ca_file_means_verify_full_for_asyncpg_and_pg_dump(tls: TlsServer) -> None:
    url = parse_url(REMOTE, "source", ca=str(tls.ca_file))
    assert (url.sslmode, url.sslrootcert) == ("verify-full", str(tls.ca_file))
    env = url.libpq_env()
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", str(tls.ca_file))
    argv = dump_command(Path("pg_dump"), url, "pre-data", "k")
    assert "s3cret-pw" not in " ".join(argv) and env["PGPASSWORD"] == "s3cret-pw"
    assert "sslmode=verify-full" in argv[-1]


def test_explicit_sslmode_wins_but_plaintext_to_a_remote_host_is_warned(tls: TlsServer) -> None:
    with capture_logs() as logs:
        url = parse_url(REMOTE + "?sslmode=disable", "target")
    assert url.sslmode == "disable"
    assert [e["event"] for e in logs] == ["tls_not_required"]
    assert parse_url(REMOTE + "?sslmode=verify-ca", "source", ca=str(tls.ca_file)).sslmode == "verify-ca"


@pytest.mark.parametrize("query, ca, role, expected", [
    ("sslmode=require", "GOOD", "source", "sslmode=require but --source-ca asks to verify"),
    ("sslmode=prefer", "GOOD", "target", "sslmode=prefer but --ca-bundle asks to verify"),
    ("sslmode=verify-full", None, "target", "no CA certificate is given — fix: pass the server's CA file with --ca-bundle"),
    ("sslmode=bogus", None, "source", "sslmode must be one of"),
    ("", "MISSING", "source", "does not exist — fix: download the server's CA certificate and pass its path with --source-ca"),
    ("", "NOT_PEM", "target", "is not a PEM certificate file"),
])
def test_tls_mistakes_are_one_line_with_the_fix(tls: TlsServer, tmp_path: Path, query: str, ca: str | None,
                                               role: str, expected: str) -> None:
    not_pem = tmp_path / "notpem.crt"
    not_pem.write_text("not a certificate\n")
    files = {"GOOD": str(tls.ca_file), "MISSING": str(tmp_path / "nope.pem"), "NOT_PEM": str(not_pem), None: None}
    with pytest.raises(MigrationError) as info:
        parse_url(REMOTE + (f"?{query}" if query else ""), role, ca=files[ca])
    line = info.value.one_line()
    assert expected in line and "\n" not in line and "s3cret-pw" not in line


# --- real servers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["source", "target"])
async def test_verify_full_with_the_right_ca_connects_over_tls(tls: TlsServer, role: str) -> None:
    url = parse_url(tls.url(user=TLS_USER), role, ca=str(tls.ca_file))
    assert url.sslmode == "verify-full"
    async with connection(url) as conn:
        assert await uses_tls(conn)
    pool = await create_pool(url, 2)
    try:
        async with pool.acquire() as conn:
            assert await uses_tls(conn)
    finally:
        await pool.close()


@pytest.mark.parametrize("role, flag", [("source", "--source-ca"), ("target", "--ca-bundle")])
async def test_verify_full_with_a_wrong_ca_fails_in_one_line(tls: TlsServer, role: str, flag: str) -> None:
    url = parse_url(tls.url(user=TLS_USER), role, ca=str(tls.wrong_ca_file))
    with pytest.raises(MigrationError) as info:
        await connect(url)
    line = info.value.one_line()
    assert f"{role} {TLS_USER}@localhost" in line
    assert "TLS certificate is not signed by the CA in" in line and flag in line
    assert "unreachable" not in line and "\n" not in line and tls.server.password not in line


async def test_a_certificate_for_another_name_is_refused(tls: TlsServer) -> None:
    """The certificate names localhost and 127.0.0.1 only; 127.0.0.2 reaches the same server
    under a name the certificate does not carry."""
    url = parse_url(tls.url(host=tls.remote_address, user=TLS_USER), "target", ca=str(tls.ca_file))
    with pytest.raises(MigrationError, match=f"not valid for host '{tls.remote_address}'"):
        await connect(url)


@pytest.mark.parametrize("role", ["source", "target"])
async def test_require_against_a_server_without_tls_says_so(pg18, role: str) -> None:
    url = parse_url(pg18.url() + "?sslmode=require", role)
    for attempt in (connect(url), create_pool(url, 1)):
        with pytest.raises(MigrationError) as info:
            await attempt
        line = info.value.one_line()
        assert f"{role} postgres@127.0.0.1:{pg18.port}/postgres: TLS required but the server offers none" in line
        assert "unreachable" not in line and pg18.password not in line


async def test_loopback_without_tls_keeps_working(pg18) -> None:
    url = parse_url(pg18.url(), "target")
    assert url.sslmode == "prefer"
    async with connection(url) as conn:
        assert await uses_tls(conn) is False


async def test_a_remote_host_gets_tls_by_default_and_refuses_plaintext(tls: TlsServer) -> None:
    remote = parse_url(tls.url(host="db.abcdefghij.supabase.co"), "source")
    assert remote.sslmode == "require"
    url = replace(remote, host=tls.remote_address)  # the mode chosen for a remote host, sent to loopback
    async with connection(url) as conn:
        assert await uses_tls(conn)
    admin = await asyncpg.connect(tls.url(host="127.0.0.1"), ssl=False)
    try:
        await admin.execute("ALTER SYSTEM SET ssl = off")
        await admin.execute("SELECT pg_reload_conf()")
        with pytest.raises(MigrationError, match="TLS required but the server offers none"):
            await connect(url)
    finally:
        await admin.execute("ALTER SYSTEM RESET ssl")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()


async def test_pg_dump_verifies_the_server_with_the_same_ca(tls: TlsServer) -> None:
    """The TLS-only role gets in over hostssl alone, so a dump that succeeds went over TLS."""
    dump = await dump_schema(parse_url(tls.url(user=TLS_USER), "source", ca=str(tls.ca_file)))
    assert dump.server_version // 10000 == 15
    wrong = parse_url(tls.url(user=TLS_USER), "source", ca=str(tls.wrong_ca_file))
    with pytest.raises(MigrationError) as info:
        await run_pg_dump(debian_bin_dir(15) / "pg_dump", wrong, "pre-data")  # type: ignore[operator]
    line = info.value.one_line()
    assert "pg_dump --section=pre-data" in line and "certificate verify failed" in line
    assert tls.server.password not in line


async def test_a_pg_dump_without_tls_is_named_before_it_runs(tls: TlsServer) -> None:
    wheel = embedded_bin_dir() / "pg_dump"
    debian = debian_bin_dir(15) / "pg_dump"  # type: ignore[operator]
    assert await speaks_tls(debian) and not await speaks_tls(wheel)
    url = parse_url(tls.url(user=TLS_USER), "source", ca=str(tls.ca_file))
    with pytest.raises(MigrationError) as info:
        await choose_pg_dump(url, 15, wheel)
    assert "needs TLS (sslmode=verify-full) but pg_dump" in info.value.one_line()
    assert "fix: install PostgreSQL 15+ client tools with TLS" in info.value.one_line()
    assert (await choose_pg_dump(url, 15, None))[0] != wheel


def test_the_ca_flags_reach_both_sides_through_the_cli(tls: TlsServer, tmp_path: Path) -> None:
    """--source-ca and --ca-bundle are wired on the real CLI: a wrong CA on either side stops
    that side, with the flag to fix named; the right CA on the other side gets through."""
    from tests.test_secrets_cli import one_error_line, run_cli

    url_file = tmp_path / "url"
    url_file.write_text(tls.url(user=TLS_USER) + "\n")
    url_file.chmod(0o600)
    for (source_ca, target_ca), role, flag in (((tls.wrong_ca_file, tls.ca_file), "source", "--source-ca"),
                                               ((tls.ca_file, tls.wrong_ca_file), "target", "--ca-bundle")):
        result = run_cli("verify", "--source-file", str(url_file), "--source-ca", str(source_ca),
                         "--target-file", str(url_file), "--ca-bundle", str(target_ca))
        assert result.returncode == 1
        line = one_error_line(result.stderr)
        assert line.startswith(f"error: {role} {TLS_USER}@localhost") and "not signed by the CA" in line and flag in line
        assert tls.server.password not in result.stdout + result.stderr
