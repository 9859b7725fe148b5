"""Interruptions: Ctrl-C mid-table resumes to identical checksums; a dropped connection is retried;
writes on the source during the copy stay invisible (one snapshot)."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import asyncpg
import pytest

from loaders.data.copy import CopyOptions, build_copy_plan, copy_tables, restore_after_failure
from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.data.sequences import sync_sequences
from loaders.data.snapshot import open_snapshot
from loaders.data.verify import verify
from tests.datakit import copy_all, fetchrows, fetchval, prepare, run_sql

BULK_ROWS = 30_000


@dataclass
class Hook:
    """A progress observer that acts when the bulk table is streaming."""

    on_bulk_chunk: object = None
    starts: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    chunks: int = 0

    def started(self, unit: str, expected_bytes: int) -> None:
        self.starts.append(unit)

    def advanced(self, unit: str, nbytes: int, rows: int | None) -> None:
        if unit.startswith("public.bulk"):
            self.chunks += 1
            if self.on_bulk_chunk:
                self.on_bulk_chunk()  # type: ignore[operator]

    def finished(self, unit: str, rows: int, nbytes: int, seconds: float) -> None:
        self.done.append(unit)


@pytest.mark.parametrize("split", [False, True], ids=["one-stream", "ranges"])
async def test_cancelled_copy_resumes_to_identical_checksums(source_db: str, target_db: str, split: bool) -> None:
    await prepare(source_db, target_db, bulk=BULK_ROWS)
    extra = {"split_bytes": 256 * 1024, "max_ranges": 3} if split else {}
    small = {'"App Data"."Weird ""Name"" T"', "public.customers", "public.orders", "public.audit", "public.events_2024", "public.events_2025",
             "public.event_log", "public.profiles"}
    hook = Hook()
    # Hold the big table's TRUNCATE back (a lock on the target) until the small tables are
    # committed, then press "Ctrl-C" on its first streamed chunk: a deterministic mid-table stop.
    holder = await asyncpg.connect(target_db)
    await holder.execute("BEGIN; LOCK TABLE bulk IN ACCESS SHARE MODE")

    async def release_when_small_tables_are_in() -> None:
        while not small <= set(hook.done):
            await anyio.sleep(0.01)
        await holder.execute("COMMIT")

    with anyio.fail_after(60), anyio.CancelScope() as scope:
        hook.on_bulk_chunk = scope.cancel
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_when_small_tables_are_in)
            await copy_all(source_db, target_db, jobs=2, progress=hook, **extra)
    await holder.close()
    assert scope.cancelled_caught and hook.chunks >= 1, (hook.chunks, hook.done)
    states = dict(await fetchrows(target_db, "SELECT table_name, status FROM supabase_to_rds.copy_state"))
    assert {k for k, v in states.items() if v == "done"} == small
    assert states.get("public.bulk") == ("started" if split else None)  # never 'done' for half a table
    if not split:  # one transaction: the half-streamed rows were rolled back
        assert await fetchval(target_db, "SELECT count(*) FROM bulk") == 0
    # the load guard put everything back on the way out of the cancelled run
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    assert await fetchval(target_db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'") == 0
    assert (await restore_after_failure(parse_url(target_db, "target"))).restored == {}  # nothing left to do

    with pytest.raises(MigrationError, match="not empty"):  # a plain rerun refuses what the first run wrote
        await copy_all(source_db, target_db, jobs=2, **extra)
    report = await copy_all(source_db, target_db, jobs=2, resume=True, **extra)
    assert [t.table for t in report.tables] == ["public.bulk"] and set(report.skipped) == small
    assert report.tables[0].ranges == (3 if split else 1)
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.ok, result.mismatches()
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    assert await fetchval(target_db, "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'orders_audit'") == "O"


async def test_dropped_target_connection_is_retried(source_db: str, target_db: str) -> None:
    """The bulk table's first attempt is held on a lock, its target session killed there, and the
    unit is redone from scratch on a fresh connection."""
    await prepare(source_db, target_db, bulk=BULK_ROWS)
    hook = Hook()
    holder = await asyncpg.connect(target_db)
    await holder.execute("BEGIN; LOCK TABLE bulk IN ACCESS SHARE MODE")

    async def kill_the_waiting_truncate() -> None:
        killer = await asyncpg.connect(target_db)  # not `holder`: activity is frozen inside its transaction
        killed = False
        while not killed:
            await anyio.sleep(0.01)
            killed = bool(await killer.fetchval("""
                SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'TRUNCATE%bulk%'"""))
        await killer.close()
        await holder.execute("COMMIT")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_the_waiting_truncate)
            await copy_all(source_db, target_db, jobs=2, progress=hook)
    await holder.close()
    assert hook.starts.count("public.bulk") == 2  # killed once, redone from scratch
    assert (await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))).ok


async def test_source_writes_during_copy_are_invisible(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    src, tgt = parse_url(source_db, "source"), parse_url(target_db, "target")
    options = CopyOptions(jobs=2)
    async with open_snapshot(src, readers=2) as snap:
        plan = await build_copy_plan(snap, tgt, options)
        await run_sql(source_db, """DELETE FROM audit WHERE order_id <= 10;
                                    INSERT INTO customers (name) VALUES ('late');
                                    UPDATE orders SET note = 'changed' WHERE id = 5;
                                    SELECT nextval('standalone_seq');""")
        await copy_tables(snap, tgt, plan, options)
        await sync_sequences(snap, tgt, sequences=plan.catalog.sequences)
        inside = await verify(snap, tgt)
    assert inside.ok, inside.mismatches()
    assert await fetchval(target_db, "SELECT count(*) FROM audit") == 60
    now = await verify(src, tgt)
    assert set(now.mismatches()) == {"public.audit", "public.customers", "public.orders"}
    # sequences are not transactional: a snapshot can't freeze them, so they are read when set,
    # which is never behind any value the copied rows used (safe for uniqueness)
    assert await fetchval(target_db, "SELECT last_value FROM standalone_seq") == 42


async def test_snapshot_import_failure_explains_the_pooler(source_db: str) -> None:
    async with open_snapshot(parse_url(source_db, "source"), readers=1) as snap:
        snap.snapshot_id = "00000003-0000FFFF-1"  # what a reader sees on another backend behind a pooler
        with pytest.raises(MigrationError) as info:
            async with snap.reader():
                pass
    assert "transaction mode" in info.value.cause and "session pooler" in (info.value.fix or "")
