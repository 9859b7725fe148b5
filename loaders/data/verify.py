"""Proof: exact row counts and content checksums computed on both servers, sequences compared.

The checksum is order-independent (a sum, so physical order and parallel loading don't
matter; duplicates add up instead of cancelling like xor would) over a 64-bit slice of
md5(row::text). Both sides run with the same canonical session settings (UTC, ISO dates,
shortest-exact floats, hex bytea), so PG 15 and PG 18 print every value identically. The
source side reads inside the snapshot, so it describes exactly what was copied.
"""

from __future__ import annotations

import json
from collections.abc import Sequence as Seq
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import structlog
from rich.console import Console
from rich.table import Table as RichTable

from loaders.data.catalog import Selection, Table, TableRef, refuse_unreadable, resolve_selection
from loaders.concurrency import task_group
from loaders.connect import create_pool
from loaders.data.copy import default_jobs
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError, VerificationMismatch
from loaders.data.sequences import read_values
from loaders.data.snapshot import Snapshot, apply_canonical, open_snapshot

log = structlog.get_logger(stage="verify")

# Order-independent: the sum of a 64-bit hash of each row's canonical text. hashtextextended
# (the hash behind hash partitioning, kept stable across major versions for pg_upgrade) costs
# a third less than md5 here; the row-to-text conversion it hashes is most of the work.
_CHECKSUM = "coalesce(sum(hashtextextended(r::text, 0)), 0)::text"


@dataclass
class TableCheck:
    table: str
    source_rows: int
    target_rows: int | None
    source_checksum: str | None = None
    target_checksum: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return (self.target_rows == self.source_rows and self.source_checksum == self.target_checksum
                and not self.note)


@dataclass
class SequenceCheck:
    sequence: str
    source: tuple[int, bool]
    target: tuple[int, bool] | None

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass
class VerifyReport:
    tables: list[TableCheck] = field(default_factory=list)
    sequences: list[SequenceCheck] = field(default_factory=list)
    checksums: bool = True
    snapshot_id: str | None = None

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and all(s.ok for s in self.sequences)

    def mismatches(self) -> list[str]:
        return [t.table for t in self.tables if not t.ok] + [s.sequence for s in self.sequences if not s.ok]

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "checksums": self.checksums, "snapshot": self.snapshot_id,
            "mismatches": self.mismatches(),
            "tables": [{**asdict(t), "ok": t.ok} for t in self.tables],
            "sequences": [{**asdict(s), "ok": s.ok} for s in self.sequences],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self, console: Console | None = None) -> None:
        console = console or Console()
        grid = RichTable(title="verification")
        for col in ("table", "source rows", "target rows", "checksum", "result"):
            grid.add_column(col)
        for t in self.tables:
            checksum = "—" if not self.checksums else ("equal" if t.source_checksum == t.target_checksum else "DIFFERENT")
            grid.add_row(t.table, str(t.source_rows), str(t.target_rows), checksum,
                         "ok" if t.ok else f"MISMATCH {t.note}".strip())
        for s in self.sequences:
            grid.add_row(f"{s.sequence} (sequence)", str(s.source), str(s.target), "", "ok" if s.ok else "MISMATCH")
        console.print(grid)

    def raise_for_mismatch(self) -> None:
        if not self.ok:
            raise VerificationMismatch(
                f"source and target differ in {len(self.mismatches())} object(s): {', '.join(self.mismatches())}",
                "copy those tables again (copy --tables … --truncate), then sequences, then verify",
            )


def _query(table: Table, checksums: bool) -> str:
    checksum = _CHECKSUM if checksums else "NULL::text"
    return f"SELECT count(*) AS n, {checksum} AS checksum FROM (SELECT {table.select_list} FROM ONLY {table.ident}) r"


async def _measure(conn: asyncpg.Connection, table: Table, checksums: bool) -> tuple[int, str | None]:
    row = await conn.fetchrow(_query(table, checksums))
    return row["n"], row["checksum"]


async def _target_side(pool: asyncpg.Pool, table: Table, checksums: bool) -> tuple[int | None, str | None, str]:
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table.ident):
            return None, None, "missing on target"
        try:
            n, checksum = await _measure(conn, table, checksums)
        except asyncpg.UndefinedColumnError as exc:
            return None, None, f"target: {exc}"
        return n, checksum, ""


