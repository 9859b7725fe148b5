"""`sync cutover`: fence the source, let the target apply up to the fence, set sequences,
prove the target equal, then detach.

The order is the guarantee. Writes stop on the source first (a fence trigger on every table, the
owner included), so the source's last state is final; the fence's WAL position is recorded and
the target must confirm it; only then are sequences set (replication never carries them) and
every table counted and checksummed against the fenced source. The write freeze is measured
from the fence to the moment the target is ready.

Any failure before the proof unfences the source (the app keeps running on Supabase). A proof
that fails keeps the fence — unfencing would let the app write to a source whose copy is known
to differ — and says how to retry or undo.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import anyio
import structlog

from loaders.connect import connection
from loaders.data.analyze import analyze_tables
from loaders.data.catalog import read_catalog
from loaders.data.checksum import DEFAULT_PROOF, Proof
from loaders.data.copy import default_jobs
from loaders.data.sequences import read_values
from loaders.data.verify import VerifyReport, verify
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError, VerificationMismatch
from loaders.sync.source import drop_publication, drop_slot, fence, unfence
from loaders.sync.state import CUT_OVER, FENCED, STREAMING, SyncState, load_state, save_state
from loaders.sync.status import schema_changes, wait_for_lag
from loaders.sync.target import SequenceAdvance, advance_sequences, drop_subscription

log = structlog.get_logger(stage="sync")


@dataclass
class CutoverOptions:
    timeout: float = 120.0  # for each wait: lag under max_lag before the fence, the fence LSN after
    max_lag: int = 16 << 20  # bytes; the fence goes up only when the target is this close
    sequence_margin: int = 1000  # steps added to every sequence (values used after our last read)
    proof: Proof = DEFAULT_PROOF  # --verify full|fast|counts; counts makes the freeze shortest
    jobs: int = field(default_factory=default_jobs)


@dataclass
class CutoverReport:
    fence_lsn: str | None = None
    fenced_tables: int = 0
    freeze_seconds: float = 0.0  # fence → target ready (caught up, sequences set, verified, detached)
    phases: dict[str, float] = field(default_factory=dict)
    sequences: list[SequenceAdvance] = field(default_factory=list)
    verify: VerifyReport | None = None
    analyzed: list[str] = field(default_factory=list)

    @property
    def tables_ok(self) -> bool:
        return self.verify is not None and all(t.ok for t in self.verify.tables)

    @property
    def large_objects_ok(self) -> bool:
        """Replication never carried them: a change since `sync start` shows up only here."""
        checked = self.verify.large_objects if self.verify is not None else None
        return checked is None or checked.ok

    @property
    def ok(self) -> bool:
        return self.tables_ok and self.large_objects_ok and all(s.ok for s in self.sequences)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "fence_lsn": self.fence_lsn, "fenced_tables": self.fenced_tables,
                "freeze_seconds": round(self.freeze_seconds, 3),
                "phases": {k: round(v, 3) for k, v in self.phases.items()},
                "sequences": [asdict(s) for s in self.sequences], "analyzed": self.analyzed,
                "proof": self.verify.proof.value if self.verify else None,
                "tables": self.verify.to_dict()["tables"] if self.verify else None}


async def current_lsn(source: DatabaseUrl) -> str:
    async with connection(source) as conn:
        return await conn.fetchval("SELECT pg_current_wal_lsn()::text")


async def _prove(source: DatabaseUrl, target: DatabaseUrl, state: SyncState, options: CutoverOptions,
                 report: CutoverReport, lap: "_Laps") -> None:
    async with connection(source) as conn:
        catalog = await read_catalog(conn, state.schemas, state.selection)
        values = await read_values(conn, catalog.sequences)
    report.sequences = await advance_sequences(target, catalog.sequences, values, margin=options.sequence_margin)
    lap("sequences")
    report.verify = await verify(source, target, proof=options.proof, schemas=state.schemas,
                                 tables=state.selection, jobs=options.jobs)
    report.verify.sequences = []  # judged above as "not behind", not "equal": the margin moves them on purpose
    lap("verify")
    # Statistics before the app arrives: the copy's ANALYZE predates every replicated change.
    report.analyzed = (await analyze_tables(target, catalog.tables, options.jobs)).relations
    lap("analyze")


class _Laps:
    def __init__(self, report: CutoverReport) -> None:
        self.report, self.t0 = report, time.perf_counter()
        self.last = self.t0

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.report.phases[name], self.last = now - self.last, now
        self.report.freeze_seconds = now - self.t0


async def cutover(source: DatabaseUrl, target: DatabaseUrl, options: CutoverOptions) -> CutoverReport:
    state = await load_state(target)
    if state is None:
        raise MigrationError(f"no sync recorded on target {target.safe}", "run `sync start` first")
    if state.phase == CUT_OVER:
        raise MigrationError("this sync was already cut over", "the target is live; nothing left to do")
    if state.phase not in (STREAMING, FENCED):
        raise MigrationError(f"the sync is at phase {state.phase}, not streaming", "run `sync start` again, or `sync abort`")
    changed = await schema_changes(source, state)
    if changed:
        raise MigrationError(
            f"the source's schema changed since `sync start` ({'; '.join(changed[:10])}) and logical replication "
            "does not carry DDL", "`sync abort`, then `sync start` again (the new schema is copied), then cut over")
    report = CutoverReport()
    if state.phase == STREAMING:  # don't freeze the app while the target is far behind
        await wait_for_lag(source, below=options.max_lag, timeout=options.timeout)
    keep_fence = False
    lap = _Laps(report)
    try:
        state.fenced = await fence(source, state.tables)
        state.phase, report.fenced_tables = FENCED, len(state.fenced)
        state.fence_lsn = report.fence_lsn = await current_lsn(source)
        await save_state(target, state)
        lap("fence")
        await wait_for_lag(source, below=0, until_lsn=state.fence_lsn, timeout=options.timeout)
        lap("catch_up")
        await _prove(source, target, state, options, report, lap)
        if not report.ok:
            keep_fence = True
            bad = report.verify.mismatches() if report.verify else []
            bad += [s.sequence for s in report.sequences if not s.ok]
            raise VerificationMismatch(
                f"after the fence the target differs from the source in {len(bad)} object(s): {', '.join(bad[:10])}"
                + ("" if report.large_objects_ok else f" ({report.verify.large_objects.summary()}: "  # type: ignore[union-attr]
                   "logical replication does not carry large objects)"),
                "the source stays fenced: rerun `sync cutover` to check again, or `sync abort` to unfence and "
                "keep the app on Supabase" + ("" if report.large_objects_ok else
                                              ", then `sync start --truncate` to copy the large objects again"))
        await drop_subscription(target)
        lap("detach")
        state.phase, state.freeze_seconds = CUT_OVER, report.freeze_seconds
        await save_state(target, state)
    except BaseException:
        if not keep_fence:
            with anyio.CancelScope(shield=True):
                await unfence(source, state.fenced)
                state.phase, state.fenced, state.fence_lsn = STREAMING, [], None
                await save_state(target, state)
                log.warning("source_unfenced_after_failure", why="the cutover did not finish; the app can write again")
        raise
    # Replication is over: what it needed on the source goes; the fence stays (the app must move).
    await drop_slot(source)
    await drop_publication(source)
    log.info("cut_over", freeze_seconds=round(report.freeze_seconds, 3), fence_lsn=report.fence_lsn)
    return report
