"""What is Supabase's and stays on Supabase: managed schemas, platform roles, extensions.

One place for these lists because the export (which schemas to leave out of pg_dump), the
cleaner (which statements to drop), the diff (what not to compare) and the data loaders
(what not to copy) must agree on them, or the diff would flag our own intentional removals.
"""

from __future__ import annotations

# Schemas Supabase creates and manages; their objects stay on Supabase in this phase.
MANAGED_SCHEMAS: frozenset[str] = frozenset({
    "auth", "storage", "realtime", "extensions", "graphql", "graphql_public", "net",
    "pgbouncer", "pgsodium", "pgsodium_masks", "vault", "supabase_functions",
    "supabase_migrations", "cron", "_realtime", "_analytics", "pgtle", "tiger", "tiger_data",
    "topology",
})

# Schemas that exist on the target and that migrated objects may reference.
EXTENSIONS_SCHEMA = "extensions"
AUTH_SCHEMA = "auth"
# Our own bookkeeping schema on the target (migrations table, load state): never compared or copied.
# Its DDL has one owner: loaders/bookkeeping.py.
BOOKKEEPING_SCHEMA = "supabase_to_rds"

# PostgreSQL's own schemas (`pg_temp_*`/`pg_toast_temp_*` are matched by prefix in is_managed_schema).
SYSTEM_SCHEMAS: frozenset[str] = frozenset({"information_schema", "pg_catalog", "pg_toast"})

# Everything that is never dumped, copied, compared or verified: the one exclusion list.
EXCLUDED_SCHEMAS: frozenset[str] = MANAGED_SCHEMAS | SYSTEM_SCHEMAS | {BOOKKEEPING_SCHEMA}

# The PostgREST roles policies and grants name; `--rls shim` recreates them on the target.
API_ROLES: frozenset[str] = frozenset({"anon", "authenticated", "service_role"})

# Roles of the Supabase platform. `postgres` is included: on Supabase it owns the app's
# objects, on RDS the objects belong to whoever applies the schema (the master user).
PLATFORM_ROLES: frozenset[str] = API_ROLES | frozenset({
    "postgres", "supabase_admin", "supabase_auth_admin", "supabase_storage_admin",
    "supabase_functions_admin", "supabase_realtime_admin", "supabase_replication_admin",
    "supabase_read_only_user", "supabase_etl_admin", "dashboard_user", "authenticator",
    "pgbouncer", "pgsodium_keyholder", "pgsodium_keyiduser", "pgsodium_keymaker",
})

# Functions of the `auth` schema that the shim provides on the target.
AUTH_SHIM_FUNCTIONS: frozenset[str] = frozenset({"uid", "role", "jwt", "email"})

REALTIME_PUBLICATION = "supabase_realtime"

# Extensions Amazon RDS offers: data in loaders/extensions.yaml (loaders/schema/extensions.py).


def is_managed_schema(name: str | None) -> bool:
    return bool(name) and (name in MANAGED_SCHEMAS or name.startswith(("pg_temp_", "pg_toast_temp_")))
