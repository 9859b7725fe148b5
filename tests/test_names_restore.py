"""Restore as a guarantee: what the load sets aside comes back on every way out, each object on
its own; what can't come back is recorded (report and bookkeeping) and `copy --restore` finishes
the job, also after the process was killed mid-load. PG 15 source → PG 18 non-superuser target."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest

from tests.names_support import cli, fresh_logging, last_line  # noqa: F401 - fixture
from tests.datakit import copy_all, copy_waiting_on_bulk, fetchrows, fetchval, prepare, run_sql


TABLES = r"""
CREATE TABLE p (id int PRIMARY KEY, code text);
CREATE TABLE c1 (id int PRIMARY KEY, p_id int, note text);
CREATE TABLE c2 (id int PRIMARY KEY, p_id int, note text);
CREATE TABLE c3 (id int PRIMARY KEY, p_id int);
CREATE TABLE log (what text);
CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO log VALUES (TG_TABLE_NAME); RETURN NEW; END $$;
"""
SOURCE_DATA = r"""
INSERT INTO p SELECT g, 'code ' || (g % 10) FROM generate_series(1, 40) g;          -- codes repeat
INSERT INTO c1 SELECT g, g, 'one' FROM generate_series(1, 60) g;                    -- 41..60 have no parent
INSERT INTO c2 SELECT g, 1 + g % 40, 'two ' || g FROM generate_series(1, 60) g;
INSERT INTO c3 SELECT g, 1 + g % 40 FROM generate_series(1, 60) g;
"""
# The target is stricter than the source: an FK and a unique index the source data break.
TARGET_EXTRA = r"""
ALTER TABLE c1 ADD CONSTRAINT c1_fk FOREIGN KEY (p_id) REFERENCES p (id);
ALTER TABLE c2 ADD CONSTRAINT c2_fk FOREIGN KEY (p_id) REFERENCES p (id);
ALTER TABLE c3 ADD CONSTRAINT c3_fk FOREIGN KEY (p_id) REFERENCES p (id);
CREATE UNIQUE INDEX p_code_uq ON p (code);
CREATE INDEX c2_note_idx ON c2 (note);
CREATE TRIGGER p_log AFTER INSERT ON p FOR EACH ROW EXECUTE FUNCTION log_it();
CREATE TRIGGER c1_log AFTER INSERT ON c1 FOR EACH ROW EXECUTE FUNCTION log_it();
CREATE TRIGGER c2_log AFTER INSERT ON c2 FOR EACH ROW EXECUTE FUNCTION log_it();
CREATE TRIGGER c3_log AFTER INSERT ON c3 FOR EACH ROW EXECUTE FUNCTION log_it();
CREATE TRIGGER c3_replica AFTER INSERT ON c3 FOR EACH ROW EXECUTE FUNCTION log_it();
ALTER TABLE c3 ENABLE REPLICA TRIGGER c3_replica;
CREATE TRIGGER c2_off AFTER INSERT ON c2 FOR EACH ROW EXECUTE FUNCTION log_it();
ALTER TABLE c2 DISABLE TRIGGER c2_off;  -- the user's choice: stays disabled
"""
TRIGGER_MODES = [("c1_log", "O"), ("c2_log", "O"), ("c2_off", "D"), ("c3_log", "O"), ("c3_replica", "R"), ("p_log", "O")]


async def _trigger_modes(url: str) -> list[tuple]:
    return await fetchrows(url, "SELECT tgname, tgenabled::text FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")


async def _constraints(url: str) -> list[tuple]:
    return await fetchrows(url, "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' ORDER BY 1")


async def _indexes(url: str) -> list[str]:
    return [r[0] for r in await fetchrows(url, "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c "
                                               "ON c.oid = i.indrelid WHERE c.relname IN ('p', 'c1', 'c2', 'c3') "
                                               "AND NOT i.indisprimary ORDER BY 1")]


async def test_one_failing_fk_and_index_leave_every_trigger_enabled_and_every_other_object_back(
    source_db: str, target_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_sql(source_db, TABLES + SOURCE_DATA)
    await run_sql(target_db, TABLES + TARGET_EXTRA)
    report_file = tmp_path / "copy.json"
    capsys.readouterr()
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--jobs", "2",
                      "--report", str(report_file)]) == 1
    line = last_line(capsys.readouterr().err)
    assert "2 object(s) set aside for the load could not be put back" in line and "copy --restore" in line

    # every trigger is back in its own mode (the user's disabled one stays disabled) ...
    assert await _trigger_modes(target_db) == TRIGGER_MODES
    # ... every other FK and index is back and valid; only the two the data break are missing
    assert await _constraints(target_db) == [("c2_fk", True), ("c3_fk", True)]
    assert await _indexes(target_db) == ["c2_note_idx"]
    # the data is all there, loaded with the triggers silent
    for table in ("p", "c1", "c2", "c3"):
        assert await fetchval(target_db, f"SELECT count(*) FROM {table}") == await fetchval(source_db, f"SELECT count(*) FROM {table}")
    assert await fetchval(target_db, "SELECT count(*) FROM log") == 0
    # what failed is recorded: in the report ...
    report = json.loads(report_file.read_text())
    assert len(report["restore_failed"]) == 2
    assert any(f.startswith("foreign_key c1_fk on public.c1: ForeignKeyViolationError") for f in report["restore_failed"])
    assert any(f.startswith("index p_code_uq on public.p: UniqueViolationError") for f in report["restore_failed"])
    assert sorted(report["restored"]) == ["foreign_key", "index", "trigger"]
    # ... and in the bookkeeping, with the definition kept for later
    kept = await fetchrows(target_db, "SELECT table_name, kind, name, last_error IS NOT NULL, failed_at IS NOT NULL, "
                                      "restore FROM supabase_to_rds.load_guard ORDER BY kind")
    assert [k[:5] for k in kept] == [("public.c1", "foreign_key", "c1_fk", True, True),
                                     ("public.p", "index", "p_code_uq", True, True)]
    assert "REFERENCES p(id)" in kept[0][5] and "CREATE UNIQUE INDEX p_code_uq" in kept[1][5]

    # `copy --restore` before the data is fixed: still refused per object, nothing else disturbed
    capsys.readouterr()
    assert await cli(["copy", "--target", target_db, "--restore"]) == 1
    assert "2 object(s) could not be put back" in capsys.readouterr().err
    assert await _trigger_modes(target_db) == TRIGGER_MODES
    # fix the data, then restore: everything is back, nothing is left recorded
    await run_sql(target_db, "DELETE FROM c1 WHERE p_id > 40; UPDATE p SET code = 'code ' || id")
    assert await cli(["copy", "--target", target_db, "--restore"]) == 0
    assert await _constraints(target_db) == [("c1_fk", True), ("c2_fk", True), ("c3_fk", True)]
    assert await _indexes(target_db) == ["c2_note_idx", "p_code_uq"]
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    assert await _trigger_modes(target_db) == TRIGGER_MODES
    capsys.readouterr()
    assert await cli(["copy", "--target", target_db, "--restore"]) == 0  # nothing to do is fine
    assert "nothing was set aside" in capsys.readouterr().err


async def test_a_failed_copy_still_restores(source_db: str, target_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A table whose COPY fails (the target column is too narrow) ends the run with exit 1, and
    the guard's exit has put back every trigger, index and FK on the way out."""
    await run_sql(source_db, TABLES + SOURCE_DATA.replace("'one'", "'a longer note'"))
    await run_sql(target_db, TABLES.replace("note text);\nCREATE TABLE c2", "note varchar(3));\nCREATE TABLE c2")
                  + TARGET_EXTRA.replace("ALTER TABLE c1 ADD CONSTRAINT c1_fk FOREIGN KEY (p_id) REFERENCES p (id);", "")
                  .replace("CREATE UNIQUE INDEX p_code_uq ON p (code);", ""))
    capsys.readouterr()
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--jobs", "2"]) == 1
    line = last_line(capsys.readouterr().err)
    assert "copying public.c1" in line and "StringDataRightTruncation" in line
    assert await _trigger_modes(target_db) == TRIGGER_MODES
    assert await _constraints(target_db) == [("c2_fk", True), ("c3_fk", True)]
    assert await _indexes(target_db) == ["c2_note_idx"]
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0


