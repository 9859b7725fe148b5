"""`sync abort`: remove everything sync created — subscription, slot, publication, fence.

Safe at any point and twice: each object is looked up by the name the tool gives it and dropped
only if present, so an abort after a crash (state half-written) or after another abort finds
what is left and nothing else. The fence is found on the source's catalog, not only in the
recorded state, so a fence whose recording was lost is still lifted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.sync.source import drop_publication, drop_slot, unfence
from loaders.sync.state import FENCE_TRIGGER, PUBLICATION, clear_state
from loaders.sync.target import drop_subscription

log = structlog.get_logger(stage="sync")

_FENCED_SQL = """
SELECT n.nspname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname = $1 ORDER BY 1, 2
"""


@dataclass
class AbortReport:
    subscription: bool = False
    slot: bool = False
    publication: bool = False
    unfenced: list[str] = field(default_factory=list)


async def abort(source: DatabaseUrl, target: DatabaseUrl) -> AbortReport:
    report = AbortReport()
    report.subscription = await drop_subscription(target)
    report.slot = await drop_slot(source)
    async with connection(source) as conn:
        report.publication = bool(await conn.fetchval("SELECT 1 FROM pg_publication WHERE pubname = $1", PUBLICATION))
        fenced = [(r[0], r[1]) for r in await conn.fetch(_FENCED_SQL, FENCE_TRIGGER)]
    if report.publication:
        await drop_publication(source)
    await unfence(source, fenced)
    report.unfenced = [f"{s}.{n}" for s, n in fenced]
    await clear_state(target)
    log.info("sync_aborted", **vars(report))
    return report
