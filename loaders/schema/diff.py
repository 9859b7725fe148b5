"""Compare two databases' schemas from their catalogs: what a migration would silently lose.

Each side describes itself with the server's own deparsers (`format_type`,
`pg_get_constraintdef`, `pg_get_indexdef`, `pg_get_expr`, `pg_get_triggerdef`), so a PG 15
source and a PG 18 target describe equal objects with equal text. Objects that belong to
extensions, Supabase-managed schemas and our bookkeeping schema are left out, and so are
foreign keys to the schemas whose FKs the cleaner drops on purpose.

What the cleaner removed and reported (a view over `storage.objects`, a trigger calling
`net.http_post`) is listed as "removed on purpose", not as a mismatch: each catalog row
carries the unquoted identities it belongs to (its table, its function), matched against the
report's removals. Only unexplained differences stop a run. Functions are compared by
signature, views by definition; with an application role, its grants are checked on the
target (it must be able to use every schema, table and function it was given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg
import pglast
from pglast.stream import RawStream

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.supabase import BOOKKEEPING_SCHEMA, MANAGED_SCHEMAS

KINDS = ("relation", "column", "constraint", "index", "sequence", "enum", "trigger", "function", "view")
# What exists after pg_dump's pre-data section: indexes, PK/unique/FK, triggers and NOT VALID
# CHECKs (pg_dump emits those after the data) are compared after post-data.
PRE_DATA_KINDS = ("relation", "column", "check", "sequence", "enum", "function", "view")
DEFAULT_IGNORED_FK_SCHEMAS = ("auth", "storage")

_USER_NS = """
  SELECT n.oid FROM pg_namespace n
  WHERE NOT (n.nspname = ANY($1::text[])) AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
    AND ($2::text[] IS NULL OR n.nspname = ANY($2::text[]))
"""
_NOT_EXTENSION = "NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"

QUERIES: dict[str, str] = {
    "relation": f"""
        SELECT format('%I.%I', n.nspname, c.relname) AS name,
               CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                    WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END
               || CASE WHEN c.relispartition THEN ' partition ' || pg_get_expr(c.relpartbound, c.oid) ELSE '' END AS def,
               ARRAY[n.nspname || '.' || c.relname] AS owners
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r','p','v','m','f') AND n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "column": f"""
        SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname) AS name,
               format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               -- PG 17+ partitions inherit the parent's identity; the parent's column says it once.
               || CASE WHEN c.relispartition THEN '' ELSE CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity by default' ELSE '' END END
               || CASE a.attgenerated WHEN 's' THEN ' generated stored' WHEN 'v' THEN ' generated virtual' ELSE '' END
               || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') AS def,
               ARRAY[n.nspname || '.' || c.relname] AS owners
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f')
          AND n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "constraint": f"""
        SELECT format('%I.%I constraint %I', n.nspname, c.relname, k.conname) AS name,
               pg_get_constraintdef(k.oid) AS def, k.contype::text AS contype, k.convalidated AS validated,
               ARRAY[n.nspname || '.' || c.relname, n.nspname || '.' || c.relname || ' constraint ' || k.conname] AS owners
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class fc ON fc.oid = k.confrelid LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE k.contype IN ('p','u','c','f','x') AND n.oid IN ({_USER_NS})
          AND NOT (k.contype = 'f' AND fn.nspname = ANY($3::text[]))
          AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "index": f"""
        SELECT format('%I.%I', n.nspname, i.relname) AS name, pg_get_indexdef(x.indexrelid) AS def,
               ARRAY[n.nspname || '.' || t.relname, n.nspname || '.' || i.relname] AS owners
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
        JOIN pg_class t ON t.oid = x.indrelid
        WHERE n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='x.indrelid')}""",
    "sequence": f"""
        SELECT format('%I.%I', n.nspname, c.relname) AS name,
               format('%s start %s increment %s min %s max %s cache %s%s', format_type(s.seqtypid, NULL),
                      s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                      CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END) AS def,
               ARRAY[n.nspname || '.' || c.relname] AS owners
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "enum": f"""
        SELECT format('%I.%I', n.nspname, t.typname) AS name,
               string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) AS def,
               ARRAY[n.nspname || '.' || t.typname] AS owners
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='t.oid')}
        GROUP BY n.nspname, t.typname""",
    "trigger": f"""
        SELECT format('%I.%I trigger %I', n.nspname, c.relname, t.tgname) AS name, pg_get_triggerdef(t.oid) AS def,
               ARRAY[n.nspname || '.' || c.relname, n.nspname || '.' || c.relname || ' trigger ' || t.tgname,
                     fn.nspname || '.' || f.proname] AS owners
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_proc f ON f.oid = t.tgfoid JOIN pg_namespace fn ON fn.oid = f.pronamespace
        WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND n.oid IN ({_USER_NS})""",
    "function": f"""
        SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS name,
               format('%s returns %s language %s %s%s body %s',
                      CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
                      coalesce(pg_get_function_result(p.oid), 'void'), l.lanname, p.provolatile,
                      CASE WHEN p.prosecdef THEN ' security definer' ELSE '' END,
                      md5(CASE WHEN p.prosqlbody IS NULL THEN p.prosrc ELSE pg_get_functiondef(p.oid) END)) AS def,
               ARRAY[n.nspname || '.' || p.proname] AS owners
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
        WHERE p.prokind IN ('f', 'p') AND n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='p.oid')}""",
    "view": f"""
        SELECT format('%I.%I', n.nspname, c.relname) AS name, pg_get_viewdef(c.oid) AS def,
               ARRAY[n.nspname || '.' || c.relname] AS owners
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
}
# The application role's grants, checked on the target only (the source has no such role):
# every user schema usable, every table's DML, every function executable.
APP_ROLE_GAPS = f"""
    SELECT 'usage on schema ' || quote_ident(n.nspname) FROM pg_namespace n
    WHERE n.oid IN ({_USER_NS}) AND has_schema_privilege(current_user, n.oid, 'CREATE')
      AND NOT has_schema_privilege($3, n.oid, 'USAGE')
    UNION ALL
    SELECT lower(p.priv) || ' on ' || format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE')) AS p(priv)
    WHERE c.relkind IN ('r', 'p') AND n.oid IN ({_USER_NS}) AND has_schema_privilege(current_user, n.oid, 'CREATE')
      AND {_NOT_EXTENSION.format(oid='c.oid')} AND NOT has_table_privilege($3, c.oid, p.priv)
    UNION ALL
    SELECT 'execute on ' || format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prokind IN ('f', 'p') AND n.oid IN ({_USER_NS}) AND has_schema_privilege(current_user, n.oid, 'CREATE')
      AND {_NOT_EXTENSION.format(oid='p.oid')} AND NOT has_function_privilege($3, p.oid, 'EXECUTE')
    ORDER BY 1
