"""Proof: exact row counts and content checksums computed on both servers, sequences compared.

The checksum is order-independent (a sum, so physical order and parallel loading don't
matter; duplicates add up instead of cancelling like xor would) of a 64-bit hash per row;
`checksum.py` decides, per proof level, what each row's hash covers. Both sides run with the same canonical session settings (UTC, ISO dates,
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
from loaders.data.chunks import differing_chunks
from loaders.data.redo import redo_differences
from loaders.data.checksum import DEFAULT_PROOF, Proof, TableKinds, column_kinds, measure_sql
from loaders.concurrency import task_group
from loaders.connect import create_pool
from loaders.data.copy import default_jobs
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError, VerificationMismatch
from loaders.data.sequences import read_values
from loaders.data.snapshot import Snapshot, apply_canonical, open_snapshot

log = structlog.get_logger(stage="verify")

@dataclass
class TableCheck:
    table: str
    source_rows: int
    target_rows: int | None
    source_checksum: str | None = None
    target_checksum: str | None = None
    note: str = ""
    chunks: list[str] = field(default_factory=list)  # where it differs, when the table has a key

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


def sequence_text(value: tuple[int, bool] | None) -> str:
    """A sequence's state as a person reads it: '3000, called' (nextval gives 3001), '1, not called'."""
    if value is None:
        return "missing"
    last_value, is_called = value
    return f"{last_value}, {'called' if is_called else 'not called'}"


@dataclass
class VerifyReport:
    tables: list[TableCheck] = field(default_factory=list)
    sequences: list[SequenceCheck] = field(default_factory=list)
    proof: Proof = DEFAULT_PROOF
    snapshot_id: str | None = None
    repaired: dict[str, list[str]] = field(default_factory=dict)  # verify --repair: table → ranges redone
    unrepairable: dict[str, str] = field(default_factory=dict)

    @property
    def checksums(self) -> bool:
        return self.proof.checksums

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and all(s.ok for s in self.sequences)

    def mismatches(self) -> list[str]:
        return [t.table for t in self.tables if not t.ok] + [s.sequence for s in self.sequences if not s.ok]

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "proof": self.proof.value, "checksums": self.checksums, "snapshot": self.snapshot_id,
            "mismatches": self.mismatches(), "repaired": self.repaired, "unrepairable": self.unrepairable,
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
            where = f" — {'; '.join(t.chunks)}" if t.chunks else ""
            grid.add_row(t.table, str(t.source_rows), str(t.target_rows), checksum,
                         "ok" if t.ok else f"MISMATCH {t.note}{where}".strip())
        for s in self.sequences:
            grid.add_row(f"{s.sequence} (sequence)", sequence_text(s.source), sequence_text(s.target), "",
                         "ok" if s.ok else "MISMATCH")
        console.print(grid)

    def raise_for_mismatch(self) -> None:
        if not self.ok:
            located = [f"{t.table} {t.chunks[0]}" + (f" and {len(t.chunks) - 1} more range(s)" if len(t.chunks) > 1 else "")
                       for t in self.tables if t.chunks]
            raise VerificationMismatch(
                f"source and target differ in {len(self.mismatches())} object(s): {', '.join(self.mismatches())}"
                + (f" — first differing rows: {'; '.join(located[:3])}" if located else ""),
                "copy those tables again (copy --tables … --truncate), then sequences, then verify",
            )


async def _measure(conn: asyncpg.Connection, table: Table, proof: Proof, kinds: TableKinds) -> tuple[int, str | None]:
    row = await conn.fetchrow(measure_sql(table, proof, kinds.get(table.ident)))
    return row["n"], row["checksum"]


async def _target_side(pool: asyncpg.Pool, table: Table, proof: Proof, kinds: TableKinds) -> tuple[int | None, str | None, str]:
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table.ident):
            return None, None, "missing on target"
        try:
            n, checksum = await _measure(conn, table, proof, kinds)
        except asyncpg.UndefinedColumnError as exc:
            return None, None, f"target: {exc}"
        return n, checksum, ""


SourceMeasures = dict[str, tuple[int, str | None]]


async def _check_table(snap: Snapshot, pool: asyncpg.Pool, table: Table, proof: Proof, kinds: TableKinds,
                       measured: SourceMeasures | None = None) -> TableCheck:
    result: dict[str, tuple] = {}

    async def source_side() -> None:
        if measured is not None and table.key in measured:
            result["source"] = measured[table.key]
            return
        async with snap.reader() as src:
            result["source"] = await _measure(src, table, proof, kinds)

    async def target_side() -> None:
        result["target"] = await _target_side(pool, table, proof, kinds)

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


