"""Large objects: copied with their OIDs, streamed in 1 MB slices, counted and checksummed.

COPY of a table with an `oid` column carries only the number; the bytes live in
`pg_largeobject`, which no table copy touches — a migration that skips them looks verified
(the numbers are equal) while `lo_get` on the target fails. So they are a unit of the copy
like tables are:
- read inside the shared snapshot (a read-only large object is read as of the transaction's
  snapshot, and `pg_largeobject_metadata` is an MVCC catalog), in parallel with the tables
  under the same job limit;
- written with server-side functions the target's owner may call without superuser
  (`lo_create(oid)` keeps the OID the tables point at, `lo_put` per slice, so memory stays
  at one slice per stream whatever an object's size); `pg_largeobject` itself is readable
  only by superusers, which RDS's master user is not — nothing here reads it;
- a batch of objects is one target transaction that also records them in
  `supabase_to_rds.large_objects`, so `--resume` skips exactly what committed.
Owners and grants of large objects are not carried (the target's objects belong to the user
that loads them); the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import structlog

from loaders import bookkeeping
from loaders.concurrency import task_group, with_retry
from loaders.data.snapshot import Snapshot
from loaders.errors import MigrationError
from loaders.progress import CopyProgress

log = structlog.get_logger(stage="large_objects")

CHUNK_BYTES = 1024 * 1024  # one lo_get/lo_put slice
BATCH_BYTES = 64 * 1024 * 1024  # a batch (one target transaction) holds about this much …
BATCH_COUNT = 500  # … or this many objects, whichever comes first
INV_READ = 0x40000

# Every large object with its size; the size comes from seeking to the end of a read-only
# descriptor (what `lo_get` itself would read), closed right away.
_LIST_SQL = """
SELECT m.oid::bigint AS oid, s.size
FROM pg_largeobject_metadata m,
     LATERAL (SELECT lo_lseek64(f.fd, 0, 2) AS size, lo_close(f.fd) AS closed
              FROM (SELECT lo_open(m.oid, $1) AS fd OFFSET 0) f) s
ORDER BY m.oid
"""

# Per object: size and a digest of its bytes, computed slice by slice on the server (md5 of
# the concatenated slice digests), so neither side ships the data to compare it.
_DIGEST_SQL = """
SELECT l.oid, l.size,
       (SELECT md5(coalesce(string_agg(md5(lo_get(l.oid::oid, off, $2::int)), '' ORDER BY off), ''))
          FROM generate_series(0::bigint, l.size - 1, $2::bigint) AS off) AS digest
