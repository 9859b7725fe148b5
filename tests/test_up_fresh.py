"""Starting over: `up --fresh` does what `migrate --fresh` does (drop only what the tool created,
after a yes, then migrate again) with the app role's password kept, and the refusal of a changed
source schema names that command."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from automation.cli import main
from loaders.localpg import LocalPostgres
from tests.datakit import fetchval, row_texts, run_sql
from tests.test_rerun import can_login, cli, env_values


async def test_up_fresh_drops_what_the_tool_made_and_migrates_again(tmp_path: Path) -> None:
    home = tmp_path / "state"
    try:
        first = cli(home, "up", "--local", "--keep-running")
        assert first.returncode == 0, first.stderr[-3000:]
        app_url = env_values(home / "backend.env")["DATABASE_URL"]
        local = env_values(home / "local.env")
        source, target = local["SOURCE_DATABASE_URL"], local["TARGET_DATABASE_URL"]
        await run_sql(app_url, "INSERT INTO public.teams (slug, name, created_by) "
                               "VALUES ('app-row', 'written by the app', gen_random_uuid())")
        await run_sql(target, "CREATE SCHEMA mine; CREATE TABLE mine.notes (id int); INSERT INTO mine.notes VALUES (1)")

        refused = cli(home, "up", "--local", "--keep-running", "--fresh")  # off a terminal: no silent drop
        assert refused.returncode == 1 and "confirm" in refused.stderr.splitlines()[-1]
        assert await fetchval(target, "SELECT count(*) FROM public.teams WHERE slug = 'app-row'") == 1

        fresh = cli(home, "up", "--local", "--keep-running", "--fresh", "--yes", "--no-diff")
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        assert "--fresh drops" in fresh.stderr
        assert await row_texts(target, "public.teams") == await row_texts(source, "public.teams")
        assert await fetchval(target, "SELECT count(*) FROM mine.notes") == 1  # not the tool's: kept
        assert env_values(home / "backend.env")["DATABASE_URL"] == app_url and await can_login(app_url)
    finally:
        for name in ("rds", "supabase"):
            LocalPostgres(home / name).stop()


async def test_a_changed_source_schema_names_migrate_fresh(seeded_source: str, target_db: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert await anyio.to_thread.run_sync(main, ["schema", "--source", seeded_source, "--target", target_db]) == 0
    await run_sql(seeded_source, "ALTER TABLE public.teams ADD COLUMN motto text")
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, ["migrate", "--source", seeded_source, "--target", target_db])
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code == 1 and "already applied but changed since" in line and "`migrate --fresh --yes`" in line
