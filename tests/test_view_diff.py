"""Views compared across major versions: PG 15 prints `events.id` where PG 16+ prints `id`, so
the schema diff compares a source definition in the form the target server prints it."""

from __future__ import annotations

from loaders.dsn import parse_url
from loaders.schema.diff import diff_schemas
from tests.datakit import run_sql

SCHEMA = """
CREATE TABLE events (id bigint PRIMARY KEY, kind text, created_at timestamptz);
CREATE VIEW recent_events AS SELECT id, kind, created_at FROM events WHERE created_at > '2024-06-01';
CREATE MATERIALIZED VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
"""


async def test_same_views_on_pg15_and_pg18_are_equal_and_a_changed_one_differs(source_db: str, target_db: str) -> None:
    await run_sql(source_db, SCHEMA)
    await run_sql(target_db, SCHEMA)
    source, target = parse_url(source_db, "source"), parse_url(target_db, "target")
    diff = await diff_schemas(source, target, kinds=["relation", "view"])
    assert diff.differences == [] and diff.compared["view"] == 2

    await run_sql(target_db, "CREATE OR REPLACE VIEW recent_events AS "
                             "SELECT id, kind, created_at FROM events WHERE created_at > '2024-07-01'")
    diff = await diff_schemas(source, target, kinds=["relation", "view"])
    [changed] = diff.differences
    assert changed.object == "public.recent_events" and changed.problem == "differs"
    # the definitions in the report are as each server stores them; the comparison left the target untouched
    assert "2024-07-01" in changed.target and "pg_temp" not in changed.source
