"""Proof: exact row counts and content checksums computed on both servers, sequences compared.

The checksum is order-independent (a sum, so physical order and parallel loading don't
matter; duplicates add up instead of cancelling like xor would) of a 64-bit hash per row;
`checksum.py` decides, per proof level, what each row's hash covers. A table that differs is
narrowed to the key ranges that differ (`chunks.py`), which `--repair` copies again (`redo.py`).
Both sides run with the same canonical session settings (UTC, ISO dates,
shortest-exact floats, hex bytea), so PG 15 and PG 18 print every value identically. The
source side reads inside the snapshot, so it describes exactly what was copied.

Beyond the copied columns:
- generated columns are not copied (the target computes them), so their values are checked
  separately: a second checksum over them shows the target's recomputation equals the source's;
- materialized views are compared with what their query returns on the source in the snapshot
  (the target refreshed them from the copied rows); a source matview whose stored rows differ
  from its own query is reported as stale, not as lost data;
- large objects are compared by OID, size and a digest of their bytes computed slice by slice
  on each server (`--no-large-objects` skips them with a warning, never silently);
- sequences pass when the target is at or ahead of the value recorded when they were set
  (a live source moves on after the snapshot; the target never needs to be behind).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence as Seq
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import structlog
from rich.console import Console
from rich.table import Table as RichTable

from loaders.data import large_objects
from loaders.data.catalog import Catalog, MatView, Selection, Table, TableRef, refuse_unreadable, resolve_selection
from loaders.data.checksum import DEFAULT_PROOF, Proof, TableKinds, column_kinds, measure_sql, text_hash_sum
from loaders.data.chunks import differing_chunks
from loaders.data.redo import redo_differences
from loaders.concurrency import task_group
from loaders.connect import create_pool
from loaders.data.copy import default_jobs
from loaders.dsn import DatabaseUrl
from loaders.schema.diff import view_query
from loaders.errors import MigrationError, VerificationMismatch
from loaders.data.sequences import ahead, read_values, recorded_values
from loaders.data.snapshot import Snapshot, apply_canonical, open_snapshot

log = structlog.get_logger(stage="verify")

# Materialized views and generated columns are hashed by their rows' canonical text (the `full`
# level): a matview's rows have no stored types to pick a cheaper hash from.
_CHECKSUM = text_hash_sum()


@dataclass
class TableCheck:
    table: str
    source_rows: int
    target_rows: int | None
    source_checksum: str | None = None
    target_checksum: str | None = None
    note: str = ""
    generated: list[str] = field(default_factory=list)  # generated columns, checked on their own
    source_generated: str | None = None
    target_generated: str | None = None
    chunks: list[str] = field(default_factory=list)  # where it differs, when the table has a key

    @property
    def ok(self) -> bool:
        return (self.target_rows == self.source_rows and self.source_checksum == self.target_checksum
                and self.source_generated == self.target_generated and not self.note)

    @property
    def problem(self) -> str:
        if self.note:
            return self.note
        if self.source_generated != self.target_generated and self.source_checksum == self.target_checksum:
            return f"generated column(s) {', '.join(self.generated)} computed differently on the target"
        return ""


@dataclass
class SequenceCheck:
    sequence: str
    source: tuple[int, bool]  # the value recorded when the target was set (or the source's, if never set)
    target: tuple[int, bool] | None
    increment: int = 1
    basis: str = "recorded at sync"

    @property
    def ok(self) -> bool:
        if self.target is None:
            return False
        nxt = [last + (self.increment if called else 0) for last, called in (self.source, self.target)]
        return ahead(nxt[1], nxt[0], self.increment)


def sequence_text(value: tuple[int, bool] | None) -> str:
    """A sequence's state as a person reads it: '3000, called' (nextval gives 3001), '1, not called'."""
    if value is None:
        return "missing"
    last_value, is_called = value
    return f"{last_value}, {'called' if is_called else 'not called'}"


