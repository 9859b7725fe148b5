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

Faults: a unit whose source or target connection dies, or whose COPY moves no byte for
`stall_seconds` while not waiting on a lock, drops BOTH its connections (so neither server
keeps a half-done COPY or an open transaction) and is redone from a clean state, `retries`
times with doubling pauses, then fails the run with one line. A whole-table unit redoes its
TRUNCATE in the new transaction; a range records itself in `copy_ranges` in the transaction
that loads it, so a range whose COMMIT reached the server but whose reply was lost is not
loaded twice. Target statements wait at most `lock_timeout` per attempt for a lock.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import structlog

from loaders import bookkeeping
from loaders.data import guard, state
from loaders.data.large_objects import LargeObjectPlan, LargeObjectReport, copy_large_objects, plan_large_objects
from loaders.data.catalog import Catalog, Selection, Table, TableRef, read_catalog, refuse_unreadable, refuse_unwritable, resolve_selection
from loaders.concurrency import PeerClosed, Stalled, task_group, with_retry
from loaders.connect import connection, create_pool, too_many_connections
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.progress import CopyProgress, LogProgress, Stopwatch
from loaders.data.sequences import SequenceValue, read_at_snapshot
from loaders.data.snapshot import Snapshot, apply_load_settings
from loaders.data.stream import DEFAULT_BUFFER_CHUNKS, DEFAULT_STALL_SECONDS, BlockRange, Liveness, pipe
from loaders.runguard import RunGuard, run_guard

log = structlog.get_logger(stage="copy")

FORMATS = ("auto", "binary", "text")
TID_RANGE_SCAN_VERSION = 140000  # before PG 14 a ctid range is a full scan: don't split
DEFAULT_SPLIT_BYTES = 256 * 1024 * 1024
DEFAULT_LOCK_TIMEOUT = 30.0
RANGES_TABLE = bookkeeping.COPY_RANGES
# Errors of a binary COPY that text format avoids (a type without binary I/O, a binary
# representation the target reads differently).
_BINARY_TROUBLE = (asyncpg.InvalidBinaryRepresentationError, asyncpg.DatatypeMismatchError,
                   asyncpg.UndefinedFunctionError, asyncpg.ProtocolViolationError)
# What a failed unit can raise besides a server error: its connection or its watchdog.
UNIT_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, PeerClosed, Stalled)


def default_jobs() -> int:
    """Copying is bound by the servers, not by us: one stream per core, at least two."""
    return max(2, os.cpu_count() or 2)


@dataclass
class CopyOptions:
    jobs: int = field(default_factory=default_jobs)
    schemas: tuple[str, ...] | None = None
    tables: tuple[TableRef, ...] | None = None  # names in SQL syntax are parsed too
    truncate: bool = False
    resume: bool = False
    format: str = "auto"  # auto = binary when every column type allows it, else text
    split_bytes: int = DEFAULT_SPLIT_BYTES  # tables at least this big are split into ranges
    max_ranges: int | None = None  # default: jobs
    drop_indexes: bool = True
    refresh_matviews: bool = True
    buffer_chunks: int = DEFAULT_BUFFER_CHUNKS
    retries: int = 5  # attempts per unit; pauses 1, 2, 4, 8 s between them
    retry_delay: float = 1.0
    stall_seconds: float = DEFAULT_STALL_SECONDS
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT  # per attempt, for each target statement
    progress: CopyProgress | None = None
    large_objects: bool = True  # False: skipped, with a warning in the report
    fresh_snapshot: bool = False  # re-copy everything from this run's snapshot

    def __post_init__(self) -> None:
        self.tables = Selection.of(tables=self.tables).tables
        if self.fresh_snapshot:
            # One snapshot for every table means nothing recorded counts and every table is replaced.
            self.resume, self.truncate = False, True
        if self.format not in FORMATS:
            raise MigrationError(f"unknown copy format {self.format!r}", f"use one of {', '.join(FORMATS)}")
        if self.jobs < 1:
            raise MigrationError(f"--jobs {self.jobs} is not a positive number", "use --jobs 1 or more")
        if self.stall_seconds <= 0 or self.lock_timeout <= 0:
            raise MigrationError("--stall-timeout and --lock-timeout must be positive seconds",
                                 "use e.g. --stall-timeout 300 --lock-timeout 30")

    @property
    def selection(self) -> Selection:
        return Selection.of(self.schemas, self.tables)


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
    restore_failed: list[str] = field(default_factory=list)  # still set aside: `copy --restore` after a fix
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
    missing = [t.key for t in catalog.tables if target_catalog.table(t.ref) is None]
    if missing:
        raise MigrationError(
            f"target has no table {', '.join(missing)}",
            "create the schema on the target first (`migrate` does it; or run the schema step)",
        )
    bad = []
    for t in catalog.tables:
        target_cols = {c.name for c in target_catalog.table(t.ref).columns}  # type: ignore[union-attr]
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
        catalog = await resolve_selection(src, options.selection)
        await refuse_unreadable(src, catalog.tables, snap.url.user)
    async with connection(target) as conn:
        schemas = sorted({t.schema for t in catalog.tables})
        target_catalog = await read_catalog(conn, schemas) if schemas else Catalog()
        _check_targets(catalog, target_catalog)
        await refuse_unwritable(conn, catalog.tables, target.user, will_create=False)
        progress = await state.read_copy_state(conn, [t.key for t in catalog.tables]) if options.resume else {}
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
        TablePlan(t, _format(t, target_catalog.table(t.ref), options), _ranges(t, options, snap.server_version))  # type: ignore[arg-type]
        for t in todo
    ]
    sequence_values = await read_at_snapshot(snap, catalog.sequences)
    plan = CopyPlan(catalog, plans, done, snap.snapshot_id, sequence_values, lo_plan, earlier)
    for warning in plan.warnings():
        log.warning("mixed_snapshots", detail=warning)
    return plan


