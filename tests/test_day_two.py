"""Day two on real servers: drift after cutover (the app writes to the target; the old source
must not move), `drift --accept`, the app role's URL refused in one line, `schema --repair`
bringing back what the verified migration had and adding what the source gained, and the
app role's password stored only as a client-made SCRAM verifier."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import anyio
import asyncpg
import pytest

from automation.cli import main
from loaders.dsn import parse_url
from loaders.migrate import MigrateOptions, migrate
from loaders.schema.stage import SchemaOptions
from tests.datakit import fetchval, run_sql


@pytest.fixture
async def live(seeded_source: str, target_db: str) -> tuple[str, str, str]:
    """A verified migration with an app role, and then the app's first write on the target."""
    role, password = f"app_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    options = MigrateOptions(schema=SchemaOptions(app_role=role, app_role_password=password))
    report = await migrate(parse_url(seeded_source, "source"), parse_url(target_db, "target"), options)
    assert report.ok
    app_url = parse_url(target_db, "target").with_credentials(role, password).dsn()
    await run_sql(app_url, "INSERT INTO public.teams (slug, name, created_by) VALUES ('live', 'by the app', gen_random_uuid())")
    return seeded_source, target_db, app_url


async def drift(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    out = tmp_path / "drift.json"
    out.unlink(missing_ok=True)
    code = await anyio.to_thread.run_sync(main, ["drift", *argv, "--report", str(out)])
    return code, json.loads(out.read_text()) if out.exists() else {}


def findings(report: dict, area: str) -> dict[str, dict]:
    return {f["object"]: f for f in report["findings"] if f["area"] == area and f["kind"] == "drift"}


async def test_healthy_live_target_passes_and_a_write_to_the_old_source_fails(live: tuple[str, str, str], tmp_path: Path) -> None:
    source, target, _app = live
    code, report = await drift(tmp_path, "--source", source, "--target", target, "--checksums")
    assert code == 0, report

    await run_sql(source, "UPDATE public.tasks SET title = 'late write to Supabase' WHERE id = 5")
    code, report = await drift(tmp_path, "--source", source, "--target", target, "--checksums")
    assert code == 2
    tasks = findings(report, "data")["public.tasks"]
    assert "content checksum" in tasks["detail"] and "→" in tasks["detail"] and "3000 rows" in tasks["detail"]
    assert "default_transaction_read_only = on" in tasks["fix"]
    assert all(f["fix"] for f in report["findings"])

    await run_sql(source, "INSERT INTO public.teams (slug, name, created_by) SELECT 'late', 'late', created_by "
                          "FROM public.teams LIMIT 1")
    code, report = await drift(tmp_path, "--source", source, "--target", target)
    assert code == 2 and "rows" in findings(report, "data")["public.teams"]["detail"]

    # Once the late writes are accounted for, the baseline moves on.
    assert await anyio.to_thread.run_sync(main, ["drift", "--accept", "--checksums", "--source", source, "--target", target]) == 0
    assert (await drift(tmp_path, "--source", source, "--target", target, "--checksums"))[0] == 0


async def test_drift_with_the_app_roles_url_says_use_the_master_url(
        live: tuple[str, str, str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    _source, _target, app_url = live
    monkeypatch.setenv("TARGET_DATABASE_URL", app_url)  # the documented way (argv would add a warning line)
    code = await anyio.to_thread.run_sync(main, ["drift"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "use the master URL" in err and "Traceback" not in err


async def test_repair_brings_back_a_dropped_index_and_adds_what_the_source_gained(
        live: tuple[str, str, str], tmp_path: Path) -> None:
    source, target, app_url = live
    await run_sql(target, "DROP INDEX public.tasks_project_status_idx; "
                          "ALTER TABLE public.tasks DROP CONSTRAINT tasks_project_id_fkey; "
                          "DROP FUNCTION public.log_task_created() CASCADE")  # and its trigger with it
    code, report = await drift(tmp_path, "--target", target)
    assert code == 2
    index = findings(report, "schema")["index public.tasks_project_status_idx"]
    assert "schema --repair" in index["fix"] and "CREATE INDEX tasks_project_status_idx" in index["fix"]

    assert await anyio.to_thread.run_sync(main, ["schema", "--repair", "--target", target]) == 0
    assert await fetchval(target, "SELECT to_regclass('public.tasks_project_status_idx') IS NOT NULL")
    assert await fetchval(target, "SELECT count(*) FROM pg_constraint WHERE conname = 'tasks_project_id_fkey' AND convalidated") == 1
    assert await fetchval(target, "SELECT count(*) FROM pg_trigger WHERE tgname = 'tasks_log_created'") == 1
    assert (await drift(tmp_path, "--target", target))[0] == 0
    # the app's row is still there and the app can still write
    await run_sql(app_url, "UPDATE public.teams SET name = 'still mine' WHERE slug = 'live'")

    # The source gains a table and an index: planned, then created only after a yes.
    await run_sql(source, "CREATE TABLE public.invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                          "team_id bigint NOT NULL, total numeric(12,2)); CREATE INDEX invoices_team_idx ON public.invoices (team_id)")
    refused = await anyio.to_thread.run_sync(main, ["schema", "--repair", "--target", target, "--source", source])
    assert refused == 1 and not await fetchval(target, "SELECT to_regclass('public.invoices') IS NOT NULL")
    assert await anyio.to_thread.run_sync(main, ["schema", "--repair", "--yes", "--target", target, "--source", source]) == 0
    assert await fetchval(target, "SELECT to_regclass('public.invoices_team_idx') IS NOT NULL")
    assert await fetchval(target, "SELECT count(*) FROM pg_constraint WHERE conname = 'invoices_pkey'") == 1
    # granted to the app role like every migrated table
    await run_sql(app_url, "INSERT INTO public.invoices (team_id, total) VALUES (1, 9.50)")


async def test_app_role_password_is_stored_as_a_client_made_scram_verifier(live: tuple[str, str, str], pg18) -> None:
    _source, _target, app_url = live
    role = parse_url(app_url, "target").user
    admin = await asyncpg.connect(pg18.url())
    try:
        verifier = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    finally:
        await admin.close()
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    # a server-made verifier has a 16-byte salt (24 base64 characters); ours comes from scramp (32 bytes)
    assert len(verifier.split("$")[1].split(":")[1]) == 44
