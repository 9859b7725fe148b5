"""Is the target live? The baseline a verified migration leaves, and what a re-run may do.

After a verified `migrate` the tool records, on the target, what it left there: each table's
write counters (`pg_stat_user_tables`), row counts, the objects it created (for `migrate
--fresh`) and the definitions of indexes, constraints, triggers and functions (for
`--repair`). Once the application writes to the target, a re-run must not re-copy or
truncate anything: `ensure_not_live` compares the counters and row counts with that record
and stops the run with one line. Counters can be reset (`pg_stat_reset`, crash recovery),
so row counts are checked too; a lower counter is read as "reset", not as "no writes".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio
import asyncpg
import structlog

from loaders.connect import APP_NAME, connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.schema.app_role import app_schemas
from loaders.supabase import BOOKKEEPING_SCHEMA

log = structlog.get_logger(stage="live")
SESSION_WAIT_SECONDS = 5.0

_NOT_EXTENSION = "NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"

WRITES = """
  SELECT format('%s.%s', schemaname, relname) AS key, n_tup_ins + n_tup_upd + n_tup_del AS writes,
         format('%I.%I', schemaname, relname) AS ident
  FROM pg_stat_user_tables WHERE schemaname = ANY($1::text[]) ORDER BY 1
"""

# What --repair can put back, each with the statement that recreates it. Indexes that back a
# constraint come back with the constraint; partitions' indexes, constraints and triggers with
# their parent's. `rank` orders the repair: functions, keys, indexes, foreign keys, triggers.
OBJECTS = f"""
  SELECT 'function' AS kind, format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS name,
         pg_get_functiondef(p.oid) AS sql, 0 AS rank
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = ANY($1::text[]) AND p.prokind IN ('f', 'p') AND {_NOT_EXTENSION.format(oid='p.oid')}
  UNION ALL
  SELECT 'constraint', format('%I.%I.%I', n.nspname, c.relname, k.conname),
         format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)),
         CASE WHEN k.contype = 'f' THEN 3 ELSE 1 END
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY($1::text[]) AND k.contype IN ('p', 'u', 'f', 'c', 'x') AND k.conparentid = 0
    AND NOT (k.contype = 'c' AND k.coninhcount > 0) AND {_NOT_EXTENSION.format(oid='c.oid')}
  UNION ALL
  SELECT 'index', format('%I.%I', n.nspname, i.relname), pg_get_indexdef(x.indexrelid), 2
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
  WHERE n.nspname = ANY($1::text[]) AND NOT i.relispartition
    AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x'))
    AND {_NOT_EXTENSION.format(oid='x.indrelid')}
  UNION ALL
  SELECT 'trigger', format('%I.%I.%I', n.nspname, c.relname, t.tgname), pg_get_triggerdef(t.oid), 4
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY($1::text[]) AND NOT t.tgisinternal AND t.tgparentid = 0
  ORDER BY 4, 2
