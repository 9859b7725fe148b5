"""`up --local`, the README's first command, end to end on real embedded PostgreSQL servers:
seeded demo source → RDS-like target → verified report, then an idempotent second run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from loaders.localpg import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent


def up_local(home: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUPABASE_TO_RDS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "automation", "up", "--local", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def reports(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(home.glob("migrate-*.json"))]


async def test_up_local_migrates_verifies_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "state"
    first = up_local(home)
    assert first.returncode == 0, first.stderr[-2000:]
    [report] = reports(home)
    assert report["ok"] is True
    copied = {t["table"]: t["rows"] for t in report["copy"]["tables"]}
    assert copied["public.tasks"] == 3000 and copied["public.activity"] == 3000
    assert "DATABASE_URL=postgresql://app_backend:***@127.0.0.1:" in first.stdout

    env_line = (home / "backend.env").read_text().strip()
    assert oct((home / "backend.env").stat().st_mode & 0o777) == "0o600"
    password = env_line.split("app_backend:", 1)[1].split("@", 1)[0]
    assert password not in first.stdout + first.stderr

    second = up_local(home, "--keep-running")
    try:
        assert second.returncode == 0, second.stderr[-2000:]
        latest = reports(home)[-1]
        assert latest["ok"] is True and latest["copy"]["tables"] == []
        assert set(latest["copy"]["skipped"]) == set(copied)
        # the backend's new credentials work for DML and not for DDL
        app_url = (home / "backend.env").read_text().strip().removeprefix("DATABASE_URL=")
        conn = await asyncpg.connect(app_url)
        try:
            await conn.execute("UPDATE public.tasks SET title = title WHERE id = 1")
            try:
                await conn.execute("CREATE TABLE public.nope (id int)")
                raise AssertionError("the application role must not create tables")
            except asyncpg.InsufficientPrivilegeError:
                pass
        finally:
            await conn.close()
    finally:
        for name in ("rds", "supabase"):
            LocalPostgres(home / name).stop()
