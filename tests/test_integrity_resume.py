"""Resume records the snapshot of every table: resuming under another one warns, a foreign key
that then fails names the tables copied earlier, and `--fresh-snapshot` re-copies everything."""

from __future__ import annotations

import anyio
import pytest
import structlog

from automation.cli import main
from loaders.data.verify import verify
from loaders.dsn import parse_url
from tests.datakit import copy_all, fetchrows, fetchval, prepare, run_sql


@pytest.fixture(autouse=True)
def _fresh_logging():
    yield
    structlog.reset_defaults()


async def test_resume_under_another_snapshot_warns_names_tables_and_fresh_snapshot_fixes(
    source_db: str, target_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await prepare(source_db, target_db)
    first = await copy_all(source_db, target_db, jobs=2)
    assert first.warnings == []
    snapshots = dict(await fetchrows(target_db, "SELECT table_name, snapshot FROM supabase_to_rds.copy_state"))
    assert len(set(snapshots.values())) == 1 and None not in snapshots.values()

    # A resumed run that finds customers unfinished: everything else stays from the first snapshot.
    await run_sql(target_db, "UPDATE supabase_to_rds.copy_state SET status = 'started' WHERE table_name = 'public.customers'")
    resumed = await copy_all(source_db, target_db, jobs=2, resume=True)
    assert [t.table for t in resumed.tables] == ["public.customers"]
    (warning,) = resumed.warnings
    assert "resumed under a different snapshot" in warning and "public.orders" in warning and "--fresh-snapshot" in warning

    # Now the source changes between the two snapshots: the orders copied earlier point at a
    # customer the new snapshot no longer has, and the foreign key can't be restored.
    gone = await fetchval(source_db, "SELECT customer_id FROM orders WHERE customer_id IS NOT NULL LIMIT 1")
    await run_sql(source_db, f"DELETE FROM audit WHERE order_id IN (SELECT id FROM orders WHERE customer_id = {gone});"
                             f"DELETE FROM orders WHERE customer_id = {gone}; DELETE FROM customers WHERE id = {gone}")
    await run_sql(target_db, "UPDATE supabase_to_rds.copy_state SET status = 'started' WHERE table_name = 'public.customers'")
    mixed = await copy_all(source_db, target_db, jobs=2, resume=True)
    assert any("orders_customer_id_fkey" in failed for failed in mixed.restore_failed)
    [hint] = [w for w in mixed.warnings if "tables copied under an earlier snapshot" in w]
    assert "public.orders" in hint and "--fresh-snapshot" in hint

    # --fresh-snapshot: every table again, from one snapshot; the foreign key comes back.
    code = await anyio.to_thread.run_sync(main, ["copy", "--source", source_db, "--target", target_db,
                                                 "--jobs", "2", "--resume", "--fresh-snapshot"])
    assert code == 0
    assert "skipped" not in capsys.readouterr().err
    snapshots = dict(await fetchrows(target_db, "SELECT table_name, snapshot FROM supabase_to_rds.copy_state"))
    assert len(set(snapshots.values())) == 1
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    assert await fetchval(target_db, "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'")
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.ok, result.mismatches()