async def _locate_differences(snap: Snapshot, pool: asyncpg.Pool, report: VerifyReport, tables: dict[str, Table],
                              kinds: TableKinds) -> None:
    """Name the key ranges that differ, so one range (not the whole table) can be looked at or redone."""
    for check in report.tables:
        if check.ok or check.target_rows is None:
            continue
        table = tables[check.table]
        async with snap.reader() as src, pool.acquire() as tgt:
            diffs = await differing_chunks(src, tgt, table, report.proof, kinds.get(table.ident))
        check.chunks = ["no primary key: redo the whole table"] if diffs is None else [d.label() for d in diffs]
        log.warning("table_differs", table=check.table, ranges=check.chunks)


async def verify(
    source: Snapshot | DatabaseUrl,
    target: DatabaseUrl,
    *,
    proof: Proof = DEFAULT_PROOF,
    schemas: Seq[str] | None = None,
    tables: Seq[TableRef | str] | None = None,
    jobs: int | None = None,
    source_measures: SourceMeasures | None = None,
    repair: bool = False,
) -> VerifyReport:
    """Compare source (inside the given snapshot, or a fresh one) with the target.
    `source_measures` (from `measure_source` in the same snapshot) spares the source a second
    pass. With `repair`, differing key ranges are copied again and everything verified once more
    in the same snapshot. Returns the report; `report.raise_for_mismatch()` turns a difference
    into exit 2."""
    jobs = jobs or default_jobs()
    if isinstance(source, DatabaseUrl):
        async with open_snapshot(source, readers=jobs) as snap:
            return await verify(snap, target, proof=proof, schemas=schemas, tables=tables, jobs=jobs, repair=repair)
    async with source.reader() as src:
        catalog = await resolve_selection(src, Selection.of(schemas, tables), purpose="verify")
        await refuse_unreadable(src, catalog.tables, source.url.user)
        kinds = await column_kinds(src, catalog.tables)
    report = VerifyReport(proof=proof, snapshot_id=source.snapshot_id)
    pool = await create_pool(target, jobs, setup=apply_canonical)
    try:  # the target is connected first: a bad target URL or CA is the error to report
        if not catalog.tables and not catalog.sequences:  # a proof over nothing is not a proof
            raise MigrationError("nothing to verify: the source has no tables or sequences in its user schemas",
                                 "check the --source URL (database name)")
        limiter = anyio.CapacityLimiter(jobs)

        async def one(table: Table) -> None:
            async with limiter:
                report.tables.append(await _check_table(source, pool, table, proof, kinds, source_measures))

        async with task_group() as tg:
            for table in catalog.tables:
                tg.start_soon(one, table)
        by_key = {t.key: t for t in catalog.tables}
        await _locate_differences(source, pool, report, by_key, kinds)
        report.sequences = await _check_sequences(source, pool, catalog.sequences)
        if repair and not report.ok:
            differing = [by_key[c.table] for c in report.tables if not c.ok and c.target_rows is not None]
            redone = await redo_differences(source, pool, differing, kinds, proof)
            report = await verify(source, target, proof=proof, schemas=schemas, tables=tables, jobs=jobs)
            report.repaired, report.unrepairable = redone.ranges, redone.unrepairable
            return report
    finally:
        await pool.close()
    report.tables.sort(key=lambda t: t.table)
    return report


async def measure_source(snap: Snapshot, *, proof: Proof = DEFAULT_PROOF, schemas: Seq[str] | None = None,
                         tables: Seq[TableRef | str] | None = None, jobs: int | None = None) -> SourceMeasures:
    """The source side of `verify` on its own, so `migrate` can run it while the target is
    busy building indexes (the source is idle then) instead of after."""
    async with snap.reader() as src:
        catalog = await resolve_selection(src, Selection.of(schemas, tables), purpose="verify")
        kinds = await column_kinds(src, catalog.tables)
    measured: SourceMeasures = {}
    limiter = anyio.CapacityLimiter(jobs or default_jobs())

    async def one(table: Table) -> None:
        async with limiter, snap.reader() as src:
            measured[table.key] = await _measure(src, table, proof, kinds)

    async with task_group() as tg:
        for table in catalog.tables:
            tg.start_soon(one, table)
    return measured
