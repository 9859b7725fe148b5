"""Copy every selected table from one source snapshot into the target, N at a time.

Unit of work and of atomicity: a table that is not split is loaded in ONE target transaction
`TRUNCATE ONLY t; COPY t FREEZE …; mark t done` — a retry, a crash or Ctrl-C can never leave
half a table marked done, FREEZE saves the later vacuum, and `--resume` just redoes it.
A large table is split into ctid block ranges copied in parallel; it is truncated and marked
`started` first, each range commits on its own, and it is marked done only when all ranges
are in: a resumed run truncates a `started` table and copies it again whole, so its rows
always come from a single snapshot.

The plan (`build_copy_plan`) only reads; every refusal (missing or non-empty target table)
happens there, before anything is written.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import structlog

from loaders.data import guard, state
from loaders.data.large_objects import LargeObjectPlan, LargeObjectReport, copy_large_objects, plan_large_objects
from loaders.data.catalog import Catalog, Table, missing_schemas, read_catalog, refuse_unreadable
from loaders.concurrency import task_group, with_retry
from loaders.connect import connection, create_pool
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.progress import CopyProgress, LogProgress, Stopwatch
from loaders.data.sequences import SequenceValue, read_at_snapshot
from loaders.data.snapshot import Snapshot, apply_load_settings
from loaders.data.stream import DEFAULT_BUFFER_CHUNKS, BlockRange, pipe

log = structlog.get_logger(stage="copy")

FORMATS = ("auto", "binary", "text")
TID_RANGE_SCAN_VERSION = 140000  # before PG 14 a ctid range is a full scan: don't split
DEFAULT_SPLIT_BYTES = 256 * 1024 * 1024


def default_jobs() -> int:
    """Copying is bound by the servers, not by us: one stream per core, at least two."""
    return max(2, os.cpu_count() or 2)


@dataclass
class CopyOptions:
    jobs: int = field(default_factory=default_jobs)
    schemas: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None
    truncate: bool = False
    resume: bool = False
    format: str = "auto"  # auto = binary when every column type allows it, else text
    split_bytes: int = DEFAULT_SPLIT_BYTES  # tables at least this big are split into ranges
    max_ranges: int | None = None  # default: jobs
    drop_indexes: bool = True
    refresh_matviews: bool = True
    buffer_chunks: int = DEFAULT_BUFFER_CHUNKS
    retries: int = 4
    progress: CopyProgress | None = None
    large_objects: bool = True  # False: skipped, with a warning in the report
    fresh_snapshot: bool = False  # re-copy everything from this run's snapshot

    def __post_init__(self) -> None:
        if self.fresh_snapshot:
            # One snapshot for every table means nothing recorded counts and every table is replaced.
            self.resume, self.truncate = False, True
        if self.format not in FORMATS:
            raise MigrationError(f"unknown copy format {self.format!r}", f"use one of {', '.join(FORMATS)}")
        if self.jobs < 1:
            raise MigrationError(f"--jobs {self.jobs} is not a positive number", "use --jobs 1 or more")


@dataclass
class TablePlan:
    table: Table
    format: str
    ranges: list[BlockRange]  # empty: one stream, one transaction (with FREEZE)

    @property
    def split(self) -> bool:
        return len(self.ranges) > 1


@dataclass
class CopyPlan:
    catalog: Catalog
    tables: list[TablePlan]
    already_done: list[str]  # skipped by --resume
    snapshot_id: str
    # Source sequence values read in the coordinator right after the snapshot (see sequences.py).
    sequence_values: list[SequenceValue] = field(default_factory=list)
    large_objects: LargeObjectPlan = field(default_factory=LargeObjectPlan)
    # Tables skipped by --resume that an earlier run copied under another snapshot: table → snapshot.
    earlier_snapshots: dict[str, str | None] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        if not self.earlier_snapshots:
            return []
        ids = sorted({s or "unknown" for s in self.earlier_snapshots.values()})
        return [
            f"resumed under a different snapshot: {len(self.earlier_snapshots)} table(s) were copied by an earlier "
            f"run (snapshot {', '.join(ids)}), the rest now (snapshot {self.snapshot_id}); they agree only if the "
            f"source did not change in between ({', '.join(sorted(self.earlier_snapshots))}). "
            "Use --fresh-snapshot to copy every table from one snapshot"
        ]

    @property
    def keys(self) -> list[str]:
        return [p.table.key for p in self.tables]


@dataclass
class TableResult:
    table: str
    rows: int
    bytes: int
    seconds: float
    format: str
    ranges: int


@dataclass
class CopyReport:
    tables: list[TableResult]
    skipped: list[str]
    seconds: float
    jobs: int
    set_aside: dict[str, list[str]]
    restored: dict[str, list[str]]
    matviews_refreshed: list[str]
    large_objects: LargeObjectReport | None = None
    warnings: list[str] = field(default_factory=list)  # never silent: also logged and printed

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "total_rows": self.rows, "total_bytes": self.bytes}


# ---------------------------------------------------------------- plan (reads only)


def _ranges(table: Table, options: CopyOptions, server_version: int) -> list[BlockRange]:
    if table.bytes < options.split_bytes or server_version < TID_RANGE_SCAN_VERSION or table.blocks < 2:
        return []
    wanted = max(2, math.ceil(table.bytes / options.split_bytes))
    count = min(wanted, options.max_ranges or options.jobs, table.blocks)
    if count < 2:
        return []
    step = math.ceil(table.blocks / count)
    bounds = [i * step for i in range(1, count)]
    # Open at both ends: rows in blocks beyond the measured size can't be missed.
    return [BlockRange(None if i == 0 else bounds[i - 1], bounds[i] if i < len(bounds) else None)
            for i in range(count)]


def _format(table: Table, target: Table, options: CopyOptions) -> str:
    if table.text_only:
        if options.format == "binary":
            log.warning("format_text_forced", table=table.key, columns=table.text_only,
                        reason="OID alias or aclitem columns have no portable binary form")
        return "text"
    if options.format != "auto":
        return options.format
    same_types = [c.type for c in table.columns] == [target.column(c.name).type for c in table.columns]
    return "binary" if table.binary_safe and same_types else "text"


def _check_targets(catalog: Catalog, target_catalog: Catalog) -> None:
    missing = [t.key for t in catalog.tables if target_catalog.table(t.key) is None]
    if missing:
        raise MigrationError(
            f"target has no table {', '.join(missing)}",
            "create the schema on the target first (`migrate` does it; or run the schema step)",
        )
    bad = []
    for t in catalog.tables:
        target_cols = {c.name for c in target_catalog.table(t.key).columns}  # type: ignore[union-attr]
        lacking = [c for c in t.column_names if c not in target_cols]
        if lacking:
            bad.append(f"{t.key} ({', '.join(lacking)})")
    if bad:
        raise MigrationError(
            f"target tables lack source columns: {'; '.join(bad)}",
            "bring the target schema up to date with the source, then rerun",
        )


async def _non_empty(conn: asyncpg.Connection, tables: Sequence[Table]) -> list[str]:
    found = []
    for t in tables:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM ONLY {t.ident})"):
            found.append(t.key)
    return found


async def build_copy_plan(snap: Snapshot, target: DatabaseUrl, options: CopyOptions) -> CopyPlan:
    """What will be copied, how, and in which order (largest first). Writes nothing anywhere."""
    async with snap.reader() as src:
        unknown_schemas = await missing_schemas(src, options.schemas or ())
        if unknown_schemas:
            raise MigrationError(f"source has no schema {', '.join(unknown_schemas)}", "check --schemas")
        catalog = await read_catalog(src, options.schemas, options.tables)
        await refuse_unreadable(src, catalog.tables, snap.url.user)
    if options.tables:
        found = {t.key for t in catalog.tables} | {t.name for t in catalog.tables}
        unknown = [name for name in options.tables if name not in found]
        if unknown:
            raise MigrationError(f"source has no table {', '.join(unknown)}", "check --tables and --schemas")
    async with connection(target) as conn:
        schemas = sorted({t.schema for t in catalog.tables})
        target_catalog = await read_catalog(conn, schemas) if schemas else Catalog()
        _check_targets(catalog, target_catalog)
        progress = await state.read_copy_state(conn)
        done = [t.key for t in catalog.tables if options.resume and progress.get(t.key) == "done"]
        recorded = await state.read_copy_snapshots(conn) if done else {}
        earlier = {key: recorded.get(key) for key in done if recorded.get(key) != snap.snapshot_id}
        todo = [t for t in catalog.tables if t.key not in done]
        ours = {t.key for t in todo if options.resume and progress.get(t.key) == "started"}
        if not options.truncate:
            occupied = await _non_empty(conn, [t for t in todo if t.key not in ours])
            if occupied:
                raise MigrationError(
                    f"target table(s) not empty: {', '.join(occupied)} (nothing was written)",
                    "pass --truncate to replace their rows, or --resume to continue an interrupted copy",
                )
        async with snap.reader() as src:
            lo_plan = await plan_large_objects(
                src, conn, enabled=options.large_objects, selection=bool(options.tables),
                resume=options.resume, replace=options.truncate)
    plans = [
        TablePlan(t, _format(t, target_catalog.table(t.key), options), _ranges(t, options, snap.server_version))  # type: ignore[arg-type]
        for t in todo
    ]
    sequence_values = await read_at_snapshot(snap, catalog.sequences)
    plan = CopyPlan(catalog, plans, done, snap.snapshot_id, sequence_values, lo_plan, earlier)
    for warning in plan.warnings():
        log.warning("mixed_snapshots", detail=warning)
    return plan


# ---------------------------------------------------------------- execution


def _copy_failed(plan: TablePlan, exc: asyncpg.PostgresError) -> MigrationError:
    fix = "fix the cause, then rerun with --resume (tables already copied are kept)"
    if plan.format == "binary":
        fix = "use --format auto or text (binary COPY is only portable for built-in types); " + fix
    return MigrationError(f"copying {plan.table.key} ({plan.format}) failed: {type(exc).__name__}: {exc}", fix)


@dataclass(frozen=True)
class _Piece:
    rows: int
    bytes: int
    started: float
    ended: float


@dataclass
class _Run:
    snap: Snapshot
    pool: asyncpg.Pool
    options: CopyOptions
    progress: CopyProgress
    limiter: anyio.CapacityLimiter
    results: list[TableResult] = field(default_factory=list)

    async def _unit(self, plan: TablePlan, block_range: BlockRange | None, label: str) -> _Piece:
        """One target transaction; TRUNCATE + FREEZE when it is the whole table."""
        whole = block_range is None
        self.progress.started(label, plan.table.bytes // max(1, len(plan.ranges)))
        started = time.monotonic()

        def on_chunk(nbytes: int, rows: int | None) -> None:
            self.progress.advanced(label, nbytes, rows)

        async with self.snap.reader() as src, self.pool.acquire() as tgt, tgt.transaction():
            if whole:
                await tgt.execute(f"TRUNCATE ONLY {plan.table.ident}")
            rows, nbytes = await pipe(
                src, tgt, plan.table, block_range=block_range, fmt=plan.format, freeze=whole,
                buffer_chunks=self.options.buffer_chunks, on_chunk=on_chunk,
            )
            if whole:
                await state.mark(tgt, plan.table.key, "done", rows=rows, nbytes=nbytes,
                                 seconds=time.monotonic() - started, snapshot=self.snap.snapshot_id)
        piece = _Piece(rows, nbytes, started, time.monotonic())
        self.progress.finished(label, rows, nbytes, piece.ended - piece.started)
        return piece

    async def _retrying(self, plan: TablePlan, block_range: BlockRange | None) -> _Piece:
        label = plan.table.key + (block_range.label() if block_range else "")
        async with self.limiter:
            return await with_retry(
                lambda: self._unit(plan, block_range, label), what=label, attempts=self.options.retries
            )

    async def _start_split(self, plan: TablePlan) -> None:
        async with self.limiter, self.pool.acquire() as tgt, tgt.transaction():
            await tgt.execute(f"TRUNCATE ONLY {plan.table.ident}")
            await state.mark(tgt, plan.table.key, "started", snapshot=self.snap.snapshot_id)

    async def _copy_ranges(self, plan: TablePlan) -> list[_Piece]:
        await with_retry(lambda: self._start_split(plan), what=plan.table.key, attempts=self.options.retries)
        pieces: list[_Piece] = []

        async def one(block_range: BlockRange) -> None:
            pieces.append(await self._retrying(plan, block_range))

        async with task_group() as tg:
            for block_range in plan.ranges:
                tg.start_soon(one, block_range)
        return pieces

    async def copy_table(self, plan: TablePlan) -> None:
        """Seconds reported are the table's own streaming time (first start to last end), not
        the time it waited for a free job slot."""
        try:
            pieces = await self._copy_ranges(plan) if plan.split else [await self._retrying(plan, None)]
        except asyncpg.PostgresError as exc:
            raise _copy_failed(plan, exc) from None
        rows, nbytes = sum(p.rows for p in pieces), sum(p.bytes for p in pieces)
        seconds = round(max(p.ended for p in pieces) - min(p.started for p in pieces), 3)
        if plan.split:
            async with self.pool.acquire() as tgt:
                await state.mark(tgt, plan.table.key, "done", rows=rows, nbytes=nbytes,
                                 seconds=seconds, snapshot=self.snap.snapshot_id)
        self.results.append(TableResult(plan.table.key, rows, nbytes, seconds, plan.format, max(1, len(plan.ranges))))


async def _refresh_matviews(pool: asyncpg.Pool, plan: CopyPlan) -> list[str]:
    refreshed = []
    for mv in plan.catalog.matviews:
        if not mv.populated:
            continue
        exists = await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", mv.ident)
        if not exists:
            log.warning("matview_missing_on_target", table=f"{mv.schema}.{mv.name}")
            continue
        await pool.execute(f"REFRESH MATERIALIZED VIEW {mv.ident}")
        refreshed.append(f"{mv.schema}.{mv.name}")
    return refreshed


async def _restore(pool: asyncpg.Pool, plan: CopyPlan, options: CopyOptions) -> guard.GuardSummary:
    """Put back what was set aside; when tables from two snapshots meet, a foreign key that
    fails validation most likely joins rows copied at different times: say which tables."""
    try:
        return await guard.restore_load_guard(pool, jobs=options.jobs)
    except MigrationError as exc:
        if not plan.earlier_snapshots:
            raise
        raise MigrationError(
            f"{exc.cause}; tables copied under an earlier snapshot: {', '.join(sorted(plan.earlier_snapshots))} "
            f"(the others under {plan.snapshot_id})",
            "rerun with --fresh-snapshot to copy every table from one snapshot",
        ) from None


async def copy_tables(snap: Snapshot, target: DatabaseUrl, plan: CopyPlan, options: CopyOptions) -> CopyReport:
    """Load the plan: set triggers/FKs/indexes aside, copy N units at a time, put them back,
    refresh materialized views. On failure or cancellation everything stays resumable
    (state and set-aside definitions are on the target); rerun with `--resume`."""
    watch = Stopwatch()
    progress = options.progress or LogProgress()
    # Same session settings as the source readers (ISO dates, UTC, no statement_timeout), so
    # text COPY output is parsed exactly as it was printed and long loads aren't cut off.
    pool = await create_pool(target, options.jobs + 1, setup=apply_load_settings)
    try:
        async with pool.acquire() as conn:
            await state.ensure_schema(conn)
            if not options.resume:
                await state.forget(conn, plan.keys)
            aside = await guard.set_aside(conn, [p.table.ident for p in plan.tables], drop_indexes=options.drop_indexes)
        run = _Run(snap, pool, options, progress, anyio.CapacityLimiter(options.jobs))
        lo_report: list[LargeObjectReport] = []

        async def large_objects() -> None:
            lo_report.append(await copy_large_objects(
                snap, pool, plan.large_objects, limiter=run.limiter, progress=progress, retries=options.retries))

        async with task_group() as tg:
            tg.start_soon(large_objects)  # in parallel with the tables, under the same job limit
            for table_plan in sorted(plan.tables, key=lambda p: p.table.bytes, reverse=True):
                tg.start_soon(run.copy_table, table_plan)
        restored = await _restore(pool, plan, options)
        refreshed = await _refresh_matviews(pool, plan) if options.refresh_matviews and not options.tables else []
    except BaseException:
        pool.terminate()
        raise
    await pool.close()
    report = CopyReport(
        sorted(run.results, key=lambda r: r.table), plan.already_done, round(watch.seconds, 3), options.jobs,
        aside.set_aside, restored.restored, refreshed, lo_report[0],
        plan.warnings() + lo_report[0].warnings,
    )
    log.info("copy_finished", tables=len(report.tables), rows=report.rows, bytes=report.bytes, seconds=report.seconds)
    return report


async def restore_after_failure(target: DatabaseUrl) -> dict[str, list[str]]:
    """Put back triggers/FKs/indexes a failed run set aside, without copying anything."""
    pool = await create_pool(target, 2)
    try:
        return (await guard.restore_load_guard(pool)).restored
    finally:
        await pool.close()


__all__ = [
    "CopyOptions", "CopyPlan", "CopyReport", "TablePlan", "TableResult", "build_copy_plan", "copy_tables",
    "default_jobs", "restore_after_failure",
]
