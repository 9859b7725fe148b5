"""Where the sync stands: lag, the slot's retained WAL, the subscription and every table.

Read-only on both sides. Lag is measured on the source, where the truth is: how far the slot's
confirmed position (what the target has applied and flushed) trails the current WAL, and the
walsender's replay lag in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import structlog

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.schema.diff import compare, schema_catalog
from loaders.sync.state import SLOT, STREAMING, SUBSCRIPTION, SyncState, load_state

log = structlog.get_logger(stage="sync")
RETAINED_WARNING_BYTES = 1 << 30  # a slot nobody reads keeps WAL until Supabase's disk fills

_SLOT_SQL = """
SELECT s.active, s.wal_status, s.confirmed_flush_lsn::text AS confirmed_lsn, pg_current_wal_lsn()::text AS current_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_bytes,
       (SELECT extract(epoch FROM coalesce(r.replay_lag, r.flush_lag, r.write_lag))::float8
          FROM pg_stat_replication r WHERE r.application_name = $2 LIMIT 1) AS lag_seconds
FROM pg_replication_slots s WHERE s.slot_name = $1
"""

_WORKER_SQL = """
SELECT s.subenabled AS enabled, w.pid, w.received_lsn::text AS received_lsn,
       extract(epoch FROM now() - w.last_msg_receipt_time)::float8 AS silent_seconds
FROM pg_subscription s LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_TABLE_STATES_SQL = """
SELECT n.nspname AS schema, c.relname AS name, r.srsubstate::text AS state
FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.subname = $1
"""

# What DDL on the source can break while replication runs. Triggers are left out: the cutover's
# fence is one, and a trigger does not change what a row looks like.
WATCHED_KINDS = ("relation", "column", "constraint", "index", "sequence", "enum")
DDL_CHANGE = {"missing on target": "dropped", "only on target": "added", "differs": "changed"}


async def source_schema(source: DatabaseUrl, schemas: Sequence[str] | None) -> dict[str, dict[str, str]]:
    return await schema_catalog(source, schemas=schemas, kinds=WATCHED_KINDS)


async def schema_changes(source: DatabaseUrl, state: SyncState) -> list[str]:
    """DDL on the source since `start` (logical replication does not carry it), e.g. "column
    public.t.c: added"; empty when nothing changed or nothing was recorded."""
    if state.source_schema is None:
        return []
    diff = compare(state.source_schema, await source_schema(source, state.schemas))
    return [f"{d.kind} {d.object}: {DDL_CHANGE.get(d.problem, d.problem)}" for d in diff.differences]


# pg_subscription_rel.srsubstate
TABLE_STATES = {"i": "initializing", "d": "copying", "f": "copied", "s": "synchronized", "r": "ready"}


@dataclass
class TableStatus:
    table: str
    state: str
    source_rows: int | None
    target_rows: int | None


@dataclass
class SyncStatus:
    phase: str
    slot_active: bool | None = None
    wal_status: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    retained_bytes: int | None = None
    confirmed_lsn: str | None = None
    current_lsn: str | None = None
    subscription_enabled: bool | None = None
    worker_pid: int | None = None
    tables: list[TableStatus] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def judge(self, max_lag: int | None) -> None:
        """Fill `problems`: anything that means the target is not following the source."""
        if self.phase != STREAMING:
            return
        if self.slot_active is None:
            self.problems.append(f"slot {SLOT} is missing on the source")
        elif self.wal_status == "lost":
            self.problems.append(f"slot {SLOT} lost WAL the target still needed (max_slot_wal_keep_size)")
        if self.subscription_enabled is None:
            self.problems.append(f"subscription {SUBSCRIPTION} is missing on the target")
        elif not self.subscription_enabled or self.worker_pid is None:
            self.problems.append("the target's apply worker is not running (see the target's server log)")
        if max_lag is not None and self.lag_bytes is not None and self.lag_bytes > max_lag:
            self.problems.append(f"lag {self.lag_bytes} bytes is over --max-lag {max_lag}")
        if self.schema_changes:
            self.problems.append(f"the source's schema changed since start ({'; '.join(self.schema_changes[:5])}); "
                                 "DDL is not replicated")
        if self.retained_bytes is not None and self.retained_bytes > RETAINED_WARNING_BYTES:
            log.warning("slot_retains_wal", retained_mb=self.retained_bytes >> 20,
                        why="the source keeps WAL for our slot; cut over or abort soon")

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "healthy": self.healthy}