"""

# What the tool created, by the DROP statement that removes it (used by `migrate --fresh`).
# Sequences owned by a column go with their table; row types of tables are not separate objects.
CREATED = f"""
  SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
              WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS drop, format('%I.%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relispartition
    AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    AND {_NOT_EXTENSION.format(oid='c.oid')}
  UNION ALL
  SELECT 'ROUTINE', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = ANY($1::text[]) AND p.prokind IN ('f', 'p') AND {_NOT_EXTENSION.format(oid='p.oid')}
  UNION ALL
  SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, format('%I.%I', n.nspname, t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_class c ON c.oid = t.typrelid
  WHERE n.nspname = ANY($1::text[]) AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
    AND {_NOT_EXTENSION.format(oid='t.oid')}
  UNION ALL
  SELECT 'SCHEMA', format('%I', n.nspname) FROM pg_namespace n
  WHERE n.nspname = ANY($1::text[]) AND n.nspname <> 'public'
  ORDER BY 1, 2
"""
# Dependents before what they depend on: views use tables and functions, tables use types and
# functions (defaults, triggers), functions use types; schemas go last.
DROP_ORDER = ("MATERIALIZED VIEW", "VIEW", "FOREIGN TABLE", "TABLE", "SEQUENCE", "ROUTINE", "TYPE", "DOMAIN", "SCHEMA")


@dataclass(frozen=True)
class RecordedObject:
    kind: str
    name: str
    sql: str
    rank: int


@dataclass
class Baseline:
    """What a verified run left on the target, stored inside its run record."""

    recorded_at: str
    schemas: list[str]
    writes: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    objects: list[RecordedObject] = field(default_factory=list)
    created: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"recorded_at": self.recorded_at, "schemas": self.schemas, "writes": self.writes, "rows": self.rows,
                "objects": [vars(o) for o in self.objects], "created": [list(c) for c in self.created]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Baseline":
        return cls(data["recorded_at"], list(data.get("schemas") or []), dict(data.get("writes") or {}),
                   dict(data.get("rows") or {}), [RecordedObject(**o) for o in data.get("objects") or []],
                   [(c[0], c[1]) for c in data.get("created") or []])


async def read_objects(conn: asyncpg.Connection, schemas: list[str]) -> list[RecordedObject]:
    # Deparsers leave out schemas on the search_path: with only pg_catalog there, every
    # recorded statement is fully qualified and recreates the same object from any session.
    await conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)")
    return [RecordedObject(r["kind"], r["name"], r["sql"], r["rank"]) for r in await conn.fetch(OBJECTS, schemas)]


async def read_writes(conn: asyncpg.Connection, schemas: list[str]) -> dict[str, int]:
    return {r["key"]: int(r["writes"]) for r in await conn.fetch(WRITES, schemas)}


async def wait_for_own_sessions(conn: asyncpg.Connection, *, seconds: float = SESSION_WAIT_SECONDS) -> None:
    """A closed client connection's backend flushes its write counters while it exits, and
    leaves pg_stat_activity only after that: once the tool's other sessions on this database
    are gone, the counters include the whole load (else the next run would see "writes")."""
    with anyio.move_on_after(seconds):
        while await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity a WHERE a.datname = current_database() "
                "AND a.application_name = $1 AND a.pid <> pg_backend_pid() "
                # a session holding the run's advisory lock stays open on purpose and writes no rows
                "AND NOT EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')", APP_NAME):
            await anyio.sleep(0.05)


async def read_baseline(target: DatabaseUrl, rows: dict[str, int]) -> Baseline:
    """Called right after verification, once the loading sessions are gone."""
    async with connection(target) as conn:
        await wait_for_own_sessions(conn)
        schemas = await app_schemas(conn)
        return Baseline(
            datetime.now(timezone.utc).isoformat(), schemas, await read_writes(conn, schemas), dict(rows),
            await read_objects(conn, schemas), [(r["drop"], r["name"]) for r in await conn.fetch(CREATED, schemas)],
        )


def recorded_baseline(report: dict[str, Any] | None) -> Baseline | None:
    data = (report or {}).get("baseline")
    return Baseline.from_dict(data) if data else None


@dataclass(frozen=True)
class TableActivity:
    table: str
    detail: str


async def target_activity(target: DatabaseUrl, baseline: Baseline) -> list[TableActivity]:
    """Tables of the verified run that took writes since: counters up, or row counts changed."""
    found: dict[str, str] = {}
    async with connection(target) as conn:
        now = await read_writes(conn, baseline.schemas)
        idents = {r["key"]: r["ident"] for r in await conn.fetch(WRITES, baseline.schemas)}
        for table, then in baseline.writes.items():
            if now.get(table, then) > then:
                found[table] = f"{now[table] - then} row write(s)"
        for table, rows_then in baseline.rows.items():
            if table in found or table not in idents:
                continue
            rows_now = await conn.fetchval(f"SELECT count(*) FROM {idents[table]}")
            if rows_now != rows_then:
                found[table] = f"rows {rows_then} → {rows_now}"
    return [TableActivity(t, d) for t, d in sorted(found.items())]


LIVE_FIX = ("check it with `python -m automation drift`, repair its schema with `schema --repair`, "
            "or start over with `migrate --fresh --yes` (drops what the tool created, the app's rows too)")


async def ensure_not_live(target: DatabaseUrl, report: dict[str, Any] | None) -> None:
    """Stop a re-run before it writes anything once the target has taken writes after the
    verified migration `report` (the newest one recorded)."""
    baseline = recorded_baseline(report)
    if baseline is None:
        return
    activity = await target_activity(target, baseline)
    if activity:
        shown = ", ".join(f"{a.table} ({a.detail})" for a in activity[:3]) + (" …" if len(activity) > 3 else "")
        raise MigrationError(
            f"target {target.safe} is live: it took writes after the migration verified at {baseline.recorded_at} "
            f"({shown}); nothing was re-copied or truncated", LIVE_FIX)


async def drop_created(target: DatabaseUrl, baseline: Baseline) -> list[str]:
    """`migrate --fresh`: drop exactly what the verified run recorded as created (RESTRICT: an
    object of yours that depends on one of them stops the whole drop, in one transaction),
    then the tool's own bookkeeping schema. Returns the statements run."""
    statements: list[str] = []
    for kind in DROP_ORDER:
        names = [name for drop, name in baseline.created if drop == kind]
        if names:
            statements.append(f"DROP {kind} IF EXISTS {', '.join(names)} RESTRICT")
    statements.append(f"DROP SCHEMA IF EXISTS {BOOKKEEPING_SCHEMA} CASCADE")
    async with connection(target) as conn:
        try:
            async with conn.transaction():
                for sql in statements:
                    await conn.execute(sql)
        except asyncpg.DependentObjectsStillExistError as exc:
            raise MigrationError(f"--fresh stopped, nothing dropped: {exc.message} ({exc.detail or ''})",
                                 "drop or move the object of yours that depends on the migrated one, then rerun") from None
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"--fresh stopped, nothing dropped: {exc}",
                                 "run it as the target's master user (the owner of the migrated objects)") from None
    log.info("fresh_target", dropped=len(baseline.created))
    return statements
