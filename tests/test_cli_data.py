"""The `copy` and `verify` commands end to end through `automation.cli.main`, exit codes included."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest
import structlog

from automation.cli import main
from automation.commands.report import WRAPPER_KEYS
from loaders.data.catalog import read_catalog
from loaders.dsn import parse_url
from loaders.data.verify import verify
from tests.datakit import copy_all, copy_waiting_on_bulk, fetchval, prepare, run_sql


@pytest.fixture(autouse=True)
def _fresh_logging():
    """`main` points structlog at this test's captured stderr; don't leave later tests writing there."""
    yield
    structlog.reset_defaults()


def test_copy_then_verify_detects_changed_and_missing_rows(
    source_db: str, target_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    anyio.run(prepare, source_db, target_db)
    report_file = tmp_path / "copy.json"
    assert main(["copy", "--source", source_db, "--target", target_db, "--jobs", "2", "--report", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["total_rows"] == 565 and len(report["tables"]) == 9
    assert {s["sequence"] for s in report["sequences"]} >= {"public.standalone_seq", "public.customers_id_seq"}
    password = source_db.split(":")[2].split("@")[0]
    assert password not in report_file.read_text()

    monkeypatch.setenv("SOURCE_DATABASE_URL", source_db)  # URLs from the environment too
    monkeypatch.setenv("TARGET_DATABASE_URL", target_db)
    capsys.readouterr()
    assert main(["verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True

    anyio.run(run_sql, target_db, "UPDATE orders SET note = 'tampered' WHERE id = 5; DELETE FROM events_2025 WHERE id = 150")
    assert main(["verify", "--json", "--report", str(tmp_path / "verify.json")]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    written = json.loads((tmp_path / "verify.json").read_text())
    assert written["command"] == "verify" and written["exit_code"] == 2  # the report wrapper, then the body
    assert {k: v for k, v in written.items() if k not in WRAPPER_KEYS} == result
    assert set(result["mismatches"]) == {"public.orders", "public.events_2025"}
    assert "public.orders" in captured.err and "public.events_2025" in captured.err
    assert password not in captured.out + captured.err
    orders = next(t for t in result["tables"] if t["table"] == "public.orders")
    assert orders["source_rows"] == orders["target_rows"] and orders["source_checksum"] != orders["target_checksum"]

    # counts alone see the missing row but not the changed one
    assert main(["verify", "--verify", "counts", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["mismatches"] == ["public.events_2025"]


def test_copy_refuses_non_empty_target_with_exit_1(
    source_db: str, target_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(prepare, source_db, target_db)
    anyio.run(run_sql, target_db, "INSERT INTO customers (name) VALUES ('pre-existing')")
    assert main(["copy", "--source", source_db, "--target", target_db]) == 1
    err = capsys.readouterr().err
    assert "public.customers" in err and "--truncate" in err
    assert main(["copy", "--source", source_db, "--target", target_db, "--schemas", "public,nope"]) == 1
    assert "source has no schema nope" in capsys.readouterr().err
    assert main(["copy", "--source", source_db, "--target", target_db, "--tables", "customers,ghost"]) == 1
    assert "source has no table ghost" in capsys.readouterr().err


async def test_catalog_reads_what_to_copy(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    conn = await asyncpg.connect(source_db)
    try:
        await conn.execute("CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid PRIMARY KEY)")
        catalog = await read_catalog(conn)
    finally:
        await conn.close()
    keys = {t.key for t in catalog.tables}
    assert keys == {'"App Data"."Weird ""Name"" T"', "public.customers", "public.orders", "public.audit", "public.events_2024", "public.events_2025",
                    "public.bulk", "public.event_log", "public.profiles"}
    orders = catalog.table("public.orders")
    assert orders is not None and "doubled" not in orders.column_names and "id" in orders.column_names
    assert orders.binary_safe  # built-in types and a scalar enum
    assert not catalog.table("public.profiles").binary_safe  # type: ignore[union-attr]  # citext, hstore, seg, mood[]
    assert catalog.views == ["public.order_view"]
    assert [m.name for m in catalog.matviews] == ["order_counts"]
    kinds = {s.name: s.kind for s in catalog.sequences}
    assert kinds == {"audit_id_seq": "serial", "customers_id_seq": "identity", "orders_id_seq": "serial",
                     "standalone_seq": "standalone", "unused_seq": "standalone"}


async def test_range_split_gives_the_same_checksum_as_one_stream(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db, bulk=20_000)
    report = await copy_all(source_db, target_db, jobs=2, split_bytes=128 * 1024, max_ranges=4, tables=("bulk",))
    assert report.tables[0].ranges == 4 and report.tables[0].rows == 20_000
    split = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), tables=("bulk",))
    await copy_all(source_db, target_db, jobs=2, tables=("bulk",), truncate=True)  # one stream this time
    single = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), tables=("bulk",))
    assert split.ok and single.ok
    assert split.tables[0].target_checksum == single.tables[0].target_checksum == single.tables[0].source_checksum


async def test_ctrl_c_during_copy_leaves_a_resumable_state(source_db: str, target_db: str) -> None:
    """A real SIGINT to `python -m automation copy` while a table is being loaded; then --resume."""
    await prepare(source_db, target_db, bulk=5_000)
    async with copy_waiting_on_bulk(source_db, target_db) as held:
        held.process.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            assert await held.process.wait() == 130
        err = b"".join([chunk async for chunk in held.process.stderr]).decode() if held.process.stderr else ""
    env = held.env
    assert "--resume" in err
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.copy_state WHERE table_name = 'public.bulk'") == 0
    resumed = await anyio.run_process([sys.executable, "-m", "automation", "copy", "--resume"], env=env, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    checked = await anyio.run_process([sys.executable, "-m", "automation", "verify"], env=env, check=False)
    assert checked.returncode == 0, checked.stdout.decode()[-2000:]
