"""What the target needs before the cleaned schema can run on it.

Supabase databases come with an `extensions` schema, a search_path that includes it, the
PostgREST roles and `auth.uid()`. Cleaned statements still lean on some of that (a column
default `extensions.uuid_generate_v4()`, a kept policy `TO authenticated`), so the target
gets the same scaffolding first — each piece only when the cleaned schema needs it, and all
of it runnable by a non-superuser with CREATEROLE (RDS's master user).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg
from pglast import ast, parser

from loaders.errors import MigrationError
from loaders.schema.clean import Change, CleanStatement, split_statements, walk_nodes
from loaders import bookkeeping
from loaders.schema.extensions import extension_catalog, rds_offers
from loaders.supabase import API_ROLES, EXTENSIONS_SCHEMA

SETUP = "target setup"
# Supabase's database search_path, so unqualified calls to extension functions resolve.
SEARCH_PATH = f'"$user", public, {EXTENSIONS_SCHEMA}'

# Servers without contrib (the embedded test server; RDS always has both) still get the
# functions apps call, backed by core `gen_random_uuid()` (PostgreSQL 13+).
EXTENSION_FALLBACKS: dict[str, tuple[str, ...]] = {
    "uuid-ossp": ("uuid_generate_v4",),
    "pgcrypto": ("gen_random_uuid",),
}


def _statement(sql: str) -> CleanStatement:
    return CleanStatement(sql, SETUP, 0, "SETUP")


def base_setup() -> list[CleanStatement]:
    """Schemas our SQL and the cleaned schema rely on, plus Supabase's search_path for the
    application's sessions (only the database owner may set it, so others skip it)."""
    return [
        _statement(f"CREATE SCHEMA IF NOT EXISTS {EXTENSIONS_SCHEMA}"),
        _statement(bookkeeping.CREATE_SCHEMA),
        _statement(
            "DO $setup$ BEGIN\n"
            "  IF EXISTS (SELECT FROM pg_database WHERE datname = current_database()\n"
            "             AND pg_get_userbyid(datdba) = current_user) THEN\n"
            f"    EXECUTE format('ALTER DATABASE %I SET search_path TO {SEARCH_PATH}', current_database());\n"
            "  END IF;\n"
            "END $setup$"
        ),
    ]


def auth_shim() -> list[CleanStatement]:
    text = resources.files("loaders.schema").joinpath("auth_shim.sql").read_text()
    return split_statements(text, source_name="auth_shim.sql")


def api_roles(roles: Iterable[str]) -> list[CleanStatement]:
    """NOLOGIN roles the kept policies and grants name; created only if missing (roles are
    cluster-wide and may already exist), which CREATEROLE suffices for."""
    wanted = sorted(set(roles) & API_ROLES)
    if not wanted:
        return []
    body = "".join(
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} NOLOGIN NOINHERIT; END IF;\n"
        for r in wanted
    )
    return [_statement(f"DO $roles$ BEGIN\n{body}END $roles$")]


def _called_functions(statement: CleanStatement) -> Iterable[tuple[str | None, str]]:
    for raw in parser.parse_sql(statement.sql):
        for node in walk_nodes(raw.stmt):
            if isinstance(node, ast.FuncCall):
                names = [n.sval for n in node.funcname]
                yield (names[0] if len(names) > 1 else None), names[-1]


def extension_needs(
    statements: Iterable[CleanStatement], body_calls: Iterable[tuple[str | None, str]] = (),
    languages: dict[str, list[str]] | None = None,
) -> dict[str, set[str]]:
    """Extension -> what needs it: kept CREATE EXTENSION statements (`*`), functions of
    Supabase's preinstalled extensions called in statements or only inside function bodies
    (`gen_random_bytes`), and procedural languages of kept functions (plv8 …)."""
    catalog = extension_catalog()
    needs: dict[str, set[str]] = {}
    calls = set(body_calls)
    for statement in statements:
        found = extension_of(statement) if statement.kind == "CREATE EXTENSION" else None
        if found:
            needs.setdefault(found[0], set()).add("*")
            continue
        calls |= set(_called_functions(statement))
    for schema, name in calls:
        extension = catalog.preinstalled_extension(schema, name)
        if extension:
            needs.setdefault(extension, set()).add(name)
    for language, functions in (languages or {}).items():
        needs.setdefault(language, set()).update(functions)
    return needs


