"""Sequences: COPY doesn't carry them, so each one is set on the target from the source.

When the value is read: sequences are not transactional, so a snapshot can't freeze them.
They are read once, in the snapshot's coordinator session right after the snapshot is taken
(`read_at_snapshot`, called when the copy is planned): every row the snapshot shows took its
value before that moment, so the value read is never behind the copied rows — and it is the
value the whole run uses, for setting *and* for verification (recorded on the target in
`supabase_to_rds.sequence_sync`). Reading again at verify time would compare against a live
source that has moved on.

How it is set — never backwards: a target sequence ends at the furthest of (a) the source's
value, (b) its own current value (the app may already have inserted on the target), (c) the
largest value in the columns that draw from it (a row inserted with an explicit id).
`last_value` *and* `is_called` are read from the sequence relation itself (pg_sequences hides
is_called and shows NULL for a never-used sequence): with is_called = false the next
`nextval` returns last_value itself, with true it returns the one after.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import asyncpg
import structlog

from loaders import bookkeeping
from loaders.connect import connection
from loaders.data.catalog import Sequence, read_catalog
from loaders.data.snapshot import Snapshot
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError

log = structlog.get_logger(stage="sequences")


@dataclass(frozen=True)
class SequenceValue:
    """A sequence's state; `next` is what the next nextval would return."""

    sequence: str  # schema.name
    kind: str
    last_value: int
    is_called: bool
    increment: int = 1

    @property
    def next(self) -> int:
        return self.last_value + (self.increment if self.is_called else 0)


@dataclass(frozen=True)
class SequenceSet:
    """What sync did to one target sequence, and why."""

    sequence: str
    kind: str
    source: tuple[int, bool]  # (last_value, is_called) read at the snapshot
    target_before: tuple[int, bool]
    column_max: int | None
    result: tuple[int, bool]
    reason: str  # "source", "target ahead (kept)", "column max"


def ahead(a: int, b: int, increment: int) -> bool:
    """Is next-value `a` at least `b` in the sequence's direction?"""
    return a >= b if increment > 0 else a <= b


_STATE_SQL = "SELECT s.last_value, s.is_called, p.seqincrement FROM {ident} s, pg_sequence p WHERE p.seqrelid = $1::regclass"

# Integer columns that draw from the sequence: the owning column (serial/identity) and any
# column whose default calls it. The server formats the max() query for each.
_COLUMNS_SQL = """
SELECT DISTINCT format('SELECT max(%I)::numeric FROM %I.%I', a.attname, n.nspname, c.relname) AS query
FROM pg_depend d
LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
JOIN pg_class c ON c.oid = CASE WHEN d.classid = 'pg_attrdef'::regclass THEN ad.adrelid ELSE d.refobjid END
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid
 AND a.attnum = CASE WHEN d.classid = 'pg_attrdef'::regclass THEN ad.adnum ELSE d.refobjsubid END
WHERE ((d.classid = 'pg_class'::regclass AND d.objid = $1::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.deptype IN ('a', 'i'))
    OR (d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1::regclass))
  AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype)
  AND c.relkind IN ('r', 'p')
"""


async def _state(conn: asyncpg.Connection, seq: Sequence) -> tuple[int, bool, int]:
    row = await conn.fetchrow(_STATE_SQL.format(ident=seq.ident), seq.ident)
    return row["last_value"], row["is_called"], row["seqincrement"]


async def read_values(conn: asyncpg.Connection, sequences: Seq[Sequence]) -> list[SequenceValue]:
    values = []
    for seq in sequences:
        last_value, is_called, increment = await _state(conn, seq)
        values.append(SequenceValue(f"{seq.schema}.{seq.name}", seq.kind, last_value, is_called, increment))
    return values


async def read_at_snapshot(snap: Snapshot, sequences: Seq[Sequence]) -> list[SequenceValue]:
    """The values as of the snapshot: read in the coordinator session that exported it, right
    after, before any table is read (see the module docstring)."""
    return await read_values(snap.coordinator, sequences)


