"""Bookkeeping on the target (`supabase_to_rds` schema): what is copied, what was set aside.

State lives on the target, next to the data it describes, so that the row saying "table
done" commits in the *same transaction* as the table's data: after a crash or Ctrl-C the
state can't claim more than what is really there, and `--resume` can trust it.

Tables are keyed by `catalog.table_key` (the quoted pair). Rows written before that
(`key_format` NULL) used a dotted join, which is ambiguous for `a."b.c"` and `"a.b".c`: such a
row is adopted when exactly one table on the target joins to it, and otherwise refused for
`--resume` with one line — never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from loaders import bookkeeping
from loaders.data.catalog import table_key
from loaders.errors import MigrationError

SCHEMA = bookkeeping.SCHEMA
QUOTED_KEYS = 2  # copy_state.key_format of rows keyed by table_key; NULL: an earlier dotted join

# Tables on the target whose dotted join is one of the given legacy keys.
_JOINED = """
SELECT n.nspname || '.' || c.relname AS joined, n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY($1::text[])
"""


async def _legacy_keys(conn: asyncpg.Connection, legacy: Sequence[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Old dotted key → quoted key where exactly one target table fits; the ambiguous rest."""
    candidates: dict[str, list[str]] = {}
    for r in await conn.fetch(_JOINED, list(legacy)):
        candidates.setdefault(r["joined"], []).append(table_key(r["schema"], r["name"]))
    unique = {old: keys[0] for old, keys in candidates.items() if len(keys) == 1}
    ambiguous = {old: sorted(keys) for old, keys in candidates.items() if len(keys) > 1}
    return unique, ambiguous


async def ensure_schema(conn: asyncpg.Connection) -> None:
    """Create or upgrade the bookkeeping tables, and rewrite the old rows that can be keyed
    unambiguously (the ambiguous ones stay, and `read_copy_state` refuses to resume them)."""
    await bookkeeping.ensure_schema(conn)
    legacy = [r["table_name"] for r in await conn.fetch(
        f"SELECT table_name FROM {SCHEMA}.copy_state WHERE key_format IS NULL")]
    unique, _ = await _legacy_keys(conn, legacy) if legacy else ({}, {})
    async with conn.transaction():
        for old, new in unique.items():
            await conn.execute(  # a row this version wrote for the same table is newer: it wins
                f"DELETE FROM {SCHEMA}.copy_state WHERE table_name = $1 AND key_format IS NULL AND EXISTS "
                f"(SELECT 1 FROM {SCHEMA}.copy_state WHERE table_name = $2 AND key_format = $3)", old, new, QUOTED_KEYS)
            await conn.execute(f"UPDATE {SCHEMA}.copy_state SET table_name = $2, key_format = $3 "
                               "WHERE table_name = $1 AND key_format IS NULL", old, new, QUOTED_KEYS)


async def read_copy_state(conn: asyncpg.Connection, wanted: Sequence[str] = ()) -> dict[str, str]:
    """table key → status; empty when the bookkeeping schema doesn't exist yet (writes nothing).
    An old dotted row that could be either of two `wanted` tables is refused, not guessed."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.copy_state")
    if not exists:
        return {}
    has_format = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'key_format')",
        f"{SCHEMA}.copy_state")
    rows = await conn.fetch(f"SELECT table_name, status, {'key_format' if has_format else 'NULL::smallint'} AS key_format "
                            f"FROM {SCHEMA}.copy_state")
    state = {r["table_name"]: r["status"] for r in rows if r["key_format"] == QUOTED_KEYS}
    legacy = {r["table_name"]: r["status"] for r in rows if r["key_format"] is None}
    if not legacy:
        return state
    unique, ambiguous = await _legacy_keys(conn, list(legacy))
    for old, new in unique.items():
        state.setdefault(new, legacy[old])
    clash = {old: keys for old, keys in ambiguous.items() if set(keys) & set(wanted)}
    if clash:
        old, keys = next(iter(clash.items()))
        raise MigrationError(
            f"bookkeeping row {old!r} from an earlier version could be table {' or '.join(keys)} "
            "(names containing dots); it can't be resumed",
            f"rerun those tables without --resume and with --truncate (or DELETE the row from {SCHEMA}.copy_state)",
        )
    return state


async def read_copy_snapshots(conn: asyncpg.Connection) -> dict[str, str | None]:
    """table key → the snapshot its recorded copy was read in (for resume's mixed-snapshot check)."""
    if not await bookkeeping.table_exists(conn, bookkeeping.COPY_STATE):
        return {}
    rows = await conn.fetch(f"SELECT table_name, snapshot FROM {bookkeeping.COPY_STATE}")
    return {r["table_name"]: r["snapshot"] for r in rows}


async def mark(
    conn: asyncpg.Connection, table: str, status: str, *, rows: int | None = None,
    nbytes: int | None = None, seconds: float | None = None, snapshot: str | None = None,
) -> None:
    await conn.execute(
        f"""INSERT INTO {SCHEMA}.copy_state (table_name, status, rows, bytes, seconds, snapshot, key_format)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (table_name) DO UPDATE SET status = EXCLUDED.status, rows = EXCLUDED.rows,
              bytes = EXCLUDED.bytes, seconds = EXCLUDED.seconds, snapshot = EXCLUDED.snapshot,
              key_format = EXCLUDED.key_format, updated_at = now()""",
        table, status, rows, nbytes, seconds, snapshot, QUOTED_KEYS,
    )


async def forget(conn: asyncpg.Connection, tables: list[str]) -> None:
    """A fresh (non-resumed) run starts its tables from scratch."""
    await conn.execute(f"DELETE FROM {SCHEMA}.copy_state WHERE table_name = ANY($1::text[]) AND key_format = $2",
                       tables, QUOTED_KEYS)
