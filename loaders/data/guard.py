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
aside is recorded in `supabase_to_rds.load_guard` in the same transaction as the change.
An index's or FK's comment and an index column's statistics target ride along in its restore
statement (a DROP would lose them).

Putting things back is a guarantee, not a step that runs when nothing failed: `LoadGuard` is
an async context manager whose exit — after success, an error or Ctrl-C (shielded from the
cancellation) — restores every recorded object in its own transaction. Triggers come first
(cheap, and the most harmful to leave off), then indexes, then FKs; one object that fails (an
FK whose rows don't validate) is recorded with its error in `load_guard` and in the summary,
and the others still go back. What a crash (kill -9, lost server) leaves recorded is put back
by `copy --restore` or the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import anyio
import asyncpg
import structlog

from loaders.concurrency import is_transient, task_group, with_retry
from loaders.data.catalog import table_key
from loaders.data.state import SCHEMA
from loaders.errors import MigrationError

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
SELECT n.nspname AS schema, r.relname AS table, c.conname AS name,
       format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, r.relname, c.conname) AS set_aside,
       concat_ws('; ',
         format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, r.relname, c.conname, pg_get_constraintdef(c.oid)),
         (SELECT format('COMMENT ON CONSTRAINT %I ON %I.%I IS %L', c.conname, n.nspname, r.relname, d.description)
            FROM pg_description d WHERE d.classoid = 'pg_constraint'::regclass AND d.objoid = c.oid)) AS restore
FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.contype = 'f' AND c.conparentid = 0
  AND (c.conrelid IN (SELECT oid FROM rels) OR c.confrelid IN (SELECT oid FROM rels))
ORDER BY 1, 2, 3
"""

_TRIGGERS = """
SELECT n.nspname AS schema, r.relname AS table, t.tgname AS name,
       format('ALTER TABLE %I.%I DISABLE TRIGGER %I', n.nspname, r.relname, t.tgname) AS set_aside,
       format('ALTER TABLE %I.%I ENABLE %s TRIGGER %I', n.nspname, r.relname,
              CASE t.tgenabled WHEN 'R' THEN 'REPLICA' WHEN 'A' THEN 'ALWAYS' ELSE '' END, t.tgname) AS restore
FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
  AND t.tgrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) AS x)
ORDER BY 1, 2, 3
"""

# Indexes that back no constraint, are not attached to a partitioned parent's index, and carry
# no table property a rebuild would lose (CLUSTER mark, replica identity). attstattarget >= 0
# is a target someone set: the default is -1 before PG 17 and NULL since.
_INDEXES = """
SELECT n.nspname AS schema, r.relname AS table, ic.relname AS name,
       format('DROP INDEX %I.%I', n.nspname, ic.relname) AS set_aside,
       concat_ws('; ',
         pg_get_indexdef(i.indexrelid),
         (SELECT format('COMMENT ON INDEX %I.%I IS %L', n.nspname, ic.relname, d.description)
            FROM pg_description d WHERE d.classoid = 'pg_class'::regclass AND d.objoid = i.indexrelid
             AND d.objsubid = 0),
         (SELECT string_agg(format('ALTER INDEX %I.%I ALTER COLUMN %s SET STATISTICS %s',
                                   n.nspname, ic.relname, a.attnum, a.attstattarget), '; ' ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)) AS restore
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class r ON r.oid = i.indrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE i.indrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) AS x)
  AND i.indisvalid AND NOT i.indisclustered AND NOT i.indisreplident
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = i.indexrelid AND d.deptype = 'e')
ORDER BY 1, 2, 3
"""

# Dependency order: FKs go before the indexes they may rely on and come back after them;
# triggers come back first of all, so nothing that fails later can leave one disabled.
SET_ASIDE_ORDER = (("foreign_key", _FOREIGN_KEYS), ("trigger", _TRIGGERS), ("index", _INDEXES))
RESTORE_ORDER = ("trigger", "index", "foreign_key")
_ALREADY_THERE = (asyncpg.DuplicateObjectError, asyncpg.DuplicateTableError)


@dataclass(frozen=True)
class RestoreFailure:
    kind: str
    table: str
    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} on {self.table}: {self.error}"


@dataclass
class GuardSummary:
    set_aside: dict[str, list[str]] = field(default_factory=dict)  # kind → "table: name"
    restored: dict[str, list[str]] = field(default_factory=dict)
    failed: list[RestoreFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


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
                table = table_key(row["schema"], row["table"])
                await conn.execute(
                    f"""INSERT INTO {SCHEMA}.load_guard (table_name, kind, name, restore)
                        VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
                    table, kind, row["name"], row["restore"],
                )
                await conn.execute(row["set_aside"])
                summary.set_aside.setdefault(kind, []).append(f"{table}: {row['name']}")
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
        await conn.execute(
            f"DELETE FROM {SCHEMA}.load_guard WHERE table_name = $1 AND kind = $2 AND name = $3", table, kind, name
        )