# ---------------------------------------------------------------- execution


def _server_cause(exc: BaseException) -> BaseException:
    """A FATAL that closed the connection arrives as the cause of asyncpg's connection error."""
    cause = exc.__cause__
    return cause if isinstance(cause, asyncpg.PostgresError) else exc


def _copy_failed(plan: TablePlan, exc: BaseException, options: CopyOptions, run: RunGuard | None) -> MigrationError:
    """One line whose fix matches the kind of failure (data, schema, locks, limits, network)."""
    key, resume = plan.table.key, "then rerun with --resume (tables already copied are kept)"
    cause = _server_cause(exc)
    what = f"copying {key} ({plan.format}) failed: {type(cause).__name__}: {cause}"
    if isinstance(cause, asyncpg.TooManyConnectionsError):
        return too_many_connections(f"copying {key}")
    if isinstance(cause, asyncpg.IntegrityConstraintViolationError):
        name = getattr(cause, "constraint_name", None)
        return MigrationError(
            what, f"the target's constraint {name or ''} rejects rows the source holds: make the target "
            f"table's definition match the source (or fix those rows on the source), {resume}")
    if isinstance(cause, asyncpg.LockNotAvailableError):
        wait = run.last_wait_on(plan.table.schema, plan.table.name) if run is not None else None
        held = wait.describe() if wait else "another session holds a lock on it"
        return MigrationError(
            f"copying {key}: gave up after {options.retries} waits of {options.lock_timeout:g} s for a lock ({held})",
            f"end that session or let it finish (or raise --lock-timeout), {resume}")
    if isinstance(cause, asyncpg.QueryCanceledError) or getattr(cause, "sqlstate", None) in ("25P03", "25P04"):
        return MigrationError(
            what, "a server timeout (statement_timeout, transaction_timeout or idle_in_transaction_session_timeout "
            f"on the role or database) ends the copy: set it to 0 for the migration user (ALTER ROLE … SET …), {resume}")
    if isinstance(cause, asyncpg.DiskFullError):
        return MigrationError(what, f"free or add storage on the target, {resume}")
    if isinstance(cause, asyncpg.InsufficientPrivilegeError):
        return MigrationError(what, f"connect as the tables' owner on the target (RDS: the master user), {resume}")
    if isinstance(cause, _BINARY_TROUBLE) and plan.format == "binary":
        return MigrationError(what, "use --format auto or text (binary COPY is only portable for built-in types), "
                              + resume)
    if isinstance(exc, Stalled):
        return MigrationError(f"copying {key}: stalled {options.retries} times: {exc}",
                              f"check both servers and the network (or raise --stall-timeout), {resume}")
    if isinstance(cause, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
                          asyncpg.InterfaceError, OSError)):
        return MigrationError(
            f"copying {key}: the connection failed {options.retries} times in a row, last: {type(cause).__name__}: {cause}",
            "check that both servers are up and reachable, and that nothing ends this tool's sessions "
            f"(pg_terminate_backend, transaction_timeout), {resume}")
    return MigrationError(what, f"fix the cause, {resume}")


@dataclass(frozen=True)
class _Piece:
    rows: int
    bytes: int
    started: float
    ended: float


