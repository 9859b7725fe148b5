"""Catalog: what there is to copy, read from the server's own catalog (never from parsed SQL).

Decisions that shape every later step:
- Partitioned tables are copied leaf by leaf (`relkind = 'r'`), the partitioned parent never:
  a leaf is a real heap, so it can be split into ctid ranges and copied in parallel, and
  reading `FROM ONLY leaf` can't return a row twice. Copying the parent once would route
  every row through tuple routing on the target and forbid both ctid splitting and FREEZE.
- Every read says `FROM ONLY`, so old-style inheritance children are not copied twice.
- Generated columns are left out of column lists (the target computes them); identity
  columns stay in: COPY FROM writes the given values even into GENERATED ALWAYS columns
  (COPY has no OVERRIDING clause and needs none — tests prove the values survive).
- Views are skipped, materialized views refreshed after the load, sequences listed with
  how they are owned (serial / identity / standalone) so each one is set.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import asyncpg

from loaders.errors import MigrationError
from loaders.supabase import EXCLUDED_SCHEMAS

FIRST_NORMAL_OID = 16384  # objects below this OID are built into the server: same OID on every major


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): what the target's column must also say
    binary_safe: bool  # binary COPY representation does not embed server-local OIDs
    text_only: bool = False  # OID alias types, aclitem, no send/receive: text even under --format binary


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    ident: str  # quoted schema.name, produced by the server's format('%I.%I')
    columns: tuple[Column, ...]
    bytes: int
    blocks: int
    est_rows: int
    partition_of: str | None = None

    @property
    def key(self) -> str:
        """The name used in state, reports and logs."""
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def select_list(self) -> str:
        return ", ".join(quote_ident(c.name) for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def binary_safe(self) -> bool:
        return all(c.binary_safe for c in self.columns)

    @property
    def text_only(self) -> list[str]:
        """Columns that can only travel as text (one is enough to send the whole table as text)."""
        return [c.name for c in self.columns if c.text_only]


@dataclass(frozen=True)
class Sequence:
    schema: str
    name: str
    ident: str
    kind: str  # "identity", "serial" or "standalone"
    owned_by: str | None = None  # schema.table.column


@dataclass(frozen=True)
class MatView:
    schema: str
    name: str
    ident: str
    populated: bool


@dataclass
class Catalog:
    tables: list[Table] = field(default_factory=list)
    sequences: list[Sequence] = field(default_factory=list)
    matviews: list[MatView] = field(default_factory=list)
    views: list[str] = field(default_factory=list)  # skipped: no data of their own

    def table(self, key: str) -> Table | None:
        return next((t for t in self.tables if t.key == key), None)


def quote_ident(name: str) -> str:
    """Identifier quoting (the SQL-standard rule, same as the server's quote_ident with force)."""
    return '"' + name.replace('"', '""') + '"'


_SCHEMAS_SQL = """
SELECT nspname FROM pg_namespace
WHERE nspname <> ALL($1::text[]) AND nspname NOT LIKE 'pg\\_%'
ORDER BY nspname
"""

_TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name, format('%I.%I', n.nspname, c.relname) AS ident,
       pg_relation_size(c.oid) AS bytes,
       pg_relation_size(c.oid) / current_setting('block_size')::bigint AS blocks,
       greatest(c.reltuples, 0)::bigint AS est_rows,
       (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i
          JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE i.inhrelid = c.oid AND c.relispartition) AS partition_of,
       ARRAY(SELECT a.attname FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
              ORDER BY a.attnum) AS columns,
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
              ORDER BY a.attnum) AS types,
       ARRAY(SELECT a.atttypid::int FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
              ORDER BY a.attnum) AS type_oids
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = ANY($1::text[])
  -- extension members (e.g. PostGIS's spatial_ref_sys in public) are filled by CREATE EXTENSION
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY pg_relation_size(c.oid) DESC, n.nspname, c.relname
"""

# A type is binary-safe when its binary form is defined by the server itself and carries no
# OID that differs between servers: built-in scalar and range types, enums (sent as their
# label), domains over safe types, and arrays of built-in types only (an array's or composite's
# binary form names its element types' server-local OIDs; PG 18 was seen to accept a mismatch,
# older targets reject it, so it is not relied on). Extension types go as text: their binary
# form is the extension's own and some (e.g. seg) have none.
#
# Some built-in types must go as text whatever `--format` says (`text_only`): the OID alias
# types (regclass, regtype, regrole, …) send the object's server-local OID in binary — the
# target would receive the number of a different object or none — while their text form is
# the object's name, resolved again by the target; aclitem (and anything else without
# send/receive functions) has no binary form at all. Domains and arrays are followed down to
# their base and element types, so `regclass[]` or a domain over aclitem is decided the same way.
OID_ALIAS_TYPES: tuple[str, ...] = (
    "regclass", "regcollation", "regconfig", "regdictionary", "regnamespace", "regoper", "regoperator",
    "regproc", "regprocedure", "regrole", "regtype",
)
_BINARY_SAFE_SQL = """
WITH RECURSIVE base AS (
  SELECT t.oid AS start, t.oid, t.typtype, t.typbasetype, t.typelem, t.typcategory, t.typsend, t.typreceive,
         t.typnamespace, t.typname
  FROM pg_type t WHERE t.oid = ANY($1::oid[])
  UNION ALL
  SELECT b.start, d.oid, d.typtype, d.typbasetype, d.typelem, d.typcategory, d.typsend, d.typreceive,
         d.typnamespace, d.typname
  FROM base b JOIN pg_type d
    ON d.oid = CASE WHEN b.typtype = 'd' THEN b.typbasetype
                    WHEN b.typcategory = 'A' AND b.typelem <> 0 THEN b.typelem END
),
judged AS (
  SELECT start, oid, typtype,
         (typsend::oid = 0 OR typreceive::oid = 0
          OR (typnamespace = 'pg_catalog'::regnamespace AND typname::text = ANY($3::text[]))) AS text_only
  FROM base
)
SELECT start::int AS oid,
       bool_and(NOT text_only AND (typtype IN ('d', 'e') OR (typtype IN ('b', 'r', 'm') AND oid < $2))) AS safe,
       bool_or(text_only) AS text_only
FROM judged GROUP BY start
"""

_SEQUENCES_SQL = """
SELECT n.nspname AS schema, s.relname AS name, format('%I.%I', n.nspname, s.relname) AS ident,
       d.deptype::text AS deptype, tn.nspname AS owner_schema, t.relname AS owner_table,
       CASE WHEN d.refobjid IS NOT NULL
            THEN format('%I.%I.%I', tn.nspname, t.relname, a.attname) END AS owned_by
FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE s.relkind = 'S' AND n.nspname = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = s.oid
                  AND e.deptype = 'e')
