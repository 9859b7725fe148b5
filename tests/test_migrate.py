"""`migrate` end to end: a Supabase-shaped PG 15 project onto a PG 18 target owned by a
non-superuser, through the CLI, with the proof checked independently of the tool's report."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from automation.cli import main
from automation.plan import build_migration_plan
from loaders.dsn import parse_url
from loaders.schema.stage import SchemaOptions
from tests.datakit import fetchrows, fetchval


async def cli(argv: list[str]) -> int:
    """The CLI runs its own event loop (anyio.run), so it gets a thread of its own here."""
    return await anyio.to_thread.run_sync(main, argv)


async def test_migrate_moves_and_proves_a_supabase_project(
    seeded_source: str, target_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("APP_ROLE_PASSWORD", "app-role-pw-123")
    report_path = tmp_path / "report.json"
    code = await cli(["migrate", "--source", seeded_source, "--target", target_db, "--app-role", "app_backend",
                      "--jobs", "2", "--report", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["verify"]["mismatches"] == []
    assert set(report["phases"]) == {"schema", "copy+post_data", "post_data", "analyze", "sequences", "verify"}
    assert report["verify"]["proof"] == "fast"

    # Independent of the report: the trigger stayed silent (one activity row per task, not two),
    # and was enabled again afterwards; every constraint is valid; policies were stripped.
    for table in ("public.tasks", "public.activity", "public.profiles", "public.team_members"):
        assert await fetchval(target_db, f"SELECT count(*) FROM {table}") == await fetchval(seeded_source, f"SELECT count(*) FROM {table}")
    assert await fetchval(target_db, "SELECT count(*) FROM public.activity") == 3000
    assert await fetchrows(target_db, "SELECT tgname, tgenabled::text FROM pg_trigger WHERE NOT tgisinternal") == [
        ("tasks_log_created", "O")]
    assert await fetchval(target_db, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated") == 0
    assert await fetchval(target_db, "SELECT count(*) FROM pg_policy") == 0
    assert await fetchval(target_db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") >= 3
    # identity and serial sequences continue where the source stopped
    assert await fetchval(target_db, "SELECT last_value FROM public.tasks_id_seq") == 3000

    removed = {(c["kind"], c["object"]) for c in report["schema"]["changes"]}
    assert any(kind == "CREATE POLICY" for kind, _ in removed)
    assert any("auth.users" in str(obj) for _, obj in removed)
    text = capsys.readouterr()
    assert "app-role-pw-123" not in text.out + text.err + report_path.read_text()


async def test_schema_that_differs_from_the_source_stops_before_any_row(
    seeded_source: str, target_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_init.sql").write_text(
        "CREATE TABLE public.teams (id bigint PRIMARY KEY, slug text NOT NULL, name text NOT NULL);\n"
    )
    code = await cli(["migrate", "--source", seeded_source, "--target", target_db, "--migrations", str(folder)])
    assert code == 2
    assert await fetchval(target_db, "SELECT count(*) FROM public.teams") == 0


def test_transaction_pooler_source_is_refused_in_one_line(target_db: str, capsys: pytest.CaptureFixture) -> None:
    code = main(["migrate", "--source", "postgresql://postgres.ref:pw-secret@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
                 "--target", target_db])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "transaction pooler" in err[0] and "pw-secret" not in err[0]


async def test_preview_plan_lists_tables_and_removals_and_touches_nothing(seeded_source: str) -> None:
    before = await fetchval(seeded_source, "SELECT count(*) FROM pg_class")
    plan = await build_migration_plan(parse_url(seeded_source, "source"), SchemaOptions())
    sizes = {t.table: t for t in plan.tables}
    assert {"public.tasks", "public.activity", "public.profiles"} <= set(sizes)
    assert sizes["public.tasks"].bytes > 0
    assert plan.removals_by_kind()["dropped CREATE POLICY"] == 5
    assert await fetchval(seeded_source, "SELECT count(*) FROM pg_class") == before