"""


@dataclass(frozen=True)
class Difference:
    """One object that is missing, extra, or defined differently on the target."""

    kind: str
    object: str
    problem: str
    source: str | None
    target: str | None

    def __str__(self) -> str:
        if self.problem == "differs":
            return f"{self.kind} {self.object}: source {self.source!r}, target {self.target!r}"
        return f"{self.kind} {self.object}: {self.problem}"


@dataclass
class SchemaDiff:
    differences: list[Difference] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)
    # Source objects the cleaner removed and reported: explained, so not a mismatch.
    removed_on_purpose: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, object]:
        return {"equal": self.equal, "compared": self.compared, "differences": [asdict(d) for d in self.differences],
                "removed_on_purpose": [asdict(d) for d in self.removed_on_purpose]}


Catalog = dict[str, dict[str, str]]
# kind -> object name -> unquoted identities it belongs to (its table, its function …).
Owners = dict[str, dict[str, list[str]]]


async def read_catalog(
    conn: asyncpg.Connection, kinds: Iterable[str], schemas: list[str] | None, ignore_fks_to: list[str],
    owners: Owners | None = None,
) -> Catalog:
    excluded = sorted(MANAGED_SCHEMAS | {BOOKKEEPING_SCHEMA})
    catalog: Catalog = {}
    # Deparsers omit the schema of objects on the search_path; with only pg_catalog on it
    # both sides print `extensions.uuid_generate_v4()` whatever their default search_path.
    await conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)")
    for kind in dict.fromkeys(kinds):
        query = QUERIES["constraint" if kind == "check" else kind]
        args: list[object] = [excluded, schemas] + ([ignore_fks_to] if "$3" in query else [])
        rows = await conn.fetch(query, *args)
        if kind == "check":
            # A NOT VALID CHECK comes in pg_dump's post-data, after the rows: compared then.
            rows = [r for r in rows if r["contype"] == "c" and r["validated"]]
        catalog[kind] = {r["name"]: r["def"] for r in rows}
        if owners is not None:
            owners[kind] = {r["name"]: list(r["owners"]) for r in rows}
    return catalog


async def app_role_gaps(conn: asyncpg.Connection, role: str, schemas: list[str] | None) -> list[Difference]:
    """What the application role was meant to be able to use but cannot, on the target."""
    if not await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
        return [Difference("grant", f"role {role}", "missing on target", "application role", None)]
    excluded = sorted(MANAGED_SCHEMAS | {BOOKKEEPING_SCHEMA})
    rows = await conn.fetch(APP_ROLE_GAPS, excluded, schemas, role)
    return [Difference("grant", f"{role}: {r[0]}", "missing on target", "granted to the application role", None)
            for r in rows]


def compare(source: Catalog, target: Catalog, *, removed: Iterable[str] = (), owners: Owners | None = None) -> SchemaDiff:
    diff = SchemaDiff()
    explained = set(removed)
    for kind in source:
        src, tgt = source[kind], target.get(kind, {})
        diff.compared[kind] = len(src)
        label = "constraint" if kind == "check" else kind
        for name in sorted(src.keys() | tgt.keys()):
            if name not in tgt:
                missing = Difference(label, name, "missing on target", src[name], None)
                belongs = set((owners or {}).get(kind, {}).get(name, ()))
                if belongs & explained:
                    diff.removed_on_purpose.append(Difference(label, name, "removed on purpose", src[name], None))
                else:
                    diff.differences.append(missing)
            elif name not in src:
                diff.differences.append(Difference(label, name, "only on target", None, tgt[name]))
            elif src[name] != tgt[name]:
                diff.differences.append(Difference(label, name, "differs", src[name], tgt[name]))
    return diff


def view_query(viewdef: str) -> str:
    """A view's defining query as a statement of its own: pg_get_viewdef ends with `;`, so it is
    re-emitted by the parser (pglast), never cut as a string."""
    (statement,) = pglast.parse_sql(viewdef)
    return RawStream()(statement.stmt)


async def as_target_prints(conn: asyncpg.Connection, source_views: dict[str, str],
                           target_views: dict[str, str]) -> dict[str, str]:
    """Source view definitions as the target server prints them. pg_get_viewdef's text changes
    between major versions (PG 16 stopped qualifying columns: `events.id` became `id`), so a
    definition that differs in text is re-created as a temporary view on the target, printed
    there, and compared in that form; all of it inside a transaction that is rolled back."""
    differing = {name: sql for name, sql in source_views.items()
                 if name in target_views and sql != target_views[name]}
    if not differing:
        return source_views
    printed = dict(source_views)
    tx = conn.transaction()
    await tx.start()
    try:
        # printed as read_catalog prints: only pg_catalog on the search_path (temp objects still resolve)
        await conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        for name, sql in differing.items():
            try:
                async with conn.transaction():  # a savepoint: one view that can't be re-created is just "differs"
                    await conn.execute(f"CREATE TEMP VIEW supabase_to_rds_probe AS {view_query(sql)}")
                    printed[name] = await conn.fetchval("SELECT pg_get_viewdef('pg_temp.supabase_to_rds_probe'::regclass)")
                    await conn.execute("DROP VIEW pg_temp.supabase_to_rds_probe")
            except (asyncpg.PostgresError, pglast.parser.ParseError):
                continue
    finally:
        await tx.rollback()
    return printed


async def schema_catalog(
    url: DatabaseUrl, *, schemas: Iterable[str] | None = None,
    ignore_fks_to: Iterable[str] = DEFAULT_IGNORED_FK_SCHEMAS, kinds: Iterable[str] = KINDS,
    owners: Owners | None = None,
) -> Catalog:
    """One side's user schema as plain data (JSON-serialisable, so a migrate can record it)."""
    async with connection(url) as conn:
        return await read_catalog(conn, list(kinds), sorted(schemas) if schemas is not None else None,
                                  sorted(ignore_fks_to), owners)


