"""Copy PG 15 → PG 18 (non-superuser target owner): data exact, triggers silent, FKs back, safe refusals."""

from __future__ import annotations

import pytest

from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.data.verify import verify
from tests.datakit import copy_all, fetchval, prepare, row_texts, run_sql

# report key → SQL name
TABLES = {name: name for name in ("public.customers", "public.orders", "public.audit", "public.events_2024",
                                  "public.events_2025", "public.bulk", "public.event_log", "public.profiles")}
TABLES['"App Data"."Weird ""Name"" T"'] = '"App Data"."Weird ""Name"" T"'
SEQUENCES = ("customers_id_seq", "orders_id_seq", "audit_id_seq", "standalone_seq", "unused_seq")


@pytest.mark.parametrize("fmt", ["auto", "text"])
async def test_tricky_data_round_trips_exactly(source_db: str, target_db: str, fmt: str) -> None:
    await prepare(source_db, target_db)
    report = await copy_all(source_db, target_db, jobs=2, format=fmt)

    assert {t.table for t in report.tables} == set(TABLES)
    formats = {t.table: t.format for t in report.tables}
    if fmt == "auto":  # jsonb, numeric, bytea, arrays, timestamptz, enum: all portable in binary
        assert formats["public.orders"] == "binary" and formats["public.customers"] == "binary"
        # extension types (seg has no binary I/O at all) and an enum array (its binary header names
        # the enum's server-local OID) are not
        assert formats["public.profiles"] == "text"
    else:
        assert set(formats.values()) == {"text"}
    for table in TABLES.values():
        assert await row_texts(target_db, table) == await row_texts(source_db, table), table
    # the generated column was recomputed by the target, identity values kept with their gaps
    assert await row_texts(target_db, "public.orders", "id, doubled") == await row_texts(source_db, "public.orders", "id, doubled")
    assert await fetchval(target_db, "SELECT count(*) FROM customers WHERE id IN (3, 7, 20)") == 0
    assert await fetchval(target_db, "SELECT max(length(big)) FROM orders") == 128000
    # partitions copied leaf by leaf, never twice through the parent
    assert await fetchval(target_db, "SELECT count(*) FROM events") == 200
    assert await fetchval(target_db, "SELECT sum(n) FROM order_counts") == 60


async def test_trigger_silent_fks_and_indexes_restored(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    report = await copy_all(source_db, target_db, jobs=2)

    assert report.set_aside["trigger"] == [
        "public.events_2024: events_log", "public.events_2025: events_log", "public.orders: orders_audit"]
    assert report.set_aside["foreign_key"] == ["public.events: events_customer_id_fkey",
                                               "public.orders: orders_customer_id_fkey"]
    assert report.set_aside["index"] == ['"App Data"."Weird ""Name"" T": Weird idx', "public.orders: orders_at_idx"]
    # the AFTER INSERT triggers did not fire during the load (on a plain table and on partitions
    # through a trigger cloned from the partitioned parent): the logs hold exactly the source's rows
    assert await row_texts(target_db, "public.audit") == await row_texts(source_db, "public.audit")
    assert await fetchval(target_db, "SELECT count(*) FROM event_log") == 200
    assert await fetchval(target_db, "SELECT string_agg(DISTINCT tgenabled::text, '') FROM pg_trigger WHERE NOT tgisinternal") == "O"
    # the partitioned FK came back on the parent and, through it, on every partition
    assert await fetchval(target_db, "SELECT count(*) FROM pg_constraint WHERE conname = 'events_customer_id_fkey'") == 3
    assert await fetchval(target_db, "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'")
    assert await fetchval(target_db, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated") == 0
    assert await fetchval(target_db, "SELECT to_regclass('public.orders_at_idx') IS NOT NULL")
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    assert (await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))).ok
    # sequences: value and is_called, serial, identity and standalone alike
    for seq in SEQUENCES:
        query = f"SELECT (last_value, is_called)::text FROM {seq}"
        assert await fetchval(target_db, query) == await fetchval(source_db, query), seq
    assert await fetchval(target_db, "SELECT (last_value, is_called)::text FROM unused_seq") == "(7,f)"
    # and after the load the trigger works again
    await run_sql(target_db, "INSERT INTO orders (customer_id, note) VALUES (1, 'after')")
    assert await fetchval(target_db, "SELECT what FROM audit WHERE order_id = (SELECT max(id) FROM orders)") == "insert"


