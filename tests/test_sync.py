"""`sync` end to end on real servers: a PG 15 source with wal_level=logical (scram over TCP) and
the PG 18 target whose owner is not a superuser but holds pg_create_subscription (RDS's master
user stand-in). An app writes to the source the whole time; after cutover every table must be
identical, sequences not behind, the source fenced, and nothing of the sync left behind."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

from automation.cli import main
from loaders.localpg import FAST_UNSAFE, LocalPostgres, debian_bin_dir
from loaders.sync.state import PUBLICATION, SLOT, SUBSCRIPTION
from tests.conftest import RDS_MASTER, SOURCE_MAJOR
from tests.datakit import fetchrows, fetchval, row_texts, run_sql

LOGICAL = {**FAST_UNSAFE, "wal_level": "logical", "max_replication_slots": "8", "max_wal_senders": "8"}

# Beyond the Supabase-shaped sample: a second schema, a standalone sequence.
EXTRA = """
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id bigserial PRIMARY KEY, task_id bigint, cents int NOT NULL);
CREATE SEQUENCE billing.ticket_seq;
INSERT INTO billing.invoices (task_id, cents) SELECT g, g * 100 FROM generate_series(1, 50) g;
"""

APP_TABLES = ["public.profiles", "public.teams", "public.team_members", "public.projects", "public.tasks",
              "public.activity", "public.events", "billing.invoices"]


async def cli(argv: list[str]) -> int:
    return await anyio.to_thread.run_sync(main, argv)


@pytest.fixture(scope="session")
def logical_pg15(tmp_path_factory: pytest.TempPathFactory):
    bin_dir = debian_bin_dir(SOURCE_MAJOR)
    if bin_dir is None:
        pytest.fail("Debian postgresql-15 is not installed: run `bash .ci/run` or `apt-get install postgresql-15`")
    server = LocalPostgres(tmp_path_factory.mktemp("pg15logical") / "data", bin_dir=bin_dir, settings=LOGICAL).start()
    yield server
    server.stop()


@pytest.fixture
async def sync_source(logical_pg15: LocalPostgres) -> str:
    from automation.sample import sample_sql, supabase_source_sql

    name = "src_" + secrets.token_hex(5)
    await run_sql(logical_pg15.url(), f'CREATE DATABASE "{name}"')
    url = logical_pg15.url(name)
    await run_sql(url, supabase_source_sql() + sample_sql("seed.sql") + EXTRA)
    return url


@pytest.fixture
async def subscriber_target(pg18: LocalPostgres, target_db: str) -> str:
    """The RDS-like target: its master may create subscriptions (rds_superuser's stand-in)."""
    await run_sql(pg18.url(), f'GRANT pg_create_subscription TO "{RDS_MASTER}"')
    return target_db


class App:
    """Writes like a live app until the source refuses: inserts (one fires an AFTER INSERT
    trigger into another table), updates, deletes, a partitioned table, a second schema and a
    standalone sequence."""

    def __init__(self, url: str) -> None:
        self.url, self.writes, self.refused = url, 0, None

    async def run(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            project = await conn.fetchval("SELECT min(id) FROM public.projects")
            while True:
                try:
                    async with conn.transaction():
                        task = await conn.fetchval("INSERT INTO public.tasks (project_id, title) VALUES ($1, 'live') "
                                                   "RETURNING id", project)
                        await conn.execute("UPDATE public.tasks SET status = 'doing' WHERE id = $1", task - 1)
                        await conn.execute("DELETE FROM public.activity WHERE task_id = $1", task - 2)
                        await conn.execute("INSERT INTO public.events (occurred_at, kind) "
                                           "VALUES (timestamptz '2025-03-01' + $1 * interval '1 minute', 'live')", task)
                        await conn.execute("INSERT INTO billing.invoices (task_id, cents) VALUES ($1, 7)", task)
                        await conn.execute("SELECT nextval('billing.ticket_seq')")
                    self.writes += 1
                except asyncpg.ReadOnlySQLTransactionError as exc:
                    self.refused = str(exc)
                    return
                await anyio.sleep(0.01)
        finally:
            await conn.close()


async def leftovers(source: str, target: str) -> dict[str, object]:
    return {
        "slot": await fetchval(source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", SLOT),
        "publication": await fetchval(source, "SELECT count(*) FROM pg_publication WHERE pubname = $1", PUBLICATION),
        "subscription": await fetchval(target, "SELECT count(*) FROM pg_subscription WHERE subname = $1", SUBSCRIPTION),
    }


def error_lines(capsys: pytest.CaptureFixture) -> list[str]:
    """The CLI's one-line errors on stderr (log lines are JSON there too)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def summaries(capsys: pytest.CaptureFixture) -> list[dict]:
    """The `summary` events a command ended with (stderr is JSON lines off a terminal)."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"event": "summary"' in line]


async def phase(target: str) -> str | None:
    if not await fetchval(target, "SELECT to_regclass('supabase_to_rds.sync_state') IS NOT NULL"):
        return None
    return await fetchval(target, "SELECT state->>'phase' FROM supabase_to_rds.sync_state")


async def status_json(source: str, target: str, capsys: pytest.CaptureFixture) -> tuple[int, dict]:
    capsys.readouterr()
    code = await cli(["sync", "status", "--source", source, "--target", target, "--json"])
    return code, json.loads(capsys.readouterr().out)


def target_rows(status: dict, table: str) -> int:
    return next(t["target_rows"] for t in status["tables"] if t["table"] == table)


async def next_values(url: str) -> dict[str, int]:
    """What nextval would return next, per sequence, read without consuming one."""
    rows = await fetchrows(url, "SELECT schemaname || '.' || sequencename, increment_by FROM pg_sequences "
                                "WHERE schemaname IN ('public', 'billing')")
    values = {}
    for name, step in rows:
        last, called = (await fetchrows(url, f"SELECT last_value, is_called FROM {name}"))[0]
        values[name] = last + step if called else last
    return values


async def test_start_follow_and_cutover_under_writes(
    sync_source: str, subscriber_target: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, target = sync_source, subscriber_target
    app = App(source)
    async with anyio.create_task_group() as tg:
        tg.start_soon(app.run)
        assert await cli(["sync", "start", "--source", source, "--target", target, "--jobs", "2"]) == 0
        assert (await leftovers(source, target)) == {"slot": 1, "publication": 1, "subscription": 1}
        assert await cli(["sync", "start", "--source", source, "--target", target]) == 1  # refused: already running
        assert "already streaming" in capsys.readouterr().err

        code, first = await status_json(source, target, capsys)
        assert code == 0 and first["phase"] == "streaming" and first["healthy"] and first["worker_pid"]
        assert {t["table"] for t in first["tables"]} >= {"public.tasks", "billing.invoices", "public.events_2025"}
        assert all(t["state"] == "ready" for t in first["tables"])
        with anyio.fail_after(60):  # the target follows the live writes
            while target_rows(later := (await status_json(source, target, capsys))[1], "public.tasks") \
                    <= target_rows(first, "public.tasks"):
                await anyio.sleep(0.2)
        assert later["lag_bytes"] is not None

        report = tmp_path / "cutover.json"
        assert await cli(["sync", "cutover", "--source", source, "--target", target, "--yes",
                          "--sequence-margin", "5", "--report", str(report)]) == 0
    assert app.refused and "read-only" in app.refused and app.writes > 0
    result = json.loads(report.read_text())
    assert result["ok"] and result["freeze_seconds"] > 0 and result["fenced_tables"] >= len(APP_TABLES)

    for table in APP_TABLES:  # independent of the tool's own verification
        assert await row_texts(target, table) == await row_texts(source, table), table
    assert await fetchval(target, "SELECT count(*) FROM public.tasks WHERE title = 'live'") > 0
    source_next, target_next = await next_values(source), await next_values(target)
    assert source_next.keys() == target_next.keys() and "billing.ticket_seq" in target_next
    assert all(target_next[name] >= value for name, value in source_next.items()), (source_next, target_next)

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):  # the owner (a superuser, even) is fenced
        await run_sql(source, "INSERT INTO billing.invoices (task_id, cents) VALUES (0, 0)")
    assert (await leftovers(source, target)) == {"slot": 0, "publication": 0, "subscription": 0}
    assert await cli(["sync", "cutover", "--source", source, "--target", target, "--yes"]) == 1

    assert await cli(["sync", "abort", "--source", source, "--target", target]) == 0  # roll back: unfence
    await run_sql(source, "INSERT INTO billing.invoices (task_id, cents) VALUES (0, 0)")


async def test_cutover_timeout_unfences_and_abort_leaves_nothing(
    sync_source: str, subscriber_target: str, capsys: pytest.CaptureFixture
) -> None:
    source, target = sync_source, subscriber_target
    assert await cli(["sync", "start", "--source", source, "--target", target, "--jobs", "2"]) == 0
    await run_sql(target, f"ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE")  # target stalls
    capsys.readouterr()
    assert await cli(["sync", "cutover", "--source", source, "--target", target, "--yes", "--timeout", "3"]) == 1
    err = error_lines(capsys)
    assert len(err) == 1 and "did not catch up" in err[0]
    await run_sql(source, "INSERT INTO billing.invoices (task_id, cents) VALUES (0, 0)")  # unfenced: writable
    code, status = await status_json(source, target, capsys)
    assert code == 2 and status["phase"] == "streaming" and not status["healthy"]

    await run_sql(source, "ALTER TABLE billing.invoices ADD COLUMN note text")  # DDL is not replicated
    code, status = await status_json(source, target, capsys)
    assert code == 2 and status["schema_changes"] == ["column billing.invoices.note: added"]
    assert await cli(["sync", "cutover", "--source", source, "--target", target, "--yes"]) == 1
    [err] = error_lines(capsys)
    assert "column billing.invoices.note: added" in err and "sync abort" in err
    await run_sql(source, "INSERT INTO billing.invoices (task_id, cents) VALUES (0, 0)")  # refused before any fence

    for _ in range(2):  # abort is safe twice
        assert await cli(["sync", "abort", "--source", source, "--target", target]) == 0
        assert (await leftovers(source, target)) == {"slot": 0, "publication": 0, "subscription": 0}
    assert await fetchval(source, "SELECT count(*) FROM pg_trigger WHERE tgname = 'supabase_to_rds_fence'") == 0
    assert await cli(["sync", "status", "--source", source, "--target", target]) == 1  # no sync recorded

    await run_sql(source, "ALTER TABLE billing.invoices DROP COLUMN note")
    # Starting over onto the target that kept its rows (as the README says: --truncate).
    assert await cli(["sync", "start", "--source", source, "--target", target, "--truncate", "--jobs", "2"]) == 0
    assert await row_texts(target, "billing.invoices") == await row_texts(source, "billing.invoices")
    assert await cli(["sync", "abort", "--source", source, "--target", target]) == 0


async def test_a_start_killed_mid_copy_resumes(
    sync_source: str, subscriber_target: str, capsys: pytest.CaptureFixture
) -> None:
    """A crash after the slot exists: the slot's snapshot died with the process, so a rerun drops
    it and copies again (with --truncate), saying so; nothing is doubled."""
    source, target = sync_source, subscriber_target
    env = {**os.environ, "SOURCE_DATABASE_URL": source, "TARGET_DATABASE_URL": target}
    proc = subprocess.Popen([sys.executable, "-m", "automation", "sync", "start", "--jobs", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(60):
            while await phase(target) != "slot_created":
                assert proc.poll() is None, "start ended before it recorded its slot"
                await anyio.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert (await leftovers(source, target))["slot"] == 1  # left behind by the crash
    capsys.readouterr()
    assert await cli(["sync", "start", "--source", source, "--target", target, "--jobs", "2"]) == 0
    assert "previous start stopped at phase slot_created" in capsys.readouterr().err
    assert (await leftovers(source, target)) == {"slot": 1, "publication": 1, "subscription": 1}
    assert await row_texts(target, "public.tasks") == await row_texts(source, "public.tasks")
    assert await cli(["sync", "abort", "--source", source, "--target", target]) == 0
    assert (await leftovers(source, target)) == {"slot": 0, "publication": 0, "subscription": 0}


async def test_preflight_lists_tables_without_identity(
    sync_source: str, subscriber_target: str, capsys: pytest.CaptureFixture
) -> None:
    await run_sql(sync_source, "CREATE TABLE public.no_key (v text); CREATE TABLE billing.log (v text)")
    capsys.readouterr()
    assert await cli(["sync", "start", "--source", sync_source, "--target", subscriber_target]) == 1
    err = error_lines(capsys)
    assert len(err) == 1 and "billing.log, public.no_key" in err[0] and "--replica-identity-full" in err[0]
    assert (await leftovers(sync_source, subscriber_target)) == {"slot": 0, "publication": 0, "subscription": 0}
    assert await fetchval(subscriber_target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


async def test_preflight_refuses_wal_level_replica(
    source_db: str, subscriber_target: str, capsys: pytest.CaptureFixture
) -> None:
    await run_sql(source_db, "CREATE TABLE t (id int PRIMARY KEY)")
    capsys.readouterr()
    assert await cli(["sync", "start", "--source", source_db, "--target", subscriber_target]) == 1
    err = error_lines(capsys)
    assert len(err) == 1 and "wal_level is replica" in err[0] and "wal_level = logical" in err[0]


async def test_preflight_refuses_the_pooler(subscriber_target: str, capsys: pytest.CaptureFixture) -> None:
    pooler = "postgresql://postgres.abcdef:secret-pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres"
    assert await cli(["sync", "start", "--source", pooler, "--target", subscriber_target]) == 1
    [err] = error_lines(capsys)
    assert "pooler" in err and "db.<ref>.supabase.co" in err and "IPv4 add-on" in err and "secret-pw" not in err


async def test_large_objects_are_named_at_start_and_a_change_stops_the_cutover(
    sync_source: str, subscriber_target: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Logical replication does not carry large objects: `start` says so (stderr and report), and a
    large object changed after it makes `cutover` report a mismatch (exit 2, fence kept)."""
    source, target = sync_source, subscriber_target
    oid = await fetchval(source, "SELECT lo_from_bytea(0, 'before the snapshot')::bigint")
    report = tmp_path / "start.json"
    capsys.readouterr()
    assert await cli(["sync", "start", "--source", source, "--target", target, "--jobs", "2",
                      "--report", str(report)]) == 0
    err = capsys.readouterr().err
    assert "1 large object(s) copied as of the snapshot" in err and "NOT replicated" in err
    [started] = [json.loads(line)["summary"] for line in err.splitlines() if '"event": "summary"' in line]
    assert started.startswith("migrated ") and "— verified; replication running from " in started
    assert any("large object" in w and "NOT replicated" in w for w in json.loads(report.read_text())["copy"]["warnings"])
    assert await fetchval(target, "SELECT convert_from(lo_get($1::oid), 'UTF8')", oid) == "before the snapshot"
    assert await cli(["sync", "status", "--source", source, "--target", target]) == 0
    [summary] = summaries(capsys)  # one closing line, like every command
    assert summary["summary"].startswith("sync streaming: lag ") and summary["summary"].endswith("— healthy")

    await run_sql(source, f"SELECT lo_put({oid}::oid, 0, 'AFTER')")  # not replicated
    assert await cli(["sync", "cutover", "--source", source, "--target", target, "--yes"]) == 2
    [err] = error_lines(capsys)
    assert "large objects" in err and f"different: {oid}" in err and "sync start --truncate" in err
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):  # a mismatch keeps the fence
        await run_sql(source, "INSERT INTO billing.invoices (task_id, cents) VALUES (0, 0)")
    assert await phase(target) == "fenced"
    assert await cli(["sync", "abort", "--source", source, "--target", target]) == 0
    assert (await leftovers(source, target)) == {"slot": 0, "publication": 0, "subscription": 0}
    assert summaries(capsys)[-1]["summary"] == "aborted: subscription dropped, slot dropped, publication dropped, " \
        f"fence lifted on {len(APP_TABLES) + 2} table(s)"