@dataclass
class MatViewCheck:
    """Target matview against what the view's query returns on the source in the snapshot."""

    matview: str
    source_rows: int | None  # rows the source matview holds
    query_rows: int | None  # rows its query returns on the source now (in the snapshot)
    target_rows: int | None
    source_checksum: str | None = None
    query_checksum: str | None = None
    target_checksum: str | None = None
    note: str = ""

    @property
    def stale_source(self) -> bool:
        return (self.source_rows, self.source_checksum) != (self.query_rows, self.query_checksum)

    @property
    def ok(self) -> bool:
        return not self.note and (self.target_rows, self.target_checksum) == (self.query_rows, self.query_checksum)


@dataclass
class VerifyReport:
    tables: list[TableCheck] = field(default_factory=list)
    sequences: list[SequenceCheck] = field(default_factory=list)
    proof: Proof = DEFAULT_PROOF
    snapshot_id: str | None = None
    matviews: list[MatViewCheck] = field(default_factory=list)
    large_objects: large_objects.LargeObjectCheck | None = None
    repaired: dict[str, list[str]] = field(default_factory=dict)  # verify --repair: table → ranges redone
    unrepairable: dict[str, str] = field(default_factory=dict)

    @property
    def checksums(self) -> bool:
        return self.proof.checksums

    @property
    def ok(self) -> bool:
        return (all(t.ok for t in self.tables) and all(s.ok for s in self.sequences)
                and all(m.ok for m in self.matviews) and (self.large_objects is None or self.large_objects.ok))

    def mismatches(self) -> list[str]:
        found = [t.table for t in self.tables if not t.ok] + [s.sequence for s in self.sequences if not s.ok]
        found += [m.matview for m in self.matviews if not m.ok]
        if self.large_objects is not None and not self.large_objects.ok:
            found.append("large objects")
        return found

    def warnings(self) -> list[str]:
        """Not mismatches, but never silent."""
        out = [f"{m.matview}: the source materialized view is stale (its stored rows differ from what its query "
               "returns now); the target holds the fresh result" for m in self.matviews if m.stale_source and m.ok]
        if self.large_objects is not None and self.large_objects.skipped and self.large_objects.source_count:
            out.append(f"large objects {self.large_objects.summary()}")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "proof": self.proof.value, "checksums": self.checksums, "snapshot": self.snapshot_id,
            "mismatches": self.mismatches(), "warnings": self.warnings(),
            "repaired": self.repaired, "unrepairable": self.unrepairable,
            "tables": [{**asdict(t), "ok": t.ok} for t in self.tables],
            "sequences": [{**asdict(s), "ok": s.ok} for s in self.sequences],
            "matviews": [{**asdict(m), "ok": m.ok, "stale_source": m.stale_source} for m in self.matviews],
            "large_objects": self.large_objects.to_dict() if self.large_objects else None,
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
                         "ok" if t.ok else f"MISMATCH {t.problem}{where}".strip())
        for m in self.matviews:
            grid.add_row(f"{m.matview} (materialized view)", str(m.query_rows), str(m.target_rows), "",
                         ("ok" if m.ok else f"MISMATCH {m.note}".strip()) + (" (source stale)" if m.stale_source else ""))
        if self.large_objects is not None:
            lo = self.large_objects
            grid.add_row("large objects", str(lo.source_count), str(lo.target_count), "",
                         ("ok" if lo.ok else "MISMATCH") + ("" if lo.ok and not lo.skipped else f" {lo.summary()}"))
        for s in self.sequences:
            grid.add_row(f"{s.sequence} (sequence)", sequence_text(s.source), sequence_text(s.target), "",
                         "ok" if s.ok else "MISMATCH (target behind)")
        console.print(grid)
        for warning in self.warnings():
            console.print(f"warning: {warning}")

    def raise_for_mismatch(self) -> None:
        if not self.ok:
            located = [f"{t.table} {t.chunks[0]}" + (f" and {len(t.chunks) - 1} more range(s)" if len(t.chunks) > 1 else "")
                       for t in self.tables if t.chunks]
            raise VerificationMismatch(
                f"source and target differ in {len(self.mismatches())} object(s): {', '.join(self.mismatches())}"
                + (f" — first differing rows: {'; '.join(located[:3])}" if located else ""),
                "copy those tables again (copy --tables … --truncate), then sequences, then verify",
            )


