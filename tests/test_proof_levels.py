"""Proof levels on real PG 15 → PG 18 servers: `fast` keeps the meaning of `full` (equal data
gives equal sums for every type family; one changed value in any family is caught), a
mismatch names the key range that differs, and `migrate` leaves planner statistics behind."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from automation.cli import main
from loaders.data.checksum import Proof
from loaders.data.verify import verify
from loaders.dsn import parse_url
from tests.datakit import copy_all, fetchrows, prepare, run_sql

# Every family whose type hash disagrees with its text (numeric scale, −0, interval units, enum
# OIDs, json text) beside the ones hashed natively (ints, bool, uuid, text, bytea, times).
FAMILIES = r"""
CREATE TYPE colour AS ENUM ('red', 'green', 'blue');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE families (
    id int PRIMARY KEY, n numeric, f float8, i interval, c colour, j jsonb, js json, ts timestamptz,
    t timestamp, d date, tm time, b bytea, tx text, ch char(4), u uuid,
    flag bool, small int2, big int8, p positive, arr int[], pt point
);
"""
ROWS = r"""
INSERT INTO families
SELECT g, 1.0 + g, '-0'::float8, interval '1 day', 'green', '{"a": 1, "b": [1, 2]}', '{"a": 1}',
       timestamptz '2024-03-01 12:00:00+00' + g * interval '1 minute', timestamp '2024-03-01 12:00',
       date '2024-03-01', time '12:00', '\x00ff'::bytea, 'text ' || g, 'ab', gen_random_uuid(),
       g % 2 = 0, g, g * 1000000000000, g, ARRAY[g, g + 1], point(g, 0)