async def _count(conn: asyncpg.Connection, table: Sequence[str]) -> int | None:
    ident = await conn.fetchval("SELECT format('%I.%I', $1::text, $2::text)", table[0], table[1])
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", ident):
        return None
    return await conn.fetchval(f"SELECT count(*) FROM ONLY {ident}")


async def source_side(source: DatabaseUrl, state: SyncState, status: SyncStatus, *, counts: bool) -> dict[str, int | None]:
    async with connection(source) as conn:
        row = await conn.fetchrow(_SLOT_SQL, SLOT, SUBSCRIPTION)
        if row is not None:
            status.slot_active = row["active"]
            status.wal_status = row["wal_status"]
            status.lag_bytes, status.retained_bytes = row["lag_bytes"], row["retained_bytes"]
            status.lag_seconds = row["lag_seconds"]
            status.confirmed_lsn, status.current_lsn = row["confirmed_lsn"], row["current_lsn"]
        return {".".join(t): await _count(conn, t) for t in state.tables} if counts else {}


async def target_side(target: DatabaseUrl, state: SyncState, status: SyncStatus, *, counts: bool) -> tuple[dict[str, str], dict[str, int | None]]:
    async with connection(target) as conn:
        row = await conn.fetchrow(_WORKER_SQL, SUBSCRIPTION)
        if row is not None:
            status.subscription_enabled, status.worker_pid = row["enabled"], row["pid"]
        states = {f"{r['schema']}.{r['name']}": TABLE_STATES.get(r["state"], r["state"])
                  for r in await conn.fetch(_TABLE_STATES_SQL, SUBSCRIPTION)}
        rows = {".".join(t): await _count(conn, t) for t in state.tables} if counts else {}
    return states, rows


async def sync_status(source: DatabaseUrl, target: DatabaseUrl, *, max_lag: int | None = None,
                      counts: bool = True) -> SyncStatus:
    state = await load_state(target)
    if state is None:
        raise MigrationError(f"no sync recorded on target {target.safe}", "run `sync start` first")
    status = SyncStatus(phase=state.phase, schema_changes=await schema_changes(source, state))
    source_rows = await source_side(source, state, status, counts=counts)
    states, target_rows = await target_side(target, state, status, counts=counts)
    for key in (".".join(t) for t in state.tables):
        status.tables.append(TableStatus(key, states.get(key, "not subscribed"), source_rows.get(key), target_rows.get(key)))
    status.judge(max_lag)
    return status


_REMAINING_SQL = """
SELECT pg_wal_lsn_diff(coalesce($2::text::pg_lsn, pg_current_wal_lsn()), confirmed_flush_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = $1
"""


class LagTimeout(MigrationError):
    """The target did not catch up in time (the caller decides what that means)."""


async def wait_for_lag(source: DatabaseUrl, *, below: int, timeout: float, until_lsn: str | None = None) -> int:
    """Poll the slot until the target has confirmed all but `below` bytes of the source's WAL
    (or of `until_lsn`, a position recorded earlier). Returns the last remaining lag."""
    remaining: int | None = None
    async with connection(source) as conn:
        with anyio.move_on_after(timeout):
            while True:
                remaining = await conn.fetchval(_REMAINING_SQL, SLOT, until_lsn)
                if remaining is None:
                    raise MigrationError(f"slot {SLOT} is missing on source {source.safe}",
                                         "run `sync abort`, then `sync start` again")
                if remaining <= below:
                    return remaining
                await anyio.sleep(0.1)
    target = f"LSN {until_lsn}" if until_lsn else f"a lag of {below} bytes"
    raise LagTimeout(f"the target did not catch up to {target} within {timeout:.0f}s (still {remaining} bytes behind)",
                     "check `sync status` and the target's server log; retry with a longer --timeout")