ORDER BY 1, 2
"""

_OTHER_RELATIONS_SQL = """
SELECT n.nspname AS schema, c.relname AS name, format('%I.%I', n.nspname, c.relname) AS ident,
       c.relkind::text AS kind, c.relispopulated AS populated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1::text[])
ORDER BY 1, 2
"""


# Per table: can the current role read it at all, and would row-level security filter it?
_READABILITY_SQL = """
SELECT format('%s.%s', n.nspname, c.relname) AS key,
       has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS readable,
       c.relrowsecurity
         AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
         AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS filtered
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest($1::text[], $2::text[]) AS t(schema, name) ON t.schema = n.nspname AND t.name = c.relname
ORDER BY 1
"""


async def refuse_unreadable(conn: asyncpg.Connection, tables: Seq[Table], user: str) -> None:
    """A table the role can't read fails the copy late; one RLS filters would lose rows silently."""
    rows = await conn.fetch(_READABILITY_SQL, [t.schema for t in tables], [t.name for t in tables])
    unreadable = [r["key"] for r in rows if not r["readable"]]
    if unreadable:
        raise MigrationError(
            f"source role {user!r} may not read {', '.join(unreadable)}",
            "connect as the tables' owner (on Supabase: the postgres user) or GRANT USAGE on the schema "
            "and SELECT on the tables",
        )
    filtered = [r["key"] for r in rows if r["filtered"]]
    if filtered:
        raise MigrationError(
            f"source role {user!r} is subject to row-level security on {', '.join(filtered)}: "
            "reading it would silently miss rows",
            "connect as the tables' owner or a role with BYPASSRLS (on Supabase: the postgres user)",
        )


async def missing_schemas(conn: asyncpg.Connection, schemas: Seq[str]) -> list[str]:
    present = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", list(schemas))}
    return [s for s in schemas if s not in present]


async def user_schemas(conn: asyncpg.Connection) -> list[str]:
    """Every schema a Supabase user owns data in: all but system, Supabase-managed and ours."""
    rows = await conn.fetch(_SCHEMAS_SQL, sorted(EXCLUDED_SCHEMAS))
    return [r["nspname"] for r in rows]


async def _binary_safety(conn: asyncpg.Connection, type_oids: set[int]) -> dict[int, tuple[bool, bool]]:
    """type OID → (binary-safe, text-only)."""
    rows = await conn.fetch(_BINARY_SAFE_SQL, sorted(type_oids), FIRST_NORMAL_OID, list(OID_ALIAS_TYPES))
    return {r["oid"]: (bool(r["safe"]), bool(r["text_only"])) for r in rows}


def _wanted(key: str, name: str, tables: Seq[str] | None) -> bool:
    """`--tables` entries may be `schema.table` or a bare table name."""
    return not tables or key in tables or name in tables


async def read_catalog(
    conn: asyncpg.Connection, schemas: Seq[str] | None = None, tables: Seq[str] | None = None
) -> Catalog:
    """The catalog of the selected schemas (default: every user schema), optionally narrowed to tables."""
    selected = list(schemas) if schemas else await user_schemas(conn)
    rows = [r for r in await conn.fetch(_TABLES_SQL, selected) if _wanted(f"{r['schema']}.{r['name']}", r["name"], tables)]
    safety = await _binary_safety(conn, {oid for r in rows for oid in r["type_oids"]})
    catalog = Catalog()
    for r in rows:
        columns = tuple(
            Column(name, typ, *safety.get(oid, (False, False)))
            for name, typ, oid in zip(r["columns"], r["types"], r["type_oids"])
        )
        catalog.tables.append(Table(
            r["schema"], r["name"], r["ident"], columns, r["bytes"], r["blocks"], r["est_rows"], r["partition_of"],
        ))
    kinds = {"i": "identity", "a": "serial"}
    for r in await conn.fetch(_SEQUENCES_SQL, selected):
        owner = r["owner_table"]
        if tables and (owner is None or not _wanted(f"{r['owner_schema']}.{owner}", owner, tables)):
            continue  # --tables narrows sequences to the ones those tables own
        catalog.sequences.append(Sequence(r["schema"], r["name"], r["ident"], kinds.get(r["deptype"], "standalone"), r["owned_by"]))
    for r in await conn.fetch(_OTHER_RELATIONS_SQL, selected):
        if r["kind"] == "m":
            catalog.matviews.append(MatView(r["schema"], r["name"], r["ident"], r["populated"]))
        else:
            catalog.views.append(f"{r['schema']}.{r['name']}")
    return catalog
