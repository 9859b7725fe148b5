"""Table identity: `a."b.c"` and `"a.b".c` are two tables everywhere — in `--tables`, in the copy
state, in what the load guard sets aside and puts back, in reports (PG 15 source → PG 18 target
owned by a non-superuser)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loaders.data.catalog import Selection, TableRef, parse_schema_list, parse_table_list, table_key
from tests.names_support import cli, fresh_logging  # noqa: F401 - fixture
from tests.datakit import fetchrows, fetchval, run_sql

# Two tables whose dotted join is the same string `a.b.c`, with different columns; each has a
# trigger, an index and an FK of the same name, so any key built by joining with a dot collides.
COLLIDING_SCHEMA = r"""
CREATE SCHEMA a;
CREATE SCHEMA "a.b";
CREATE TABLE a.log (id serial PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION a.log_it() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO a.log (what) VALUES (TG_TABLE_SCHEMA || '/' || TG_TABLE_NAME);
    RETURN NEW;
END $$;
CREATE TABLE "a.b".c (id int PRIMARY KEY, w int, other text);
CREATE TABLE a."b.c" (id int PRIMARY KEY, v text, ref int);
CREATE TRIGGER on_insert AFTER INSERT ON "a.b".c FOR EACH ROW EXECUTE FUNCTION a.log_it();
CREATE TRIGGER on_insert AFTER INSERT ON a."b.c" FOR EACH ROW EXECUTE FUNCTION a.log_it();
CREATE INDEX idx ON "a.b".c (other);
CREATE INDEX idx ON a."b.c" (v);
"""
COLLIDING_FKS = r"""
ALTER TABLE a."b.c" ADD CONSTRAINT fk FOREIGN KEY (ref) REFERENCES "a.b".c (id);
ALTER TABLE "a.b".c ADD CONSTRAINT fk FOREIGN KEY (w) REFERENCES a."b.c" (id);
"""
COLLIDING_DATA = r"""
INSERT INTO "a.b".c SELECT g, NULL, 'other ' || g FROM generate_series(1, 50) g;
INSERT INTO a."b.c" SELECT g, 'v ' || g, 1 + g % 50 FROM generate_series(1, 80) g;
UPDATE "a.b".c SET w = id + 10;
"""
BOTH = ('"a.b".c', 'a."b.c"')


async def _guard_state(url: str) -> dict[str, object]:
    """What the target says about the objects the load sets aside, independent of the tool."""
    return {
        "disabled_triggers": await fetchval(url, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'O'"),
        "triggers": sorted(await fetchrows(url, """SELECT format('%I.%I', n.nspname, r.relname), t.tgname
            FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
            WHERE NOT t.tgisinternal""")),
        "fks": sorted(await fetchrows(url, """SELECT format('%I.%I', n.nspname, r.relname), c.conname, c.convalidated
            FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
            WHERE c.contype = 'f'""")),
        "indexes": sorted(await fetchrows(url, """SELECT format('%I.%I', n.nspname, r.relname), ic.relname
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class r ON r.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname IN ('a', 'a.b') AND NOT i.indisprimary""")),
    }


EXPECTED_GUARDED = {
    "disabled_triggers": 0,
    "triggers": [('"a.b".c', "on_insert"), ('a."b.c"', "on_insert")],
    "fks": [('"a.b".c', "fk", True), ('a."b.c"', "fk", True)],
    "indexes": [('"a.b".c', "idx"), ('a."b.c"', "idx")],
}


def test_table_lists_are_parsed_as_sql_names() -> None:
    assert parse_table_list('"a.b".c, a."b.c"') == (TableRef("a.b", "c"), TableRef("a", "b.c"))
    assert parse_table_list('Public.Orders,"Mixed"."T, 1",bare') == (
        TableRef("public", "orders"), TableRef("Mixed", "T, 1"), TableRef(None, "bare"))
    assert parse_schema_list('public, "App Data", "a,b"') == ("public", "App Data", "a,b")
    for bad in ("a; DROP TABLE b", "ONLY a", "db.a.b", "", "a CASCADE", "a.", "(SELECT 1)"):
        with pytest.raises(ValueError):
            parse_table_list(bad)
    with pytest.raises(ValueError):
        parse_schema_list("a CASCADE")
    # the key is the quoted pair: two different tables, two different keys, round-trippable
    assert table_key("a.b", "c") == '"a.b".c' != table_key("a", "b.c") == 'a."b.c"'
    assert [TableRef.parse(table_key(s, n)) for s, n in (("a.b", "c"), ("a", "b.c"), ("Sch", 'we"ird'))] == [
        TableRef("a.b", "c"), TableRef("a", "b.c"), TableRef("Sch", 'we"ird')]
    sel = Selection.of(tables=['"a.b".c'])
    assert sel.wants("a.b", "c") and not sel.wants("a", "b.c")
    assert Selection.of(tables=["events"]).wants("public", "events_2024", [("public", "events")])


async def test_colliding_dotted_names_migrate_then_reload_with_everything_restored(
    source_db: str, target_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_sql(source_db, COLLIDING_SCHEMA + COLLIDING_FKS + COLLIDING_DATA)
    source_log = await fetchrows(source_db, "SELECT what, count(*) FROM a.log GROUP BY 1 ORDER BY 1")
    assert source_log == [("a.b/c", 50), ("a/b.c", 80)]  # the triggers are live on the source

    assert await cli(["migrate", "--source", source_db, "--target", target_db, "--jobs", "2",
                      "--report", str(tmp_path / "migrate.json")]) == 0
    report = json.loads((tmp_path / "migrate.json").read_text())
    assert {t["table"] for t in report["verify"]["tables"]} >= {*BOTH, "a.log"}
    assert report["verify"]["ok"]
    assert await _guard_state(target_db) == EXPECTED_GUARDED

    # Reload onto the finished schema: now the guard sets aside both tables' trigger, FK and
    # index — same names, keys that must not collide — and must put every one of them back.
    capsys.readouterr()
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--jobs", "2", "--truncate",
                      "--report", str(tmp_path / "copy.json")]) == 0
    copied = json.loads((tmp_path / "copy.json").read_text())
    assert sorted(copied["set_aside"]["trigger"]) == ['"a.b".c: on_insert', 'a."b.c": on_insert']
    assert sorted(copied["set_aside"]["foreign_key"]) == ['"a.b".c: fk', 'a."b.c": fk']
    assert sorted(copied["set_aside"]["index"]) == ['"a.b".c: idx', 'a."b.c": idx']
    assert copied["restore_failed"] == []
    assert await _guard_state(target_db) == EXPECTED_GUARDED
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    # the triggers stayed silent during both loads: the log holds exactly the source's rows
    assert await fetchrows(target_db, "SELECT what, count(*) FROM a.log GROUP BY 1 ORDER BY 1") == source_log
    states = await fetchrows(target_db, "SELECT table_name, status, rows FROM supabase_to_rds.copy_state "
                                        "WHERE table_name <> 'a.log' ORDER BY 1")
    assert states == [('"a.b".c', "done", 50), ('a."b.c"', "done", 80)]

    capsys.readouterr()
    assert await cli(["verify", "--source", source_db, "--target", target_db, "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert {t["table"]: t["target_rows"] for t in checked["tables"] if t["table"] in BOTH} == {
        '"a.b".c': 50, 'a."b.c"': 80}
    # verify sees a change in one of the two, and names the right one
    await run_sql(target_db, 'UPDATE a."b.c" SET v = \'tampered\' WHERE id = 3')
    assert await cli(["verify", "--source", source_db, "--target", target_db, "--json",
                      "--tables", 'a."b.c","a.b".c']) == 2
    assert json.loads(capsys.readouterr().out)["mismatches"] == ['a."b.c"']
    # and the triggers work again after the load
    await run_sql(target_db, 'INSERT INTO "a.b".c VALUES (999, NULL, \'new\')')
    assert await fetchval(target_db, "SELECT count(*) FROM a.log WHERE what = 'a.b/c'") == 51


async def test_tables_option_selects_exactly_the_quoted_table(
    source_db: str, target_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_sql(source_db, COLLIDING_SCHEMA + COLLIDING_DATA)
    await run_sql(target_db, COLLIDING_SCHEMA)
    report_file = tmp_path / "copy.json"
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--tables", '"a.b".c',
                      "--report", str(report_file)]) == 0
    assert [t["table"] for t in json.loads(report_file.read_text())["tables"]] == ['"a.b".c']
    assert await fetchval(target_db, 'SELECT count(*) FROM "a.b".c') == 50
    assert await fetchval(target_db, 'SELECT count(*) FROM a."b.c"') == 0
    # the other one, then a resume of both: the first is not mistaken for the second
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--tables", 'a."b.c"', "--resume",
                      "--report", str(report_file)]) == 0
    assert [t["table"] for t in json.loads(report_file.read_text())["tables"]] == ['a."b.c"']
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--tables", 'a."b.c", "a.b".c',
                      "--resume", "--report", str(report_file)]) == 0
    again = json.loads(report_file.read_text())
    assert again["tables"] == [] and sorted(again["skipped"]) == sorted(BOTH)
    # a dotted, unquoted spelling names neither table
    capsys.readouterr()
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--tables", "a.b.c"]) != 0
    assert "a.b.c" in capsys.readouterr().err


OLD_BOOKKEEPING = r"""
CREATE SCHEMA supabase_to_rds;
CREATE TABLE supabase_to_rds.copy_state (
    table_name text PRIMARY KEY, status text NOT NULL CHECK (status IN ('started', 'done')),
    rows bigint, bytes bigint, seconds double precision, snapshot text,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE supabase_to_rds.load_guard (
    table_name text NOT NULL, kind text NOT NULL CHECK (kind IN ('index', 'foreign_key', 'trigger')),
    name text NOT NULL, restore text NOT NULL, saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, kind, name));
"""


async def test_bookkeeping_from_an_earlier_version_is_adopted_or_refused(
    source_db: str, target_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows an earlier version keyed `schema.name`: unambiguous ones are adopted by `--resume`,
    the one that could be either colliding table is refused with one line, never guessed."""
    extra = 'CREATE SCHEMA "Big"; CREATE TABLE "Big".t (id int PRIMARY KEY);'
    await run_sql(source_db, COLLIDING_SCHEMA + COLLIDING_DATA + extra + 'INSERT INTO "Big".t VALUES (1), (2);')
    await run_sql(target_db, COLLIDING_SCHEMA + extra + OLD_BOOKKEEPING + """
        INSERT INTO "Big".t VALUES (1), (2);
        INSERT INTO supabase_to_rds.copy_state (table_name, status, rows) VALUES ('Big.t', 'done', 2), ('a.b.c', 'done', 50);
        -- what an earlier run left set aside, keyed the old way: restorable as it stands
        ALTER TABLE a."b.c" DISABLE TRIGGER on_insert;
        INSERT INTO supabase_to_rds.load_guard (table_name, kind, name, restore)
        VALUES ('a.b.c', 'trigger', 'on_insert', 'ALTER TABLE a."b.c" ENABLE TRIGGER on_insert');""")
    args = ["copy", "--source", source_db, "--target", target_db, "--resume"]
    assert await cli(args) == 1
    err = capsys.readouterr().err
    assert "'a.b.c'" in err and '"a.b".c or a."b.c"' in err and "--truncate" in err
    assert await fetchval(target_db, "SELECT count(*) FROM a.\"b.c\"") == 0  # refused before writing
    # the unambiguous old row is honoured: "Big".t is skipped, and its row rewritten once a run writes
    assert await cli([*args, "--tables", '"Big".t,a.log']) == 0
    assert await fetchrows(target_db, "SELECT table_name, key_format FROM supabase_to_rds.copy_state ORDER BY 1") == [
        ('"Big".t', 2), ("a.b.c", None), ("a.log", 2)]
    assert await fetchval(target_db, 'SELECT count(*) FROM "Big".t') == 2
    # the old load_guard row was put back by that run's guard too
    assert await fetchval(target_db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'") == 0
    assert await fetchval(target_db, "SELECT count(*) FROM supabase_to_rds.load_guard") == 0
    # following the fix: both colliding tables copied afresh, and the ambiguous row no longer matters
    assert await cli(["copy", "--source", source_db, "--target", target_db, "--truncate",
                      "--tables", '"a.b".c,a."b.c"']) == 0
    assert await cli(["verify", "--source", source_db, "--target", target_db]) == 0