def preinstalled_extensions(needs: dict[str, set[str]]) -> list[CleanStatement]:
    """CREATE EXTENSION for the preinstalled extensions the schema calls but never creates."""
    return [CleanStatement(f'CREATE EXTENSION IF NOT EXISTS "{name}" WITH SCHEMA {EXTENSIONS_SCHEMA}',
                           SETUP, 0, "CREATE EXTENSION")
            for name, why in sorted(needs.items()) if "*" not in why and name in extension_catalog().preinstalled.values()]


def missing_extensions(needs: dict[str, set[str]], server: "TargetServer") -> list[str]:
    """One phrase per needed extension this server cannot provide (nor a fallback cover)."""
    missing = []
    for name, why in sorted(needs.items()):
        if name in server.extensions:
            continue
        called = why - {"*"}
        if name in EXTENSION_FALLBACKS and called <= set(EXTENSION_FALLBACKS[name]):
            continue
        offered = "offered by RDS" if rds_offers(name) else "not offered by RDS either"
        missing.append(f"{name} ({offered}; needed by {', '.join(sorted(called)) or 'CREATE EXTENSION'})")
    return missing


def precheck_extensions(needs: dict[str, set[str]], server: "TargetServer") -> str:
    """Fail before any change when the target lacks an extension the kept schema needs,
    naming all of them; otherwise the line saying what was checked."""
    missing = missing_extensions(needs, server)
    if missing:
        raise MigrationError(
            f"extension pre-check: the target lacks {len(missing)} extension(s) the schema needs: {'; '.join(missing)} "
            "(nothing was changed)",
            "on RDS: use an engine version that offers them (rds.allowed_extensions must allow them); elsewhere "
            "install them on the target; or --skip the objects that need them",
        )
    return f"extension pre-check: {', '.join(sorted(needs)) or 'none needed'} — available on the target"


def extension_of(statement: CleanStatement) -> tuple[str, str] | None:
    """(extension, schema) of a kept CREATE EXTENSION statement."""
    node = parser.parse_sql(statement.sql)[0].stmt
    if not isinstance(node, ast.CreateExtensionStmt):
        return None
    schema = next((o.arg.sval for o in node.options or () if o.defname == "schema"), "public")
    return node.extname, schema


@dataclass(frozen=True)
class TargetServer:
    """What the target server offers: installable extensions and known settings."""

    extensions: frozenset[str]
    settings: frozenset[str]

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> "TargetServer":
        extensions = await conn.fetch("SELECT name FROM pg_available_extensions")
        settings = await conn.fetch("SELECT name FROM pg_settings")
        return cls(frozenset(r[0] for r in extensions), frozenset(r[0] for r in settings))


def unknown_setting(stmt: CleanStatement, server: TargetServer) -> str | None:
    """The parameter a SET names if this server doesn't know it (pg_dump 18 always writes
    `SET transaction_timeout`, which PostgreSQL 16 and older reject)."""
    node = parser.parse_sql(stmt.sql)[0].stmt
    if isinstance(node, ast.VariableSetStmt) and node.name and "." not in node.name:
        return node.name if node.name.lower() not in server.settings else None
    return None


def adapt_to_target(
    statements: Sequence[CleanStatement], server: TargetServer
) -> tuple[list[CleanStatement], list[Change]]:
    """Drop SETs of parameters this server lacks; swap CREATE EXTENSION of an extension it
    lacks for fallback functions, or stop with a fix when there is none."""
    out: list[CleanStatement] = []
    changes: list[Change] = []
    for stmt in statements:
        setting = unknown_setting(stmt, server) if stmt.kind == "SET" else None
        if setting:
            changes.append(Change(stmt.file, stmt.line, stmt.kind, f"setting {setting}",
                                  "parameter unknown to the target server version", "dropped"))
            continue
        found = extension_of(stmt) if stmt.kind == "CREATE EXTENSION" else None
        if found is None or found[0] in server.extensions:
            out.append(stmt)
            continue
        name, schema = found
        if name not in EXTENSION_FALLBACKS:
            raise MigrationError(
                f"{stmt.file}:{stmt.line}: extension {name} is not available on the target server",
                "install it on the target (on RDS: check the engine version and rds.allowed_extensions)",
            )
        for function in EXTENSION_FALLBACKS[name]:
            out.append(CleanStatement(
                f'CREATE OR REPLACE FUNCTION "{schema}".{function}() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE '
                "AS 'SELECT pg_catalog.gen_random_uuid()'",
                stmt.file, stmt.line, "CREATE FUNCTION",
            ))
        changes.append(Change(
            stmt.file, stmt.line, stmt.kind, f"extension {name}",
            f"not installed on this server; {', '.join(EXTENSION_FALLBACKS[name])}() provided in schema {schema} "
            "via core gen_random_uuid()", "rewritten",
        ))
    return out, changes
