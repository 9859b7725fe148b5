"""ANALYZE: the target gets planner statistics before it is declared ready.

COPY leaves a new table with no statistics, and autovacuum reaches it only after its own
thresholds and naptime — until then the app's first queries after cutover are planned
blind (pg_restore analyzes nothing; pgcopydb runs VACUUM ANALYZE per table). A partitioned
parent is analyzed through its root, which samples across the partitions and recurses into
each of them; autovacuum never analyzes partitioned parents at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import anyio
import asyncpg
import structlog

from loaders.concurrency import task_group
from loaders.connect import create_pool
from loaders.data.catalog import Table, table_key
from loaders.dsn import DatabaseUrl

log = structlog.get_logger(stage="analyze")

# Roots of the copied tables on the target: a plain table is its own root.
_ROOTS_SQL = """
SELECT DISTINCT coalesce(pg_partition_root(t::regclass), t::regclass)::regclass::text AS root,
       format('%I.%I', n.nspname, c.relname) AS ident
FROM unnest($1::text[]) AS t
JOIN pg_class c ON c.oid = coalesce(pg_partition_root(t::regclass), t::regclass)
JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY 2
"""


# Each copied table (as given) with its root's schema and name on the target.
_ROOT_OF_SQL = """
SELECT t AS ident, n.nspname AS schema, c.relname AS name
FROM unnest($1::text[]) AS t
JOIN pg_class c ON c.oid = coalesce(pg_partition_root(t::regclass), t::regclass)
JOIN pg_namespace n ON n.oid = c.relnamespace
"""


@dataclass
class AnalyzeReport:
    relations: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def roots_of(conn: asyncpg.Connection, tables: Seq[Table]) -> dict[str, str]:
    """Table key → the key of the root relation ANALYZE is run on (itself unless a partition)."""
    rows = await conn.fetch(_ROOT_OF_SQL, [t.ident for t in tables])
    by_ident = {t.ident: t.key for t in tables}
    return {by_ident[r["ident"]]: table_key(r["schema"], r["name"]) for r in rows}


async def analyze(conn: asyncpg.Connection, ident: str) -> None:
    await conn.execute(f"ANALYZE {ident}")
    log.debug("analyzed", table=ident)


async def analyze_tables(target: DatabaseUrl, tables: Seq[Table], jobs: int) -> AnalyzeReport:
    """ANALYZE every copied table's root relation, `jobs` at a time."""
    report = AnalyzeReport()
    if not tables:
        return report
    started = time.perf_counter()
    pool: asyncpg.Pool = await create_pool(target, max(1, jobs))
    try:
        roots = [r["ident"] for r in await pool.fetch(_ROOTS_SQL, [t.ident for t in tables])]
        limiter = anyio.CapacityLimiter(max(1, jobs))

        async def one(ident: str) -> None:
            async with limiter, pool.acquire() as conn:
                await analyze(conn, ident)

        async with task_group() as tg:
            for ident in roots:
                tg.start_soon(one, ident)
    finally:
        await pool.close()
    report.relations = roots
    report.seconds = time.perf_counter() - started
    log.info("analyzed", tables=len(roots), seconds=round(report.seconds, 3))
    return report
