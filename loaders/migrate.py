"""`migrate`: schema → copy with each table's post-data, ANALYZE and proof → sequences → verify.

The order is what makes it fast and safe: tables first (no indexes, constraints or
triggers on the dump path), then the data from one exported snapshot; each table's indexes
and constraints are built once over its full rows as soon as its copy ends, while the others
still copy (loaders/pipeline.py); sequences and verification run inside the same snapshot,
so the proof compares the target with exactly the state that was copied.
A schema that does not match the source stops the run *before* any row is written, and
inputs that can be checked (the selection, connections, privileges) are checked before the
first statement reaches the target: a typo in `--tables` must not leave schemas behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import anyio
import structlog

from loaders import bookkeeping
from loaders.connect import connection
from loaders.data.analyze import AnalyzeReport
from loaders.data.checksum import DEFAULT_PROOF, Proof
from loaders.data.copy import CopyOptions, CopyReport, build_copy_plan, copy_tables
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError, VerificationMismatch
from loaders.live import ensure_not_live, read_baseline
from loaders.data.catalog import refuse_unreadable, refuse_unwritable, resolve_selection
from loaders.redaction import scrub_value
from loaders.runguard import run_guard
from loaders.schema.stage import SchemaFailed, SchemaOptions, SchemaReport, finish_schema, prepare_schema
from loaders.schema.diff import schema_catalog
from loaders.data.sequences import SequenceSet, sync_sequences
from loaders.data.snapshot import open_snapshot
from loaders.data.verify import VerifyReport, verify
from loaders.pipeline import DEFAULT_SIDE_JOBS, TablePipeline

log = structlog.get_logger(stage="migrate")
RUNS_TABLE = bookkeeping.MIGRATION_RUNS


@dataclass
class MigrateOptions:
    schema: SchemaOptions = field(default_factory=SchemaOptions)
    copy: CopyOptions = field(default_factory=CopyOptions)
    proof: Proof = DEFAULT_PROOF
    snapshot: str | None = None  # a snapshot exported elsewhere (sync start: the logical slot's)
    side_jobs: int = DEFAULT_SIDE_JOBS  # index builds / ANALYZE / proofs beside the copies (loaders/pipeline.py)


@dataclass
class MigrationReport:
    source: str
    target: str
    started_at: str
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    schema: SchemaReport | None = None
    copy: CopyReport | None = None
    sequences: list[SequenceSet] = field(default_factory=list)
    analyze: AnalyzeReport | None = None
    verify: VerifyReport | None = None
    error: str | None = None
    # What the verified target looked like (loaders/live.py): the re-run guard, --repair and --fresh read it.
    baseline: dict[str, Any] | None = None

    @property
    def schema_equal(self) -> bool:
        return self.schema is None or self.schema.diff is None or self.schema.diff.equal

    @property
    def ok(self) -> bool:
        return self.verify is not None and self.verify.ok and self.schema_equal

    def to_dict(self) -> dict[str, Any]:
        return scrub_value({
            "ok": self.ok, "source": self.source, "target": self.target, "started_at": self.started_at,
            "seconds": round(self.seconds, 3), "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "schema": self.schema.to_dict() if self.schema else None,
            "copy": self.copy.to_dict() if self.copy else None,
            "sequences": [vars(s) for s in self.sequences],
            "analyzed": self.analyze.relations if self.analyze else [],
            "verify": self.verify.to_dict() if self.verify else None,
            "error": self.error,
            "baseline": self.baseline,
        })  # type: ignore[return-value]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def raise_for_mismatch(self) -> None:
        if self.schema is not None and self.schema.diff is not None and not self.schema.diff.equal:
            raise VerificationMismatch(
                f"target schema differs from the source in {len(self.schema.diff.differences)} object(s): "
                + "; ".join(str(d) for d in self.schema.diff.differences[:5]),
                "see the report's schema.diff section",
            )
        if self.verify is not None:
            self.verify.raise_for_mismatch()


class _Phases:
    """Wall time per phase, for the report and the benchmark."""

    def __init__(self, report: MigrationReport) -> None:
        self.report = report
        self.t0 = time.perf_counter()
        self.last = self.t0

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.report.phases[name] = now - self.last
        self.report.seconds = now - self.t0
        self.last = now
        log.info("phase_done", phase=name, seconds=round(self.report.phases[name], 3))


async def record_run(target: DatabaseUrl, report: MigrationReport) -> None:
    """Keep each run on the target (bookkeeping schema): the report, and the schema the target
    had when it was verified — what a later drift check compares against."""
    catalog = await schema_catalog(target)
    async with connection(target) as conn:
        await bookkeeping.ensure_schema(conn, RUNS_TABLE)
        await conn.execute(f"INSERT INTO {RUNS_TABLE} (ok, report, schema_catalog) VALUES ($1, $2::jsonb, $3::jsonb)",
                           report.ok, report.to_json(), json.dumps(catalog))


@dataclass(frozen=True)
class RecordedRun:
    report: dict[str, Any]
    schema_catalog: dict[str, dict[str, str]]


async def last_verified_run(target: DatabaseUrl) -> RecordedRun | None:
    """The newest successful run recorded on the target, if any."""
    async with connection(target) as conn:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", RUNS_TABLE):
            return None
        row = await conn.fetchrow(f"SELECT report, schema_catalog FROM {RUNS_TABLE} WHERE ok ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    return RecordedRun(json.loads(row["report"]), json.loads(row["schema_catalog"]))


class MigrationFailed(MigrationError):
    """A run that failed part-way, with the report of what it did before (written on failure too)."""

    def __init__(self, error: MigrationError, report: MigrationReport) -> None:
        super().__init__(error.cause, error.fix)
        self.exit_code = error.exit_code
        self.report = report


async def check_inputs(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions) -> None:
    """Reads only, on both servers: the selection resolves to tables the source role may read,
    and the target role may create and load them. Raises the one-line error otherwise."""
    async with connection(source) as src:
        catalog = await resolve_selection(src, options.copy.selection, purpose="migrate")
        await refuse_unreadable(src, catalog.tables, source.user)
    async with connection(target) as tgt:
        await refuse_unwritable(tgt, catalog.tables, target.user, will_create=True)


async def migrate(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions) -> MigrationReport:
    """Run the whole pipeline; returns the report (call `raise_for_mismatch` for exit 2).
    A failure raises `MigrationFailed` carrying the report so far. One run per target at a time
    (`run_guard`), with --jobs clamped to the servers' free slots."""
    report = MigrationReport(source.safe, target.safe, datetime.now(timezone.utc).isoformat())
    try:
        async with run_guard(target, source=source, jobs=options.copy.jobs) as running:
            options.copy.jobs = running.jobs or options.copy.jobs
            return await _migrate(source, target, options, report)
    except* MigrationError as group:
        # post-data runs in a task group: its failure arrives wrapped; the first one is the cause.
        exc = _first(group)
        if isinstance(exc, SchemaFailed):
            report.schema = exc.report
        report.error = exc.one_line()
        raise MigrationFailed(exc, report) from exc