FROM (""" + _LIST_SQL + """) l
ORDER BY l.oid
"""


@dataclass(frozen=True)
class LargeObject:
    oid: int
    size: int


@dataclass
class LargeObjectPlan:
    objects: list[LargeObject] = field(default_factory=list)
    already_done: int = 0  # skipped by --resume
    skipped_reason: str | None = None  # why none are copied (--no-large-objects, --tables)
    source_count: int = 0

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)


@dataclass
class LargeObjectReport:
    copied: int = 0
    bytes: int = 0
    seconds: float = 0.0
    already_done: int = 0
    source_count: int = 0
    warnings: list[str] = field(default_factory=list)
    note: str = "owners and grants of large objects are not copied: on the target they belong to the loading user"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


async def list_objects(conn: asyncpg.Connection) -> list[LargeObject]:
    return [LargeObject(r["oid"], r["size"]) for r in await conn.fetch(_LIST_SQL, INV_READ)]


async def digests(conn: asyncpg.Connection, *, checksums: bool = True) -> dict[int, tuple[int, str | None]]:
    """oid → (size, digest or None)."""
    if not checksums:
        return {o.oid: (o.size, None) for o in await list_objects(conn)}
    rows = await conn.fetch(_DIGEST_SQL, INV_READ, CHUNK_BYTES)
    return {r["oid"]: (r["size"], r["digest"]) for r in rows}


async def _recorded(conn: asyncpg.Connection) -> set[int]:
    if not await bookkeeping.table_exists(conn, bookkeeping.LARGE_OBJECTS):
        return set()
    return {r[0] for r in await conn.fetch(f"SELECT lo_oid::bigint FROM {bookkeeping.LARGE_OBJECTS}")}


async def plan_large_objects(
    src: asyncpg.Connection, tgt: asyncpg.Connection, *, enabled: bool, selection: bool, resume: bool, replace: bool,
) -> LargeObjectPlan:
    """What to copy; refuses (before anything is written) to overwrite objects already on the
    target unless `replace` (--truncate / --fresh-snapshot) or `resume` says they are ours."""
    if not enabled or selection:  # counted only (no read), for the report's warning
        reason = "--no-large-objects" if not enabled else "--tables selects tables only"
        return LargeObjectPlan([], 0, reason, await src.fetchval("SELECT count(*) FROM pg_largeobject_metadata"))
    try:
        objects = await list_objects(src)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise MigrationError(
            f"source: cannot read the large objects ({exc})",
            "connect as their owner (on Supabase: the postgres user), or skip them with --no-large-objects",
        ) from None
    done = await _recorded(tgt) if resume else set()
    todo = [o for o in objects if o.oid not in done]
    if not replace and todo:
        present = {r[0] for r in await tgt.fetch(
            "SELECT oid::bigint FROM pg_largeobject_metadata WHERE oid = ANY($1::oid[])", [o.oid for o in todo])}
        ours = await _recorded(tgt) if resume else set()
        clash = sorted(present - ours)
        if clash:
            shown = ", ".join(map(str, clash[:5])) + (" …" if len(clash) > 5 else "")
            raise MigrationError(
                f"target already has {len(clash)} large object(s) with the source's OIDs ({shown}) (nothing was written)",
                "pass --truncate to replace them, or --resume to continue an interrupted copy",
            )
    return LargeObjectPlan(todo, len(objects) - len(todo), None, len(objects))


def batches(objects: Sequence[LargeObject]) -> list[list[LargeObject]]:
    out: list[list[LargeObject]] = []
    size = 0
    for obj in objects:
        if not out or len(out[-1]) >= BATCH_COUNT or size + obj.size > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(obj)
        size += obj.size
    return out


async def _copy_one(src: asyncpg.Connection, tgt: asyncpg.Connection, obj: LargeObject) -> int:
    await tgt.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = $1::oid", obj.oid)
    await tgt.execute("SELECT lo_create($1::oid)", obj.oid)
    offset = 0
    while True:
        data: bytes = await src.fetchval("SELECT lo_get($1::oid, $2, $3::int)", obj.oid, offset, CHUNK_BYTES)
        if data:
            await tgt.execute("SELECT lo_put($1::oid, $2, $3)", obj.oid, offset, data)
            offset += len(data)
        if len(data) < CHUNK_BYTES:
            return offset


@dataclass
class _LargeObjectRun:
    snap: Snapshot
    pool: asyncpg.Pool
    limiter: anyio.CapacityLimiter
    progress: CopyProgress
    retries: int
    copied: int = 0
    bytes: int = 0

    async def _batch(self, batch: list[LargeObject], label: str) -> tuple[int, int]:
        expected = sum(o.size for o in batch)
        self.progress.started(label, expected)
        started = time.monotonic()
        written = 0
        async with self.snap.reader() as src, self.pool.acquire() as tgt, tgt.transaction():
            for obj in batch:
                try:
                    size = await _copy_one(src, tgt, obj)
                except asyncpg.InsufficientPrivilegeError as exc:
                    raise MigrationError(
                        f"large object {obj.oid}: {exc}",
                        "connect to the source as the large objects' owner (on Supabase: the postgres user), "
                        "or skip them with --no-large-objects",
                    ) from None
                written += size
                self.progress.advanced(label, size, 1)
            await tgt.executemany(
                f"""INSERT INTO {bookkeeping.LARGE_OBJECTS} (lo_oid, bytes, snapshot) VALUES ($1::oid, $2, $3)
                    ON CONFLICT (lo_oid) DO UPDATE SET bytes = EXCLUDED.bytes, snapshot = EXCLUDED.snapshot,
                      copied_at = now()""",
                [(o.oid, o.size, self.snap.snapshot_id) for o in batch],
            )
        self.progress.finished(label, len(batch), written, time.monotonic() - started)
        return len(batch), written

    async def run_batch(self, batch: list[LargeObject], label: str) -> None:
        async with self.limiter:
            count, written = await with_retry(lambda: self._batch(batch, label), what=label, attempts=self.retries)
        self.copied += count
        self.bytes += written


async def copy_large_objects(
    snap: Snapshot, pool: asyncpg.Pool, plan: LargeObjectPlan, *, limiter: anyio.CapacityLimiter,
    progress: CopyProgress, retries: int = 4,
) -> LargeObjectReport:
    """Copy the planned objects in batches, each batch under the shared job limit, so large
    objects stream alongside the tables."""
    report = LargeObjectReport(already_done=plan.already_done, source_count=plan.source_count)
    if plan.skipped_reason is not None:
        if plan.source_count:
            report.warnings.append(
                f"{plan.source_count} large object(s) on the source were NOT copied ({plan.skipped_reason}); "
                "columns that hold their OIDs point at nothing on the target")
            log.warning("large_objects_skipped", count=plan.source_count, reason=plan.skipped_reason)
        return report
    started = time.monotonic()
    run = _LargeObjectRun(snap, pool, limiter, progress, retries)
    groups = batches(plan.objects)
    async with task_group() as tg:
        for i, batch in enumerate(groups, 1):
            tg.start_soon(run.run_batch, batch, f"large objects {i}/{len(groups)}")
    report.copied, report.bytes = run.copied, run.bytes
    report.seconds = round(time.monotonic() - started, 3)
    if report.copied or report.already_done:
        log.info("large_objects_copied", count=report.copied, bytes=report.bytes, skipped=report.already_done)
    return report


@dataclass
class LargeObjectCheck:
    """verify's view: same OIDs, sizes and bytes on both sides."""

    source_count: int = 0
    target_count: int = 0
    source_bytes: int = 0
    target_bytes: int = 0
    missing: list[int] = field(default_factory=list)  # on the source, not on the target
    extra: list[int] = field(default_factory=list)  # on the target only
    different: list[int] = field(default_factory=list)  # size or bytes differ
    skipped: str | None = None  # why not checked (reported as a warning, never silently)

    @property
    def ok(self) -> bool:
        return self.skipped is not None or not (self.missing or self.extra or self.different)

    def summary(self) -> str:
        if self.skipped:
            return f"not checked ({self.skipped}): {self.source_count} on the source"
        parts = [f"{self.source_count} on the source, {self.target_count} on the target"]
        for name, oids in (("missing", self.missing), ("only on target", self.extra), ("different", self.different)):
            if oids:
                parts.append(f"{name}: {', '.join(map(str, oids[:5]))}{' …' if len(oids) > 5 else ''}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def compare(source: dict[int, tuple[int, str | None]], target: dict[int, tuple[int, str | None]]) -> LargeObjectCheck:
    return LargeObjectCheck(
        len(source), len(target), sum(s for s, _ in source.values()), sum(s for s, _ in target.values()),
        sorted(set(source) - set(target)), sorted(set(target) - set(source)),
        sorted(o for o in set(source) & set(target) if source[o] != target[o]),
    )
