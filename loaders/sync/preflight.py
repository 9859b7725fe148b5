"""Everything that would make an online migration fail, checked before anything is created.

Every problem is collected and reported at once (one line, exit 1): a user fixing the source's
settings should not discover the missing primary key on the next run, after a slot was made.
Only reads here; the source session is read-only like everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from loaders.connect import connection
from loaders.data.catalog import read_catalog
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.sync.state import SLOT

MIN_SOURCE_VERSION = 150000  # CREATE_REPLICATION_SLOT … (SNAPSHOT 'export') syntax
NON_SUPERUSER_SUBSCRIBER_VERSION = 160000  # pg_create_subscription (RDS: rds_superuser)
POOLER_HOST_SUFFIX = "pooler.supabase.com"

# Tables whose updates and deletes could not be replicated (the source would even refuse them
# once the table is published): no replica identity, or the default one without a primary key.
_NO_IDENTITY_SQL = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest($1::text[], $2::text[]) AS t(schema, name) ON t.schema = n.nspname AND t.name = c.relname
WHERE c.relreplident = 'n'
   OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
ORDER BY 1, 2
"""

_SOURCE_SQL = """
SELECT current_setting('wal_level') AS wal_level,
       current_setting('server_version_num')::int AS version,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS may_replicate,
       current_setting('max_replication_slots')::int
         - (SELECT count(*) FROM pg_replication_slots WHERE slot_name <> $1) AS free_slots,
       current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication) AS free_senders
"""

_TARGET_SQL = """
SELECT current_setting('server_version_num')::int AS version,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname IN ('pg_create_subscription', 'rds_superuser')
               AND pg_has_role(current_user, r.oid, 'MEMBER')) AS may_subscribe,
       current_setting('max_logical_replication_workers')::int
         - (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL) AS free_workers
"""


@dataclass
class PreflightResult:
    tables: list[tuple[str, str]] = field(default_factory=list)  # (schema, name) to publish
    no_identity: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def raise_if_failed(self) -> None:
        if self.problems:
            raise MigrationError(f"sync preflight found {len(self.problems)} problem(s): " + "; ".join(self.problems))


def pooler_problem(url: DatabaseUrl) -> str | None:
    """Supavisor (either mode) speaks no replication protocol; say so before anything else fails."""
    if url.host.rstrip(".").lower().endswith(POOLER_HOST_SUFFIX):
        return (f"source {url.host} is Supabase's pooler, which cannot carry replication — fix: use the direct "
                "connection db.<ref>.supabase.co:5432 (IPv6-only unless the project has the IPv4 add-on)")
    return None


async def check_source(conn: asyncpg.Connection, url: DatabaseUrl, result: PreflightResult) -> None:
    row = await conn.fetchrow(_SOURCE_SQL, SLOT)
    if row["version"] < MIN_SOURCE_VERSION:
        result.problems.append(f"source runs PostgreSQL {row['version'] // 10000}, sync needs 15 or newer — "
                               "fix: upgrade the Supabase project, or use `migrate` with the app stopped")
    if row["wal_level"] != "logical":
        result.problems.append(f"source wal_level is {row['wal_level']} — fix: set wal_level = logical and restart "
                               "the server (Supabase has it on)")
    if not row["may_replicate"]:
        result.problems.append(f"source role {url.user!r} may not replicate — fix: connect as a role with "
                               "REPLICATION (on Supabase: the postgres user over the direct connection)")
    if row["free_slots"] < 1:
        result.problems.append("source has no free replication slot — fix: raise max_replication_slots or drop an "
                               "unused slot (SELECT slot_name FROM pg_replication_slots)")
    if row["free_senders"] < 1:
        result.problems.append("source has no free WAL sender — fix: raise max_wal_senders or stop another "
                               "replication client")


async def check_tables(conn: asyncpg.Connection, schemas: Sequence[str] | None, tables: Sequence[str] | None,
                       result: PreflightResult, *, identity_full: bool) -> None:
    catalog = await read_catalog(conn, schemas, tables)
    result.tables = [(t.schema, t.name) for t in catalog.tables]
    if not result.tables:
        result.problems.append("no table to copy on the source — fix: check --schemas/--tables")
        return
    rows = await conn.fetch(_NO_IDENTITY_SQL, [t[0] for t in result.tables], [t[1] for t in result.tables])
    result.no_identity = [(r["schema"], r["name"]) for r in rows]
    if result.no_identity and not identity_full:
        names = ", ".join(f"{s}.{n}" for s, n in result.no_identity)
        result.problems.append(f"table(s) without primary key or replica identity: {names} — fix: add a primary key, "
                               "or ALTER TABLE … REPLICA IDENTITY USING INDEX/FULL, or pass --replica-identity-full")


async def check_target(conn: asyncpg.Connection, url: DatabaseUrl, result: PreflightResult) -> None:
    row = await conn.fetchrow(_TARGET_SQL)
    if not row["superuser"]:
        if row["version"] < NON_SUPERUSER_SUBSCRIBER_VERSION and not row["may_subscribe"]:
            result.problems.append(f"target role {url.user!r} is not a superuser and the target runs PostgreSQL "
                                   f"{row['version'] // 10000} — fix: use PostgreSQL 16+ (or RDS's master user)")
        elif not row["may_subscribe"]:
            result.problems.append(f"target role {url.user!r} may not create subscriptions — fix: GRANT "
                                   f"pg_create_subscription TO {url.user} (on RDS: use the master user, rds_superuser)")
    if row["free_workers"] < 1:
        result.problems.append("target has no free logical replication worker — fix: raise "
                               "max_logical_replication_workers (and max_worker_processes)")


async def preflight(source: DatabaseUrl, target: DatabaseUrl, *, schemas: Sequence[str] | None,
                    tables: Sequence[str] | None, identity_full: bool) -> PreflightResult:
    """Check both servers and the table selection; returns the tables to publish, or raises
    one MigrationError listing every problem."""
    result = PreflightResult()
    pooler = pooler_problem(source)
    if pooler:
        result.problems.append(pooler)
        result.raise_if_failed()
    async with connection(source) as conn:
        await check_source(conn, source, result)
        await check_tables(conn, schemas, tables, result, identity_full=identity_full)
    async with connection(target) as conn:
        await check_target(conn, target, result)
    result.raise_if_failed()
    return result