def _first(group: BaseExceptionGroup[MigrationError]) -> MigrationError:
    leaf = group.exceptions[0]
    return _first(leaf) if isinstance(leaf, BaseExceptionGroup) else leaf


async def _migrate(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions,
                   report: MigrationReport) -> MigrationReport:
    previous = await last_verified_run(target)
    await ensure_not_live(target, previous.report if previous else None)
    phases = _Phases(report)
    await check_inputs(source, target, options)
    # Rows the migration files wrote are replaced by the source's: the copy refills them.
    report.schema = await prepare_schema(source, target, replace(options.schema, refill_from_source=True))
    phases.done("schema")
    if not report.schema_equal:
        log.warning("schema_differs_before_load", differences=len(report.schema.diff.differences))  # type: ignore[union-attr]
        return report
    side_jobs = options.side_jobs
    async with open_snapshot(source, readers=options.copy.jobs + side_jobs, snapshot_id=options.snapshot) as snap:
        plan = await build_copy_plan(snap, target, options.copy)
        async with TablePipeline(snap, target, plan, report.schema, proof=options.proof,
                                 copy_jobs=options.copy.jobs, side_jobs=side_jobs) as pipeline:
            # Each table's post-data, ANALYZE and proof start as soon as its copy ends.
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipeline.run)
                report.copy = await copy_tables(snap, target, plan, options.copy, on_table_done=pipeline.table_copied)
                pipeline.copy_finished(options.copy.jobs)
                if report.copy.restore_failed:
                    raise MigrationError(
                        f"the data is copied, but {len(report.copy.restore_failed)} object(s) set aside for the load "
                        "could not be put back: " + "; ".join(report.copy.restore_failed[:3]),
                        "fix the cause (e.g. the rows an FK rejects), then `copy --restore` and rerun with --resume",
                    )
            phases.done("copy+post_data")
            # What is not tied to one copied table, then the whole schema diff.
            report.schema = await finish_schema(target, report.schema, source if options.schema.diff else None,
                                                applier=pipeline.applier)
            phases.done("post_data")
            report.analyze = await pipeline.analyze_roots()
            phases.done("analyze")
        report.sequences = await sync_sequences(snap, target, schemas=options.copy.schemas,
                                                sequences=plan.catalog.sequences, values=plan.sequence_values)
        phases.done("sequences")
        report.verify = await verify(snap, target, proof=options.proof, schemas=options.copy.schemas,
                                     tables=options.copy.tables, jobs=options.copy.jobs,
                                     checked=pipeline.result.checks, large_objects=options.copy.large_objects)
        phases.done("verify")
    if report.ok and report.verify is not None:
        rows = {t.table: t.target_rows for t in report.verify.tables if t.target_rows is not None}
        report.baseline = (await read_baseline(target, rows)).to_dict()
    await record_run(target, report)
    log.info("migrated", ok=report.ok, seconds=round(report.seconds, 2),
             rows=report.copy.rows if report.copy else 0)
    return report


def with_resume(options: MigrateOptions) -> MigrateOptions:
    """`up` reruns continue an interrupted load and re-verify a finished one."""
    return replace(options, copy=replace(options.copy, resume=True))
