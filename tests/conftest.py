"""Real servers for the whole suite: PG 18 (embedded wheel) as the RDS stand-in, Debian's
PG 15 as the Supabase-like older source. Each test gets fresh databases on them; the
target database is owned by a non-superuser, like RDS's master user.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from loaders.localpg import FAST_UNSAFE, LocalPostgres, debian_bin_dir, embedded_bin_dir, rds_like_database

SOURCE_MAJOR = 15
RDS_MASTER = "rds_master"


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, bin_dir: Path, *, rds_like: bool = False) -> LocalPostgres:
    server = LocalPostgres(tmp_path_factory.mktemp(name) / "data", bin_dir=bin_dir, settings=FAST_UNSAFE,
                           rds_like=rds_like)
    return server.start()


@pytest.fixture(scope="session")
def pg18(tmp_path_factory: pytest.TempPathFactory):
    server = _server(tmp_path_factory, "pg18", embedded_bin_dir(), rds_like=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg15(tmp_path_factory: pytest.TempPathFactory):
    bin_dir = debian_bin_dir(SOURCE_MAJOR)
    if bin_dir is None:
        pytest.fail("Debian postgresql-15 is not installed: run `bash .ci/run` or `apt-get install postgresql-15`")
    server = _server(tmp_path_factory, "pg15", bin_dir)
    yield server
    server.stop()


async def create_database(server: LocalPostgres, *, owner_is_superuser: bool = True) -> str:
    """A new empty database; with owner_is_superuser=False it belongs to an RDS-like master role
    (CREATEDB, CREATEROLE, no SUPERUSER) and the URL logs in as that role."""
    name = "db_" + secrets.token_hex(6)
    if not owner_is_superuser:
        return await rds_like_database(server, name, RDS_MASTER)
    admin = await asyncpg.connect(server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.url(name)


@pytest.fixture
async def source_db(pg15: LocalPostgres) -> AsyncIterator[str]:
    """A fresh database on the PG 15 source server (superuser-owned, like Supabase's postgres)."""
    yield await create_database(pg15)


@pytest.fixture
async def target_db(pg18: LocalPostgres) -> AsyncIterator[str]:
    """A fresh database on the PG 18 target, owned by a non-superuser (RDS's master user)."""
    yield await create_database(pg18, owner_is_superuser=False)


@pytest.fixture
async def seeded_source(pg15: LocalPostgres) -> AsyncIterator[str]:
    """The bundled Supabase-shaped demo project with its demo rows, on the PG 15 source."""
    from automation.sample import sample_sql, supabase_source_sql

    url = await create_database(pg15)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(supabase_source_sql())
        await conn.execute(sample_sql("seed.sql"))
    finally:
        await conn.close()
    yield url
