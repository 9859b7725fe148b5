"""A Supabase-shaped schema with awkward data, created identically on source and target.

The target side runs as the non-superuser owner (like RDS's master user), so every load
mechanism is exercised without superuser rights.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg
from anyio.abc import Process

from loaders.data.copy import CopyOptions, CopyReport, build_copy_plan, copy_tables
from loaders.dsn import parse_url
from loaders.data.sequences import sync_sequences
from loaders.data.snapshot import apply_canonical, open_snapshot

SCHEMA = r"""
CREATE EXTENSION citext;  -- trusted extensions: the non-superuser target owner may create them
CREATE EXTENSION hstore;
CREATE EXTENSION seg;  -- a type with no binary I/O functions at all
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE profiles (id int PRIMARY KEY, handle citext UNIQUE, attrs hstore, moods mood[], span seg);
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    email text
);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id bigint REFERENCES customers(id),
    note text,
    data jsonb,
    tags text[],
    blob bytea,
    amount numeric(20, 6),
    at timestamptz,
    mood mood,
    doubled numeric GENERATED ALWAYS AS (amount * 2) STORED,
    big text
);
CREATE TABLE audit (id serial PRIMARY KEY, order_id int NOT NULL UNIQUE, what text NOT NULL);
CREATE FUNCTION log_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit (order_id, what) VALUES (NEW.id, 'insert');
    RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION log_order();
CREATE INDEX orders_at_idx ON orders (at);
CREATE SEQUENCE standalone_seq;
CREATE SEQUENCE unused_seq;
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text,
                     customer_id bigint REFERENCES customers(id)) PARTITION BY RANGE (at);
CREATE TABLE event_log (event_id bigint NOT NULL UNIQUE);
CREATE FUNCTION log_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_log VALUES (NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER events_log AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION log_event();
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE VIEW order_view AS SELECT id, note FROM orders;
CREATE MATERIALIZED VIEW order_counts AS SELECT customer_id, count(*) AS n FROM orders GROUP BY 1;
CREATE TABLE bulk (id int PRIMARY KEY, payload text NOT NULL);
CREATE SCHEMA "App Data";
CREATE TABLE "App Data"."Weird ""Name"" T" ("Mixed Case" int PRIMARY KEY, "sel""ect" text, "order" float8);
CREATE INDEX "Weird idx" ON "App Data"."Weird ""Name"" T" ("order");
"""

DATA = r"""
INSERT INTO customers (name, email)
SELECT 'customer ' || g, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'c' || g || '@example.com' END
FROM generate_series(1, 40) g;
DELETE FROM customers WHERE id IN (3, 7, 20);  -- identity values with gaps must survive
INSERT INTO customers (name, email) VALUES ('Zoë ☃ 𝄞 "quoted" \ back\slash', E'tab\there\nnewline');
INSERT INTO orders (customer_id, note, data, tags, blob, amount, at, mood, big)
SELECT (SELECT id FROM customers ORDER BY id OFFSET (g % 30) LIMIT 1),
       CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN '' ELSE 'note ' || g || ' ünïcødé' END,
       jsonb_build_object('g', g, 'nested', jsonb_build_array(1, 'two', NULL, 3.5e10), 'empty', '{}'::jsonb),
       ARRAY['a', NULL, '', 'with,comma', 'with "quote"'],
       decode(repeat(lpad(to_hex(g % 256), 2, '0') || '00ff', 5), 'hex'),
       (g * 1234.567891)::numeric(20, 6) * CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END,
       timestamptz '2024-02-29 23:59:59.123456+05:30' + g * interval '1 day 3 hours',
       (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood,
       CASE WHEN g % 10 = 0 THEN repeat(md5(g::text), 4000) END
FROM generate_series(1, 60) g;
SELECT setval('standalone_seq', 41);
SELECT setval('unused_seq', 7, false);
INSERT INTO events SELECT g, date '2024-06-01' + g * 2, 'event ' || g, (SELECT min(id) FROM customers)
FROM generate_series(1, 200) g;
REFRESH MATERIALIZED VIEW order_counts;
INSERT INTO "App Data"."Weird ""Name"" T" VALUES (1, 'a', 0.1), (2, NULL, 'NaN'), (3, '', '-Infinity'), (4, 'x', 1e-310);
INSERT INTO profiles VALUES (1, 'Alice', 'a=>1, "b c"=>"d,e", n=>NULL', '{happy,sad}', '1.5 .. 2.25'),
                            (2, 'BOB', '', '{}', '<3'), (3, NULL, NULL, NULL, NULL);
"""


def bulk_rows(count: int, width: int = 120) -> str:
    return f"INSERT INTO bulk SELECT g, repeat(md5(g::text), {width // 32 + 1}) FROM generate_series(1, {count}) g"


async def run_sql(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare(source: str, target: str, *, bulk: int = 0) -> None:
    """Same schema both sides; data on the source only."""
    await run_sql(source, SCHEMA + DATA + (bulk_rows(bulk) if bulk else ""))
    await run_sql(target, SCHEMA)


async def row_texts(url: str, table: str, columns: str = "*") -> list[str]:
    """Every row's canonical text, in key order: what 'byte-exact' is checked against."""
    conn = await asyncpg.connect(url)
    try:
        await apply_canonical(conn)
        rows = await conn.fetch(f"SELECT r::text AS t FROM (SELECT {columns} FROM ONLY {table}) r ORDER BY 1")
        return [r["t"] for r in rows]
    finally:
        await conn.close()


async def fetchval(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def fetchrows(url: str, sql: str, *args: object) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def copy_all(source: str, target: str, **options: object) -> CopyReport:
    """The `migrate` sequence the lead will call: snapshot → plan → copy → sequences."""
    src, tgt = parse_url(source, "source"), parse_url(target, "target")
    opts = CopyOptions(**options)  # type: ignore[arg-type]
    async with open_snapshot(src, readers=opts.jobs) as snap:
        plan = await build_copy_plan(snap, tgt, opts)
        report = await copy_tables(snap, tgt, plan, opts)
        await sync_sequences(snap, tgt, sequences=plan.catalog.sequences)
    return report


@dataclass
class HeldCopy:
    """A `python -m automation copy` process whose load of `bulk` waits on a lock we hold."""

    process: Process
    watcher: asyncpg.Connection
    holder: asyncpg.Connection
    env: dict[str, str]

    async def release(self) -> None:
        if not self.holder.is_closed():
            await self.holder.execute("ROLLBACK")
            await self.holder.close()


@asynccontextmanager
async def copy_waiting_on_bulk(source: str, target: str) -> AsyncIterator[HeldCopy]:
    """Start `copy --jobs 2` and return once its TRUNCATE of `bulk` waits on our lock: a signal
    sent then lands mid-table, on a real process (Ctrl-C, kill -9)."""
    holder = await asyncpg.connect(target)
    await holder.execute("BEGIN; LOCK TABLE bulk IN ACCESS SHARE MODE")
    watcher = await asyncpg.connect(target)
    env = {**os.environ, "SOURCE_DATABASE_URL": source, "TARGET_DATABASE_URL": target}
    process = await anyio.open_process([sys.executable, "-m", "automation", "copy", "--jobs", "2"], env=env)
    held = HeldCopy(process, watcher, holder, env)
    try:
        with anyio.fail_after(60):
            while not await watcher.fetchval("""SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                                                AND wait_event_type = 'Lock' AND query LIKE 'TRUNCATE%bulk%'"""):
                await anyio.sleep(0.05)
        yield held
    finally:
        await process.aclose()
        await held.release()
        await watcher.close()
