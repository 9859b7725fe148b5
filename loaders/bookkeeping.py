"""The tool's own bookkeeping on the target (`supabase_to_rds` schema): every table, one owner.

Load state, set-aside definitions, run records, applied migrations, the sequence values set
at sync and the large objects copied all live here, next to the data they describe, so each
record can commit in the same transaction as the change it records. One module owns the DDL
so that a column added for one step can't be created differently by another (the way the
list of Supabase schemas once existed twice), and every step calls the same idempotent
`ensure_schema` before writing.
"""

from __future__ import annotations

import asyncpg

from loaders.supabase import BOOKKEEPING_SCHEMA

SCHEMA = BOOKKEEPING_SCHEMA
COPY_STATE = f"{SCHEMA}.copy_state"
LOAD_GUARD = f"{SCHEMA}.load_guard"
MIGRATION_RUNS = f"{SCHEMA}.migration_runs"
SCHEMA_MIGRATIONS = f"{SCHEMA}.schema_migrations"
SEQUENCE_SYNC = f"{SCHEMA}.sequence_sync"
LARGE_OBJECTS = f"{SCHEMA}.large_objects"
COPY_RANGES = f"{SCHEMA}.copy_ranges"
POST_DATA_STATEMENTS = f"{SCHEMA}.post_data_statements"

CREATE_SCHEMA = f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"

# Each entry: one idempotent statement. Order matters only for the schema itself (first).
TABLES: dict[str, str] = {
    COPY_STATE: f"""CREATE TABLE IF NOT EXISTS {COPY_STATE} (
    table_name text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('started', 'done')),
    rows       bigint,
    bytes      bigint,
    seconds    double precision,
    snapshot   text,
    updated_at timestamptz NOT NULL DEFAULT now()
)""",
    LOAD_GUARD: f"""CREATE TABLE IF NOT EXISTS {LOAD_GUARD} (
    table_name text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('index', 'foreign_key', 'trigger')),
    name       text NOT NULL,
    restore    text NOT NULL,
    saved_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, kind, name)
)""",
    MIGRATION_RUNS: f"""CREATE TABLE IF NOT EXISTS {MIGRATION_RUNS} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT now(),
    ok boolean NOT NULL,
    report jsonb NOT NULL,
    schema_catalog jsonb NOT NULL
)""",
    SCHEMA_MIGRATIONS: f"""CREATE TABLE IF NOT EXISTS {SCHEMA_MIGRATIONS} (
    file text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)""",
    # The source's value of each sequence as read at sync (in the snapshot's coordinator):
    # verify checks target >= this, since a live source moves on after the snapshot.
    SEQUENCE_SYNC: f"""CREATE TABLE IF NOT EXISTS {SEQUENCE_SYNC} (
    sequence_name text PRIMARY KEY,
    last_value    bigint NOT NULL,
    is_called     boolean NOT NULL,
    increment_by  bigint NOT NULL,
    snapshot      text,
    synced_at     timestamptz NOT NULL DEFAULT now()
)""",
    # Block ranges of a split table loaded so far, each recorded in the transaction that loads it.
    COPY_RANGES: f"""CREATE TABLE IF NOT EXISTS {COPY_RANGES} (
    table_name  text NOT NULL,
    block_range text NOT NULL,
    rows        bigint NOT NULL,
    bytes       bigint NOT NULL,
    PRIMARY KEY (table_name, block_range)
)""",
    # Large objects copied, with the snapshot they were read in (resume skips these).
    LARGE_OBJECTS: f"""CREATE TABLE IF NOT EXISTS {LARGE_OBJECTS} (
    lo_oid    oid PRIMARY KEY,
    bytes     bigint NOT NULL,
    snapshot  text,
    copied_at timestamptz NOT NULL DEFAULT now()
)""",
    # Post-data statements applied so far (by a digest of their text), each recorded in the
    # transaction that applies it: a rerun after a kill applies only the others.
    POST_DATA_STATEMENTS: f"""CREATE TABLE IF NOT EXISTS {POST_DATA_STATEMENTS} (
    digest        text PRIMARY KEY,
    unit_checksum text NOT NULL,
    relation      text,
    applied_at    timestamptz NOT NULL DEFAULT clock_timestamp()
)""",
}


# Columns added after a table first shipped: IF NOT EXISTS upgrades a target an earlier version wrote.
UPGRADES: dict[str, tuple[str, ...]] = {
    COPY_STATE: (f"ALTER TABLE {COPY_STATE} ADD COLUMN IF NOT EXISTS key_format smallint",),
    LOAD_GUARD: (f"ALTER TABLE {LOAD_GUARD} ADD COLUMN IF NOT EXISTS last_error text",
                 f"ALTER TABLE {LOAD_GUARD} ADD COLUMN IF NOT EXISTS failed_at timestamptz"),
}


def statements(*tables: str) -> tuple[str, ...]:
    """The schema plus the named tables (default: all) as separate statements, for callers that
    apply DDL statement by statement (the migrations runner) or inside their own transaction."""
    chosen = tables or tuple(TABLES)
    return (CREATE_SCHEMA, *(ddl for name in chosen for ddl in (TABLES[name], *UPGRADES.get(name, ()))))


async def ensure_schema(conn: asyncpg.Connection, *tables: str) -> None:
    """Create the bookkeeping schema and the named tables (default: all) if missing."""
    for statement in statements(*tables):
        await conn.execute(statement)


async def table_exists(conn: asyncpg.Connection, table: str) -> bool:
    """Read-only probe: readers must not create bookkeeping on a target that has none."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))
