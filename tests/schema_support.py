"""Shared helpers for the schema tests: Supabase-shaped databases and a reference run of a
migrations folder the way Supabase itself would run it (raw SQL, no cleaning)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from loaders.localpg import LocalPostgres
from automation.sample import supabase_source_sql
from loaders.dsn import DatabaseUrl, parse_url
from loaders.schema.migrations import read_folder
from loaders.schema.apply import apply_statements
from loaders.schema.clean import split_statements
from loaders.schema.target import extension_of
from tests.conftest import create_database
from tests.datakit import run_sql as execute

MIGRATIONS = Path(__file__).parent / "fixtures" / "supabase_migrations"


async def supabase_source(server: LocalPostgres) -> str:
    """A fresh database holding the Supabase-shaped sample project (platform + app)."""
    url = await create_database(server)
    await execute(url, supabase_source_sql())
    return url


async def supabase_like(server: LocalPostgres) -> str:
    """Supabase's platform scaffolding (roles, auth, storage, extensions, realtime) with an
    empty public schema: where a team's migrations folder runs on Supabase."""
    url = await supabase_source(server)
    await execute(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    return url


async def apply_reference(url: str, folder: Path = MIGRATIONS) -> None:
    """Run the folder as Supabase does: raw statements, file by file. Statements that never
    ran on Supabase either (unparsable) are skipped, and CREATE EXTENSION of platform
    extensions this server lacks is skipped, as Supabase has them preinstalled."""
    conn = await asyncpg.connect(url)
    try:
        available = {r[0] for r in await conn.fetch("SELECT name FROM pg_available_extensions")}
        for unit in read_folder(folder):
            statements = [
                s for s in split_statements(unit.text, source_name=unit.name, skip_invalid=True)
                if s.kind != "CREATE EXTENSION" or extension_of(s)[0] in available
            ]
            own = any(s.kind in ("BEGIN", "COMMIT") for s in statements)
            await apply_statements(conn, statements, own_transactions=own)
    finally:
        await conn.close()


def source_url(url: str) -> DatabaseUrl:
    return parse_url(url, "source")


def target_url(url: str) -> DatabaseUrl:
    return parse_url(url, "target")


async def public_columns(url: str) -> set[tuple[str, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {(r[0], r[1], r[2]) for r in rows}
