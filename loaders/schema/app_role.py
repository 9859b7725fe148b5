"""A least-privilege login role for the application, in place of Supabase's role grants.

On Supabase the backend talks through PostgREST roles; on RDS it needs its own role so its
DATABASE_URL is not the master user's: it may read and write rows, use sequences and call
the app's functions (RPC), but not create, alter or drop anything. The cleaner drops grants
to Supabase's API roles, and a kept `ALTER DEFAULT PRIVILEGES … REVOKE EXECUTE ON FUNCTIONS
FROM PUBLIC` takes effect on the target, so EXECUTE is granted explicitly, like Supabase's
own default privileges give it to its API roles. Default privileges cover what the owner
adds later by migrations. Every statement is idempotent, so rerunning the command is safe; the password
is sent as a SCRAM verifier, never in clear.
"""

from __future__ import annotations

import base64

import asyncpg
import structlog
from scramp import ScramMechanism

from loaders.errors import MigrationError
from loaders.redaction import register_secret
from loaders.supabase import BOOKKEEPING_SCHEMA, EXTENSIONS_SCHEMA, MANAGED_SCHEMAS

log = structlog.get_logger(stage="app-role")
# PostgreSQL's own default (scram_iterations), so a verifier made here costs what one made by the server does.
SCRAM_ITERATIONS = 4096

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


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password`, computed here: a verifier
    given to CREATE/ALTER ROLE … PASSWORD is stored as is, so the password itself never
    travels to the server, and never lands in its log (`log_statement = ddl`) or in
    pg_stat_statements."""
    salt, stored_key, server_key, count = ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=iterations)
    b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${count}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def set_role_password(conn: asyncpg.Connection, name: str, password: str) -> bool:
    """Create the LOGIN role, or give the existing one `password` (as a verifier). Returns
    whether the role existed. Only a superuser may even restate NOSUPERUSER on an existing
    role, so an existing role only gets LOGIN and the password."""
    if not password:
        raise MigrationError(f"no password for application role {name!r}", "set APP_ROLE_PASSWORD (or pass a password)")
    register_secret(password)
    exists = bool(await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name))
    template = "ALTER ROLE %I LOGIN PASSWORD %L" if exists else (
        "CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L")
    await conn.execute(await conn.fetchval("SELECT format($1::text, $2::text, $3::text)",
                                           template, name, scram_verifier(password)))
    return exists


async def grant_app_role(conn: asyncpg.Connection, name: str, schemas: list[str]) -> None:
    """DML on every table and sequence of `schemas` (and default privileges for later ones):
    what `schema --repair` re-applies when grants went missing."""
    quoted_role = await conn.fetchval("SELECT quote_ident($1)", name)
    for schema in schemas:
        quoted_schema = await conn.fetchval("SELECT quote_ident($1)", schema)
        for grant in GRANTS:
            await conn.execute(grant.format(s=quoted_schema, r=quoted_role))
    # Queries of the app call extension functions by name (extensions.similarity(…),
    # extensions.uuid_generate_v4()), which needs USAGE on the schema, as on Supabase.
    if await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL", EXTENSIONS_SCHEMA):
        await conn.execute(f"GRANT USAGE ON SCHEMA {EXTENSIONS_SCHEMA} TO {quoted_role}")


async def ensure_app_role(conn: asyncpg.Connection, name: str, password: str, schemas: list[str] | None = None) -> list[str]:
    """Create or update the LOGIN role and (re)grant DML on every table and sequence of `schemas`.
    Returns the schemas granted."""
    schemas = schemas if schemas is not None else await app_schemas(conn)
    try:
        async with conn.transaction():
            await set_role_password(conn, name, password)
            await grant_app_role(conn, name, schemas)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"application role {name!r}: {exc}", "apply as the database owner with CREATEROLE (RDS master user)") from None
    log.info("application role ready", role=name, schemas=schemas)
    return schemas
