"""Compare two databases' schemas from their catalogs: what a migration would silently lose.

Each side describes itself with the server's own deparsers (`format_type`,
`pg_get_constraintdef`, `pg_get_indexdef`, `pg_get_expr`, `pg_get_triggerdef`), so a PG 15
source and a PG 18 target describe equal objects with equal text. Objects that belong to
extensions, Supabase-managed schemas and our bookkeeping schema are left out, and so are
foreign keys to the schemas whose FKs the cleaner drops on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import anyio
import asyncpg

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.supabase import BOOKKEEPING_SCHEMA, MANAGED_SCHEMAS

KINDS = ("relation", "column", "constraint", "index", "sequence", "enum", "trigger")
# What exists after pg_dump's pre-data section (indexes, PK/unique/FK and triggers come later).
PRE_DATA_KINDS = ("relation", "column", "check", "sequence", "enum")
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
               || CASE WHEN c.relispartition THEN ' partition ' || pg_get_expr(c.relpartbound, c.oid) ELSE '' END AS def
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r','p','v','m','f') AND n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "column": f"""
        SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname) AS name,
               format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               -- PG 17+ partitions inherit the parent's identity; the parent's column says it once.
               || CASE WHEN c.relispartition THEN '' ELSE CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity by default' ELSE '' END END
               || CASE a.attgenerated WHEN 's' THEN ' generated stored' WHEN 'v' THEN ' generated virtual' ELSE '' END
               || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') AS def
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f')
          AND n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "constraint": f"""
        SELECT format('%I.%I constraint %I', n.nspname, c.relname, k.conname) AS name,
               pg_get_constraintdef(k.oid) AS def, k.contype::text AS contype
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class fc ON fc.oid = k.confrelid LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE k.contype IN ('p','u','c','f','x') AND n.oid IN ({_USER_NS})
          AND NOT (k.contype = 'f' AND fn.nspname = ANY($3::text[]))
          AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "index": f"""
        SELECT format('%I.%I', n.nspname, i.relname) AS name, pg_get_indexdef(x.indexrelid) AS def
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='x.indrelid')}""",
    "sequence": f"""
        SELECT format('%I.%I', n.nspname, c.relname) AS name,
               format('%s start %s increment %s min %s max %s cache %s%s', format_type(s.seqtypid, NULL),
                      s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                      CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END) AS def
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='c.oid')}""",
    "enum": f"""
        SELECT format('%I.%I', n.nspname, t.typname) AS name,
               string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) AS def
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.oid IN ({_USER_NS}) AND {_NOT_EXTENSION.format(oid='t.oid')}
        GROUP BY n.nspname, t.typname""",
    "trigger": f"""
        SELECT format('%I.%I trigger %I', n.nspname, c.relname, t.tgname) AS name, pg_get_triggerdef(t.oid) AS def
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND n.oid IN ({_USER_NS})""",
}


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

    @property
    def equal(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, object]:
        return {"equal": self.equal, "compared": self.compared, "differences": [asdict(d) for d in self.differences]}


Catalog = dict[str, dict[str, str]]


async def read_catalog(
    conn: asyncpg.Connection, kinds: Iterable[str], schemas: list[str] | None, ignore_fks_to: list[str]
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
            rows = [r for r in rows if r["contype"] == "c"]
        catalog[kind] = {r["name"]: r["def"] for r in rows}
    return catalog


def compare(source: Catalog, target: Catalog) -> SchemaDiff:
    diff = SchemaDiff()
    for kind in source:
        src, tgt = source[kind], target.get(kind, {})
        diff.compared[kind] = len(src)
        label = "constraint" if kind == "check" else kind
        for name in sorted(src.keys() | tgt.keys()):
            if name not in tgt:
                diff.differences.append(Difference(label, name, "missing on target", src[name], None))
            elif name not in src:
                diff.differences.append(Difference(label, name, "only on target", None, tgt[name]))
            elif src[name] != tgt[name]:
                diff.differences.append(Difference(label, name, "differs", src[name], tgt[name]))
    return diff


async def schema_catalog(
    url: DatabaseUrl, *, schemas: Iterable[str] | None = None,
    ignore_fks_to: Iterable[str] = DEFAULT_IGNORED_FK_SCHEMAS, kinds: Iterable[str] = KINDS,
) -> Catalog:
    """One side's user schema as plain data (JSON-serialisable, so a migrate can record it)."""
    async with connection(url) as conn:
        return await read_catalog(conn, list(kinds), sorted(schemas) if schemas is not None else None,
                                  sorted(ignore_fks_to))


async def diff_schemas(
    source: DatabaseUrl, target: DatabaseUrl, *, schemas: Iterable[str] | None = None,
    ignore_fks_to: Iterable[str] = DEFAULT_IGNORED_FK_SCHEMAS, kinds: Iterable[str] = KINDS,
) -> SchemaDiff:
    """Differences between the source's and the target's user schemas (both read concurrently)."""
    wanted = list(kinds)
    catalogs: dict[str, Catalog] = {}

    async def read(side: str, url: DatabaseUrl) -> None:
        catalogs[side] = await schema_catalog(url, schemas=schemas, ignore_fks_to=ignore_fks_to, kinds=wanted)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, "source", source)
        tg.start_soon(read, "target", target)
    return compare(catalogs["source"], catalogs["target"])
