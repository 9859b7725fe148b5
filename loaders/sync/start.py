"""`sync start`: preflight → publication → slot with exported snapshot → migrate inside that
snapshot → subscription from the slot's consistent point.

The copy and the change stream meet exactly: the slot's snapshot is the state the slot starts
decoding after, the copy reads that snapshot, and the subscription consumes the slot. No gap,
no change applied twice.

A rerun after a crash before the subscription existed cannot reuse the old slot (its snapshot
died with the process), so it drops the slot and copies again with --truncate, saying so. A
rerun once replication runs is refused: status, cutover and abort are the ways forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import anyio
import structlog

from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.migrate import MigrateOptions, MigrationReport, migrate
from loaders.sync.preflight import preflight
from loaders.sync.source import drop_slot, ensure_publication, exported_slot, set_replica_identity_full
from loaders.sync.state import COPIED, CUT_OVER, FENCED, SLOT_CREATED, STREAMING, SyncState, load_state, save_state
from loaders.sync.status import LagTimeout, source_schema, wait_for_lag
from loaders.sync.target import create_subscription, drop_subscription, wait_until_streaming

log = structlog.get_logger(stage="sync")
DEFAULT_CAUGHT_UP_BYTES = 16 << 20


@dataclass
class StartOptions:
    migrate: MigrateOptions = field(default_factory=MigrateOptions)
    source_for_target: DatabaseUrl | None = None  # the source as the target reaches it
    identity_full: bool = False
    timeout: float = 600.0  # for the subscription to start and catch up
    caught_up_bytes: int = DEFAULT_CAUGHT_UP_BYTES


@dataclass
class StartReport:
    state: SyncState
    migration: MigrationReport
    lag_bytes: int | None
    resumed_from: str | None = None


async def _refuse_or_clean(source: DatabaseUrl, target: DatabaseUrl) -> str | None:
    """Returns the phase a crashed start stopped at (after cleaning up what it left), or None."""
    state = await load_state(target)
    if state is None:
        return None
    if state.phase in (STREAMING, FENCED, CUT_OVER):
        raise MigrationError(f"a sync is already {state.phase.replace('_', ' ')} on target {target.safe}",
                             "see `sync status`, finish with `sync cutover`, or remove it with `sync abort`")
    log.warning("sync_start_resumes", previous_phase=state.phase,
                what="dropping the old slot (its snapshot is gone) and copying again with --truncate")
    await drop_subscription(target)
    await drop_slot(source)
    return state.phase


def large_objects_warning(migration: MigrationReport) -> str | None:
    """Logical replication carries table rows only: large objects (`pg_largeobject`) are copied as of
    the slot's snapshot and then stand still on the target. Said once at start, in the report too;
    `sync cutover` verifies them and refuses to pass when they moved."""
    copied = migration.copy.large_objects if migration.copy else None
    if copied is None or not (copied.copied or copied.already_done):
        return None  # none on the source, or skipped with their own warning (--no-large-objects, --tables)
    warning = (f"{copied.source_count} large object(s) copied as of the snapshot: logical replication does not "
               "carry large objects, so changes to them after `sync start` are NOT replicated (`sync cutover` "
               "verifies them and stops on a difference)")
    log.warning("large_objects_not_replicated", count=copied.source_count)
    migration.copy.warnings.append(warning)  # type: ignore[union-attr]
    return warning


def raise_for_table_mismatch(migration: MigrationReport) -> None:
    """Schema and tables must match the snapshot; sequences cannot while the app writes (a sequence
    read ignores snapshots, so the source's has moved on) and are set at cutover instead."""
    if migration.verify is not None:
        migration.verify.sequences = []
    migration.raise_for_mismatch()


async def start(source: DatabaseUrl, target: DatabaseUrl, options: StartOptions) -> StartReport:
    resumed_from = await _refuse_or_clean(source, target)
    copy = options.migrate.copy
    checked = await preflight(source, target, schemas=copy.schemas, tables=copy.tables,
                              identity_full=options.identity_full)
    if checked.no_identity and options.identity_full:
        await set_replica_identity_full(source, checked.no_identity)
    state = SyncState(source=source.safe, tables=[list(t) for t in checked.tables],
                      schemas=list(copy.schemas) if copy.schemas else None,
                      selection=list(copy.tables) if copy.tables else None)
    state.source_schema = await source_schema(source, state.schemas)
    await save_state(target, state)
    await ensure_publication(source, checked.tables)
    migrate_options = replace(options.migrate, copy=replace(copy, truncate=True) if resumed_from else copy)
    try:
        async with exported_slot(source) as slot:
            state.phase, state.consistent_lsn, state.snapshot = SLOT_CREATED, slot.consistent_lsn, slot.snapshot
            await save_state(target, state)
            migration = await migrate(source, target, replace(migrate_options, snapshot=slot.snapshot))
            raise_for_table_mismatch(migration)
            large_objects_warning(migration)
    except BaseException:
        # Without its snapshot the slot is useless, and a forgotten slot keeps WAL on the source.
        with anyio.CancelScope(shield=True):
            await drop_slot(source)
        raise
    state.phase = COPIED
    await save_state(target, state)
    await create_subscription(target, options.source_for_target or source)
    state.phase = STREAMING
    await save_state(target, state)
    await wait_until_streaming(target, timeout=options.timeout)
    try:
        lag = await wait_for_lag(source, below=options.caught_up_bytes, timeout=options.timeout)
    except LagTimeout as exc:
        log.warning("sync_still_catching_up", detail=exc.one_line())
        lag = None
    log.info("sync_streaming", lag_bytes=lag, consistent_lsn=state.consistent_lsn)
    return StartReport(state, migration, lag, resumed_from)
