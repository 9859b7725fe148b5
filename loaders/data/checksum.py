"""Proof levels: what `verify` computes per table, and the SQL that computes it.

- `full`: a 64-bit hash of each row's canonical text, summed (order-independent).
- `fast`: one `hash_record_extended` per row over the columns themselves wherever the type's
  own hash can only be equal when the canonical text is equal (integers, bool, uuid, text under
  a deterministic collation, bytea, date, time, timestamp, timestamptz — the latter two hash
  the stored instant, so TimeZone can't matter); every other column enters the same record as
  its canonical text. Type hashes follow *equality*, not text: numeric ignores scale
  (1.0 = 1.00), float8 says −0 = 0, interval says `1 day` = `24 hours`, jsonb/json, arrays and
  composites go through element types with the same problem, and an enum hashes its OID, which
  differs between servers. Those must keep meaning "the same value was stored", so they hash
  as text — the proof keeps its meaning and the per-value text conversion is paid only where
  it must be.
- `counts`: exact row counts only.

Both servers get the expression decided from the *source* catalog, so a type that differs on
the target shows up as a mismatch instead of two differently-built sums.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import asyncpg

from loaders.data.catalog import Table, quote_ident


class Proof(str, enum.Enum):
    FULL = "full"
    FAST = "fast"
    COUNTS = "counts"

    @property
    def checksums(self) -> bool:
        return self is not Proof.COUNTS


DEFAULT_PROOF = Proof.FAST

# Built-in types (same OID on every major) whose extended hash is injective on canonical text:
# equal hash input ⇔ equal text output under the canonical session settings.
_HASH_SAFE_TYPES: frozenset[str] = frozenset({
    "int2", "int4", "int8", "bool", "uuid", "text", "varchar", "bpchar", "bytea",
    "date", "time", "timestamp", "timestamptz",
})
_COLLATABLE = frozenset({"text", "varchar", "bpchar"})

# A column's base type after domains, and whether its collation compares bytes.
_COLUMN_KINDS_SQL = """
WITH RECURSIVE cols AS (
  SELECT a.attrelid, a.attnum, a.atttypid AS typ, a.attcollation AS coll
  FROM pg_attribute a
  WHERE a.attrelid = ANY($1::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
), base AS (
  SELECT attrelid, attnum, typ, coll FROM cols
  UNION ALL
  SELECT b.attrelid, b.attnum, t.typbasetype, b.coll FROM base b JOIN pg_type t ON t.oid = b.typ
  WHERE t.typtype = 'd'
)
SELECT b.attrelid::regclass::text AS rel, a.attname AS name, t.typname AS base,
       t.typnamespace = 'pg_catalog'::regnamespace AS builtin,
       coalesce((SELECT c.collisdeterministic FROM pg_collation c WHERE c.oid = b.coll), true) AS deterministic
FROM base b JOIN pg_type t ON t.oid = b.typ AND t.typtype <> 'd'
JOIN pg_attribute a ON a.attrelid = b.attrelid AND a.attnum = b.attnum
ORDER BY b.attrelid, b.attnum
"""


@dataclass(frozen=True)
class ColumnKind:
    name: str
    base: str  # base type name after domains
    builtin: bool
    deterministic: bool

    @property
    def hash_safe(self) -> bool:
        if not self.builtin or self.base not in _HASH_SAFE_TYPES:
            return False
        return self.deterministic or self.base not in _COLLATABLE

    def term(self) -> str:
        """The column as it enters the hashed record."""
        ident = quote_ident(self.name)
        if self.hash_safe:
            return f"{ident}::pg_catalog.{self.base}"  # a domain hashes as its base type
        return f'{ident}::text COLLATE "C"'  # bytes, whatever the column's collation


TableKinds = dict[str, tuple[ColumnKind, ...]]


async def column_kinds(conn: asyncpg.Connection, tables: Seq[Table]) -> TableKinds:
    """Per table (by `Table.ident`), its copied columns' kinds, read once for a whole verify."""
    if not tables:
        return {}
    rows = await conn.fetch(_COLUMN_KINDS_SQL, [t.ident for t in tables])
    by_rel: dict[str, list[ColumnKind]] = {}
    for r in rows:
        by_rel.setdefault(r["rel"], []).append(ColumnKind(r["name"], r["base"], r["builtin"], r["deterministic"]))
    # regclass::text is the server's own quoting, the same as format('%I.%I') except that it
    # leaves out a schema on the search_path: map back through the tables' own idents.
    resolved = await conn.fetch("SELECT t::regclass::text AS rel, t AS ident FROM unnest($1::text[]) AS t",
                                [t.ident for t in tables])
    return {r["ident"]: tuple(by_rel.get(r["rel"], ())) for r in resolved}


def text_hash_sum(alias: str = "r") -> str:
    """The `full` level's aggregate: the sum of a 64-bit hash of each row's canonical text, for a
    row (or record column) named `alias` — also what matviews and generated columns are hashed by."""
    return f"coalesce(sum(hashtextextended({alias}::text, 0)), 0)::text"


def checksum_sql(table: Table, proof: Proof, kinds: tuple[ColumnKind, ...] | None) -> str:
    """The aggregate over a subquery aliased `r` whose columns are `table.select_list`."""
    if proof is Proof.COUNTS:
        return "NULL::text"
    if proof is Proof.FULL or kinds is None:
        return text_hash_sum()
    terms = ", ".join(f"r.{k.term()}" for k in kinds)
    # ROW() of one element is still a record; of none, every row hashes alike and counts decide.
    return f"coalesce(sum(hash_record_extended(ROW({terms}), 0)), 0)::text"


def measure_sql(table: Table, proof: Proof, kinds: tuple[ColumnKind, ...] | None, where: str = "") -> str:
    """Count and checksum of one table (or the rows `where` selects) on either server."""
    return (f"SELECT count(*) AS n, {checksum_sql(table, proof, kinds)} AS checksum "
            f"FROM (SELECT {table.select_list} FROM ONLY {table.ident}{where}) r")
