"""Where a table differs: split its key space into ranges and compare each range's proof.

A table-level checksum says *that* a table differs; to redo only the damaged part (or to
look at it) the user needs *where*. Ranges come from the source's primary key — the one
ordering both servers share (ctid ranges don't: physical layout differs after a load). The
first range is open below and the last open above, so rows the target has beyond the
source's keys land in a range too. Boundaries travel as canonical text and are cast back
to the key's type on each server, so any orderable key type works, composite keys included.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import asyncpg

from loaders.data.catalog import Table, quote_ident
from loaders.data.checksum import ColumnKind, Proof, measure_sql

DEFAULT_CHUNKS = 16

_KEY_SQL = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, pos)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::regclass AND i.indisprimary
ORDER BY k.pos
"""


@dataclass(frozen=True)
class KeyColumn:
    name: str
    type: str


@dataclass(frozen=True)
class KeyRange:
    """[low, high) over the primary key; None = open end. Values are canonical text."""

    key: tuple[KeyColumn, ...]
    low: tuple[str, ...] | None
    high: tuple[str, ...] | None

    def _row(self) -> str:
        return "(" + ", ".join(quote_ident(k.name) for k in self.key) + ")"

    def _bound(self, first_param: int) -> str:
        return "(" + ", ".join(f"${first_param + i}::text::{k.type}" for i, k in enumerate(self.key)) + ")"

    def conditions(self) -> tuple[list[str], list[str]]:
        """The range's conditions (to AND together) with their parameters, low first."""
        parts, params = [], []
        if self.low is not None:
            parts.append(f"{self._row()} >= {self._bound(1)}")
            params += list(self.low)
        if self.high is not None:
            parts.append(f"{self._row()} < {self._bound(len(params) + 1)}")
            params += list(self.high)
        return parts, params

    def where(self) -> tuple[str, list[str]]:
        parts, params = self.conditions()
        return (" WHERE " + " AND ".join(parts)) if parts else "", params

    def label(self) -> str:
        names = ", ".join(k.name for k in self.key)
        low = "…" if self.low is None else ", ".join(self.low)
        high = "…" if self.high is None else ", ".join(self.high)
        return f"({names}) from {low} to before {high}"


@dataclass(frozen=True)
class ChunkDiff:
    range: KeyRange
    source_rows: int
    target_rows: int

    def label(self) -> str:
        rows = "" if self.source_rows == self.target_rows else f" ({self.source_rows} rows on source, {self.target_rows} on target)"
        return self.range.label() + rows


async def primary_key(conn: asyncpg.Connection, table: Table) -> tuple[KeyColumn, ...]:
    return tuple(KeyColumn(r["name"], r["type"]) for r in await conn.fetch(_KEY_SQL, table.ident))


async def key_ranges(conn: asyncpg.Connection, table: Table, key: Seq[KeyColumn], chunks: int) -> list[KeyRange]:
    """Up to `chunks` ranges of about equal row counts, from the source's keys."""
    cols = ", ".join(quote_ident(k.name) for k in key)
    texts = ", ".join(f"{quote_ident(k.name)}::text" for k in key)
    rows = await conn.fetchval(f"SELECT count(*) FROM ONLY {table.ident}")
    step = max(1, -(-rows // chunks))
    starts = await conn.fetch(
        f"SELECT {texts} FROM (SELECT {cols}, row_number() OVER (ORDER BY {cols}) AS rn FROM ONLY {table.ident}) s "
        f"WHERE (rn - 1) % $1 = 0 ORDER BY rn", step)  # not by name: the text columns share the key's names
    bounds = [tuple(r.values()) for r in starts[1:]]  # the first range is open below
    edges: list[tuple[str, ...] | None] = [None, *bounds, None]
    return [KeyRange(tuple(key), low, high) for low, high in zip(edges, edges[1:])]


async def _measure(conn: asyncpg.Connection, table: Table, proof: Proof, kinds: tuple[ColumnKind, ...] | None,
                   key_range: KeyRange) -> tuple[int, str | None]:
    where, params = key_range.where()
    row = await conn.fetchrow(measure_sql(table, proof, kinds, where), *params)
    return row["n"], row["checksum"]


async def differing_chunks(source: asyncpg.Connection, target: asyncpg.Connection, table: Table, proof: Proof,
                           kinds: tuple[ColumnKind, ...] | None, *, chunks: int = DEFAULT_CHUNKS) -> list[ChunkDiff] | None:
    """The key ranges whose rows differ; None when the table has no primary key to range over."""
    key = await primary_key(source, table)
    if not key:
        return None
    diffs = []
    for key_range in await key_ranges(source, table, key, chunks):
        src, tgt = await _measure(source, table, proof, kinds, key_range), await _measure(target, table, proof, kinds, key_range)
        if src != tgt:
            diffs.append(ChunkDiff(key_range, src[0], tgt[0]))
    return diffs
