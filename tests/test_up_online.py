"""`up --local --online`: the embedded servers provisioned as for `up --local`, then `sync start`
instead of `migrate` — replication left running between them, the app role's password handled
exactly as `up` handles it — and the cutover as the separate step it stays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio

from loaders.localpg import LocalPostgres
from loaders.sync.state import PUBLICATION, SLOT, SUBSCRIPTION
from tests.datakit import fetchval, row_texts, run_sql

ROOT = Path(__file__).resolve().parent.parent


def cli(home: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SUPABASE_TO_RDS_HOME": str(home), **(env or {})}
    return subprocess.run([sys.executable, "-m", "automation", *argv], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def local_urls(home: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (home / "local.env").read_text().splitlines() if "=" in line
             and not line.startswith("#"))
    return dict(pairs)


async def test_up_local_online_starts_replication_and_keeps_the_app_password(tmp_path: Path) -> None:
    home = tmp_path / "state"
    try:
        first = cli(home, "up", "--local", "--online")
        assert first.returncode == 0, first.stderr[-2000:]
        assert "sync status" in first.stderr and "sync cutover" in first.stderr  # the next steps
        assert "DATABASE_URL=postgresql://app_backend:***@127.0.0.1:" in first.stdout
        assert list(home.glob("sync-start-*.json")) and not list(home.glob("migrate-*.json"))
        env_line = (home / "backend.env").read_text()
        password = env_line.strip().split("app_backend:", 1)[1].split("@", 1)[0]
        assert password not in first.stdout + first.stderr

        urls = local_urls(home)
        source, target = urls["SOURCE_DATABASE_URL"], urls["TARGET_DATABASE_URL"]
        assert await fetchval(source, "SHOW wal_level") == "logical"
        assert await fetchval(source, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", SLOT) == 1
        assert await fetchval(target, "SELECT count(*) FROM pg_subscription WHERE subname = $1", SUBSCRIPTION) == 1

        # Both servers stayed up and the target follows a write made on the source after the copy.
        await run_sql(source, "INSERT INTO public.teams (name, slug, created_by) "
                             "SELECT 'online', 'online-team', created_by FROM public.teams LIMIT 1")
        with anyio.fail_after(30):
            while not await fetchval(target, "SELECT count(*) FROM public.teams WHERE slug = 'online-team'"):
                await anyio.sleep(0.1)

        again = cli(home, "up", "--local", "--online")  # a rerun is refused, and rotates nothing
        assert again.returncode == 1
        assert [line for line in again.stderr.splitlines() if line.startswith("error:")][-1].count("already streaming")
        assert (home / "backend.env").read_text() == env_line

        cut = cli(home, "sync", "cutover", "--yes", env=urls)
        assert cut.returncode == 0, cut.stderr[-2000:]
        assert await row_texts(target, "public.teams") == await row_texts(source, "public.teams")
        assert await fetchval(source, "SELECT count(*) FROM pg_publication WHERE pubname = $1", PUBLICATION) == 0
        app = await fetchval(env_line.strip().removeprefix("DATABASE_URL="), "SELECT count(*) FROM public.teams")
        assert app == await fetchval(target, "SELECT count(*) FROM public.teams")  # the backend's line logs in
    finally:
        for name in ("rds", "supabase"):
            LocalPostgres(home / name).stop()


def test_online_refuses_repair_and_a_missing_source(tmp_path: Path) -> None:
    both = cli(tmp_path, "up", "--local", "--online", "--repair")
    assert both.returncode == 1 and "--online and --repair" in both.stderr.strip().splitlines()[-1]
    env = {"SOURCE_DATABASE_URL": ""}
    nothing = cli(tmp_path, "up", "--online", "--stack", "dev", "--yes", env=env)
    assert nothing.returncode == 1 and "--online needs a source" in nothing.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "rds").exists()  # refused before any server was made
