"""Set triggers, foreign keys and secondary indexes aside for the load, and put them back.

RDS's master user is not a superuser, so `session_replication_role = replica` and
`DISABLE TRIGGER ALL` are out. What an owner *can* do:
- `ALTER TABLE … DISABLE TRIGGER name` for each enabled user trigger (so an AFTER INSERT
  trigger that writes into another table stays silent), re-enabled in its original mode
  (plain / REPLICA / ALWAYS) afterwards — triggers the user had disabled stay disabled;
- drop foreign keys touching the loaded tables (either side), so load order and TRUNCATE
  don't matter, and re-add them from `pg_get_constraintdef` afterwards — a plain `ADD
  CONSTRAINT` validates every row, so nothing is left NOT VALID that wasn't before;
- drop secondary (non-constraint) indexes and rebuild them once, which is cheaper than
  maintaining them row by row.
Every statement is produced by the server (`format('%I')`, `pg_get_*def`), and what is set
aside is recorded in `supabase_to_rds.load_guard` in the same transaction as the change, so
a crash can always be repaired by `restore_load_guard`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import asyncpg
import structlog

from loaders.concurrency import task_group
from loaders.errors import MigrationError
from loaders.data.state import SCHEMA

log = structlog.get_logger(stage="guard")

# Relations to protect: the loaded tables plus their partition ancestors (FKs and their clones
# hang off the partitioned parent).
_RELS = """
WITH loaded AS (SELECT to_regclass(ident) AS oid FROM unnest($1::text[]) AS t(ident)),
rels AS (
  SELECT oid FROM loaded
  UNION  -- pg_partition_ancestors returns nothing for a table that is not a partition
  SELECT a.relid FROM loaded, LATERAL pg_partition_ancestors(loaded.oid) AS a(relid)
)
"""

_FOREIGN_KEYS = _RELS + """
SELECT format('%s.%s', n.nspname, r.relname) AS table_name, c.conname AS name,
       format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, r.relname, c.conname) AS set_aside,
       format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, r.relname, c.conname,
              pg_get_constraintdef(c.oid)) AS restore
FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.contype = 'f' AND c.conparentid = 0
  AND (c.conrelid IN (SELECT oid FROM rels) OR c.confrelid IN (SELECT oid FROM rels))
ORDER BY 1, 2
"""

_TRIGGERS = """
SELECT format('%s.%s', n.nspname, r.relname) AS table_name, t.tgname AS name,
       format('ALTER TABLE %I.%I DISABLE TRIGGER %I', n.nspname, r.relname, t.tgname) AS set_aside,
       format('ALTER TABLE %I.%I ENABLE %s TRIGGER %I', n.nspname, r.relname,
              CASE t.tgenabled WHEN 'R' THEN 'REPLICA' WHEN 'A' THEN 'ALWAYS' ELSE '' END, t.tgname) AS restore
FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
  AND t.tgrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) AS x)
ORDER BY 1, 2
"""

# Indexes that back no constraint, are not attached to a partitioned parent's index, and carry
# no table property a rebuild would lose (CLUSTER mark, replica identity).
_INDEXES = """
SELECT format('%s.%s', n.nspname, r.relname) AS table_name, ic.relname AS name,
       format('DROP INDEX %I.%I', n.nspname, ic.relname) AS set_aside,
       pg_get_indexdef(i.indexrelid) AS restore
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class r ON r.oid = i.indrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE i.indrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) AS x)
  AND i.indisvalid AND NOT i.indisclustered AND NOT i.indisreplident
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = i.indexrelid AND d.deptype = 'e')
ORDER BY 1, 2
"""

# Dependency order: FKs go before the indexes they may rely on and come back after them.
SET_ASIDE_ORDER = (("foreign_key", _FOREIGN_KEYS), ("trigger", _TRIGGERS), ("index", _INDEXES))
RESTORE_ORDER = ("index", "foreign_key", "trigger")
_ALREADY_THERE = (asyncpg.DuplicateObjectError, asyncpg.DuplicateTableError)


@dataclass
class GuardSummary:
    set_aside: dict[str, list[str]] = field(default_factory=dict)  # kind → "table: name"
    restored: dict[str, list[str]] = field(default_factory=dict)


async def set_aside(
    conn: asyncpg.Connection, tables: Sequence[str], *, drop_indexes: bool = True
) -> GuardSummary:
    """Record, then drop/disable, in one transaction: either all of it is saved and done, or nothing."""
    summary = GuardSummary()
    idents = list(tables)
    async with conn.transaction():
        for kind, query in SET_ASIDE_ORDER:
            if kind == "index" and not drop_indexes:
                continue
            for row in await conn.fetch(query, idents):
                await conn.execute(
                    f"""INSERT INTO {SCHEMA}.load_guard (table_name, kind, name, restore)
                        VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
                    row["table_name"], kind, row["name"], row["restore"],
                )
                await conn.execute(row["set_aside"])
                summary.set_aside.setdefault(kind, []).append(f"{row['table_name']}: {row['name']}")
    for kind, names in summary.set_aside.items():
        log.info("set_aside", kind=kind, count=len(names))
    return summary


async def _restore_one(pool: asyncpg.Pool, table: str, kind: str, name: str, statement: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        try:
            async with conn.transaction():  # savepoint: "already there" must not abort the delete
                await conn.execute(statement)
        except _ALREADY_THERE:
            log.info("already_restored", kind=kind, table=table, name=name)
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"target: restoring {kind} {name} on {table} failed: {exc}",
                f"fix the data, then rerun with --resume (the definition is kept in {SCHEMA}.load_guard)",
            ) from None
        await conn.execute(
            f"DELETE FROM {SCHEMA}.load_guard WHERE table_name = $1 AND kind = $2 AND name = $3", table, kind, name
        )


async def restore_load_guard(pool: asyncpg.Pool, *, jobs: int = 2) -> GuardSummary:
    """Put back everything recorded (this run's and any crashed run's): indexes in parallel,
    then foreign keys one at a time (concurrent ADD FOREIGN KEY lock the referenced tables in
    conflicting modes), then triggers."""
    summary = GuardSummary()
    exists = await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.load_guard")
    if not exists:
        return summary
    rows = await pool.fetch(f"SELECT table_name, kind, name, restore FROM {SCHEMA}.load_guard ORDER BY saved_at, name")
    for kind in RESTORE_ORDER:
        todo = [r for r in rows if r["kind"] == kind]
        limiter = anyio.CapacityLimiter(jobs if kind == "index" else 1)

        async def one(r: asyncpg.Record) -> None:
            async with limiter:
                await _restore_one(pool, r["table_name"], kind, r["name"], r["restore"])

        async with task_group() as tg:
            for r in todo:
                tg.start_soon(one, r)
        if todo:
            summary.restored[kind] = [f"{r['table_name']}: {r['name']}" for r in todo]
            log.info("restored", kind=kind, count=len(todo))
    return summary
