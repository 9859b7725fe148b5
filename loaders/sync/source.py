"""Everything `sync` writes to the source — the only writes to the source in this product.

The rest of the tool opens source sessions read-only at the server. Online migration cannot:
the change stream needs a publication and a logical slot on the source, and a safe cutover
needs the source to refuse writes. So those few objects, all named by the tool
(`supabase_to_rds_sync`, trigger `supabase_to_rds_fence`, function `supabase_to_rds.sync_fence`),
are created here and only here, and `abort` removes every one of them.

psycopg, not asyncpg: `CREATE_REPLICATION_SLOT … (SNAPSHOT 'export')` runs on a
`replication=database` connection, which refuses the extended query protocol, and asyncpg
cannot read the reply of a simple-protocol command; psycopg's `AsyncClientCursor` can.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import psycopg
import structlog
from psycopg import sql

from loaders.connect import APP_NAME
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.supabase import BOOKKEEPING_SCHEMA
from loaders.sync.state import FENCE_FUNCTION, FENCE_TRIGGER, PUBLICATION, SLOT

log = structlog.get_logger(stage="sync")

TableName = Sequence[str]  # (schema, name): never a joined string
FENCE_LOCK_ATTEMPT = "100ms"  # below deadlock_timeout (1 s): we step back before the server kills an app transaction
FENCE_LOCK_WAIT = 10.0  # seconds of attempts before the cutover gives up (nothing fenced)


def _error(url: DatabaseUrl, what: str, exc: psycopg.Error, fix: str) -> MigrationError:
    detail = exc.diag.message_primary or " ".join(str(exc).split()) or type(exc).__name__
    return MigrationError(f"source {url.safe}: {what} ({detail})", fix)


async def _connect(url: DatabaseUrl, **kwargs: object) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(url.dsn(), autocommit=True, application_name=APP_NAME,
                                                     connect_timeout=15, **kwargs)
    except psycopg.Error as exc:
        raise _error(url, "cannot connect", exc, "check the source URL, password and network") from None


@asynccontextmanager
async def writer(url: DatabaseUrl) -> AsyncIterator[psycopg.AsyncConnection]:
    """A source session that may write (autocommit): used only by this module."""
    conn = await _connect(url)
    try:
        yield conn
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


def _table(name: TableName) -> sql.Identifier:
    return sql.Identifier(name[0], name[1])


async def ensure_publication(url: DatabaseUrl, tables: Sequence[TableName]) -> None:
    """A publication for exactly the copied tables (created, or its table list replaced on a rerun)."""
    listed = sql.SQL(", ").join(_table(t) for t in tables)
    async with writer(url) as conn:
        exists = await (await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [PUBLICATION])).fetchone()
        statement = (sql.SQL("ALTER PUBLICATION {} SET TABLE {}") if exists else
                     sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)"))
        try:
            await conn.execute(statement.format(sql.Identifier(PUBLICATION), listed))
        except psycopg.Error as exc:
            raise _error(url, f"cannot create publication {PUBLICATION}", exc,
                         "connect as the tables' owner (on Supabase: the postgres user)") from None
    log.info("publication_ready", publication=PUBLICATION, tables=len(tables))


async def drop_publication(url: DatabaseUrl) -> None:
    async with writer(url) as conn:
        await conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(PUBLICATION)))


async def set_replica_identity_full(url: DatabaseUrl, tables: Sequence[TableName]) -> None:
    """`--replica-identity-full`: updates and deletes of these tables then log the whole old row."""
    async with writer(url) as conn:
        async with conn.transaction():
            for t in tables:
                await conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(_table(t)))
    log.info("replica_identity_full", tables=[".".join(t) for t in tables])


@dataclass
class ExportedSlot:
    """A logical slot whose snapshot stays importable while `conn` stays open and idle."""

    name: str
    consistent_lsn: str
    snapshot: str
    conn: psycopg.AsyncConnection


@asynccontextmanager
async def exported_slot(url: DatabaseUrl) -> AsyncIterator[ExportedSlot]:
    """Create the slot with an exported snapshot; the copy must run inside this block, because
    the snapshot dies with the next command on (or the close of) the replication connection."""
    conn = await _connect(url, replication="database", cursor_factory=psycopg.AsyncClientCursor)
    try:
        try:
            cur = await conn.execute(sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')")
                                     .format(sql.Identifier(SLOT)))
            row = await cur.fetchone()
        except psycopg.Error as exc:
            raise _error(url, f"cannot create logical replication slot {SLOT}", exc,
                         "free a replication slot / WAL sender, or run `sync abort` if a previous run left one") from None
        assert row is not None
        slot = ExportedSlot(row[0], row[1], row[2], conn)
        log.info("slot_created", slot=slot.name, consistent_lsn=slot.consistent_lsn, snapshot=slot.snapshot)
        yield slot
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


async def drop_slot(url: DatabaseUrl, *, wait_seconds: float = 15.0) -> bool:
    """Drop our slot if it exists; a walsender still attached (a subscription being disabled) is
    given time to leave, then terminated. Returns whether a slot was dropped."""
    async with writer(url) as conn:
        with anyio.move_on_after(wait_seconds):
            while True:
                row = await (await conn.execute(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [SLOT])).fetchone()
                if row is None:
                    return False
                if row[0] is None:
                    break
                await conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                await anyio.sleep(0.2)
        try:
            await conn.execute("SELECT pg_drop_replication_slot(%s)", [SLOT])
        except psycopg.errors.UndefinedObject:
            return False
        except psycopg.Error as exc:
            raise _error(url, f"cannot drop replication slot {SLOT}", exc,
                         "stop whatever still reads it (the subscription), then run `sync abort` again") from None
    log.info("slot_dropped", slot=SLOT)
    return True


_FENCE_FUNCTION_SQL = sql.SQL("""
CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $fence$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',
        MESSAGE = format('%I.%I is read-only: this database is being cut over to Amazon RDS', TG_TABLE_SCHEMA, TG_TABLE_NAME),
        HINT = 'point the application at the new database; `python -m automation sync abort` lifts this fence';
