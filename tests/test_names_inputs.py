"""Inputs are checked before anything is written, and a check over nothing is an error:
`migrate`/`copy` with a selection that names no table (or a target role that can't do the load)
exit 1 with one line and leave the target exactly as it was; `verify` of nothing exits 1; a
partitioned parent is verified through its partitions."""

from __future__ import annotations

import json
import secrets

import asyncpg
import pytest

from loaders.localpg import LocalPostgres
from tests.conftest import create_database
from tests.names_support import cli, fresh_logging, last_line  # noqa: F401 - fixture
from tests.datakit import copy_all, fetchval, prepare, run_sql


async def target_fingerprint(url: str) -> str:
    """Everything a run could have written on the target, read independently of the tool."""
    return str(await fetchval(url, """
        SELECT json_build_object(
          'schemas', (SELECT json_agg(nspname ORDER BY nspname) FROM pg_namespace),
          'relations', (SELECT json_agg(format('%I.%I:%s', n.nspname, c.relname, c.relkind) ORDER BY 1)
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')),
          'functions', (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')),
          'types', (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')),
          'extensions', (SELECT json_agg(extname ORDER BY extname) FROM pg_extension),
          'settings', (SELECT json_agg(setconfig::text ORDER BY setconfig::text) FROM pg_db_role_setting),
          'roles', (SELECT json_agg(rolname ORDER BY rolname) FROM pg_roles),
          'disabled_triggers', (SELECT count(*) FROM pg_trigger WHERE tgenabled = 'D'))::text"""))


@pytest.mark.parametrize("selection", [["--tables", "public.nope"], ["--schemas", "nope"],
                                       ["--tables", "public.tasks,public.nope"], ["--schemas", "empty"]],
                         ids=["missing-table", "missing-schema", "one-of-two-missing", "schema-without-tables"])
async def test_migrate_with_a_selection_of_nothing_leaves_the_target_untouched(
    seeded_source: str, target_db: str, capsys: pytest.CaptureFixture[str], selection: list[str]
) -> None:
    await run_sql(seeded_source, "CREATE SCHEMA empty; CREATE VIEW empty.v AS SELECT 1 AS one")
    before = await target_fingerprint(target_db)
    capsys.readouterr()
    assert await cli(["migrate", "--source", seeded_source, "--target", target_db, *selection]) == 1
    line = last_line(capsys.readouterr().err)
    expected = {"public.nope": "source has no table public.nope", "nope": "source has no schema nope",
                "public.tasks,public.nope": "source has no table public.nope",
                "empty": "nothing to migrate: the source has no tables in schemas empty"}[selection[1]]
    assert expected in line and "fix:" in line
    assert await target_fingerprint(target_db) == before


async def test_migrate_as_a_target_role_without_privileges_writes_nothing(
    seeded_source: str, target_db: str, pg18: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    weak = "weak_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg18.url())
    try:
        await admin.execute(f"CREATE ROLE {weak} LOGIN PASSWORD $pw${pg18.password}$pw$")
    finally:
        await admin.close()
    database = target_db.rsplit("/", 1)[1]
    weak_url = pg18.url(database, user=weak)
    before = await target_fingerprint(target_db)
    capsys.readouterr()
    assert await cli(["migrate", "--source", seeded_source, "--target", weak_url]) == 1
    line = last_line(capsys.readouterr().err)
    assert f"target role '{weak}' may not create" in line and "nothing was written" in line
    assert await target_fingerprint(target_db) == before


async def test_copy_refuses_before_writing(
    source_db: str, target_db: str, pg18: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    await prepare(source_db, target_db)
    before = await target_fingerprint(target_db)
    for argv, expected in (
        (["--tables", "public.nope"], "source has no table public.nope"),
        (["--tables", "orders;drop table x"], "--tables: 'orders;drop table x' is not a plain list of table names"),
        (["--schemas", "public", "--tables", '"App Data"."Weird ""Name"" T"'], 'source has no table "App Data"'),
    ):
        capsys.readouterr()
        assert await cli(["copy", "--source", source_db, "--target", target_db, *argv]) == 1, argv
        assert expected in last_line(capsys.readouterr().err), argv
    # a role that may read the target tables but not own them: refused before the guard disables anything
    reader = "reader_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg18.url(target_db.rsplit("/", 1)[1]))
    try:
        await admin.execute(f"CREATE ROLE {reader} LOGIN PASSWORD $pw${pg18.password}$pw$; "
                            f"GRANT USAGE ON SCHEMA public TO {reader}; GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {reader}")
    finally:
        await admin.close()
    before = await target_fingerprint(target_db)
    capsys.readouterr()
    assert await cli(["copy", "--source", source_db, "--target", pg18.url(target_db.rsplit("/", 1)[1], user=reader),
                      "--tables", "orders"]) == 1
    line = last_line(capsys.readouterr().err)
    assert f"target role '{reader}' may not own and load public.orders" in line
    assert await target_fingerprint(target_db) == before


async def test_verify_of_nothing_is_an_error_and_partitions_stand_for_their_parent(
    source_db: str, target_db: str, pg15: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    await prepare(source_db, target_db)
    await run_sql(source_db, "CREATE SCHEMA empty; CREATE VIEW empty.v AS SELECT 1 AS one")
    await copy_all(source_db, target_db, jobs=2)
    base = ["verify", "--source", source_db, "--target", target_db, "--json"]
    for argv, expected in (
        (["--tables", "public.nope"], "source has no table public.nope"),
        (["--schemas", "nope"], "source has no schema nope"),
        (["--schemas", "empty"], "nothing to verify: the source has no tables in schemas empty"),
        (["--schemas", "empty", "--tables", "orders"], "source has no table orders in schemas empty"),
    ):
        capsys.readouterr()
        assert await cli([*base, *argv]) == 1, argv
        captured = capsys.readouterr()
        assert expected in last_line(captured.err) and captured.out == "", argv
    empty_source = await create_database(pg15)
    assert await cli(["verify", "--source", empty_source, "--target", target_db]) == 1
    assert "nothing to verify" in last_line(capsys.readouterr().err)

    # the partitioned parent: its rows are its partitions' rows, and they are what is checked
    capsys.readouterr()
    assert await cli([*base, "--tables", "events"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert {t["table"]: t["target_rows"] for t in checked["tables"]} == {
        "public.events_2024": await fetchval(source_db, "SELECT count(*) FROM events_2024"),
        "public.events_2025": await fetchval(source_db, "SELECT count(*) FROM events_2025")}
    assert sum(t["target_rows"] for t in checked["tables"]) == 200
    await run_sql(target_db, "DELETE FROM events WHERE id = 150")
    assert await cli([*base, "--tables", "public.events"]) == 2
    assert json.loads(capsys.readouterr().out)["mismatches"] == ["public.events_2025"]
    # quoted names select exactly their table
    assert await cli([*base, "--tables", '"App Data"."Weird ""Name"" T"']) == 0
    assert [t["table"] for t in json.loads(capsys.readouterr().out)["tables"]] == ['"App Data"."Weird ""Name"" T"']
