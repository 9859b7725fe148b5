"""Re-running `up --local` on a target the app already uses, on real embedded servers: the
app role keeps its password (APP_ROLE_PASSWORD, else the recorded one), a live target is
never re-copied, rotation rewrites backend.env in the same step, `migrate --fresh` drops
only what the tool created, and `down --local` / `status` manage the servers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from automation.app_password import LocalPasswordStore, resolve_app_password
from loaders.localpg import LocalPostgres
from loaders.secretfile import write_secret

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "env-chosen-Pa55word-for-the-app"


def cli(home: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("APP_ROLE_PASSWORD", "SOURCE_DATABASE_URL", "TARGET_DATABASE_URL")}
    environ.update({"SUPABASE_TO_RDS_HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "automation", *argv], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=600)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


async def can_login(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidPasswordError:
        return False
    await conn.close()
    return True


async def test_second_up_keeps_password_and_rows_and_refuses_a_live_target(tmp_path: Path) -> None:
    home = tmp_path / "state"
    try:
        first = cli(home, "up", "--local", "--keep-running", env={"APP_ROLE_PASSWORD": PASSWORD})
        assert first.returncode == 0, first.stderr[-3000:]
        backend = home / "backend.env"
        app_url = env_values(backend)["DATABASE_URL"]
        assert f":{PASSWORD}@" in app_url and mode(backend) == 0o600
        assert (home / "app_backend.password").read_text().strip() == PASSWORD
        assert mode(home / "app_backend.password") == 0o600
        assert "still running" in first.stderr and "down --local" in first.stderr
        local_env = env_values(home / "local.env")
        assert mode(home / "local.env") == 0o600 and "app_admin" in local_env["TARGET_DATABASE_URL"]
        assert PASSWORD not in first.stdout + first.stderr

        # The app writes to its new database.
        conn = await asyncpg.connect(app_url)
        try:
            await conn.execute("INSERT INTO public.teams (slug, name, created_by) "
                               "VALUES ('app-row', 'written by the app', gen_random_uuid())")
            teams_before = await conn.fetchval("SELECT count(*) FROM public.teams")
        finally:
            await conn.close()

        second = cli(home, "up", "--local", "--keep-running")  # no APP_ROLE_PASSWORD now: the recorded one
        assert second.returncode == 1, second.stderr[-3000:]
        [line] = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert "is live" in line and "public.teams" in line and "--fresh" in line
        assert env_values(backend)["DATABASE_URL"] == app_url
        assert await can_login(app_url)
        master = await asyncpg.connect(local_env["TARGET_DATABASE_URL"])
        try:
            assert await master.fetchval("SELECT count(*) FROM public.teams") == teams_before
            assert await master.fetchval("SELECT count(*) FROM public.teams WHERE slug = 'app-row'") == 1
        finally:
            await master.close()

        # `up --repair` on the live target: a dropped index comes back, the rows stay.
        master = await asyncpg.connect(local_env["TARGET_DATABASE_URL"])
        try:
            await master.execute("DROP INDEX public.tasks_project_status_idx")
        finally:
            await master.close()
        repaired = cli(home, "up", "--local", "--keep-running", "--repair")
        assert repaired.returncode == 0, repaired.stderr[-3000:]
        assert "repair: done index public.tasks_project_status_idx" in repaired.stderr
        master = await asyncpg.connect(local_env["TARGET_DATABASE_URL"])
        try:
            assert await master.fetchval("SELECT to_regclass('public.tasks_project_status_idx') IS NOT NULL")
            assert await master.fetchval("SELECT count(*) FROM public.teams") == teams_before
        finally:
            await master.close()

        # Rotation on request only, and backend.env follows in the same step (even though the
        # run then stops on the live target).
        rotated = cli(home, "up", "--local", "--keep-running", "--rotate-app-password")
        assert rotated.returncode == 1 and "is live" in rotated.stderr
        new_url = env_values(backend)["DATABASE_URL"]
        assert new_url != app_url and await can_login(new_url) and not await can_login(app_url)

        # A table of the user's own, outside what the migration created, survives --fresh.
        master = await asyncpg.connect(local_env["TARGET_DATABASE_URL"])
        try:
            await master.execute("CREATE SCHEMA mine; CREATE TABLE mine.notes (id int); INSERT INTO mine.notes VALUES (1)")
        finally:
            await master.close()
        env = {"SOURCE_DATABASE_URL": local_env["SOURCE_DATABASE_URL"], "TARGET_DATABASE_URL": local_env["TARGET_DATABASE_URL"],
               "APP_ROLE_PASSWORD": env_values(backend)["DATABASE_URL"].split("app_backend:", 1)[1].split("@", 1)[0]}
        refused = cli(home, "migrate", "--fresh", "--app-role", "app_backend", env=env)
        assert refused.returncode == 1 and "confirmation" in refused.stderr
        # (--no-diff: the schema diff would rightly list mine.notes as "only on target")
        fresh = cli(home, "migrate", "--fresh", "--yes", "--no-diff", "--app-role", "app_backend", env=env)
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        master = await asyncpg.connect(local_env["TARGET_DATABASE_URL"])
        try:
            assert await master.fetchval("SELECT count(*) FROM public.teams WHERE slug = 'app-row'") == 0
            assert await master.fetchval("SELECT count(*) FROM mine.notes") == 1
        finally:
            await master.close()
        assert await can_login(new_url)

        down = cli(home, "down", "--local")
        assert down.returncode == 0, down.stderr
        status = cli(home, "status")
        assert status.returncode == 0
        assert "target (rds): stopped" in status.stdout and "source (supabase): stopped" in status.stdout
        assert not LocalPostgres(home / "rds").running and not LocalPostgres(home / "supabase").running
    finally:
        for name in ("rds", "supabase"):
            LocalPostgres(home / name).stop()


async def test_a_failing_call_does_not_stop_a_server_the_user_left_running(tmp_path: Path) -> None:
    home = tmp_path / "state"
    target = LocalPostgres(home / "rds").start()
    try:
        failed = cli(home, "up", "--local", "--source", "postgresql://u:p@127.0.0.1:6543/postgres")
        assert failed.returncode == 1
        assert target.running, "a server that was running before the call must stay up"
    finally:
        target.stop()


def test_password_resolution_order(tmp_path: Path) -> None:
    store = LocalPasswordStore(tmp_path / "state" / "role.password")
    first = resolve_app_password(store, environ={})
    assert first.origin == "new" and mode(store.path) == 0o600
    assert resolve_app_password(store, environ={}) .password == first.password
    from_env = resolve_app_password(store, environ={"APP_ROLE_PASSWORD": "from-the-environment"})
    assert from_env.origin == "environment" and store.get() == "from-the-environment"
    rotated = resolve_app_password(store, rotate=True, environ={})
    assert rotated.origin == "rotated" and rotated.password not in ("from-the-environment", first.password)
    assert store.get() == rotated.password
    from loaders.errors import MigrationError

    with pytest.raises(MigrationError, match="both given"):
        resolve_app_password(store, rotate=True, environ={"APP_ROLE_PASSWORD": "x" * 12})


def test_secret_files_are_born_0600_and_replaced_atomically(tmp_path: Path) -> None:
    path = write_secret(tmp_path / "new" / "backend.env", "DATABASE_URL=one\n")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    path.chmod(0o644)  # an old, too-open file is replaced by a private one
    write_secret(path, "DATABASE_URL=two\n")
    assert path.read_text() == "DATABASE_URL=two\n" and mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["backend.env"]  # no temporary left behind


def test_secrets_manager_store_records_and_reads_the_password() -> None:
    """The provisioned path (AWS Secrets Manager) without AWS: botocore's own Stubber checks the
    exact API calls and parameters; the real service is not exercised here."""
    import boto3
    from botocore.stub import Stubber

    from automation.app_password import secrets_manager_store

    client = boto3.client("secretsmanager", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    store = secrets_manager_store("prod", "app_backend")
    store.client = client
    body = json.dumps({"username": "app_backend", "password": "recorded-password"})
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", "ResourceNotFoundException", expected_params={"SecretId": store.name})
        stub.add_client_error("put_secret_value", "ResourceNotFoundException",
                              expected_params={"SecretId": store.name, "SecretString": body})
        stub.add_response("create_secret", {"ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x", "Name": store.name},
                          expected_params={"Name": store.name, "SecretString": body,
                                           "Description": "supabase-to-rds: the application role's password"})
        stub.add_response("get_secret_value", {"SecretString": body}, expected_params={"SecretId": store.name})
        assert store.name == "supabase-to-rds/prod/app_backend"
        assert resolve_app_password(store, environ={"APP_ROLE_PASSWORD": "recorded-password"}).origin == "environment"
        assert resolve_app_password(store, environ={}).origin == "recorded"
        stub.assert_no_pending_responses()
