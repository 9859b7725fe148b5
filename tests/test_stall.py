"""The COPY stall watchdog (`--stall-timeout`) on real servers: the source backend serving the
COPY is frozen with SIGSTOP mid-stream — its connection stays open, no error ever arrives, no
lock is involved — so only the watchdog can notice. The unit must be dropped and redone, and
the target must end identical to the source."""

from __future__ import annotations

import os
import signal

import anyio
import pytest
import structlog

from tests import test_liveness as liveness
from tests.datakit import copy_all, fetchrows, row_texts, run_sql

ROWS = 200_000  # ~28 MB: more than the pipe's buffer and the sockets hold, so the source keeps sending
SOURCE_TABLE = liveness.SOURCE_TABLE.replace(str(liveness.ROWS), str(ROWS))
# The target consumes slowly (every 1000th row sleeps 10 ms), so the source's COPY sits blocked
# on its socket (wait event ClientWrite) long enough to be caught there.
SLOW_TARGET_TABLE = liveness.SLOW_TARGET_TABLE.replace("$1 % 100 =", "$1 % 1000 =")
SOURCE_COPY = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND wait_event = 'ClientWrite' AND query LIKE 'COPY (SELECT%big%'
"""


async def freeze_the_source_copy(source: str, frozen: list[int]) -> None:
    """SIGSTOP the source backend while it is blocked writing the COPY to us (no lock held then)."""
    while not frozen:
        for (pid,) in await fetchrows(source, SOURCE_COPY):
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        await anyio.sleep(0.02)


@pytest.mark.timeout(120)
async def test_a_frozen_source_copy_is_declared_stalled_and_the_unit_redone(source_db: str, target_db: str) -> None:
    assert "% 1000" in SLOW_TARGET_TABLE and str(ROWS) in SOURCE_TABLE  # the shared tables, resized
    await run_sql(source_db, SOURCE_TABLE)
    await run_sql(target_db, SLOW_TARGET_TABLE)
    frozen: list[int] = []
    try:
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(freeze_the_source_copy, source_db, frozen)
                report = await copy_all(source_db, target_db, jobs=1, stall_seconds=1.0, retries=3, retry_delay=0.2)
                tg.cancel_scope.cancel()
    finally:
        for pid in frozen:  # it finds its client gone and exits
            os.kill(pid, signal.SIGCONT)
    assert frozen, "the source COPY was never caught mid-stream"
    retries = [e for e in logs if e["event"] == "transient_error_retrying"]
    assert [(e["what"], e["error"]) for e in retries] == [("public.big", "Stalled")]
    assert "no data moved" in retries[0]["detail"] and "not waiting on a lock" in retries[0]["detail"]
    assert [(t.table, t.rows) for t in report.tables] == [("public.big", ROWS)]
    assert await row_texts(target_db, "public.big") == await row_texts(source_db, "public.big")
