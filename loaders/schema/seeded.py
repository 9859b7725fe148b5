"""Rows the migration files themselves write (a config row, a lookup table).

On a fresh target those rows make the table "not empty" and the copy would refuse it,
although the same rows are on the source — the migrations ran there too. Which tables the
files filled is measured, not guessed: non-empty after this run's files and empty before.
`migrate` then empties them (the source is the truth; the copy refills them) and says so;
a table that held rows before this run is never touched, so a rerun loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from loaders.supabase import BOOKKEEPING_SCHEMA, MANAGED_SCHEMAS

_TABLES = """
  SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND NOT (n.nspname = ANY($1::text[])) AND n.nspname NOT LIKE 'pg\\_%'
    AND n.nspname <> 'information_schema'
    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
  ORDER BY 1
"""
# Tables a TRUNCATE … CASCADE of $1 would also empty (FKs pointing at them, transitively).
_CASCADE = """
  WITH RECURSIVE hit(oid) AS (
    SELECT unnest($1::text[]::regclass[])::oid
    UNION SELECT k.conrelid FROM pg_constraint k JOIN hit ON k.confrelid = hit.oid WHERE k.contype = 'f'
  ) SELECT format('%I.%I', n.nspname, c.relname) FROM hit JOIN pg_class c ON c.oid = hit.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
"""


async def non_empty_tables(conn: asyncpg.Connection) -> set[str]:
    excluded = sorted(MANAGED_SCHEMAS | {BOOKKEEPING_SCHEMA})
    found = set()
    for (table,) in await conn.fetch(_TABLES, excluded):
        if await conn.fetchval(f"SELECT EXISTS (SELECT FROM ONLY {table})"):
            found.add(table)
    return found


@dataclass
class SeededTables:
    """Non-empty tables before the run's files; after them, the difference is what they wrote."""

    before: set[str] = field(default_factory=set)
    seeded: list[str] = field(default_factory=list)

    @classmethod
    async def measure(cls, conn: asyncpg.Connection) -> "SeededTables":
        return cls(await non_empty_tables(conn))

    async def after_files(self, conn: asyncpg.Connection) -> list[str]:
        self.seeded = sorted(await non_empty_tables(conn) - self.before)
        return self.seeded

    async def empty(self, conn: asyncpg.Connection) -> str | None:
        """TRUNCATE the seeded tables (CASCADE reaches only tables that were empty before this
        run); returns why not, when a table with earlier rows would be reached."""
        if not self.seeded:
            return None
        reached = {r[0] for r in await conn.fetch(_CASCADE, self.seeded)}
        held = sorted(reached & self.before)
        if held:
            return f"emptying them would also empty {', '.join(held)}, which held rows before this run"
        await conn.execute(f"TRUNCATE {', '.join(self.seeded)} CASCADE")
        return None