# The source's generated columns per table (by the table's quoted ident), read once with the catalog.
_GENERATED_SQL = """
SELECT x AS ident, array_agg(format('%I', a.attname) ORDER BY a.attnum) AS cols
FROM unnest($1::text[]) AS x JOIN pg_attribute a ON a.attrelid = to_regclass(x)
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
GROUP BY x
"""

Generated = dict[str, list[str]]
Measure = tuple[int, str | None, str | None]  # rows, checksum, generated columns' checksum


async def generated_columns(conn: asyncpg.Connection, catalog: Catalog) -> Generated:
    rows = await conn.fetch(_GENERATED_SQL, [t.ident for t in catalog.tables])
    return {r["ident"]: list(r["cols"]) for r in rows}


async def _measure(conn: asyncpg.Connection, table: Table, proof: Proof, kinds: TableKinds,
                   generated: Seq[str] = ()) -> Measure:
    """Copied columns at the proof level; generated ones (not copied: the target computes them)
    hashed apart in a second pass, so the copied columns' checksum stays what earlier runs
    recorded (drift compares with it) and a difference says which part."""
    row = await conn.fetchrow(measure_sql(table, proof, kinds.get(table.ident)))
    gen = None
    if generated and proof.checksums:
        gen = await conn.fetchval(f"SELECT {text_hash_sum('g')} "
                                  f"FROM (SELECT ROW({', '.join(generated)}) AS g FROM ONLY {table.ident}) x")
    return row["n"], row["checksum"], gen


async def _target_side(pool: asyncpg.Pool, table: Table, proof: Proof, kinds: TableKinds,
                       generated: Seq[str]) -> tuple[int | None, str | None, str | None, str]:
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table.ident):
            return None, None, None, "missing on target"
        try:
            n, checksum, gen = await _measure(conn, table, proof, kinds, generated)
        except asyncpg.UndefinedColumnError as exc:
            return None, None, None, f"target: {exc}"
        return n, checksum, gen, ""


SourceMeasures = dict[str, Measure]


async def _check_table(snap: Snapshot, pool: asyncpg.Pool, table: Table, proof: Proof, kinds: TableKinds,
                       measured: SourceMeasures | None = None, generated: Seq[str] = ()) -> TableCheck:
    result: dict[str, tuple] = {}

    async def source_side() -> None:
        if measured is not None and table.key in measured:
            result["source"] = measured[table.key]
            return
        async with snap.reader() as src:
            result["source"] = await _measure(src, table, proof, kinds, generated)

    async def target_side() -> None:
        result["target"] = await _target_side(pool, table, proof, kinds, generated)

    async with task_group() as tg:
        tg.start_soon(source_side)
        tg.start_soon(target_side)
    (source_rows, source_sum, source_gen), (target_rows, target_sum, target_gen, note) = result["source"], result["target"]
    check = TableCheck(table.key, source_rows, target_rows, source_sum, target_sum, note, list(generated),
                       source_gen, target_gen)
    log.info("table_verified", table=table.key, rows=source_rows, ok=check.ok)
    return check


@dataclass
class TableProver:
    """One table's proof on its own — source side in the snapshot, target side concurrently —
    for `migrate`'s pipeline, which proves a table as soon as it is loaded; `verify(checked=…)`
    then takes these results instead of measuring the table again."""

    snap: Snapshot
    pool: asyncpg.Pool  # target connections with the canonical settings (`apply_canonical`)
    proof: Proof
    kinds: TableKinds
    generated: Generated

    @classmethod
    async def prepare(cls, snap: Snapshot, pool: asyncpg.Pool, proof: Proof, tables: Seq[Table]) -> "TableProver":
        async with snap.reader() as src:
            kinds = await column_kinds(src, tables)
            generated = await generated_columns(src, Catalog(tables=list(tables)))
        return cls(snap, pool, proof, kinds, generated)

    async def check(self, table: Table) -> TableCheck:
        return await _check_table(self.snap, self.pool, table, self.proof, self.kinds, None,
                                  self.generated.get(table.ident, ()))