async def _record_failure(pool: asyncpg.Pool, failure: RestoreFailure) -> None:
    """Best effort: the definition is already kept; the error says why it is still there."""
    try:
        await pool.execute(
            f"UPDATE {SCHEMA}.load_guard SET last_error = $4, failed_at = now() "
            "WHERE table_name = $1 AND kind = $2 AND name = $3",
            failure.table, failure.kind, failure.name, failure.error)
    except Exception as exc:  # noqa: BLE001 - the failure itself is reported either way
        log.warning("restore_failure_not_recorded", table=failure.table, name=failure.name, error=str(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


async def restore_load_guard(pool: asyncpg.Pool, *, jobs: int = 2) -> GuardSummary:
    """Put back everything recorded (this run's and any crashed run's), each object on its own:
    triggers, then indexes in parallel, then foreign keys one at a time (concurrent ADD FOREIGN
    KEY lock the referenced tables in conflicting modes). A failure is recorded and the rest go
    on; only losing the target itself stops early (everything left stays recorded)."""
    summary = GuardSummary()
    exists = await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.load_guard")
    if not exists:
        return summary
    rows = await pool.fetch(f"SELECT table_name, kind, name, restore FROM {SCHEMA}.load_guard ORDER BY saved_at, name")
    lost: list[BaseException] = []  # the target went away: don't try (and retry) every object
    for kind in RESTORE_ORDER:
        todo = [r for r in rows if r["kind"] == kind]
        limiter = anyio.CapacityLimiter(jobs if kind == "index" else 1)
        restored: list[str] = []

        async def one(r: asyncpg.Record) -> None:
            async with limiter:
                what = f"{r['table_name']}: {r['name']}"
                if lost:
                    summary.failed.append(RestoreFailure(kind, r["table_name"], r["name"], _describe(lost[0])))
                    return
                try:
                    await with_retry(lambda: _restore_one(pool, r["table_name"], kind, r["name"], r["restore"]),
                                     what=f"restore {kind} {what}")
                except Exception as exc:  # noqa: BLE001 - one object's failure must not stop the others
                    failure = RestoreFailure(kind, r["table_name"], r["name"], _describe(exc))
                    log.warning("restore_failed", kind=kind, table=r["table_name"], name=r["name"], error=failure.error)
                    summary.failed.append(failure)
                    if is_transient(exc):
                        lost.append(exc)
                    else:
                        await _record_failure(pool, failure)
                    return
                restored.append(what)

        async with task_group() as tg:
            for r in todo:
                tg.start_soon(one, r)
        if restored:
            summary.restored[kind] = sorted(restored)
            log.info("restored", kind=kind, count=len(restored))
    return summary


class LoadGuard:
    """`async with LoadGuard(pool, idents) as guard:` — triggers, FKs and indexes of the tables
    are set aside inside, and put back on the way out whatever happened; `guard.summary` says
    what was set aside, restored and what failed to go back."""

    def __init__(self, pool: asyncpg.Pool, tables: Sequence[str], *, drop_indexes: bool = True, jobs: int = 2,
                 lock_timeout: float = 30.0, attempts: int = 1, retry_delay: float = 1.0) -> None:
        self.pool = pool
        self.tables = list(tables)
        self.drop_indexes = drop_indexes
        self.jobs = jobs
        self.lock_timeout, self.attempts, self.retry_delay = lock_timeout, attempts, retry_delay
        self.summary = GuardSummary()

    async def __aenter__(self) -> LoadGuard:
        """DDL on tables others may be using: bounded lock waits, redone whole (it is one transaction)."""
        async def attempt() -> GuardSummary:
            async with self.pool.acquire() as conn:
                await conn.execute("SELECT set_config('lock_timeout', $1, false)", f"{int(self.lock_timeout * 1000)}ms")
                return await set_aside(conn, self.tables, drop_indexes=self.drop_indexes)

        try:
            self.summary = await with_retry(attempt, what="set_aside", attempts=self.attempts,
                                            first_delay=self.retry_delay)
        except asyncpg.LockNotAvailableError:
            raise MigrationError(
                f"target: could not lock the tables to set triggers, foreign keys and indexes aside within "
                f"{self.attempts} waits of {self.lock_timeout:g} s (see the 'waiting for lock' lines above)",
                "end the sessions holding those locks or let them finish (or raise --lock-timeout), then rerun",
            ) from None
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        with anyio.CancelScope(shield=True):  # Ctrl-C must not stop the restore it is waiting for
            try:
                back = await restore_load_guard(self.pool, jobs=self.jobs)
            except Exception as err:  # noqa: BLE001 - reading load_guard failed: nothing could be restored
                if exc is None:
                    raise MigrationError(f"target: putting back what the load set aside failed: {_describe(err)}",
                                         "run `copy --restore` once the target is reachable") from None
                log.warning("restore_not_attempted", error=_describe(err))
                self.summary.failed.append(RestoreFailure("all", "-", "-", _describe(err)))
                return
        self.summary.restored = back.restored
        self.summary.failed.extend(back.failed)
        if exc is not None and back.failed:
            log.warning("restore_incomplete_after_failure", failed=len(back.failed))