FROM generate_series(1, 200) g;
"""

# One value changed on the target per family; each must be caught at fast and at full.
CHANGES = {
    "numeric scale": "UPDATE families SET n = 58.00 WHERE id = 57",
    "negative zero": "UPDATE families SET f = 0.0 WHERE id = 57",
    "interval units": "UPDATE families SET i = interval '24 hours' WHERE id = 57",
    "enum label": "UPDATE families SET c = 'blue' WHERE id = 57",
    "jsonb value": """UPDATE families SET j = '{"a": 2, "b": [1, 2]}' WHERE id = 57""",
    "timestamptz instant": "UPDATE families SET ts = ts + interval '1 microsecond' WHERE id = 57",
    "bytea byte": r"UPDATE families SET b = '\x00fe' WHERE id = 57",
    "text trailing space": "UPDATE families SET tx = tx || ' ' WHERE id = 57",
    "boolean": "UPDATE families SET flag = NOT flag WHERE id = 57",
    "array element": "UPDATE families SET arr = ARRAY[57, 59] WHERE id = 57",
}


async def _families(source_db: str, target_db: str) -> None:
    await run_sql(source_db, FAMILIES + ROWS)
    await run_sql(target_db, FAMILIES)
    await copy_all(source_db, target_db)


async def _verify(source_db: str, target_db: str, proof: Proof):
    return await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), proof=proof,
                        tables=["public.families"])


async def test_equal_data_gives_equal_sums_at_every_level(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)  # the awkward dataset: hstore, seg, citext, NaN, identity, partitions
    await copy_all(source_db, target_db)
    for proof in Proof:
        report = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), proof=proof)
        assert report.ok, (proof, report.mismatches())
        assert report.proof is proof
        sums = {t.source_checksum for t in report.tables}
        assert (sums == {None}) == (proof is Proof.COUNTS)


async def test_fast_and_full_sums_differ_in_kind_not_meaning(source_db: str, target_db: str) -> None:
    await _families(source_db, target_db)
    fast, full = await _verify(source_db, target_db, Proof.FAST), await _verify(source_db, target_db, Proof.FULL)
    assert fast.ok and full.ok
    assert fast.tables[0].source_checksum != full.tables[0].source_checksum  # really a different computation


async def test_jsonb_key_order_is_not_a_change(source_db: str, target_db: str) -> None:
    await _families(source_db, target_db)
    await run_sql(target_db, """UPDATE families SET j = '{"b": [1, 2], "a": 1}' WHERE id = 57""")
    assert (await _verify(source_db, target_db, Proof.FAST)).ok


@pytest.mark.parametrize("family", sorted(CHANGES))
async def test_one_changed_value_is_caught_and_its_range_named(family: str, source_db: str, target_db: str) -> None:
    await _families(source_db, target_db)
    await run_sql(target_db, CHANGES[family])
    for proof in (Proof.FAST, Proof.FULL):
        report = await _verify(source_db, target_db, proof)
        assert not report.ok, (family, proof)
        [check] = report.tables
        assert check.source_rows == check.target_rows == 200
        # 200 rows in 16 ranges of 13: row 57 lies in the range starting at 53
        assert check.chunks == ["(id) from 53 to before 66"], (family, proof, check.chunks)


async def test_counts_level_sees_rows_not_values(source_db: str, target_db: str) -> None:
    await _families(source_db, target_db)
    await run_sql(target_db, CHANGES["numeric scale"])
    assert (await _verify(source_db, target_db, Proof.COUNTS)).ok
    await run_sql(target_db, "DELETE FROM families WHERE id IN (5, 190)")
    report = await _verify(source_db, target_db, Proof.COUNTS)
    assert report.tables[0].chunks == ["(id) from … to before 14 (13 rows on source, 12 on target)",
                                       "(id) from 183 to before 196 (13 rows on source, 12 on target)"]


async def test_verify_cli_names_the_range_and_exits_2(source_db: str, target_db: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    await _families(source_db, target_db)
    await run_sql(target_db, CHANGES["enum label"])
    report_path = tmp_path / "verify.json"
    code = await anyio.to_thread.run_sync(main, ["verify", "--source", source_db, "--target", target_db,
                                                 "--tables", "public.families", "--report", str(report_path)])
    assert code == 2
    assert "public.families (id) from 53 to before 66" in capsys.readouterr().err
    body = json.loads(report_path.read_text())
    assert body["proof"] == "fast" and body["tables"][0]["chunks"] == ["(id) from 53 to before 66"]


async def test_migrate_analyzes_every_table(seeded_source: str, target_db: str, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    code = await anyio.to_thread.run_sync(main, ["migrate", "--source", seeded_source, "--target", target_db,
                                                 "--report", str(report_path)])
    assert code == 0
    copied = [t["table"] for t in json.loads(report_path.read_text())["verify"]["tables"] if t["source_rows"] > 0]
    assert copied
    # pg_stats has rows only for what ANALYZE sampled (an index build fills reltuples, not these)
    analyzed = {f"{s}.{t}" for s, t in await fetchrows(
        target_db, "SELECT DISTINCT schemaname::text, tablename::text FROM pg_stats WHERE NOT inherited")}
    assert set(copied) <= analyzed


async def test_verify_repair_redoes_only_the_differing_ranges(source_db: str, target_db: str, tmp_path: Path) -> None:
    await _families(source_db, target_db)
    # the target side has a user trigger and a child table: repair must fire neither cascade nor trigger
    await run_sql(target_db, """
        CREATE TABLE touched (id int);
        CREATE FUNCTION note_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO touched VALUES (NEW.id); RETURN NEW; END $$;
        CREATE TRIGGER families_touch AFTER INSERT OR UPDATE ON families FOR EACH ROW EXECUTE FUNCTION note_touch();
        CREATE TABLE child (family_id int REFERENCES families(id) ON DELETE CASCADE);
        INSERT INTO child VALUES (57), (120);
        CREATE TABLE keyless (v text);
    """)
    await run_sql(source_db, "CREATE TABLE keyless (v text); INSERT INTO keyless VALUES ('a'), ('b');")
    await run_sql(target_db, "INSERT INTO keyless VALUES ('a')")
    await run_sql(target_db, CHANGES["numeric scale"] + "; DELETE FROM families WHERE id = 190; "
                  "INSERT INTO families (id, n) VALUES (999, 1); TRUNCATE touched")
    untouched_before = await fetchrows(target_db, "SELECT id, n::text FROM families WHERE id BETWEEN 100 AND 150 ORDER BY id")
    report_path = tmp_path / "verify.json"
    code = await anyio.to_thread.run_sync(main, ["verify", "--source", source_db, "--target", target_db, "--repair",
                                                 "--report", str(report_path)])
    body = json.loads(report_path.read_text())
    assert code == 2 and body["mismatches"] == ["public.keyless"]  # the keyless table can't be ranged
    assert body["unrepairable"] == {"public.keyless": "no primary key: copy --tables … --truncate redoes the whole table"}
    assert body["repaired"] == {"public.families": ["(id) from 53 to before 66", "(id) from 183 to before 196",
                                                    "(id) from 196 to before …"]}
    assert await fetchrows(target_db, "SELECT n::text FROM families WHERE id = 57") == [("58.0",)]
    assert await fetchrows(target_db, "SELECT count(*) FROM families WHERE id IN (190, 999)") == [(1,)]
    assert await fetchrows(target_db, "SELECT id, n::text FROM families WHERE id BETWEEN 100 AND 150 ORDER BY id") == untouched_before
    assert await fetchrows(target_db, "SELECT count(*) FROM touched") == [(0,)]  # the trigger stayed silent …
    assert await fetchrows(target_db, "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'families_touch'") == [("O",)]
    assert await fetchrows(target_db, "SELECT family_id FROM child ORDER BY 1") == [(57,), (120,)]  # … and nothing cascaded


async def test_repair_across_tables_with_odd_names_and_composite_keys(source_db: str, target_db: str) -> None:
    await prepare(source_db, target_db)  # quoted schema/table/column names, partitions without a key
    composite = "CREATE TABLE comp (a text, b timestamptz, v numeric, PRIMARY KEY (a, b));"
    await run_sql(source_db, composite + "INSERT INTO comp SELECT 'k '' \" ,' || (g % 7), "
                  "timestamptz '2024-01-01' + g * interval '1 hour', g FROM generate_series(1, 300) g")
    await run_sql(target_db, composite)
    await copy_all(source_db, target_db)
    await run_sql(target_db, """UPDATE "App Data"."Weird ""Name"" T" SET "order" = 2 WHERE "Mixed Case" = 3;
        UPDATE comp SET v = v + 1 WHERE v = 100; DELETE FROM profiles WHERE id = 2;
        UPDATE orders SET note = 'x' WHERE id = 9; UPDATE events_2024 SET payload = 'p' WHERE id = 3""")
    audit_before = await fetchrows(target_db, "SELECT count(*) FROM audit")
    report = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), repair=True)
    assert report.mismatches() == ["public.events_2024"]  # no key: reported, not guessed at
    assert set(report.repaired) == {"public.orders", '"App Data"."Weird ""Name"" T"', "public.comp", "public.profiles"}
    assert report.repaired["public.comp"] == [
        "(a, b) from k ' \" ,2, 2024-01-04 00:00:00+00 to before k ' \" ,2, 2024-01-09 13:00:00+00"]
    assert await fetchrows(target_db, "SELECT count(*) FROM audit") == audit_before  # orders' trigger stayed quiet