async def _check_sequences(snap: Snapshot, pool: asyncpg.Pool, sequences: Seq) -> list[SequenceCheck]:
    """Target at or ahead of the value recorded when it was set; a sequence never set by us is
    compared with the source's current value instead."""
    async with snap.reader() as src:
        source_values = await read_values(src, sequences)
    checks = []
    async with pool.acquire() as tgt:
        recorded = await recorded_values(tgt)
        for seq, value in zip(sequences, source_values):
            basis = "recorded at sync" if value.sequence in recorded else "source now (never set by this tool)"
            value = recorded.get(value.sequence, value)
            target = None
            if await tgt.fetchval("SELECT to_regclass($1) IS NOT NULL", seq.ident):
                row = await tgt.fetchrow(f"SELECT last_value, is_called FROM {seq.ident}")
                target = (row["last_value"], row["is_called"])
            checks.append(SequenceCheck(value.sequence, (value.last_value, value.is_called), target,
                                        value.increment, basis))
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


def _checksum_of(relation_sql: str, checksums: bool) -> str:
    checksum = _CHECKSUM if checksums else "NULL::text"
    return f"SELECT count(*) AS n, {checksum} AS checksum FROM ({relation_sql}) r"


async def _check_matview(snap: Snapshot, pool: asyncpg.Pool, mv: MatView, checksums: bool) -> MatViewCheck:
    key = f"{mv.schema}.{mv.name}"
    async with snap.reader() as src:
        viewdef = await src.fetchval("SELECT pg_get_viewdef($1::regclass)", mv.ident)
        stored = await src.fetchrow(_checksum_of(f"SELECT * FROM {mv.ident}", checksums))
        fresh = await src.fetchrow(_checksum_of(view_query(viewdef), checksums))
    async with pool.acquire() as tgt:
        if not await tgt.fetchval("SELECT to_regclass($1) IS NOT NULL", mv.ident):
            return MatViewCheck(key, stored["n"], fresh["n"], None, note="missing on target")
        if not await tgt.fetchval("SELECT relispopulated FROM pg_class WHERE oid = $1::regclass", mv.ident):
            return MatViewCheck(key, stored["n"], fresh["n"], None, note="not populated on target (REFRESH it)")
        target = await tgt.fetchrow(_checksum_of(f"SELECT * FROM {mv.ident}", checksums))
    check = MatViewCheck(key, stored["n"], fresh["n"], target["n"], stored["checksum"], fresh["checksum"],
                         target["checksum"])
    if check.stale_source:
        log.warning("source_matview_stale", table=key)
    return check


async def _check_large_objects(snap: Snapshot, pool: asyncpg.Pool, checksums: bool,
                               skipped: str | None) -> large_objects.LargeObjectCheck:
    async with snap.reader() as src:
        if skipped:
            count = await src.fetchval("SELECT count(*) FROM pg_largeobject_metadata")
            return large_objects.LargeObjectCheck(count, skipped=skipped)
        source = await large_objects.digests(src, checksums=checksums)
    async with pool.acquire() as tgt:
        target = await large_objects.digests(tgt, checksums=checksums)
    check = large_objects.compare(source, target)
    log.info("large_objects_verified", count=check.source_count, ok=check.ok)
    return check


