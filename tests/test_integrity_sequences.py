"""Sequences: read once at the snapshot, set from that, never moved backwards, and verified as
"target at or ahead of the value recorded at sync" — so a live source verifies."""

from __future__ import annotations

import anyio
import asyncpg

from loaders.data.verify import verify
from loaders.dsn import parse_url
from loaders.migrate import MigrateOptions, migrate
from loaders.schema.stage import SchemaOptions
from tests.datakit import copy_all, fetchrows, fetchval, prepare, run_sql

LIVE_WRITES = """
INSERT INTO public.activity (task_id, action) VALUES (1, 'live');
SELECT nextval(c.oid) FROM pg_class c WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace;
"""


async def test_a_source_taking_nextval_during_migrate_verifies(seeded_source: str, target_db: str) -> None:
    src, tgt = parse_url(seeded_source, "source"), parse_url(target_db, "target")
    before = await fetchval(seeded_source, "SELECT last_value FROM public.tasks_id_seq")
    done = anyio.Event()
    writes = 0

    async def app_on_the_source() -> None:
        nonlocal writes
        conn = await asyncpg.connect(seeded_source)
        try:
            while not done.is_set():
                await conn.execute(LIVE_WRITES)
                writes += 1
                await anyio.sleep(0.01)
        finally:
            await conn.close()

    options = MigrateOptions(schema=SchemaOptions())
    options.copy.jobs = 2
    async with anyio.create_task_group() as tg:
        tg.start_soon(app_on_the_source)
        await anyio.sleep(0.2)  # the source is already moving when the snapshot is taken
        try:
            report = await migrate(src, tgt, options)
        finally:
            done.set()
    assert writes > 20
    assert report.verify is not None and report.ok, report.verify.mismatches()
    # the source moved on past what was recorded, and that is fine
    recorded = dict(await fetchrows(target_db, "SELECT sequence_name, last_value FROM supabase_to_rds.sequence_sync"))
    now = await fetchval(seeded_source, "SELECT last_value FROM public.tasks_id_seq")
    assert before < recorded["public.tasks_id_seq"] < now
    target = await fetchval(target_db, "SELECT last_value FROM public.tasks_id_seq")
    assert target == recorded["public.tasks_id_seq"]
    # rows written after the snapshot are not on the target, and the proof still holds
    assert await fetchval(target_db, "SELECT count(*) FROM public.activity") < await fetchval(
        seeded_source, "SELECT count(*) FROM public.activity")
    # a later verify's sequence checks still pass although the source kept going
    later = (await verify(src, tgt)).sequences
    assert later and all(s.ok for s in later)


async def test_a_rerun_never_moves_a_sequence_backwards(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    await run_sql(source_db, "CREATE SEQUENCE down_seq INCREMENT -1; SELECT nextval('down_seq'), nextval('down_seq');")
    await run_sql(target_db, "CREATE SEQUENCE down_seq INCREMENT -1")
    await copy_all(source_db, target_db, jobs=2)
    assert await fetchval(target_db, "SELECT last_value FROM customers_id_seq") == 41
    # the app writes on the target: a default id, an explicit id beyond the sequence, a descending draw
    await run_sql(target_db, """
        INSERT INTO customers (name) VALUES ('app');
        SELECT setval('orders_id_seq', 5);
        INSERT INTO orders (id, note) VALUES (1000, 'explicit id');
        SELECT nextval('down_seq'), nextval('down_seq'), nextval('down_seq');""")
    await copy_all(source_db, target_db, jobs=2, resume=True)
    assert await fetchval(target_db, "SELECT last_value FROM customers_id_seq") == 42  # kept, not 41
    assert await fetchrows(target_db, "SELECT last_value, is_called FROM orders_id_seq") == [(1000, True)]
    assert await fetchval(target_db, "SELECT last_value FROM down_seq") == -5  # source -2, then three draws on the target
    # the app's next inserts don't collide
    await run_sql(target_db, "INSERT INTO customers (name) VALUES ('app 2'); INSERT INTO orders (note) VALUES ('next')")
    assert await fetchval(target_db, "SELECT max(id) FROM orders") == 1001
    checks = {s.sequence: s for s in (await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))).sequences}
    assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
    assert checks["public.down_seq"].basis == "recorded at sync"


async def test_verify_fails_a_target_sequence_behind_the_recorded_value(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    await copy_all(source_db, target_db, jobs=2)
    await run_sql(target_db, "SELECT setval('standalone_seq', 40)")
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.mismatches() == ["public.standalone_seq"]
    check = next(s for s in result.sequences if s.sequence == "public.standalone_seq")
    assert (check.source, check.target) == ((41, True), (40, True))