END
$fence$""")

# The table itself and every partitioned ancestor (pg_partition_ancestors lists nothing for a plain table): a statement on a parent fires the parent's
# statement triggers, not the leaf's.
_FENCE_TARGETS_SQL = """
WITH listed AS (SELECT format('%%I.%%I', schema, name)::regclass AS relid
                FROM unnest(%s::text[], %s::text[]) AS t(schema, name))
SELECT DISTINCT n.nspname, c.relname
FROM (SELECT relid FROM listed UNION SELECT a.relid FROM listed CROSS JOIN LATERAL pg_partition_ancestors(listed.relid) AS a) r
JOIN pg_class c ON c.oid = r.relid JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY 1, 2
"""


async def _fence_once(conn: psycopg.AsyncConnection, tables: Sequence[TableName]) -> list[list[str]]:
    schema, function = FENCE_FUNCTION
    async with conn.transaction():
        await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(FENCE_LOCK_ATTEMPT)))
        targets = [list(t) for t in await (await conn.execute(
            _FENCE_TARGETS_SQL, [[t[0] for t in tables], [t[1] for t in tables]])).fetchall()]
        # Every lock in one statement, before any trigger: an app transaction holding one table
        # and wanting another then waits for us instead of deadlocking with us.
        await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            sql.SQL(", ").join(_table(t) for t in targets)))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(_FENCE_FUNCTION_SQL.format(sql.Identifier(schema, function)))
        for target in targets:
            await conn.execute(sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
                sql.Identifier(FENCE_TRIGGER), _table(target), sql.Identifier(schema, function)))
    return targets


async def fence(url: DatabaseUrl, tables: Sequence[TableName], *, wait: float = FENCE_LOCK_WAIT) -> list[list[str]]:
    """Make the source refuse writes to the migrated tables — from every role, the owner
    included: a BEFORE … FOR EACH STATEMENT trigger that raises, so the statement fails before a
    row (or a default's nextval) is produced. One transaction: all tables are fenced, or none.
    Each attempt gives up its locks after FENCE_LOCK_ATTEMPT, well before the server's deadlock
    check would pick a victim, so the app's transactions are delayed, never killed."""
    async with writer(url) as conn:
        with anyio.move_on_after(wait):
            while True:
                try:
                    fenced = await _fence_once(conn, tables)
                    log.info("source_fenced", tables=len(fenced))
                    return fenced
                except psycopg.errors.LockNotAvailable:
                    await anyio.sleep(0.05)
                except psycopg.Error as exc:
                    raise _error(url, "could not fence the source", exc,
                                 "connect as the tables' owner (on Supabase: the postgres user)") from None
    raise MigrationError(f"source {url.safe}: could not lock the tables to fence them within {wait:.0f}s",
                         "long transactions hold them; let them finish and run `sync cutover` again")


async def unfence(url: DatabaseUrl, fenced: Sequence[TableName]) -> None:
    """Remove the fence triggers and function; tables that no longer exist are skipped."""
    schema, function = FENCE_FUNCTION
    async with writer(url) as conn:
        async with conn.transaction():
            for t in fenced:
                exists = await (await conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                                                   [t[0], t[1]])).fetchone()
                if exists and exists[0] is not None:
                    await conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(FENCE_TRIGGER), _table(t)))
            await conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(schema, function)))
            # Only if nothing else lives there (RESTRICT): the schema exists on the source just for the fence.
            left = await (await conn.execute(
                "SELECT count(*) FROM pg_depend d JOIN pg_namespace n ON d.refobjid = n.oid "
                "WHERE d.refclassid = 'pg_namespace'::regclass AND n.nspname = %s", [BOOKKEEPING_SCHEMA])).fetchone()
            if left and left[0] == 0:
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(schema)))
    log.info("source_unfenced", tables=len(fenced))
