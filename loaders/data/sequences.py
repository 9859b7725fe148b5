"""Sequences: COPY doesn't carry them, so each one is set to the source's value from the snapshot.

`last_value` *and* `is_called` are read from the sequence relation itself (pg_sequences hides
is_called and shows NULL for a never-used sequence): with is_called = false the next
`nextval` returns last_value itself, with true it returns the one after — off by one otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import asyncpg
import structlog

from loaders.data.catalog import Sequence, read_catalog
from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.data.snapshot import Snapshot

log = structlog.get_logger(stage="sequences")


@dataclass(frozen=True)
class SequenceValue:
    sequence: str  # schema.name
    kind: str
    last_value: int
    is_called: bool


async def read_values(conn: asyncpg.Connection, sequences: Seq[Sequence]) -> list[SequenceValue]:
    values = []
    for seq in sequences:
        row = await conn.fetchrow(f"SELECT last_value, is_called FROM {seq.ident}")
        values.append(SequenceValue(f"{seq.schema}.{seq.name}", seq.kind, row["last_value"], row["is_called"]))
    return values


async def sync_sequences(
    snap: Snapshot, target: DatabaseUrl, *, schemas: Seq[str] | None = None, sequences: Seq[Sequence] | None = None
) -> list[SequenceValue]:
    """Set every sequence of the selected schemas (or the given ones) on the target to the
    value it had in the snapshot. Returns what was set."""
    async with snap.reader() as src:
        if sequences is None:
            sequences = (await read_catalog(src, schemas)).sequences
        values = await read_values(src, sequences)
    async with connection(target) as tgt:
        missing = [v.sequence for v, s in zip(values, sequences)
                   if not await tgt.fetchval("SELECT to_regclass($1) IS NOT NULL", s.ident)]
        if missing:
            raise MigrationError(f"target has no sequence {', '.join(missing)}", "create the schema on the target first")
        async with tgt.transaction():
            for value, seq in zip(values, sequences):
                await tgt.execute("SELECT setval($1::regclass, $2, $3)", seq.ident, value.last_value, value.is_called)
    log.info("sequences_set", count=len(values))
    return values
