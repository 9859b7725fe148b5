"""`verify --repair`: copy again only the key ranges that differ, then prove again.

Each range is redone in one target transaction, so a failure leaves the range as it was:
the source's rows for the range are staged as canonical text in a temporary table, rows the
target has in the range but the source doesn't are deleted, and the source's rows are
upserted by primary key. Upsert instead of delete-and-reload because a DELETE of a parent
row would fire ON DELETE CASCADE (or be refused by a NO ACTION key) on rows other tables
hold. The table's enabled user triggers are disabled inside that transaction — the rows are
the source's, already shaped by its triggers — and enabled again before it commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import secrets

import asyncpg
import structlog

from loaders.data.catalog import Table, quote_ident
from loaders.data.chunks import KeyRange, differing_chunks, primary_key
from loaders.data.checksum import Proof, TableKinds
from loaders.data.snapshot import Snapshot
from loaders.errors import MigrationError

log = structlog.get_logger(stage="repair")

STAGE_PREFIX = "supabase_to_rds_redo_"  # temporary tables: live in one session's pg_temp only


@dataclass
class RedoReport:
    ranges: dict[str, list[str]] = field(default_factory=dict)  # table → key ranges redone
    unrepairable: dict[str, str] = field(default_factory=dict)  # table → why

    @property
    def redone(self) -> int:
        return sum(len(r) for r in self.ranges.values())


async def _enabled_user_triggers(conn: asyncpg.Connection, table: Table) -> list[str]:
    rows = await conn.fetch("SELECT quote_ident(tgname) AS name FROM pg_trigger WHERE tgrelid = $1::regclass "
                            "AND NOT tgisinternal AND tgenabled <> 'D' ORDER BY tgname", table.ident)
    return [r["name"] for r in rows]


async def _source_rows(src: asyncpg.Connection, table: Table, key_range: KeyRange) -> AsyncIterator[tuple]:
    """The range's rows as canonical text (every type has text I/O, not every type binary)."""
    where, params = key_range.where()
    texts = ", ".join(f"{quote_ident(c.name)}::text" for c in table.columns)
    async for record in src.cursor(f"SELECT {texts} FROM ONLY {table.ident}{where}", *params, prefetch=1000):
        yield tuple(record.values())


async def redo_range(src: asyncpg.Connection, tgt: asyncpg.Connection, table: Table, key_range: KeyRange) -> None:
    key = ", ".join(quote_ident(k.name) for k in key_range.key)
    cols = ", ".join(quote_ident(c.name) for c in table.columns)
    typed = ", ".join(f"s.{quote_ident(c.name)}::{c.type}" for c in table.columns)
    non_key = [c for c in table.columns if c.name not in {k.name for k in key_range.key}]
    on_conflict = ("DO UPDATE SET " + ", ".join(f"{quote_ident(c.name)} = EXCLUDED.{quote_ident(c.name)}" for c in non_key)
                   if non_key else "DO NOTHING")
    conditions, params = key_range.conditions()
    # A name of its own per range: asyncpg caches what a COPY's table looks like by name.
    stage = STAGE_PREFIX + secrets.token_hex(6)
    matches = " AND ".join(f"s.{quote_ident(k.name)}::{k.type} = t.{quote_ident(k.name)}" for k in key_range.key)
    async with tgt.transaction():
        triggers = await _enabled_user_triggers(tgt, table)
        for name in triggers:
            await tgt.execute(f"ALTER TABLE {table.ident} DISABLE TRIGGER {name}")
        await tgt.execute(f"CREATE TEMP TABLE {stage} ({', '.join(f'{quote_ident(c.name)} text' for c in table.columns)}) "
                          "ON COMMIT DROP")
        await tgt.copy_records_to_table(stage, records=_source_rows(src, table, key_range))
        extra = " AND ".join([*conditions, f"NOT EXISTS (SELECT 1 FROM {stage} s WHERE {matches})"])
        await tgt.execute(f"DELETE FROM ONLY {table.ident} t WHERE {extra}", *params)
        await tgt.execute(f"INSERT INTO {table.ident} ({cols}) OVERRIDING SYSTEM VALUE SELECT {typed} FROM {stage} s "
                          f"ON CONFLICT ({key}) {on_conflict}")
        for name in triggers:
            await tgt.execute(f"ALTER TABLE {table.ident} ENABLE TRIGGER {name}")


async def redo_differences(snap: Snapshot, pool: asyncpg.Pool, tables: list[Table], kinds: TableKinds,
                           proof: Proof) -> RedoReport:
    """Redo every differing range of `tables` (those verify found different)."""
    report = RedoReport()
    for table in tables:
        async with snap.reader() as src, pool.acquire() as tgt:
            if not await primary_key(src, table):
                report.unrepairable[table.key] = "no primary key: copy --tables … --truncate redoes the whole table"
                continue
            diffs = await differing_chunks(src, tgt, table, proof, kinds.get(table.ident))
            for diff in diffs or []:
                try:
                    await redo_range(src, tgt, table, diff.range)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"repairing {table.key} {diff.range.label()} failed: {exc}",
                        f"nothing in that range was changed; fix the cause, or redo the whole table with "
                        f"copy --tables {table.key} --truncate",
                    ) from None
                report.ranges.setdefault(table.key, []).append(diff.range.label())
                log.info("range_redone", table=table.key, range=diff.range.label())
    return report