SourceMeasures = dict[str, tuple[int, str | None]]


async def _check_table(snap: Snapshot, pool: asyncpg.Pool, table: Table, checksums: bool,
                       measured: SourceMeasures | None = None) -> TableCheck:
    result: dict[str, tuple] = {}

    async def source_side() -> None:
        if measured is not None and table.key in measured:
            result["source"] = measured[table.key]
            return
        async with snap.reader() as src:
            result["source"] = await _measure(src, table, checksums)

    async def target_side() -> None:
        result["target"] = await _target_side(pool, table, checksums)

    async with task_group() as tg:
        tg.start_soon(source_side)
        tg.start_soon(target_side)
    (source_rows, source_sum), (target_rows, target_sum, note) = result["source"], result["target"]
    check = TableCheck(table.key, source_rows, target_rows, source_sum, target_sum, note)
    log.info("table_verified", table=table.key, rows=source_rows, ok=check.ok)
    return check


async def _check_sequences(snap: Snapshot, pool: asyncpg.Pool, sequences: Seq) -> list[SequenceCheck]:
    async with snap.reader() as src:
        source_values = await read_values(src, sequences)
    checks = []
    async with pool.acquire() as tgt:
        for seq, value in zip(sequences, source_values):
            target = None
            if await tgt.fetchval("SELECT to_regclass($1) IS NOT NULL", seq.ident):
                row = await tgt.fetchrow(f"SELECT last_value, is_called FROM {seq.ident}")
                target = (row["last_value"], row["is_called"])
            checks.append(SequenceCheck(value.sequence, (value.last_value, value.is_called), target))
    return checks


async def verify(
    source: Snapshot | DatabaseUrl,
    target: DatabaseUrl,
    *,
    checksums: bool = True,
    schemas: Seq[str] | None = None,
    tables: Seq[TableRef | str] | None = None,
    jobs: int | None = None,
    source_measures: SourceMeasures | None = None,
) -> VerifyReport:
    """Compare source (inside the given snapshot, or a fresh one) with the target.
    `source_measures` (from `measure_source` in the same snapshot) spares the source a second
    pass. Returns the report; call `report.raise_for_mismatch()` to turn a difference into exit 2."""
    jobs = jobs or default_jobs()
    if isinstance(source, DatabaseUrl):
        async with open_snapshot(source, readers=jobs) as snap:
            return await verify(snap, target, checksums=checksums, schemas=schemas, tables=tables, jobs=jobs)
    async with source.reader() as src:
        catalog = await resolve_selection(src, Selection.of(schemas, tables), purpose="verify")
        await refuse_unreadable(src, catalog.tables, source.url.user)
    report = VerifyReport(checksums=checksums, snapshot_id=source.snapshot_id)
    pool = await create_pool(target, jobs, setup=apply_canonical)
    try:  # the target is connected first: a bad target URL or CA is the error to report
        if not catalog.tables and not catalog.sequences:  # a proof over nothing is not a proof
            raise MigrationError("nothing to verify: the source has no tables or sequences in its user schemas",
                                 "check the --source URL (database name)")
        limiter = anyio.CapacityLimiter(jobs)

        async def one(table: Table) -> None:
            async with limiter:
                report.tables.append(await _check_table(source, pool, table, checksums, source_measures))

        async with task_group() as tg:
            for table in catalog.tables:
                tg.start_soon(one, table)
        report.sequences = await _check_sequences(source, pool, catalog.sequences)
    finally:
        await pool.close()
    report.tables.sort(key=lambda t: t.table)
    return report


async def measure_source(snap: Snapshot, *, checksums: bool = True, schemas: Seq[str] | None = None,
                         tables: Seq[TableRef | str] | None = None, jobs: int | None = None) -> SourceMeasures:
    """The source side of `verify` on its own, so `migrate` can run it while the target is
    busy building indexes (the source is idle then) instead of after."""
    async with snap.reader() as src:
        catalog = await resolve_selection(src, Selection.of(schemas, tables), purpose="verify")
    measured: SourceMeasures = {}
    limiter = anyio.CapacityLimiter(jobs or default_jobs())

    async def one(table: Table) -> None:
        async with limiter, snap.reader() as src:
            measured[table.key] = await _measure(src, table, checksums)

    async with task_group() as tg:
        for table in catalog.tables:
            tg.start_soon(one, table)
    return measured
