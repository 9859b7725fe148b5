"""One list of schemas the tool leaves alone, one owner of the bookkeeping DDL."""

from __future__ import annotations

import asyncpg

from loaders import bookkeeping
from loaders.data.catalog import user_schemas
from loaders.supabase import EXCLUDED_SCHEMAS, MANAGED_SCHEMAS
from tests.datakit import copy_all, fetchrows, prepare, run_sql


async def test_copy_skips_exactly_the_schemas_the_dump_leaves_out(source_db: str) -> None:
    # `_realtime` and `tiger` were missing from the data loader's twin list: copy asked for tables
    # the dump never created
    await run_sql(source_db, 'CREATE SCHEMA _realtime; CREATE SCHEMA tiger; CREATE SCHEMA supabase_to_rds; '
                             'CREATE SCHEMA auth; CREATE SCHEMA "app"')
    conn = await asyncpg.connect(source_db)
    try:
        schemas = await user_schemas(conn)
    finally:
        await conn.close()
    assert schemas == ["app", "public"]
    assert MANAGED_SCHEMAS < EXCLUDED_SCHEMAS and bookkeeping.SCHEMA in EXCLUDED_SCHEMAS


async def test_every_bookkeeping_table_comes_from_one_module(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    await copy_all(source_db, target_db, jobs=2)
    created = {f"{bookkeeping.SCHEMA}.{name}" for (name,) in await fetchrows(
        target_db, "SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r'",
        bookkeeping.SCHEMA)}
    assert created == set(bookkeeping.TABLES)  # created by the target's non-superuser owner
