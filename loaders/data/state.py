"""Bookkeeping on the target (`supabase_to_rds` schema): what is copied, what was set aside.

State lives on the target, next to the data it describes, so that the row saying "table
done" commits in the *same transaction* as the table's data: after a crash or Ctrl-C the
state can't claim more than what is really there, and `--resume` can trust it.
"""

from __future__ import annotations

import asyncpg

from loaders import bookkeeping

SCHEMA = bookkeeping.SCHEMA


async def ensure_schema(conn: asyncpg.Connection) -> None:
    await bookkeeping.ensure_schema(conn)


async def read_copy_state(conn: asyncpg.Connection) -> dict[str, str]:
    """table key → status; empty when the bookkeeping schema doesn't exist yet (writes nothing)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.copy_state")
    if not exists:
        return {}
    rows = await conn.fetch(f"SELECT table_name, status FROM {SCHEMA}.copy_state")
    return {r["table_name"]: r["status"] for r in rows}


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
        f"""INSERT INTO {SCHEMA}.copy_state (table_name, status, rows, bytes, seconds, snapshot)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (table_name) DO UPDATE SET status = EXCLUDED.status, rows = EXCLUDED.rows,
              bytes = EXCLUDED.bytes, seconds = EXCLUDED.seconds, snapshot = EXCLUDED.snapshot,
              updated_at = now()""",
        table, status, rows, nbytes, seconds, snapshot,
    )


async def forget(conn: asyncpg.Connection, tables: list[str]) -> None:
    """A fresh (non-resumed) run starts its tables from scratch."""
    await conn.execute(f"DELETE FROM {SCHEMA}.copy_state WHERE table_name = ANY($1::text[])", tables)