async def _column_max(conn: asyncpg.Connection, seq: Sequence, increment: int) -> int | None:
    best: int | None = None
    for row in await conn.fetch(_COLUMNS_SQL, seq.ident):
        value = await conn.fetchval(row["query"])
        if value is not None and (best is None or not ahead(best, int(value), increment)):
            best = int(value)
    return best


async def _converge(conn: asyncpg.Connection, seq: Sequence, source: SequenceValue) -> SequenceSet:
    last, called, increment = await _state(conn, seq)
    current = SequenceValue(source.sequence, source.kind, last, called, increment)
    column_max = await _column_max(conn, seq, increment)
    src = (source.last_value, source.is_called)
    if ahead(current.next, source.next, increment) and current.next != source.next:
        result, reason = (last, called), "target ahead (kept)"
    else:
        result, reason = src, "source"
    result_next = result[0] + (increment if result[1] else 0)
    if column_max is not None and not ahead(result_next, column_max + increment, increment):
        result, reason = (column_max, True), "column max"
    if result != (last, called):
        await conn.execute("SELECT setval($1::regclass, $2, $3)", seq.ident, result[0], result[1])
    return SequenceSet(source.sequence, source.kind, src, (last, called), column_max, result, reason)


async def _record(conn: asyncpg.Connection, values: Seq[SequenceValue], snapshot: str) -> None:
    await conn.executemany(
        f"""INSERT INTO {bookkeeping.SEQUENCE_SYNC} (sequence_name, last_value, is_called, increment_by, snapshot)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (sequence_name) DO UPDATE SET last_value = EXCLUDED.last_value,
              is_called = EXCLUDED.is_called, increment_by = EXCLUDED.increment_by,
              snapshot = EXCLUDED.snapshot, synced_at = now()""",
        [(v.sequence, v.last_value, v.is_called, v.increment, snapshot) for v in values],
    )


async def recorded_values(conn: asyncpg.Connection) -> dict[str, SequenceValue]:
    """The source values recorded at the last sync (empty when none was; writes nothing)."""
    if not await bookkeeping.table_exists(conn, bookkeeping.SEQUENCE_SYNC):
        return {}
    rows = await conn.fetch(
        f"SELECT sequence_name, last_value, is_called, increment_by FROM {bookkeeping.SEQUENCE_SYNC}")
    return {r["sequence_name"]: SequenceValue(r["sequence_name"], "", r["last_value"], r["is_called"], r["increment_by"])
            for r in rows}


async def sync_sequences(
    snap: Snapshot, target: DatabaseUrl, *, schemas: Seq[str] | None = None,
    sequences: Seq[Sequence] | None = None, values: Seq[SequenceValue] | None = None,
) -> list[SequenceSet]:
    """Bring every selected sequence on the target to at least the source's value as of the
    snapshot (`values`, read when the copy was planned; read now in the coordinator if not
    given), never moving one backwards, and record the source values for `verify`."""
    if sequences is None:
        async with snap.reader() as src:
            sequences = (await read_catalog(src, schemas)).sequences
    if values is None:
        values = await read_at_snapshot(snap, sequences)
    async with connection(target) as tgt:
        missing = [v.sequence for v, s in zip(values, sequences)
                   if not await tgt.fetchval("SELECT to_regclass($1) IS NOT NULL", s.ident)]
        if missing:
            raise MigrationError(f"target has no sequence {', '.join(missing)}", "create the schema on the target first")
        await bookkeeping.ensure_schema(tgt, bookkeeping.SEQUENCE_SYNC)
        async with tgt.transaction():
            done = [await _converge(tgt, seq, value) for value, seq in zip(values, sequences)]
            await _record(tgt, values, snap.snapshot_id)
    kept = [s.sequence for s in done if s.reason != "source"]
    if kept:
        log.info("sequences_not_rewound", sequences=kept)
    log.info("sequences_set", count=len(done))
    return done