def _drop(conn: asyncpg.Connection) -> None:
    """Close without a goodbye; a connection that died is already back in its pool."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass


@dataclass
class _Run:
    snap: Snapshot
    pool: asyncpg.Pool
    options: CopyOptions
    progress: CopyProgress
    limiter: anyio.CapacityLimiter
    guard: RunGuard | None = None
    results: list[TableResult] = field(default_factory=list)
    # Told each table's key as soon as its rows are committed (migrate's per-table pipeline).
    on_table_done: Callable[[str], None] | None = None

    @property
    def liveness(self) -> Liveness:
        return Liveness(self.options.stall_seconds, self.guard.waiting_on_lock if self.guard else None)

    async def _retry(self, fn, what: str):  # type: ignore[no-untyped-def]
        return await with_retry(fn, what=what, attempts=self.options.retries, first_delay=self.options.retry_delay)

    async def _begin(self, tgt: asyncpg.Connection) -> None:
        await tgt.execute("BEGIN")
        await tgt.execute("SELECT set_config('lock_timeout', $1, true)", f"{int(self.options.lock_timeout * 1000)}ms")

    async def _load(self, src: asyncpg.Connection, tgt: asyncpg.Connection, plan: TablePlan,
                    block_range: BlockRange | None, label: str, started: float) -> tuple[int, int]:
        """The unit's target transaction; TRUNCATE + FREEZE when it is the whole table."""
        whole = block_range is None
        await self._begin(tgt)
        if whole:
            await tgt.execute(f"TRUNCATE ONLY {plan.table.ident}")
        else:
            done = await tgt.fetchrow(f"SELECT rows, bytes FROM {RANGES_TABLE} WHERE table_name = $1 "
                                      "AND block_range = $2", plan.table.key, label)
            if done is not None:  # committed by an attempt whose reply was lost
                await tgt.execute("COMMIT")
                return done["rows"], done["bytes"]

        def on_chunk(nbytes: int, rows: int | None) -> None:
            self.progress.advanced(label, nbytes, rows)

        rows, nbytes = await pipe(
            src, tgt, plan.table, block_range=block_range, fmt=plan.format, freeze=whole,
            buffer_chunks=self.options.buffer_chunks, on_chunk=on_chunk, liveness=self.liveness,
        )
        if whole:
            await state.mark(tgt, plan.table.key, "done", rows=rows, nbytes=nbytes,
                             seconds=time.monotonic() - started, snapshot=self.snap.snapshot_id)
        else:
            await tgt.execute(f"INSERT INTO {RANGES_TABLE} VALUES ($1, $2, $3, $4)", plan.table.key, label, rows, nbytes)
        await tgt.execute("COMMIT")
        return rows, nbytes

    async def _unit(self, plan: TablePlan, block_range: BlockRange | None, label: str, started: float) -> _Piece:
        self.progress.started(label, plan.table.bytes // max(1, len(plan.ranges)))
        async with self.snap.reader() as src, self.pool.acquire() as tgt:
            try:
                rows, nbytes = await self._load(src, tgt, plan, block_range, label, started)
            except BaseException:
                # Either side may be mid-COPY, dead or unreachable: drop both instead of waiting
                # on them. The target transaction dies with its session (the redo starts clean)
                # and the source stops its COPY, so neither keeps a session of ours.
                _drop(tgt)
                _drop(src)
                raise
        piece = _Piece(rows, nbytes, started, time.monotonic())
        self.progress.finished(label, rows, nbytes, piece.ended - piece.started)
        return piece

    async def _retrying(self, plan: TablePlan, block_range: BlockRange | None) -> _Piece:
        """Seconds run from the first attempt: lock waits and retries are part of the time."""
        label = plan.table.key + (block_range.label() if block_range else "")
        async with self.limiter:
            started = time.monotonic()
            return await self._retry(lambda: self._unit(plan, block_range, label, started), label)

    async def _start_split(self, plan: TablePlan) -> None:
        async with self.limiter, self.pool.acquire() as tgt:
            try:
                await self._begin(tgt)
                await tgt.execute(f"TRUNCATE ONLY {plan.table.ident}")
                await tgt.execute(f"DELETE FROM {RANGES_TABLE} WHERE table_name = $1", plan.table.key)
                await state.mark(tgt, plan.table.key, "started", snapshot=self.snap.snapshot_id)
                await tgt.execute("COMMIT")
            except BaseException:
                _drop(tgt)
                raise

    async def _copy_ranges(self, plan: TablePlan) -> list[_Piece]:
        await self._retry(lambda: self._start_split(plan), plan.table.key)
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
        except UNIT_FAILURES as exc:
            raise _copy_failed(plan, exc, self.options, self.guard) from None
        rows, nbytes = sum(p.rows for p in pieces), sum(p.bytes for p in pieces)
        seconds = round(max(p.ended for p in pieces) - min(p.started for p in pieces), 3)
        if plan.split:
            async with self.pool.acquire() as tgt:
                await state.mark(tgt, plan.table.key, "done", rows=rows, nbytes=nbytes,
                                 seconds=seconds, snapshot=self.snap.snapshot_id)
        self.results.append(TableResult(plan.table.key, rows, nbytes, seconds, plan.format, max(1, len(plan.ranges))))
        if self.on_table_done is not None:
            self.on_table_done(plan.table.key)


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


def _mixed_snapshot_hint(summary: guard.GuardSummary, plan: CopyPlan) -> list[str]:
    """When tables from two snapshots meet, a foreign key that fails validation most likely joins
    rows copied at different times: say which tables."""
    if summary.ok or not plan.earlier_snapshots:
        return []
    return [f"tables copied under an earlier snapshot: {', '.join(sorted(plan.earlier_snapshots))} (the others "
            f"under {plan.snapshot_id}); rerun with --fresh-snapshot to copy every table from one snapshot"]


async def copy_tables(snap: Snapshot, target: DatabaseUrl, plan: CopyPlan, options: CopyOptions, *,
                      on_table_done: Callable[[str], None] | None = None) -> CopyReport:
    """Load the plan: set triggers/FKs/indexes aside, copy N units at a time, put them back,
    refresh materialized views. The load guard puts everything back on every way out (a
    failure or Ctrl-C too); what could not go back is in `restore_failed` and the bookkeeping.
    Copy state stays on the target, so a failed run continues with `--resume`. `on_table_done`
    hears each table's key once its rows are committed, while the others are still copying."""
    async with run_guard(target, source=snap.url, jobs=options.jobs) as running:
        options.jobs = running.jobs or options.jobs
        return await _copy_tables(snap, target, plan, options, running, on_table_done)


async def _copy_tables(snap: Snapshot, target: DatabaseUrl, plan: CopyPlan, options: CopyOptions,
                       running: RunGuard, on_table_done: Callable[[str], None] | None) -> CopyReport:
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
        run = _Run(snap, pool, options, progress, anyio.CapacityLimiter(options.jobs), running,
                   on_table_done=on_table_done)
        load_guard = guard.LoadGuard(pool, [p.table.ident for p in plan.tables], drop_indexes=options.drop_indexes,
                                     jobs=options.jobs, lock_timeout=options.lock_timeout, attempts=options.retries,
                                     retry_delay=options.retry_delay)
        lo_report: list[LargeObjectReport] = []

        async def large_objects() -> None:
            lo_report.append(await copy_large_objects(
                snap, pool, plan.large_objects, limiter=run.limiter, progress=progress, retries=options.retries))

        try:
            async with load_guard, task_group() as tg:
                tg.start_soon(large_objects)  # in parallel with the tables, under the same job limit
                for table_plan in sorted(plan.tables, key=lambda p: p.table.bytes, reverse=True):
                    tg.start_soon(run.copy_table, table_plan)
        except MigrationError as exc:
            raise _with_restore_failures(exc, load_guard.summary, plan) from None
        refreshed = await _refresh_matviews(pool, plan) if options.refresh_matviews and not options.tables else []
    except BaseException:
        pool.terminate()
        raise
    await pool.close()
    report = CopyReport(
        sorted(run.results, key=lambda r: r.table), plan.already_done, round(watch.seconds, 3), options.jobs,
        load_guard.summary.set_aside, load_guard.summary.restored, refreshed,
        [str(f) for f in load_guard.summary.failed], lo_report[0],
        plan.warnings() + lo_report[0].warnings + _mixed_snapshot_hint(load_guard.summary, plan),
    )
    log.info("copy_finished", tables=len(report.tables), rows=report.rows, bytes=report.bytes, seconds=report.seconds)
    return report


def _with_restore_failures(exc: MigrationError, summary: guard.GuardSummary, plan: CopyPlan) -> MigrationError:
    """The copy's own error stays the cause; objects that also could not go back are named in the fix."""
    if summary.ok:
        return exc
    still = "; ".join([f"{len(summary.failed)} object(s) set aside could not be put back ({summary.failed[0]}); "
                       "after fixing, `copy --restore` puts them back", *_mixed_snapshot_hint(summary, plan)])
    return MigrationError(exc.cause, f"{exc.fix}; {still}" if exc.fix else still)


async def restore_after_failure(target: DatabaseUrl) -> guard.GuardSummary:
    """Put back triggers/FKs/indexes a crashed or failed run left set aside, copying nothing."""
    pool = await create_pool(target, 2)
    try:
        return await guard.restore_load_guard(pool)
    finally:
        await pool.close()


__all__ = [
    "CopyOptions", "CopyPlan", "CopyReport", "TablePlan", "TableResult", "build_copy_plan", "copy_tables",
    "default_jobs", "restore_after_failure",
]
