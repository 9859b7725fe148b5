"""Smoke test for the benchmark kit at a tiny scale: the generator keeps its promises (tables,
exact row counts, indexes, foreign keys, the Supabase-like extras, determinism) and the raw
COPY|COPY pipe — the floor every tool is compared with — moves every row onto PG 18.
The full benchmark is not run in CI (`python bench/run.py`)."""

from __future__ import annotations

import os
import sys

import asyncpg
import anyio

from bench.generate import DEFAULT_SEED, describe, generate, table_row_counts, tables
from bench.rawpipe import precreate_tables, raw_pipe
from tests.conftest import create_database

TINY = 0.003  # ≈ 3 MiB of table data


async def _fetch_one(url: str, sql: str):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_generator_builds_the_promised_schema_and_rows(source_db: str, pg15) -> None:
    info = await generate(source_db, TINY, supabase_roles=False)

    spec = tables(TINY)
    assert len(spec) == 21
    conn = await asyncpg.connect(source_db)
    try:
        assert await table_row_counts(conn) == {t.name: t.rows(TINY) for t in spec} == info.rows
        big = max(info.rows, key=info.rows.get)
        assert big == "events"
        sizes = dict(await conn.fetch(
            "SELECT relname, pg_table_size(oid) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"))
        assert sizes["events"] > sum(sizes.values()) / 2  # one table holds most of the bytes
        assert info.data_bytes == sum(sizes.values())
        assert info.index_count == await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'")
        assert info.index_count >= 2 * len(spec)  # a few per table
        assert info.foreign_key_count == await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f'") >= 20
        types = {r["data_type"] for r in await conn.fetch(
            "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_schema = 'public'")}
        assert {"uuid", "jsonb", "text", "ARRAY", "bytea", "timestamp with time zone", "USER-DEFINED"} <= types
        assert await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND is_identity = 'YES'") >= 5
        assert await conn.fetchval("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'") == 2
        assert await conn.fetchval("SELECT count(*) FROM pg_views WHERE schemaname = 'public'") == 1
        assert await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 1
        # the identity sequences were moved past the explicit ids: a default insert does not collide
        await conn.execute("INSERT INTO public.projects (org_id, name) SELECT org_id, 'new' FROM public.projects LIMIT 1")
        # deterministic: the seed fixes the content, not just the counts
        assert await conn.fetchval("SELECT event_uuid::text FROM public.events WHERE id = 1") == await conn.fetchval(
            "SELECT md5($1 || ':event:' || 1)::uuid::text", DEFAULT_SEED)
    finally:
        await conn.close()

    again = await describe(source_db)
    assert again is None  # a row was added above: the dataset no longer matches its marker


async def test_describe_recognises_a_generated_dataset(source_db: str) -> None:
    info = await generate(source_db, TINY, supabase_roles=False, seed="other-seed")
    found = await describe(source_db)
    assert found is not None
    assert (found.scale, found.seed, found.rows, found.index_count) == (TINY, "other-seed", info.rows, info.index_count)


async def test_raw_pipe_moves_every_row(source_db: str, pg18) -> None:
    await generate(source_db, TINY, supabase_roles=False)
    target_db = await create_database(pg18, owner_is_superuser=False)  # RDS-like non-superuser owner

    await anyio.to_thread.run_sync(lambda: precreate_tables(source_db, target_db))
    assert await _fetch_one(target_db, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'") == 0
    copied = await anyio.to_thread.run_sync(lambda: raw_pipe(source_db, target_db, jobs=2))

    src = await asyncpg.connect(source_db)
    tgt = await asyncpg.connect(target_db)
    try:
        expected = await table_row_counts(src)
        assert await table_row_counts(tgt) == expected
        assert copied == {f"public.{name}": rows for name, rows in expected.items()}
        checksum = "SELECT md5(string_agg(e::text, '|' ORDER BY id)) FROM public.events e"
        assert await src.fetchval(checksum) == await tgt.fetchval(checksum)
    finally:
        await src.close()
        await tgt.close()


def test_rss_sampler_counts_the_whole_process_tree(tmp_path) -> None:
    """The tool's memory is measured over its children too (pg_dump | psql runs under bash)."""
    from bench.run import timed

    child = f"{sys.executable} -c 'x = bytearray(120 * 2**20); import time; time.sleep(0.6)'"
    seconds, rss_mib, pss_mib, code = timed(["bash", "-c", f"{child}; true"], dict(os.environ), tmp_path / "log", tmp_path)
    assert code == 0
    assert seconds >= 0.6
    assert rss_mib >= 120
    assert 100 <= pss_mib <= rss_mib + 1


def test_summary_reports_medians_rates_and_ratios_to_ours() -> None:
    from bench.generate import DatasetInfo
    from bench.run import TOOLS, RunResult, summarise

    info = DatasetInfo(scale=1, seed="s", rows={"a": 600, "b": 400}, index_count=1, foreign_key_count=0,
                       data_bytes=100 * 2**20)
    runs = [RunResult("pg_dump_psql", i, True, s, 10) for i, s in enumerate((12.0, 10.0, 30.0))]
    runs += [RunResult("ours", i, True, s, 50, report={"seconds": s, "phases": {"copy": c}})
             for i, (s, c) in enumerate(((4.0, 2.0), (5.0, 3.0), (6.0, 2.5)))]
    runs.append(RunResult("pgcopydb", 1, False, error="exit 1: boom"))
    picked = [t for t in TOOLS if t.key in ("pg_dump_psql", "pgcopydb", "ours")]
    by_key = {s.tool: s for s in summarise(picked, runs, info, {})}

    assert by_key["pg_dump_psql"].median_seconds == 12.0  # the median, not the mean (17.3)
    assert by_key["pg_dump_psql"].rows_per_s == round(1000 / 12.0)
    assert by_key["pg_dump_psql"].mb_per_s == round(100 / 12.0, 1)
    assert by_key["pg_dump_psql"].ours_over_tool == round(5.0 / 12.0, 2)
    assert by_key["ours"].ours_over_tool == 1.0
    assert by_key["ours"].phases == {"copy": 2.5}
    assert by_key["pgcopydb"].median_seconds is None and by_key["pgcopydb"].note == "exit 1: boom"
