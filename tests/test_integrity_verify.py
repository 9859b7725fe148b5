"""verify beyond the copied columns: generated columns recomputed on the target, materialized
views against their query on the source (a stale source matview is reported as such)."""

from __future__ import annotations

from loaders.data.verify import verify
from loaders.dsn import parse_url
from tests.datakit import copy_all, run_sql

TABLE = "CREATE TABLE g (id int PRIMARY KEY, a int, label text GENERATED ALWAYS AS ('#' || a) STORED, b int GENERATED ALWAYS AS ({expr}) STORED);"
MATVIEW = "CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n, sum(a) AS total FROM g{suffix};"
DATA = "INSERT INTO g (id, a) SELECT i, i * 10 FROM generate_series(1, 50) i; REFRESH MATERIALIZED VIEW mv;"


async def setup(source: str, target: str, *, target_expr: str = "a * 2", target_mv_suffix: str = "") -> None:
    await run_sql(source, TABLE.format(expr="a * 2") + MATVIEW.format(suffix="") + DATA)
    await run_sql(target, TABLE.format(expr=target_expr) + MATVIEW.format(suffix=target_mv_suffix))


async def check(source: str, target: str):
    return await verify(parse_url(source, "source"), parse_url(target, "target"))


async def test_generated_columns_and_matviews_are_verified(source_db: str, target_db: str) -> None:
    await setup(source_db, target_db)
    await copy_all(source_db, target_db, jobs=2)
    result = await check(source_db, target_db)
    assert result.ok, result.mismatches()
    (table,) = result.tables
    assert table.generated == ["label", "b"]
    assert table.source_generated is not None and table.source_generated == table.target_generated
    (mv,) = result.matviews
    assert (mv.matview, mv.query_rows, mv.target_rows, mv.stale_source) == ("public.mv", 1, 1, False)
    assert result.warnings() == []


async def test_a_generated_column_computed_differently_on_the_target_is_a_mismatch(source_db: str, target_db: str) -> None:
    await setup(source_db, target_db, target_expr="a * 3")
    await copy_all(source_db, target_db, jobs=2)
    result = await check(source_db, target_db)
    assert result.mismatches() == ["public.g"]
    (table,) = result.tables
    assert table.source_checksum == table.target_checksum  # the copied columns are equal …
    assert "generated column(s)" in table.problem and "b" in table.problem  # … the computed one is not


async def test_a_stale_source_matview_is_reported_as_stale(source_db: str, target_db: str) -> None:
    await setup(source_db, target_db)
    await run_sql(source_db, "INSERT INTO g (id, a) VALUES (51, 1)")  # mv not refreshed on the source
    await copy_all(source_db, target_db, jobs=2)  # the target refreshes it from the copied rows
    result = await check(source_db, target_db)
    (mv,) = result.matviews
    assert mv.stale_source and (mv.source_rows, mv.query_rows) == (1, 1) and mv.source_checksum != mv.target_checksum
    assert result.ok, result.mismatches()
    (warning,) = result.warnings()
    assert "public.mv" in warning and "stale" in warning


async def test_a_target_matview_that_differs_is_a_mismatch(source_db: str, target_db: str) -> None:
    await setup(source_db, target_db, target_mv_suffix=" WHERE a > 100")
    await copy_all(source_db, target_db, jobs=2)
    result = await check(source_db, target_db)
    assert result.mismatches() == ["public.mv"]
    assert not result.matviews[0].stale_source
