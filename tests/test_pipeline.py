"""`migrate`'s per-table pipeline on real PG 15 → PG 18 servers: a table's indexes are built
while another table is still copying, everything ends built, valid and analyzed, and a run
stopped in the overlapped stage (a failing post-data statement, a cancel) resumes without
"already exists"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import anyio
import pytest

from loaders.dsn import DatabaseUrl, parse_url
from loaders.localpg import LocalPostgres
from loaders.migrate import MigrateOptions, MigrationFailed, migrate, with_resume
from loaders.data.copy import CopyOptions
from loaders.schema.post_data import Step, plan_post_data
from loaders.schema.clean import split_statements
from loaders.schema.stage import SchemaOptions, prepare_schema
from tests.datakit import DATA, SCHEMA, bulk_rows, fetchrows, fetchval, run_sql

BULK_ROWS = 20_000
# An expression index whose function refuses to run while the target database sets
# app.block_index: a post-data statement that really fails on the target, on one table only.
GUARDED_INDEX = """
CREATE FUNCTION public.guarded(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF current_setting('app.block_index', true) = 'on' THEN
        RAISE EXCEPTION 'index builds are blocked here';
    ELSIF current_setting('app.block_index', true) = 'sleep' THEN
        PERFORM pg_sleep(600);  -- until the test terminates this backend
    END IF;
    RETURN lower(t);
END $$;
CREATE INDEX bulk_guarded_idx ON public.bulk (public.guarded(payload));
"""
# Indexes, constraints and triggers of the user schemas, by name: what both sides must hold.
OBJECTS = """
SELECT 'index ' || i.indexrelid::regclass::text || ' valid=' || i.indisvalid FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname IN ('public', 'App Data')
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || contype::text || ' validated=' || convalidated
  FROM pg_constraint WHERE contype <> 'n' AND connamespace::regnamespace::text IN ('public', '"App Data"') AND conrelid <> 0
UNION ALL
SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
ORDER BY 1
"""
# Tables (incl. partitions and partitioned parents) that have no planner statistics.
UNANALYZED = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'App Data')
  AND NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname)
"""
RECORDED = "SELECT count(*) FROM supabase_to_rds.post_data_statements"


def _options(**copy: object) -> MigrateOptions:
    return MigrateOptions(copy=CopyOptions(jobs=2, **copy))  # type: ignore[arg-type]


async def _source(url: str, extra: str = "") -> None:
    # Without datakit's views: PG 15 and PG 18 print view definitions differently (schema diff).
    await run_sql(url, SCHEMA + DATA + bulk_rows(BULK_ROWS) + ";\n"
                  "DROP VIEW order_view; DROP MATERIALIZED VIEW order_counts;\n" + extra)


async def _hold(target: str, table: str) -> asyncpg.Connection:
    """A target session holding a lock that keeps `table`'s TRUNCATE (so its copy) waiting."""
    holder = await asyncpg.connect(target)
    await holder.execute(f"BEGIN; LOCK TABLE {table} IN ACCESS SHARE MODE")
    return holder


async def _wait_for(target: str, sql: str) -> None:
    while not await fetchval(target, sql):
        await anyio.sleep(0.05)


async def _failing_migrate_beside(helper: Callable[[], Awaitable[None]], src: DatabaseUrl,
                                  tgt: DatabaseUrl) -> MigrationFailed:
    """`migrate` with `helper` running beside it, expected to fail: the failure."""
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(helper)
            with pytest.raises(MigrationFailed) as failed:
                await migrate(src, tgt, _options())
    return failed.value


# orders' key and index are built (each statement commits with its bookkeeping row).
ORDERS_BUILT = "SELECT to_regclass('public.orders_pkey') IS NOT NULL AND to_regclass('public.orders_at_idx') IS NOT NULL"


async def test_a_table_is_built_analyzed_and_proven_while_another_still_copies(source_db: str, target_db: str) -> None:
    await _source(source_db)
    src, tgt = parse_url(source_db, "source"), parse_url(target_db, "target")
    await prepare_schema(src, tgt, SchemaOptions())  # the tables exist, so one of them can be held
    holder = await _hold(target_db, "public.bulk")
    seen: dict[str, object] = {}

    async def observe_then_release() -> None:
        await _wait_for(target_db, ORDERS_BUILT)
        # orders' index and primary key exist and orders is analyzed, while bulk is not copied yet.
        seen["bulk_state"] = await fetchval(
            target_db, "SELECT status FROM supabase_to_rds.copy_state WHERE table_name = 'public.bulk'")
        # (not `count(*) FROM bulk`: that would queue behind the copy's waiting TRUNCATE)
        seen["bulk_waiting"] = await fetchval(
            target_db, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.bulk'::regclass AND NOT granted)")
        seen["orders_pkey"] = await fetchval(target_db, "SELECT to_regclass('public.orders_pkey') IS NOT NULL")
        await _wait_for(target_db, "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE tablename = 'orders')")
        await holder.execute("COMMIT")

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(observe_then_release)
            report = await migrate(src, tgt, _options())
    await holder.close()
    assert seen == {"bulk_state": None, "bulk_waiting": True, "orders_pkey": True}

    assert report.ok, report.verify.mismatches() if report.verify else report.error
    assert report.schema is not None and report.schema.post_data_applied and report.schema.diff.equal
    assert {"copy+post_data", "post_data", "analyze", "sequences", "verify"} <= set(report.phases)
    # Every index, constraint and trigger the source has, valid and validated; FKs included.
    assert await fetchrows(target_db, OBJECTS) == await fetchrows(source_db, OBJECTS)
    foreign_keys = "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
    assert await fetchval(target_db, foreign_keys) == await fetchval(source_db, foreign_keys) >= 2
    assert await fetchval(target_db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert await fetchval(target_db, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated") == 0
    assert await fetchrows(target_db, UNANALYZED) == []
    assert "public.events" in report.analyze.relations  # the partitioned root, through which its partitions
    # The bookkeeping holds every statement it applied; the section is recorded whole.
    assert await fetchval(target_db, RECORDED) == report.schema.statements_applied > 0
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.schema_migrations "
                                     "WHERE file = 'pg_dump/post-data.sql'") == 1


async def test_a_failing_post_data_statement_resumes_without_already_exists(
    source_db: str, target_db: str, pg18: LocalPostgres
) -> None:
    await _source(source_db, GUARDED_INDEX)
    src, tgt = parse_url(source_db, "source"), parse_url(target_db, "target")
    await prepare_schema(src, tgt, SchemaOptions())
    database = await fetchval(target_db, "SELECT current_database()")
    admin = pg18.url(database)  # a placeholder setting on the database needs a superuser
    await run_sql(admin, f'ALTER DATABASE "{database}" SET app.block_index = on')
    holder = await _hold(target_db, "public.bulk")

    async def release_when_orders_is_built() -> None:
        await _wait_for(target_db, ORDERS_BUILT)
        await holder.execute("COMMIT")

    error = await _failing_migrate_beside(release_when_orders_is_built, src, tgt)
    await holder.close()
    assert "pg_dump/post-data.sql:" in error.cause and "index builds are blocked here" in error.cause, error.cause
    assert "--resume" in error.fix
    assert error.report.schema is not None and not error.report.schema.post_data_applied
    recorded = await fetchval(target_db, RECORDED)
    assert recorded > 0 and await fetchval(target_db, "SELECT to_regclass('public.bulk_guarded_idx')") is None

    await run_sql(admin, f'ALTER DATABASE "{database}" RESET app.block_index')
    report = await migrate(src, tgt, with_resume(_options()))
    assert report.ok and report.schema is not None and report.schema.post_data_applied, report.error
    assert report.copy is not None and "public.orders" in report.copy.skipped
    total = await fetchval(target_db, RECORDED)
    assert report.schema.statements_applied == total - recorded  # only what was missing
    assert await fetchrows(target_db, OBJECTS) == await fetchrows(source_db, OBJECTS)
    assert await fetchrows(target_db, UNANALYZED) == []


async def test_a_run_cancelled_in_the_overlapped_stage_resumes(source_db: str, target_db: str) -> None:
    await _source(source_db)
    src, tgt = parse_url(source_db, "source"), parse_url(target_db, "target")
    await prepare_schema(src, tgt, SchemaOptions())
    holder = await _hold(target_db, "public.bulk")

    async def cancel_when_orders_is_built(scope: anyio.CancelScope) -> None:
        await _wait_for(target_db, ORDERS_BUILT)
        scope.cancel()  # "Ctrl-C" while bulk is still copying and the others are being built

    with anyio.fail_after(120), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_orders_is_built, scope)
            await migrate(src, tgt, _options())
    await holder.execute("COMMIT")
    await holder.close()
    assert scope.cancelled_caught
    assert await fetchval(target_db, "SELECT count(*) FROM public.bulk") == 0
    recorded = await fetchval(target_db, RECORDED)

    report = await migrate(src, tgt, with_resume(_options()))
    assert report.ok, report.error
    assert report.schema is not None and report.schema.statements_applied == await fetchval(target_db, RECORDED) - recorded
    assert await fetchrows(target_db, OBJECTS) == await fetchrows(source_db, OBJECTS)
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0


async def test_a_target_backend_terminated_mid_build_resumes(source_db: str, target_db: str, pg18: LocalPostgres) -> None:
    await _source(source_db, GUARDED_INDEX)
    src, tgt = parse_url(source_db, "source"), parse_url(target_db, "target")
    await prepare_schema(src, tgt, SchemaOptions())
    database = await fetchval(target_db, "SELECT current_database()")
    admin = pg18.url(database)
    await run_sql(admin, f'ALTER DATABASE "{database}" SET app.block_index = sleep')
    building = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'CREATE INDEX \"bulk_guarded_idx\"%' AND state = 'active'")

    async def terminate_the_build() -> None:
        await _wait_for(target_db, building)
        assert await fetchval(admin, f"SELECT pg_terminate_backend(({building}))")

    error = await _failing_migrate_beside(terminate_the_build, src, tgt)
    assert "bulk_guarded_idx" in error.cause and "--resume" in error.fix, error
    assert await fetchval(target_db, "SELECT to_regclass('public.bulk_pkey') IS NOT NULL")  # committed before

    await run_sql(admin, f'ALTER DATABASE "{database}" RESET app.block_index')
    report = await migrate(src, tgt, with_resume(_options()))
    assert report.ok and report.schema is not None and report.schema.post_data_applied, report.error
    assert await fetchrows(target_db, OBJECTS) == await fetchrows(source_db, OBJECTS)


def test_post_data_is_grouped_by_the_table_it_acts_on() -> None:
    sql = """
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE INDEX a_x_idx ON public.a USING btree (x);
ALTER TABLE ONLY public.a ADD CONSTRAINT a_pkey PRIMARY KEY (id);
CREATE TRIGGER a_t AFTER INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION public.f();
ALTER TABLE ONLY public.b ADD CONSTRAINT b_a_fk FOREIGN KEY (a_id) REFERENCES public.a(id);
ALTER TABLE ONLY public.b ADD CONSTRAINT b_ext_fk FOREIGN KEY (e_id) REFERENCES public.elsewhere(id);
CREATE INDEX p_idx ON ONLY public.parent USING btree (x);
ALTER INDEX public.p_idx ATTACH PARTITION public.a_x_idx;
COMMENT ON INDEX public.a_x_idx IS 'x';
"""
    statements = split_statements(sql, source_name="post-data.sql")
    plan = plan_post_data(statements, "sum", {"public.a", "public.b"})
    assert [s.sql.split(" ")[0] for s in plan.session] == ["SET", "SELECT"]
    a = plan.tables["public.a"]
    assert [s.step for s in a] == [Step.KEY, Step.INDEX, Step.TRIGGER]  # keys first, triggers last
    assert [(s.table, s.references) for s in plan.foreign_keys] == [("public.b", "public.a")]
    # Not tied to one copied table: a referenced table outside the selection, a parent, comments.
    assert [s.statement.line for s in plan.last] == [8, 9, 10, 11]
    assert "public.b" not in plan.tables
