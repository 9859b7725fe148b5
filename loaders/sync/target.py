"""The target's side of the sync: the subscription, and the sequences at cutover.

The subscription is created with `create_slot = false, copy_data = false` on the slot whose
snapshot the copy used: the rows are already there, and the stream starts exactly where the
copy's snapshot ends. The target connects *out* to the source, so the connection string is the
source as the target sees it; since PG 16 a non-superuser's subscription (RDS's master user)
must carry a password in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import asyncpg
import structlog
from psycopg.conninfo import make_conninfo

from loaders.connect import connection
from loaders.data.catalog import Sequence as SequenceRef
from loaders.data.sequences import SequenceValue
from loaders.dsn import VERIFYING, DatabaseUrl
from loaders.errors import MigrationError
from loaders.sync.state import PUBLICATION, SLOT, SUBSCRIPTION

log = structlog.get_logger(stage="sync")


def subscription_conninfo(source: DatabaseUrl) -> str:
    """libpq key=value string for the target's outgoing connection. A CA file path is local to this
    machine and means nothing on the target, so verify-* becomes require (still encrypted)."""
    sslmode = "require" if source.sslmode in VERIFYING else source.sslmode
    if sslmode != source.sslmode:
        log.warning("subscription_sslmode_require", why="the target cannot read this machine's CA file")
    return make_conninfo(host=source.host, port=str(source.port), dbname=source.database, user=source.user,
                         password=source.password or None, sslmode=sslmode)


async def subscription_exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_subscription WHERE subname = $1 "
                                    "AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                                    SUBSCRIPTION))


async def create_subscription(target: DatabaseUrl, source_for_target: DatabaseUrl) -> None:
    if not source_for_target.password:
        raise MigrationError("the source URL the target connects with has no password (a non-superuser's "
                             "subscription requires one)", "put the password in --source-for-target (or the source URL)")
    async with connection(target) as conn:
        if await subscription_exists(conn):
            return
        statement = await conn.fetchval(
            "SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (create_slot = false, "
            "slot_name = %L, copy_data = false)', $1::text, $2::text, $3::text, $4::text)",
            SUBSCRIPTION, subscription_conninfo(source_for_target), PUBLICATION, SLOT)
        try:
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"target {target.safe}: cannot create subscription {SUBSCRIPTION} ({exc})",
                "check that the target can reach the source (--source-for-target, security group egress "
                "replicationSourceCidrs) and that its role may create subscriptions") from None
    log.info("subscription_created", subscription=SUBSCRIPTION, slot=SLOT)


async def drop_subscription(target: DatabaseUrl) -> bool:
    """Detach from the slot first (`slot_name = NONE`), so dropping never depends on reaching the
    source; the slot itself is dropped on the source by `source.drop_slot`."""
    async with connection(target) as conn:
        if not await subscription_exists(conn):
            return False
        await conn.execute(f"ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE")
        await conn.execute(f"ALTER SUBSCRIPTION {SUBSCRIPTION} SET (slot_name = NONE)")
        await conn.execute(f"DROP SUBSCRIPTION {SUBSCRIPTION}")
    log.info("subscription_dropped", subscription=SUBSCRIPTION)
    return True


async def wait_until_streaming(target: DatabaseUrl, *, timeout: float) -> None:
    """The apply worker runs and has heard from the source (data or keepalive)."""
    async with connection(target) as conn:
        with anyio.move_on_after(timeout):
            while True:
                row = await conn.fetchrow("SELECT pid, last_msg_receipt_time FROM pg_stat_subscription "
                                          "WHERE subname = $1 AND relid IS NULL", SUBSCRIPTION)
                if row is not None and row["pid"] is not None and row["last_msg_receipt_time"] is not None:
                    return
                await anyio.sleep(0.2)
    raise MigrationError(f"the subscription on target {target.safe} did not start streaming within {timeout:.0f}s",
                         "check the target's server log (connection to the source, password, egress), "
                         "then `sync status`, or `sync abort`")


@dataclass(frozen=True)
class SequenceAdvance:
    sequence: str
    source_next: int  # what nextval would return next on the source
    target_next: int  # what it returns next on the target after the cutover
    ok: bool  # target not behind the source


def _next(last_value: int, is_called: bool, increment: int) -> int:
    return last_value + increment if is_called else last_value


async def advance_sequences(target: DatabaseUrl, sequences: Sequence[SequenceRef], values: Sequence[SequenceValue],
                            *, margin: int) -> list[SequenceAdvance]:
    """Logical replication carries no sequence: set each target sequence to the source's next value
    plus `margin` steps — never backwards (a target already ahead keeps its value)."""
    done = []
    async with connection(target) as conn, conn.transaction():
        for seq, value in zip(sequences, values):
            meta = await conn.fetchrow("SELECT increment_by, min_value, max_value FROM pg_sequences "
                                       "WHERE schemaname = $1 AND sequencename = $2", seq.schema, seq.name)
            if meta is None:
                raise MigrationError(f"target has no sequence {value.sequence}", "create the schema on the target first")
            row = await conn.fetchrow(f"SELECT last_value, is_called FROM {seq.ident}")
            step = meta["increment_by"]
            source_next = _next(value.last_value, value.is_called, step)
            current = _next(row["last_value"], row["is_called"], step)
            wanted = min(max(source_next + margin * step, meta["min_value"]), meta["max_value"])
            if (wanted - current) * step > 0:
                await conn.execute("SELECT setval($1::regclass, $2, false)", seq.ident, wanted)
                current = wanted
            done.append(SequenceAdvance(value.sequence, source_next, current, (current - source_next) * step >= 0))
    log.info("sequences_advanced", count=len(done), margin=margin)
    return done