async def verify(
    source: Snapshot | DatabaseUrl,
    target: DatabaseUrl,
    *,
    proof: Proof = DEFAULT_PROOF,
    schemas: Seq[str] | None = None,
    tables: Seq[TableRef | str] | None = None,
    jobs: int | None = None,
    source_measures: SourceMeasures | None = None,
    large_objects: bool = True,
    repair: bool = False,
    checked: Mapping[str, TableCheck] | None = None,
) -> VerifyReport:
    """Compare source (inside the given snapshot, or a fresh one) with the target.
    `source_measures` (from `measure_source` in the same snapshot) spares the source a second
    pass; `checked` (from `TableProver`, same snapshot) spares both sides of those tables.
    With `repair`, differing key ranges are copied again and everything verified once more
    in the same snapshot. Returns the report; `report.raise_for_mismatch()` turns a difference
    into exit 2."""
    jobs = jobs or default_jobs()
    if isinstance(source, DatabaseUrl):
        async with open_snapshot(source, readers=jobs) as snap:
            return await verify(snap, target, proof=proof, schemas=schemas, tables=tables, jobs=jobs,
                                large_objects=large_objects, repair=repair)
    async with source.reader() as src:
        catalog = await resolve_selection(src, Selection.of(schemas, tables), purpose="verify")
        await refuse_unreadable(src, catalog.tables, source.url.user)
        kinds = await column_kinds(src, catalog.tables)
        generated = await generated_columns(src, catalog)
    skip_lo = "--no-large-objects" if not large_objects else ("--tables selects tables only" if tables else None)
    report = VerifyReport(proof=proof, snapshot_id=source.snapshot_id)
    pool = await create_pool(target, jobs, setup=apply_canonical)
    try:  # the target is connected first: a bad target URL or CA is the error to report
        if not catalog.tables and not catalog.sequences:  # a proof over nothing is not a proof
            raise MigrationError("nothing to verify: the source has no tables or sequences in its user schemas",
                                 "check the --source URL (database name)")
        limiter = anyio.CapacityLimiter(jobs)

        async def one(table: Table) -> None:
            if checked is not None and table.key in checked:
                report.tables.append(checked[table.key])
                return
            async with limiter:
                report.tables.append(await _check_table(source, pool, table, proof, kinds, source_measures,
                                                        generated.get(table.ident, ())))

        async def matview(mv: MatView) -> None:
            async with limiter:
                report.matviews.append(await _check_matview(source, pool, mv, proof.checksums))

        async def lobjects() -> None:
            async with limiter:
                report.large_objects = await _check_large_objects(source, pool, proof.checksums, skip_lo)

        async with task_group() as tg:
            tg.start_soon(lobjects)
            for table in catalog.tables:
                tg.start_soon(one, table)
            if not tables:  # a --tables selection neither refreshes nor checks matviews
                for mv in catalog.matviews:
                    if mv.populated:
                        tg.start_soon(matview, mv)
        by_key = {t.key: t for t in catalog.tables}
        await _locate_differences(source, pool, report, by_key, kinds)
        report.sequences = await _check_sequences(source, pool, catalog.sequences)
        if repair and not report.ok:
            differing = [by_key[c.table] for c in report.tables if not c.ok and c.target_rows is not None]
            redone = await redo_differences(source, pool, differing, kinds, proof)
            report = await verify(source, target, proof=proof, schemas=schemas, tables=tables, jobs=jobs,
                                  large_objects=large_objects)
            report.repaired, report.unrepairable = redone.ranges, redone.unrepairable
            return report
    finally:
        await pool.close()
    report.tables.sort(key=lambda t: t.table)
    report.matviews.sort(key=lambda m: m.matview)
    for warning in report.warnings():
        log.warning("verify_warning", detail=warning)
    return report


async def measure_source(snap: Snapshot, *, proof: Proof = DEFAULT_PROOF, schemas: Seq[str] | None = None,
                         tables: Seq[TableRef | str] | None = None, jobs: int | None = None) -> SourceMeasures:
    """The source side of `verify` on its own, so `migrate` can run it while the target is
    busy building indexes (the source is idle then) instead of after."""
    async with snap.reader() as src:
        catalog = await resolve_selection(src, Selection.of(schemas, tables), purpose="verify")
        kinds = await column_kinds(src, catalog.tables)
        generated = await generated_columns(src, catalog)
    measured: SourceMeasures = {}
    limiter = anyio.CapacityLimiter(jobs or default_jobs())

    async def one(table: Table) -> None:
        async with limiter, snap.reader() as src:
            measured[table.key] = await _measure(src, table, proof, kinds, generated.get(table.ident, ()))

    async with task_group() as tg:
        for table in catalog.tables:
            tg.start_soon(one, table)
    return measured
