"""A least-privilege login role for the application, in place of Supabase's role grants.

On Supabase the backend talks through PostgREST roles; on RDS it needs its own role so its
DATABASE_URL is not the master user's: it may read and write rows, use sequences and call
the app's functions (RPC), but not create, alter or drop anything. The cleaner drops grants
to Supabase's API roles, and a kept `ALTER DEFAULT PRIVILEGES … REVOKE EXECUTE ON FUNCTIONS
FROM PUBLIC` takes effect on the target, so EXECUTE is granted explicitly, like Supabase's
own default privileges give it to its API roles. Default privileges cover what the owner
adds later by migrations. Every statement is idempotent, so rerunning the command is safe.
"""

from __future__ import annotations

import asyncpg
import structlog

from loaders.errors import MigrationError
from loaders.redaction import register_secret
from loaders.supabase import BOOKKEEPING_SCHEMA, EXTENSIONS_SCHEMA, MANAGED_SCHEMAS

log = structlog.get_logger(stage="app-role")

USER_SCHEMAS = """
  SELECT n.nspname FROM pg_namespace n
  WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' AND NOT (n.nspname = ANY($1::text[]))
    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = n.oid AND d.deptype = 'e')
    AND has_schema_privilege(n.oid, 'CREATE')
  ORDER BY 1
"""
GRANTS = (
    "GRANT USAGE ON SCHEMA {s} TO {r}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
    "GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {s} TO {r}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT EXECUTE ON ROUTINES TO {r}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE ON TYPES TO {r}",
)


async def app_schemas(conn: asyncpg.Connection) -> list[str]:
    """The application's schemas: user schemas the current user can create in, minus Supabase's,
    our bookkeeping schema and the auth shim."""
    return [r[0] for r in await conn.fetch(USER_SCHEMAS, sorted(MANAGED_SCHEMAS | {BOOKKEEPING_SCHEMA}))]


async def ensure_app_role(conn: asyncpg.Connection, name: str, password: str, schemas: list[str] | None = None) -> list[str]:
    """Create or update the LOGIN role and (re)grant DML on every table and sequence of `schemas`.
    Returns the schemas granted. The password is quoted by the server (`format('%L')`)."""
    if not password:
        raise MigrationError(f"no password for application role {name!r}", "set APP_ROLE_PASSWORD (or pass a password)")
    register_secret(password)
    schemas = schemas if schemas is not None else await app_schemas(conn)
    exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name)
    # Only a superuser may even restate NOSUPERUSER on an existing role, so a rerun only
    # refreshes LOGIN and the password.
    template = "ALTER ROLE %I LOGIN PASSWORD %L" if exists else (
        "CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L")
    role_sql = await conn.fetchval("SELECT format($1::text, $2::text, $3::text)", template, name, password)
    quoted_role = await conn.fetchval("SELECT quote_ident($1)", name)
    try:
        async with conn.transaction():
            await conn.execute(role_sql)
            for schema in schemas:
                quoted_schema = await conn.fetchval("SELECT quote_ident($1)", schema)
                for grant in GRANTS:
                    await conn.execute(grant.format(s=quoted_schema, r=quoted_role))
            # Queries of the app call extension functions by name (extensions.similarity(…),
            # extensions.uuid_generate_v4()), which needs USAGE on the schema, as on Supabase.
            if await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL", EXTENSIONS_SCHEMA):
                await conn.execute(f"GRANT USAGE ON SCHEMA {EXTENSIONS_SCHEMA} TO {quoted_role}")
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"application role {name!r}: {exc}", "apply as the database owner with CREATEROLE (RDS master user)") from None
    log.info("application role ready", role=name, schemas=schemas)
    return schemas
