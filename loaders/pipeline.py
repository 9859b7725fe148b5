"""`migrate`'s per-table pipeline: a table is finished while the others are still copying.

As soon as a table's rows are committed, its post-data group is applied (keys, then other
indexes, then triggers: loaders/schema/post_data.py) and it is analyzed; beside that it is
proven (source side in the snapshot, target side concurrently), since a proof only reads. A foreign key follows once both of
its tables are through that. What is left for the end is small: post-data not tied to one
copied table, partitioned roots' ANALYZE, sequences, matviews and large objects.

Index builds, ANALYZE and proofs all compete with the copy streams for the same cores, so
they share one limiter, `side_jobs` wide while tables are still copying (default from the
measurement in BENCHMARKS.md), widened by the copy's `--jobs` once the copy is done. A
table's plain indexes are built side by side (CREATE INDEX takes a SHARE lock, which does not
conflict with itself); its keys and triggers one at a time (their locks do).
Every statement is recorded as it commits (post_data.py), so a run killed in this stage
resumes with exactly the statements still missing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import anyio
import asyncpg
import structlog

from loaders.concurrency import task_group
from loaders.connect import create_pool
from loaders.data.analyze import AnalyzeReport, analyze, roots_of
from loaders.data.catalog import Table
from loaders.data.checksum import Proof
from loaders.data.copy import CopyPlan
from loaders.data.snapshot import Snapshot, apply_canonical
from loaders.data.verify import TableCheck, TableProver
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.schema.post_data import PostDataApplier, PostStatement, Step
from loaders.schema.stage import SESSION, SchemaFailed, SchemaReport, post_data_applier, post_data_plan

log = structlog.get_logger(stage="pipeline")

# Index builds / ANALYZE / proofs beside the copy streams on 2 cores: measured (BENCHMARKS.md).
DEFAULT_SIDE_JOBS = 1


async def _schema_session(conn: asyncpg.Connection) -> None:
    for setting in SESSION:
        await conn.execute(setting)


@dataclass
class PipelineResult:
    checks: dict[str, TableCheck] = field(default_factory=dict)
    analyze: AnalyzeReport = field(default_factory=AnalyzeReport)


class TablePipeline:
    """Open it around the copy, run `run` beside `copy_tables` (its `on_table_done` is
    `table_copied`), and call `copy_finished` when the copy returns."""

    def __init__(self, snap: Snapshot, target: DatabaseUrl, plan: CopyPlan, schema: SchemaReport, *,
                 proof: Proof, copy_jobs: int, side_jobs: int = DEFAULT_SIDE_JOBS) -> None:
        self.snap, self.target, self.plan, self.schema, self.proof = snap, target, plan, schema, proof
        self.tables: dict[str, Table] = {t.key: t for t in plan.catalog.tables}
        # 0: nothing beside the copy streams; builds and proofs wait for the copy to end.
        self.side_jobs, self.copy_jobs = max(0, side_jobs), copy_jobs
        self.limiter = anyio.CapacityLimiter(max(1, self.side_jobs))
        self.copy_done = anyio.Event()
        self.foreign_key_lock = anyio.Lock()
        self.copied = {key: anyio.Event() for key in self.tables}
        self.ready = {key: anyio.Event() for key in self.tables}
        for key in plan.already_done:  # --resume: loaded by an earlier run
            self.copied[key].set()
        self.result = PipelineResult()
        self.applier: PostDataApplier | None = None
        self.roots: dict[str, str] = {}
        self._pools: list[asyncpg.Pool] = []

    def table_copied(self, key: str) -> None:
        """`copy_tables`' `on_table_done`: runs in the copy task, so it only signals."""
        if key in self.copied:
            self.copied[key].set()

    async def __aenter__(self) -> "TablePipeline":
        jobs = max(1, self.side_jobs)
        try:
            self.ddl = await self._pool(jobs + self.copy_jobs + 1, _schema_session)
            prove_pool = await self._pool(jobs + self.copy_jobs, apply_canonical)
            plan = post_data_plan(self.schema, self.tables)
            async with self.ddl.acquire() as conn:
                self.applier = await post_data_applier(conn, self.schema, plan) if plan is not None else None
                self.roots = await roots_of(conn, list(self.tables.values()))
            self.prover = await TableProver.prepare(self.snap, prove_pool, self.proof, list(self.tables.values()))
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, None)
            if isinstance(exc, MigrationError):
                raise self._failed(exc) from exc
            raise
        return self

    async def _pool(self, size: int, setup: Callable[[asyncpg.Connection], Awaitable[None]]) -> asyncpg.Pool:
        pool = await create_pool(self.target, size, setup=setup)
        self._pools.append(pool)
        return pool

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """A failed or cancelled run drops its sessions at once (a cancelled scope can't wait for a
        graceful close, and a statement may still be running on one of them)."""
        for pool in self._pools:
            if exc is not None:
                pool.terminate()
            else:
                await pool.close()

    def _failed(self, exc: MigrationError) -> SchemaFailed:
        self.schema.error = exc.one_line()
        return SchemaFailed(exc, self.schema)

    async def _apply(self, statements: Sequence[PostStatement]) -> None:
        if self.applier is None or not self.applier.pending(statements):
            return
        try:
            async with self.ddl.acquire() as conn:
                await self.applier.apply(conn, statements)
        except MigrationError as exc:
            raise self._failed(exc) from exc

    def copy_finished(self, jobs: int) -> None:
        """The copy streams' cores are free: the rest of the builds and proofs may use them too."""
        self.limiter.total_tokens = self.side_jobs + jobs
        self.copy_done.set()

    async def _table(self, key: str) -> None:
        """Proof and post-data side by side: the proof only reads rows, which no build changes."""
        await self.copied[key].wait()
        if not self.side_jobs:
            await self.copy_done.wait()
        async with task_group() as tg:
            tg.start_soon(self._prove, key)
            tg.start_soon(self._build, key)

    async def _prove(self, key: str) -> None:
        async with self.limiter:
            self.result.checks[key] = await self.prover.check(self.tables[key])

    async def _build(self, key: str) -> None:
        group = self.applier.plan.tables.get(key, []) if self.applier is not None else []
        by_step = {step: [s for s in group if s.step == step] for step in Step}
        async with self.limiter:  # keys take an ACCESS EXCLUSIVE lock: one statement at a time
            await self._apply(by_step[Step.KEY])
        async with task_group() as tg:  # plain indexes share their table (SHARE locks): side by side
            for statement in by_step[Step.INDEX]:
                tg.start_soon(self._limited, [statement])
        async with self.limiter:
            await self._apply(by_step[Step.OTHER] + by_step[Step.TRIGGER])
            if self.roots.get(key) == key:  # a partition is analyzed through its root, at the end
                async with self.ddl.acquire() as conn:
                    await analyze(conn, key)  # the key is the table's quoted name
        log.info("table_ready", table=key, statements=len(group))
        self.ready[key].set()

    async def _limited(self, statements: Sequence[PostStatement]) -> None:
        async with self.limiter:
            await self._apply(statements)

    async def _foreign_key(self, statement: PostStatement) -> None:
        await self.ready[statement.table].wait()  # type: ignore[index]
        await self.ready[statement.references].wait()  # type: ignore[index]
        # One at a time: adding a foreign key locks both its tables (SHARE ROW EXCLUSIVE), so two
        # keys between the same tables in opposite directions, added at once, deadlock.
        async with self.foreign_key_lock:
            await self._limited([statement])
        log.info("foreign_key_added", table=statement.table, references=statement.references)

    async def run(self) -> PipelineResult:
        """Until every table is loaded, built, analyzed and proven, and every FK between them added."""
        async with task_group() as tg:
            for key in self.tables:
                tg.start_soon(self._table, key)
            for statement in self.applier.plan.foreign_keys if self.applier is not None else []:
                tg.start_soon(self._foreign_key, statement)
        return self.result

    async def analyze_roots(self) -> AnalyzeReport:
        """Partitioned roots (ANALYZE samples across the partitions and recurses into them)."""
        started = time.perf_counter()
        roots = sorted(set(self.roots.values()))
        async with task_group() as tg:
            for root in roots:
                if root not in self.tables:
                    tg.start_soon(self._analyze_root, root)
        self.result.analyze = AnalyzeReport(roots, time.perf_counter() - started)
        return self.result.analyze

    async def _analyze_root(self, root: str) -> None:
        async with self.limiter, self.ddl.acquire() as conn:
            await analyze(conn, root)


__all__ = ["DEFAULT_SIDE_JOBS", "PipelineResult", "TablePipeline"]