async def diff_schemas(
    source: DatabaseUrl, target: DatabaseUrl, *, schemas: Iterable[str] | None = None,
    ignore_fks_to: Iterable[str] = DEFAULT_IGNORED_FK_SCHEMAS, kinds: Iterable[str] = KINDS,
    removed: Iterable[str] = (), app_role: str | None = None,
) -> SchemaDiff:
    """Differences between the source's and the target's user schemas (both read concurrently);
    source objects in `removed` (the cleaner's report) are listed as removed on purpose."""
    wanted = list(kinds)
    catalogs: dict[str, Catalog] = {}
    owners: Owners = {}
    gaps: list[Difference] = []

    async def read(side: str, url: DatabaseUrl) -> None:
        catalogs[side] = await schema_catalog(url, schemas=schemas, ignore_fks_to=ignore_fks_to, kinds=wanted,
                                              owners=owners if side == "source" else None)

    async def grants() -> None:
        async with connection(target) as conn:
            gaps.extend(await app_role_gaps(conn, app_role, sorted(schemas) if schemas is not None else None))  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, "source", source)
        tg.start_soon(read, "target", target)
        if app_role:
            tg.start_soon(grants)
    if "view" in catalogs["source"] and "view" in catalogs["target"]:
        async with connection(target) as conn:
            catalogs["source"]["view"] = await as_target_prints(conn, catalogs["source"]["view"],
                                                                catalogs["target"]["view"])
    diff = compare(catalogs["source"], catalogs["target"], removed=removed, owners=owners)
    diff.differences += gaps
    if app_role:
        diff.compared["grant"] = len(gaps)
    return diff
