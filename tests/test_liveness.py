"""Faults on real servers: the tool ends by itself, leaves nothing behind, and resumes exactly.

The target table carries a CHECK whose function sleeps now and then, so the target consumes
the COPY for seconds while the source has long finished sending: every kill below lands in
the middle of a COPY whose writes are backed up — the state in which the tool used to hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest
import structlog

from loaders.data.copy import CopyOptions, build_copy_plan, copy_tables
from loaders.data.snapshot import open_snapshot
from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.localpg import FAST_UNSAFE, LocalPostgres, rds_like_database
from tests.datakit import fetchrows, fetchval, row_texts, run_sql

ROOT = Path(__file__).resolve().parent.parent
ROWS = 60_000
SOURCE_TABLE = f"""
CREATE TABLE big (id int NOT NULL, payload text NOT NULL);
INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {ROWS}) g;
"""
# Every 100th row sleeps 10 ms: ~6 s of target work for the whole table, none on the source.
SLOW_TARGET_TABLE = """
CREATE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF $1 % 100 = 0 THEN PERFORM pg_sleep(0.01); END IF;
    RETURN true;
END $$;
CREATE TABLE big (id int NOT NULL CHECK (slow_ok(id)), payload text NOT NULL);
"""
TOOL_SESSIONS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'supabase-to-rds%' AND pid <> pg_backend_pid()
"""


async def _tool_sessions(url: str) -> list[tuple]:
    return await fetchrows(url, TOOL_SESSIONS)


async def _wait_for_copy(url: str) -> None:
    """Until the tool's COPY into `big` is running on this server."""
    while not await fetchval(url, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                  "AND query LIKE 'COPY%big%FROM STDIN%' AND datname = current_database()"):
        await anyio.sleep(0.1)


async def _no_tool_session_left(url: str) -> list[tuple]:
    """The server ends a dropped session as soon as it notices; give it a moment."""
    for _ in range(50):
        left = await _tool_sessions(url)
        if not left:
            return left
        await anyio.sleep(0.2)
    return left


async def _copy(source: str, target: str, **options: object) -> None:
    src, tgt = parse_url(source, "source"), parse_url(target, "target")
    opts = CopyOptions(**options)  # type: ignore[arg-type]
    async with open_snapshot(src, readers=opts.jobs) as snap:
        plan = await build_copy_plan(snap, tgt, opts)
        await copy_tables(snap, tgt, plan, opts)


@pytest.fixture
async def big_pair(source_db: str, target_db: str) -> AsyncIterator[tuple[str, str]]:
    await run_sql(source_db, SOURCE_TABLE)
    await run_sql(target_db, SLOW_TARGET_TABLE)
    yield source_db, target_db


async def _assert_identical(source: str, target: str) -> None:
    assert await fetchval(target, "SELECT count(*) FROM big") == ROWS
    assert await row_texts(source, "public.big") == await row_texts(target, "public.big")


@pytest.mark.timeout(180)
async def test_target_sessions_terminated_mid_copy_end_the_run_and_resume_is_exact(big_pair, pg15) -> None:
    """Every attempt's target session is killed mid-COPY: the run gives up by itself after its
    retries with one line, no session of the tool stays on the source, --resume is exact."""
    source, target = big_pair
    kills = 0

    async def kill_every_copy() -> None:
        nonlocal kills
        while True:
            await _wait_for_copy(target)
            await anyio.sleep(0.3)
            killed = await fetchrows(target, "SELECT pg_terminate_backend(pid) FROM (" + TOOL_SESSIONS + ") s")
            kills += len(killed)

    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_every_copy)
        try:
            await _copy(source, target, jobs=2, retries=3, retry_delay=0.2)
        except MigrationError as exc:
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    assert isinstance(failure, MigrationError)
    line = failure.one_line()
    assert "copying public.big" in line and "connection failed 3 times" in line and "--resume" in line
    assert "--format" not in line
    assert kills >= 3
    assert await _no_tool_session_left(source) == []

    await _copy(source, target, jobs=2, resume=True)
    await _assert_identical(source, target)
    assert await _no_tool_session_left(source) == []


