"""One run per target, sized to what the servers allow, and never silently stuck on a lock.

`run_guard` is entered once around a whole `copy`/`migrate`/`up` run:
- it takes a session advisory lock on the target database and keeps that session open to the
  end; a second run finds the lock taken and stops with one line naming the first (pid,
  client address, since), because two loads into one table double its rows;
- it lowers `--jobs` to the connection slots both servers have free (max_connections minus
  reserved minus in use, and role/database limits), saying so once, so the run never meets
  "too many connections" halfway through;
- the same session watches the tool's own sessions on the target: one that waits for a lock
  more than a few seconds is reported as "waiting for lock on T held by pid P (query …)",
  and the COPY stall watchdog asks it whether a silent COPY is merely queued behind a lock.

Entering it again in the same task (e.g. `copy_tables` inside `migrate`) reuses the guard.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio
import asyncpg
import structlog

from loaders.concurrency import task_group
from loaders.connect import APP_NAME, close_quietly, connect, connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError

log = structlog.get_logger(stage="run")

# pg_advisory_lock(int4, int4): 'S2RD' and 1 = "a data run on this database".
RUN_LOCK_KEYS = (0x53325244, 1)
LOCK_NOTICE_SECONDS = 3.0  # report a lock wait once it is this old
LOCK_REPEAT_SECONDS = 30.0  # and again this often while it lasts
WATCH_TICK = 1.0
SOURCE_SPARE, TARGET_SPARE = 1, 2  # snapshot coordinator; the copy pool's extra + this session

_HOLDER = """
SELECT a.pid, host(a.client_addr) AS client_addr, a.client_port, a.usename,
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS" UTC"') AS since,
       a.application_name
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = $2::int::oid
  AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_SLOTS = """
SELECT current_setting('max_connections')::int AS max_connections,
       CASE WHEN r.rolsuper THEN 0 ELSE current_setting('superuser_reserved_connections')::int
            + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0) END AS reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS in_use,
       r.rolconnlimit AS role_limit,
       (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user
          AND backend_type = 'client backend')::int AS role_in_use,
       d.datconnlimit AS db_limit,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
          AND backend_type = 'client backend')::int AS db_in_use
FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()
"""

# The tool's sessions on this database that wait for a lock, with who holds it.
_LOCK_WAITS = """
SELECT l.pid, coalesce(format('%I.%I', n.nspname, c.relname), l.locktype) AS what, n.nspname AS schema,
       c.relname AS name, l.mode,
       extract(epoch FROM now() - coalesce(l.waitstart, a.query_start))::float8 AS waited,
       h.pid AS holder, hs.state AS holder_state, left(hs.query, 120) AS holder_query
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(pg_blocking_pids(l.pid)) AS h(pid)
LEFT JOIN pg_stat_activity hs ON hs.pid = h.pid
WHERE NOT l.granted AND a.application_name = $1 AND a.datname = current_database()
  AND now() - coalesce(l.waitstart, a.query_start) > make_interval(secs => $2)
ORDER BY l.pid, h.pid
"""


@dataclass(frozen=True)
class Slots:
    """Free connection slots on one server, and why (for the message)."""

    free: int
    detail: str


@dataclass(frozen=True)
class LockWait:
    pid: int
    what: str
    schema: str | None
    name: str | None
    mode: str
    waited: float
    holder: int
    holder_state: str | None
    holder_query: str | None

    def describe(self) -> str:
        query = self.holder_query if self.holder_query else "not visible to this user"
        return (f"waiting for lock on {self.what} ({self.mode}) held by pid {self.holder} "
                f"({self.holder_state or 'state unknown'}, query {query!r}) for {self.waited:.0f} s")


