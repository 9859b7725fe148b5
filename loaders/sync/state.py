"""The sync's state, kept on the target in the tool's own schema.

`status`, `cutover` and `abort` run as new processes, possibly on another machine, so what
`start` created (slot, publication, subscription), the LSNs that matter and the fence must be
written down somewhere every step can read. The target is that place: it outlives the tool, and
writing there never touches the source. One row, because one target follows one source.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.supabase import BOOKKEEPING_SCHEMA

# The names the tool gives what it creates; fixed, so an abort from a fresh process (or a
# human reading pg_replication_slots) always knows which objects are ours.
SLOT = "supabase_to_rds_sync"
PUBLICATION = "supabase_to_rds_sync"
SUBSCRIPTION = "supabase_to_rds_sync"
FENCE_FUNCTION = (BOOKKEEPING_SCHEMA, "sync_fence")  # (schema, name) on the source
FENCE_TRIGGER = "supabase_to_rds_fence"
STATE_TABLE = f"{BOOKKEEPING_SCHEMA}.sync_state"

# Phases in order; `start` resumes from anything before STREAMING.
STARTING, SLOT_CREATED, COPIED, STREAMING, FENCED, CUT_OVER = (
    "starting", "slot_created", "copied", "streaming", "fenced", "cut_over")
PHASES = (STARTING, SLOT_CREATED, COPIED, STREAMING, FENCED, CUT_OVER)


@dataclass
class SyncState:
    source: str  # user@host:port/db, never the password
    phase: str = STARTING
    tables: list[list[str]] = field(default_factory=list)  # [schema, name] of every published table
    schemas: list[str] | None = None  # the selection as given (--schemas/--tables), for cutover's verify
    selection: list[str] | None = None
    consistent_lsn: str | None = None  # the slot's consistent point = where the copy's snapshot sits
    snapshot: str | None = None
    fenced: list[str] = field(default_factory=list)  # tables carrying the fence trigger
    fence_lsn: str | None = None
    freeze_seconds: float | None = None
    source_schema: dict[str, dict[str, str]] | None = None  # the source's schema at start (DDL is not replicated)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SyncState":
        data: dict[str, Any] = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


async def load_state(target: DatabaseUrl) -> SyncState | None:
    async with connection(target) as conn:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", STATE_TABLE):
            return None
        text = await conn.fetchval(f"SELECT state FROM {STATE_TABLE} WHERE id = 1")
    return SyncState.from_json(text) if text else None


async def save_state(target: DatabaseUrl, state: SyncState) -> None:
    async with connection(target) as conn:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING_SCHEMA}")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (id int PRIMARY KEY CHECK (id = 1), "
                           "updated_at timestamptz NOT NULL DEFAULT now(), state jsonb NOT NULL)")
        await conn.execute(f"INSERT INTO {STATE_TABLE} (id, state) VALUES (1, $1::jsonb) ON CONFLICT (id) "
                           "DO UPDATE SET state = excluded.state, updated_at = now()", state.to_json())


async def clear_state(target: DatabaseUrl) -> None:
    async with connection(target) as conn:
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", STATE_TABLE):
            await conn.execute(f"DELETE FROM {STATE_TABLE}")