@pytest.mark.timeout(180)
async def test_target_restarted_immediately_mid_copy(source_db: str, tmp_path: Path) -> None:
    """`pg_ctl -m immediate` restart of the target during the COPY: the run ends by itself (here
    it gets through on a retry once the server is back) and a --resume leaves identical data."""
    server = LocalPostgres(tmp_path / "target", settings=FAST_UNSAFE).start()
    try:
        target = await rds_like_database(server, "app", "rds_master")
        await run_sql(source_db, SOURCE_TABLE)
        await run_sql(target, SLOW_TARGET_TABLE)

        def restart() -> None:
            server._cmd("pg_ctl", "-D", str(server.data_dir), "-m", "immediate", "-w", "stop")
            server.start()

        async def restart_mid_copy() -> None:
            await _wait_for_copy(target)
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(restart)

        outcome: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_mid_copy)
            try:
                await _copy(source_db, target, jobs=2, retries=6, retry_delay=0.5)
            except MigrationError as exc:  # ending with one line is as good as finishing
                outcome = exc
        assert outcome is None or "copying public.big" in str(outcome)
        assert await _no_tool_session_left(source_db) == []
        await _copy(source_db, target, jobs=2, resume=True)
        await _assert_identical(source_db, target)
    finally:
        server.stop()


@pytest.mark.timeout(120)
async def test_lock_wait_is_reported_then_bounded(source_db: str, target_db: str) -> None:
    """A session holding a lock on the target table: the tool says who it waits for, gives up
    after its bounded waits naming the holder (not blaming the COPY format), then resumes."""
    await run_sql(source_db, SOURCE_TABLE.replace(str(ROWS), "500"))
    await run_sql(target_db, "CREATE TABLE big (id int NOT NULL, payload text NOT NULL)")
    holder = await asyncpg.connect(target_db)
    try:
        await holder.execute("BEGIN; LOCK TABLE big IN SHARE MODE")  # as a CREATE INDEX would
        holder_pid = holder.get_server_pid()
        with structlog.testing.capture_logs() as logs, pytest.raises(MigrationError) as failure:
            await _copy(source_db, target_db, jobs=1, truncate=True, lock_timeout=5, retries=2, retry_delay=0.2)
        waits = [e["event"] for e in logs if str(e["event"]).startswith("waiting for lock on public.big")]
        assert waits and f"held by pid {holder_pid}" in waits[0]
        line = failure.value.one_line()
        assert f"held by pid {holder_pid}" in line and "--lock-timeout" in line and "--format" not in line
    finally:
        await holder.close()
    await _copy(source_db, target_db, jobs=1, resume=True, truncate=True)
    assert await row_texts(source_db, "public.big") == await row_texts(target_db, "public.big")


def _cli(source: str, target: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SOURCE_DATABASE_URL": source, "TARGET_DATABASE_URL": target}
    return subprocess.Popen([sys.executable, "-m", "automation", "--log-json", "copy", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(180)
async def test_second_run_on_the_same_target_is_refused_naming_the_first(big_pair) -> None:
    source, target = big_pair
    first = _cli(source, target, "--tables", "public.big", "--jobs", "2")
    try:
        await _wait_for_copy(target)
        second = await anyio.to_thread.run_sync(
            lambda: subprocess.run([sys.executable, "-m", "automation", "copy", "--tables", "public.big"], cwd=ROOT,
                                   env={**os.environ, "SOURCE_DATABASE_URL": source, "TARGET_DATABASE_URL": target},
                                   capture_output=True, text=True, timeout=120))
        assert second.returncode == 1, second.stderr
        error = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1
        assert "another run is loading this database" in error[0]
        assert f":{first.pid})" in error[0] and "client 127.0.0.1:" in error[0] and "since 20" in error[0]
        _out, err = await anyio.to_thread.run_sync(lambda: first.communicate(timeout=150))
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    await _assert_identical(source, target)


@pytest.mark.timeout(120)
async def test_jobs_clamped_to_free_connection_slots(source_db: str, target_db: str) -> None:
    await run_sql(source_db, SOURCE_TABLE.replace(str(ROWS), "1000"))
    await run_sql(target_db, "CREATE TABLE big (id int NOT NULL, payload text NOT NULL)")
    run = _cli(source_db, target_db, "--jobs", "1000")
    _out, err = await anyio.to_thread.run_sync(lambda: run.communicate(timeout=100))
    assert run.returncode == 0, err
    clamped = [line for line in err.splitlines() if "--jobs 1000 lowered to" in line]
    assert len(clamped) == 1, err
    assert "too many connections" not in err.lower() and "transient_error_retrying" not in err
    assert await row_texts(source_db, "public.big") == await row_texts(target_db, "public.big")