@dataclass
class RunGuard:
    """The open run: its lock session on the target, used also to watch lock waits."""

    target: DatabaseUrl
    conn: asyncpg.Connection
    jobs: int | None = None
    _query_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _reported: dict[tuple[int, int], float] = field(default_factory=dict)
    _last: dict[tuple[str | None, str | None], LockWait] = field(default_factory=dict)

    def last_wait_on(self, schema: str, name: str) -> LockWait | None:
        """The latest lock wait seen on that table, to name the holder in a final error."""
        return self._last.get((schema, name))

    async def waiting_on_lock(self, pid: int) -> bool:
        """Is this target backend queued behind a lock? Unknown (session lost) counts as no."""
        try:
            async with self._query_lock:
                return bool(await self.conn.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False

    async def lock_waits(self, older_than: float = LOCK_NOTICE_SECONDS) -> list[LockWait]:
        async with self._query_lock:
            rows = await self.conn.fetch(_LOCK_WAITS, APP_NAME, older_than)
        return [LockWait(**dict(r)) for r in rows]

    async def _report_waits(self) -> None:
        for wait in await self.lock_waits():
            self._last[(wait.schema, wait.name)] = wait
            key = (wait.pid, wait.holder)
            last = self._reported.get(key)
            if last is None or wait.waited - last >= LOCK_REPEAT_SECONDS:
                self._reported[key] = wait.waited
                log.warning(wait.describe(), table=wait.what, pid=wait.pid, holder=wait.holder)

    async def _relock(self) -> None:
        """The lock session died (target restarted, session killed): take the lock again, or
        stop if another run took it meanwhile; while the server is away, try again later."""
        try:
            self.conn = await _lock_session(self.target)
        except MigrationError as exc:
            if "another run" in exc.cause:
                raise
            return
        log.info("run_lock_retaken")

    async def watch(self) -> None:
        while True:
            await anyio.sleep(WATCH_TICK)
            if self.conn.is_closed():
                await self._relock()
                continue
            try:
                await self._report_waits()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.debug("lock_watch_failed", error=type(exc).__name__)


_current: ContextVar[RunGuard | None] = ContextVar("supabase_to_rds_run_guard", default=None)


def current_run() -> RunGuard | None:
    return _current.get()


async def _take_lock(conn: asyncpg.Connection, target: DatabaseUrl) -> None:
    if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *RUN_LOCK_KEYS):
        return
    holder = await conn.fetchrow(_HOLDER, *RUN_LOCK_KEYS)
    if holder is None:  # released between the two statements: one more try
        if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *RUN_LOCK_KEYS):
            return
        raise MigrationError(f"target {target.safe}: another run holds this database's run lock",
                             "wait for it to finish (or stop it), then rerun with --resume")
    client = (f"{holder['client_addr']}:{holder['client_port']}" if holder["client_addr"]
              else "a local socket or a client not visible to this user")
    raise MigrationError(
        f"target {target.safe}: another run is loading this database — pid {holder['pid']}, "
        f"client {client}, user {holder['usename'] or '?'}, since {holder['since'] or '?'}"
        f" ({holder['application_name'] or APP_NAME})",
        "wait for it to finish (or stop it: SELECT pg_terminate_backend(pid)), then rerun with --resume",
    )


async def free_slots(conn: asyncpg.Connection) -> Slots:
    r = await conn.fetchrow(_SLOTS)
    free = r["max_connections"] - r["reserved"] - r["in_use"]
    detail = f"max_connections {r['max_connections']}, {r['reserved']} reserved, {r['in_use']} in use"
    for limit, used, what in ((r["role_limit"], r["role_in_use"], "role"), (r["db_limit"], r["db_in_use"], "database")):
        if limit is not None and limit >= 0 and limit - used < free:
            free, detail = limit - used, f"{what} connection limit {limit}, {used} in use"
    return Slots(free, detail)


async def clamp_jobs(requested: int, source: DatabaseUrl, target_conn: asyncpg.Connection) -> int:
    """The job count both servers can serve; one warning when it is lower than asked."""
    async with connection(source) as src:
        source_slots = await free_slots(src)
    target_slots = await free_slots(target_conn)
    # The probe's own slot is free again once it closes; the lock session stays.
    sides = (("source", source_slots.free + 1 - SOURCE_SPARE, source_slots),
             ("target", target_slots.free - TARGET_SPARE + 1, target_slots))
    side, allowed, slots = min(sides, key=lambda s: s[1])
    if allowed < 1:
        raise MigrationError(f"the {side} server has no free connection slot for a copy job ({slots.detail})",
                             "close idle sessions or raise max_connections, then rerun")
    if allowed >= requested:
        return requested
    log.warning(f"--jobs {requested} lowered to {allowed}: the {side} server has {slots.free} free "
                f"connection slot(s) ({slots.detail})", requested=requested, jobs=allowed)
    return allowed


def _label() -> str:
    """Who holds the lock, readable by a second run even without pg_read_all_stats."""
    return f"{APP_NAME} run {socket.gethostname()[:30]}:{os.getpid()}"[:63]


async def _lock_session(target: DatabaseUrl) -> asyncpg.Connection:
    conn = await connect(target)
    try:
        await _take_lock(conn, target)
        await conn.execute("SELECT set_config('application_name', $1, false)", _label())
    except BaseException:
        conn.terminate()
        raise
    return conn


@asynccontextmanager
async def run_guard(target: DatabaseUrl, *, source: DatabaseUrl | None = None,
                    jobs: int | None = None) -> AsyncIterator[RunGuard]:
    """Hold the target's run lock (and watch lock waits) for the block; with `source` and
    `jobs`, `guard.jobs` is the clamped job count. Re-entrant within one task."""
    existing = _current.get()
    if existing is not None and existing.target.safe == target.safe:
        yield existing
        return
    guard = RunGuard(target, await _lock_session(target))
    try:
        if source is not None and jobs is not None:
            guard.jobs = await clamp_jobs(jobs, source, guard.conn)
        token = _current.set(guard)
        try:
            async with task_group() as tg:
                tg.start_soon(guard.watch)
                yield guard
                tg.cancel_scope.cancel()
        finally:
            _current.reset(token)
    finally:
        await close_quietly(guard.conn)


__all__ = ["LockWait", "RunGuard", "Slots", "clamp_jobs", "current_run", "free_slots", "run_guard"]