async def test_non_empty_target_is_refused_and_untouched(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)
    await run_sql(target_db, "INSERT INTO audit (order_id, what) VALUES (999, 'already here')")
    with pytest.raises(MigrationError) as info:
        await copy_all(source_db, target_db, jobs=1)
    assert "public.audit" in info.value.cause and "--truncate" in (info.value.fix or "")
    assert await row_texts(target_db, "public.audit") == ["(1,999,\"already here\")"]
    assert await fetchval(target_db, "SELECT to_regnamespace('supabase_to_rds') IS NULL")
    assert await fetchval(target_db, "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'orders_audit'") == "O"
    assert await fetchval(target_db, "SELECT count(*) FROM customers") == 0

    await copy_all(source_db, target_db, jobs=1, truncate=True)
    assert await row_texts(target_db, "public.audit") == await row_texts(source_db, "public.audit")


async def test_works_on_a_pre_data_only_target(source_db: str, target_db: str) -> None:
    """The dump path loads tables without keys, FKs, indexes or triggers first: nothing to set aside."""
    await prepare(source_db, target_db)
    await run_sql(target_db, """
        ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
        ALTER TABLE events DROP CONSTRAINT events_customer_id_fkey;
        ALTER TABLE event_log DROP CONSTRAINT event_log_event_id_key;
        DROP TRIGGER events_log ON events;
        ALTER TABLE orders DROP CONSTRAINT orders_pkey;
        ALTER TABLE customers DROP CONSTRAINT customers_pkey;
        ALTER TABLE audit DROP CONSTRAINT audit_pkey, DROP CONSTRAINT audit_order_id_key;
        ALTER TABLE bulk DROP CONSTRAINT bulk_pkey;
        DROP TRIGGER orders_audit ON orders;
        DROP INDEX orders_at_idx;
        DROP INDEX "App Data"."Weird idx";""")
    report = await copy_all(source_db, target_db, jobs=2)
    assert report.set_aside == {} and report.restored == {}
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.ok, result.mismatches()


async def test_source_role_that_cannot_read_everything_is_refused(pg15, source_db: str, target_db: str) -> None:
    """Supabase tables have RLS on: a role that doesn't bypass it would copy a filtered subset."""
    await prepare(source_db, target_db)
    database = source_db.rsplit("/", 1)[1]
    await run_sql(source_db, f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_reader') THEN
            CREATE ROLE app_reader LOGIN PASSWORD 'reader-pw-123';
          END IF;
        END $$;
        GRANT CONNECT ON DATABASE "{database}" TO app_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader;
        GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO app_reader;
        ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
        CREATE POLICY only_some ON customers FOR SELECT USING (id < 10);""")
    reader_url = pg15.url(database, user="app_reader", password="reader-pw-123")
    with pytest.raises(MigrationError, match='may not read "App Data"."Weird ""Name"" T"'):
        await copy_all(reader_url, target_db, jobs=1)
    await run_sql(source_db, 'GRANT USAGE ON SCHEMA "App Data" TO app_reader; '
                             'GRANT SELECT ON ALL TABLES IN SCHEMA "App Data" TO app_reader')
    with pytest.raises(MigrationError) as info:
        await copy_all(reader_url, target_db, jobs=1)
    assert "row-level security on public.customers" in info.value.cause
    with pytest.raises(MigrationError, match="row-level security"):
        await verify(parse_url(reader_url, "source"), parse_url(target_db, "target"))
    assert await fetchval(target_db, "SELECT to_regnamespace('supabase_to_rds') IS NULL")


async def test_forced_binary_on_a_type_without_binary_form_goes_as_text(source_db: str, target_db: str) -> None:
    # seg has no send/receive functions: --format binary can't apply to it (it used to fail the copy)
    await prepare(source_db, target_db)
    report = await copy_all(source_db, target_db, jobs=1, format="binary", tables=("profiles",))
    assert [(t.table, t.format) for t in report.tables] == [("public.profiles", "text")]
    assert await row_texts(target_db, "public.profiles") == await row_texts(source_db, "public.profiles")