async def test_copy_restore_after_the_process_was_killed_mid_load(source_db: str, target_db: str) -> None:
    """kill -9 while a table is loading: no exit handler runs, so triggers stay disabled and FKs
    and indexes dropped — recorded on the target. `copy --restore` puts all of it back."""
    await prepare(source_db, target_db, bulk=5_000)
    async with copy_waiting_on_bulk(source_db, target_db) as held:
        watcher = held.watcher
        with anyio.fail_after(60):
            # kill once every other table is committed (so the FKs' rows are all there) and bulk waits
            while await watcher.fetchval("SELECT count(*) FROM supabase_to_rds.copy_state WHERE status = 'done'") < 8:
                await anyio.sleep(0.05)
            # the crash state is real: set aside and recorded
            assert await watcher.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'") == 3
            assert await watcher.fetchval("SELECT to_regclass('public.orders_at_idx')") is None
            held.process.send_signal(signal.SIGKILL)
            assert await held.process.wait() == -signal.SIGKILL
        await held.release()
        recorded = await watcher.fetchval("SELECT count(*) FROM supabase_to_rds.load_guard")
        assert recorded == 7
        restored = await anyio.run_process([sys.executable, "-m", "automation", "copy", "--restore"], env=held.env,
                                           check=False)
        assert restored.returncode == 0, restored.stderr.decode()[-2000:]
        assert await watcher.fetchval("SELECT count(*) FROM supabase_to_rds.load_guard") == 0
        assert await watcher.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'") == 0
        assert await watcher.fetchval("SELECT to_regclass('public.orders_at_idx') IS NOT NULL")
        assert await watcher.fetchval("SELECT to_regclass('\"App Data\".\"Weird idx\"') IS NOT NULL")
        assert await watcher.fetchval("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated") == 4
    env = held.env
    resumed = await anyio.run_process([sys.executable, "-m", "automation", "copy", "--resume"], env=env, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    checked = await anyio.run_process([sys.executable, "-m", "automation", "verify"], env=env, check=False)
    assert checked.returncode == 0, checked.stdout.decode()[-2000:]


async def test_comments_and_statistics_targets_survive_the_load(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    await run_sql(target_db, r"""
        COMMENT ON INDEX orders_at_idx IS 'orders by time, it''s "quoted"';
        CREATE INDEX orders_lower_note ON orders (lower(note), (amount * 2));
        ALTER INDEX orders_lower_note ALTER COLUMN 1 SET STATISTICS 321;
        ALTER INDEX orders_lower_note ALTER COLUMN 2 SET STATISTICS 0;
        COMMENT ON CONSTRAINT orders_customer_id_fkey ON orders IS 'who ordered';""")
    report = await copy_all(source_db, target_db, jobs=2)
    assert "public.orders: orders_lower_note" in report.set_aside["index"]
    assert "public.orders: orders_customer_id_fkey" in report.set_aside["foreign_key"]
    assert await fetchval(target_db, "SELECT obj_description('orders_at_idx'::regclass, 'pg_class')") == \
        "orders by time, it's \"quoted\""
    assert await fetchrows(target_db, "SELECT attnum, attstattarget FROM pg_attribute "
                                      "WHERE attrelid = 'orders_lower_note'::regclass ORDER BY 1") == [(1, 321), (2, 0)]
    assert await fetchval(target_db, "SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint "
                                     "WHERE conname = 'orders_customer_id_fkey'") == "who ordered"
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
