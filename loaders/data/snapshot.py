"""One exported snapshot on the source, shared by every reader and by the verification.

The coordinator connection opens a REPEATABLE READ, READ ONLY transaction and exports its
snapshot; it stays open for the whole copy *and* the verification, because an exported
snapshot only lives as long as the transaction that exported it. Every reader imports it
(`SET TRANSACTION SNAPSHOT`), so all tables are read as of one instant without locking
anything, and writes on the source during the copy are simply invisible.

Behind a pooler in transaction mode (pgbouncer, Supavisor on 6543) the import lands on a
different backend than the export, or the exporting transaction is gone: the server then
says "invalid snapshot identifier". That is turned into a one-line explanation with the fix —
unless the coordinator's own session is what ended (terminated by an admin, a timeout, a
source restart): then that is what the message says.

The coordinator is closed on every way out of `open_snapshot` (error, Ctrl-C, cancellation),
and dropped outright when a polite close does not finish, so the source never keeps an
idle-in-transaction session of ours holding back its vacuum.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg
import structlog

from loaders.connect import close_quietly, connect, create_pool
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError

log = structlog.get_logger(stage="snapshot")

# Session settings that make row::text identical on every major version (verify relies on it).
CANONICAL_SETTINGS = {
    "TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
    "extra_float_digits": "1", "bytea_output": "hex", "lc_monetary": "C", "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    # Never let a policy filter rows silently: with row_security off, a query RLS would
    # filter raises an error instead.
    "row_security": "off",
}


# Target loading sessions: a lost commit after a server crash is harmless because each unit's
# "done" row commits with its data (a resumed run redoes both), so don't wait for WAL flushes.
LOAD_SETTINGS = {**CANONICAL_SETTINGS, "synchronous_commit": "off"}


async def _apply(conn: asyncpg.Connection, settings: dict[str, str]) -> None:
    await conn.execute(
        "SELECT set_config(k, v, false) FROM unnest($1::text[], $2::text[]) AS s(k, v)",
        list(settings), list(settings.values()),
    )


async def apply_canonical(conn: asyncpg.Connection) -> None:
    """Session settings for reproducible text output (pool `setup=`: runs on every acquire,
    because a pool's release does RESET ALL)."""
    await _apply(conn, CANONICAL_SETTINGS)


async def apply_load_settings(conn: asyncpg.Connection) -> None:
    await _apply(conn, LOAD_SETTINGS)


def _pooler_error(url: DatabaseUrl, exc: BaseException) -> MigrationError:
    return MigrationError(
        f"source {url.safe}: the exported snapshot could not be imported ({exc}); this happens when "
        "the connection goes through a pooler in transaction mode (pgbouncer / Supavisor port 6543), "
        "which hands each transaction to a different server session",
        "connect directly (db.<ref>.supabase.co:5432) or through the session pooler "
        "(aws-0-<region>.pooler.supabase.com:5432)",
    )


def _coordinator_gone(url: DatabaseUrl, pid: int | None) -> MigrationError:
    return MigrationError(
        f"source {url.safe}: the session holding the exported snapshot (pid {pid or '?'}) ended during the run "
        "(terminated by pg_terminate_backend, a session timeout or a server restart), so no further table "
        "can be read from the same snapshot",
        "make sure nothing ends the tool's sessions on the source, then rerun with --resume "
        "(tables already copied are kept)",
    )


async def _session_alive(conn: asyncpg.Connection, pid: int | None) -> bool:
    """Asked from a reader whose snapshot import failed (its transaction must be ended first)."""
    if pid is None:
        return True
    try:
        await conn.execute("ROLLBACK")
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return True  # can't tell: keep the usual explanation


@dataclass
class Snapshot:
    """An open exported snapshot; `reader()` hands out connections that see exactly it."""

    url: DatabaseUrl
    snapshot_id: str
    coordinator: asyncpg.Connection
    pool: asyncpg.Pool
    server_version: int  # server_version_num, e.g. 150012
    coordinator_pid: int | None = None

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled source connection inside a read-only transaction on the shared snapshot."""
        async with self.pool.acquire() as conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                try:
                    await conn.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot_id}'")
                except (asyncpg.ObjectNotInPrerequisiteStateError, asyncpg.InvalidParameterValueError,
                        asyncpg.InvalidSQLStatementNameError) as exc:
                    if self.coordinator.is_closed() or not await _session_alive(conn, self.coordinator_pid):
                        raise _coordinator_gone(self.url, self.coordinator_pid) from None
                    raise _pooler_error(self.url, exc) from None
                yield conn
            finally:
                await _end_read(conn)


async def _end_read(conn: asyncpg.Connection) -> None:
    """Roll back even when cancelled (Ctrl-C); a connection stuck mid-COPY is dropped instead."""
    with anyio.CancelScope(shield=True):
        try:
            await conn.execute("ROLLBACK")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            try:
                conn.terminate()
            except asyncpg.InterfaceError:
                pass  # it died on its own and is already back in the pool


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        with anyio.fail_after(5):
            await pool.close()
    except (TimeoutError, asyncpg.InterfaceError):
        pool.terminate()


async def _export(conn: asyncpg.Connection) -> str:
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    return await conn.fetchval("SELECT pg_export_snapshot()")


async def _adopt(conn: asyncpg.Connection, snapshot_id: str) -> str:
    """Join a snapshot someone else exported (a logical slot's, for `sync start`), so the copy
    sees exactly the state the slot's change stream starts from."""
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
    return snapshot_id


@asynccontextmanager
async def open_snapshot(source: DatabaseUrl, *, readers: int = 4,
                        snapshot_id: str | None = None) -> AsyncIterator[Snapshot]:
    """Export a snapshot (or adopt `snapshot_id`, exported elsewhere and kept alive by its
    exporter) and keep it alive (coordinator + reader pool) until the block ends."""
    coordinator = await connect(source)
    try:
        await apply_canonical(coordinator)
        try:
            snapshot_id = await (_adopt(coordinator, snapshot_id) if snapshot_id else _export(coordinator))
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"source {source.safe}: cannot export a snapshot ({exc})",
                "use a primary server (not a hot standby) over a direct or session-pooler connection",
            ) from None
        version = int(await coordinator.fetchval("SHOW server_version_num"))
        pool = await create_pool(source, max(1, readers), setup=apply_canonical)
        try:
            log.info("snapshot_exported", snapshot=snapshot_id, server_version=version)
            yield Snapshot(source, snapshot_id, coordinator, pool, version, coordinator.get_server_pid())
        finally:
            with anyio.CancelScope(shield=True):
                await _close_pool(pool)
    finally:
        await close_quietly(coordinator)  # ends the exporting transaction with the session
