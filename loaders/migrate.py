"""`migrate`: schema → copy → post-data → sequences → verify, in one pass.

The order is what makes it fast and safe: tables first (no indexes, constraints or
triggers on the dump path), then the data from one exported snapshot, then indexes and
constraints built once over full tables, then sequences and verification inside the same
snapshot, so the proof compares the target with exactly the state that was copied.
A schema that does not match the source stops the run *before* any row is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import anyio
import structlog

from loaders.connect import connection
from loaders.data.copy import CopyOptions, CopyReport, build_copy_plan, copy_tables
from loaders.dsn import DatabaseUrl
from loaders.errors import VerificationMismatch
from loaders.redaction import scrub_value
from loaders.schema.stage import SchemaOptions, SchemaReport, finish_schema, prepare_schema
from loaders.schema.diff import schema_catalog
from loaders.data.sequences import SequenceValue, sync_sequences
from loaders.data.snapshot import open_snapshot
from loaders.supabase import BOOKKEEPING_SCHEMA
from loaders.data.verify import SourceMeasures, VerifyReport, measure_source, verify

log = structlog.get_logger(stage="migrate")
RUNS_TABLE = f"{BOOKKEEPING_SCHEMA}.migration_runs"


@dataclass
class MigrateOptions:
    schema: SchemaOptions = field(default_factory=SchemaOptions)
    copy: CopyOptions = field(default_factory=CopyOptions)
    checksums: bool = True
    snapshot: str | None = None  # a snapshot exported elsewhere (sync start: the logical slot's)


@dataclass
class MigrationReport:
    source: str
    target: str
    started_at: str
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    schema: SchemaReport | None = None
    copy: CopyReport | None = None
    sequences: list[SequenceValue] = field(default_factory=list)
    verify: VerifyReport | None = None

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
            "verify": self.verify.to_dict() if self.verify else None,
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
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING_SCHEMA}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "finished_at timestamptz NOT NULL DEFAULT now(), ok boolean NOT NULL, report jsonb NOT NULL, "
            "schema_catalog jsonb NOT NULL)"
        )
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


async def migrate(source: DatabaseUrl, target: DatabaseUrl, options: MigrateOptions) -> MigrationReport:
    """Run the whole pipeline; returns the report (call `raise_for_mismatch` for exit 2)."""
    report = MigrationReport(source.safe, target.safe, datetime.now(timezone.utc).isoformat())
    phases = _Phases(report)
    report.schema = await prepare_schema(source, target, options.schema)
    phases.done("schema")
    if not report.schema_equal:
        log.warning("schema_differs_before_load", differences=len(report.schema.diff.differences))  # type: ignore[union-attr]
        return report
    async with open_snapshot(source, readers=options.copy.jobs, snapshot_id=options.snapshot) as snap:
        plan = await build_copy_plan(snap, target, options.copy)
        report.copy = await copy_tables(snap, target, plan, options.copy)
        phases.done("copy")
        measured: SourceMeasures = {}

        async def post_data() -> None:
            report.schema = await finish_schema(target, report.schema, source if options.schema.diff else None)

        async def source_side() -> None:
            measured.update(await measure_source(snap, checksums=options.checksums, schemas=options.copy.schemas,
                                                 tables=options.copy.tables, jobs=options.copy.jobs))

        # The target builds indexes and constraints while the idle source computes its checksums.
        async with anyio.create_task_group() as tg:
            tg.start_soon(post_data)
            tg.start_soon(source_side)
        phases.done("post_data")
        report.sequences = await sync_sequences(snap, target, schemas=options.copy.schemas,
                                                sequences=plan.catalog.sequences)
        phases.done("sequences")
        report.verify = await verify(snap, target, checksums=options.checksums, schemas=options.copy.schemas,
                                     tables=options.copy.tables, jobs=options.copy.jobs, source_measures=measured)
        phases.done("verify")
    await record_run(target, report)
    log.info("migrated", ok=report.ok, seconds=round(report.seconds, 2),
             rows=report.copy.rows if report.copy else 0)
    return report


def with_resume(options: MigrateOptions) -> MigrateOptions:
    """`up` reruns continue an interrupted load and re-verify a finished one."""
    return replace(options, copy=replace(options.copy, resume=True))
