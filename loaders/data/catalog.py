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

from collections.abc import Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import asyncpg
from pglast import parse_sql
from pglast.ast import DropStmt, String, TruncateStmt
from pglast.enums import DropBehavior, ObjectType
from pglast.parser import ParseError
from pglast.stream import maybe_double_quote_name

from loaders.errors import MigrationError
from loaders.supabase import BOOKKEEPING_SCHEMA, EXCLUDED_SCHEMAS

FIRST_NORMAL_OID = 16384  # objects below this OID are built into the server: same OID on every major


def table_key(schema: str, name: str) -> str:
    """The one spelling of a table's identity in state, reports and logs: the quoted pair, as
    `format('%I.%I')` prints it. A dotted join can't be used: `a."b.c"` and `"a.b".c` would both
    be `a.b.c`. Computed here (pglast's keyword list) rather than by each server, so PG 15 and
    PG 18 — whose keyword lists differ — can never spell one table two ways."""
    return f"{maybe_double_quote_name(schema)}.{maybe_double_quote_name(name)}"


@dataclass(frozen=True, order=True)
class TableRef:
    """A table as a user names it: `schema.table`, or a bare `table` meaning that name in every
    selected schema. Parsed by the PostgreSQL grammar, so quoting and case folding are SQL's."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableRef:
        refs = parse_table_list(text)
        if len(refs) != 1:
            raise ValueError(f"{text!r} names {len(refs)} tables, not one")
        return refs[0]

    @classmethod
    def of(cls, value: TableRef | str) -> TableRef:
        return value if isinstance(value, TableRef) else cls.parse(value)

    def matches(self, schema: str, name: str) -> bool:
        return self.name == name and self.schema in (None, schema)

    def __str__(self) -> str:
        return maybe_double_quote_name(self.name) if self.schema is None else table_key(self.schema, self.name)


def parse_table_list(text: str) -> tuple[TableRef, ...]:
    """`--tables` as SQL names: `'"a.b".c, a."b,c"'` is two tables, `Public.Orders` is public.orders.
    The text is parsed (never run) as the object list of a TRUNCATE, the grammar's plain list of
    qualified table names; anything else in it (a second statement, ONLY, a database part) is refused."""
    try:
        statements = parse_sql(f"TRUNCATE {text}")
    except ParseError as exc:
        raise ValueError(f"{text!r} is not a list of table names ({exc})") from None
    stmt = statements[0].stmt if len(statements) == 1 else None
    if (not isinstance(stmt, TruncateStmt) or stmt.restart_seqs or stmt.behavior != DropBehavior.DROP_RESTRICT
            or any(not r.inh or r.catalogname for r in stmt.relations)):
        raise ValueError(f"{text!r} is not a plain list of table names")
    return tuple(TableRef(r.schemaname, r.relname) for r in stmt.relations)


def parse_schema_list(text: str) -> tuple[str, ...]:
    """`--schemas` as SQL names, parsed (never run) as the list of a DROP SCHEMA."""
    try:
        statements = parse_sql(f"DROP SCHEMA {text}")
    except ParseError as exc:
        raise ValueError(f"{text!r} is not a list of schema names ({exc})") from None
    stmt = statements[0].stmt if len(statements) == 1 else None
    if (not isinstance(stmt, DropStmt) or stmt.removeType != ObjectType.OBJECT_SCHEMA
            or stmt.behavior != DropBehavior.DROP_RESTRICT or stmt.missing_ok
            or not all(isinstance(o, String) for o in stmt.objects)):
        raise ValueError(f"{text!r} is not a plain list of schema names")
    return tuple(o.sval for o in stmt.objects)


@dataclass(frozen=True)
class Selection:
    """What the user asked for: schemas (None: every user schema) and tables (None: all of them).
    Built once at the edge; every command resolves it against the source the same way."""

    schemas: tuple[str, ...] | None = None
    tables: tuple[TableRef, ...] | None = None

    @classmethod
    def of(cls, schemas: Iterable[str] | None = None, tables: Iterable[TableRef | str] | None = None) -> Selection:
        return cls(tuple(schemas) if schemas else None, tuple(TableRef.of(t) for t in tables) if tables else None)

    @property
    def explicit(self) -> bool:
        return bool(self.schemas or self.tables)

    def wants(self, schema: str, name: str, ancestors: Iterable[tuple[str, str]] = ()) -> bool:
        """A partitioned parent named in --tables selects its leaves (they hold its rows)."""
        if not self.tables:
            return True
        pairs = [(schema, name), *ancestors]
        return any(ref.matches(s, n) for ref in self.tables for s, n in pairs)

    def describe(self) -> str:
        parts = []
        if self.schemas:
            parts.append("schemas " + ", ".join(maybe_double_quote_name(s) for s in self.schemas))
        if self.tables:
            parts.append("tables " + ", ".join(str(t) for t in self.tables))
        return " and ".join(parts) or "all user schemas"


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
    ancestors: tuple[tuple[str, str], ...] = ()  # partitioned parents, nearest first

    @property
    def key(self) -> str:
        """The name used in state, reports and logs (see `table_key`)."""
        return table_key(self.schema, self.name)

    @property
    def ref(self) -> TableRef:
        return TableRef(self.schema, self.name)

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

    def table(self, which: TableRef | str) -> Table | None:
        """By (schema, name) — a `TableRef`, or a key as `table_key` spells it."""
        if isinstance(which, str):
            return next((t for t in self.tables if t.key == which), None)
        return next((t for t in self.tables if (t.schema, t.name) == (which.schema, which.name)), None)


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
       ARRAY(SELECT pn.nspname FROM pg_partition_ancestors(c.oid) WITH ORDINALITY AS a(relid, n)
               JOIN pg_class p ON p.oid = a.relid JOIN pg_namespace pn ON pn.oid = p.relnamespace
              WHERE a.relid <> c.oid ORDER BY a.n) AS ancestor_schemas,
       ARRAY(SELECT p.relname FROM pg_partition_ancestors(c.oid) WITH ORDINALITY AS a(relid, n)
               JOIN pg_class p ON p.oid = a.relid
              WHERE a.relid <> c.oid ORDER BY a.n) AS ancestor_names,
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
SELECT n.nspname AS schema, c.relname AS name,
       has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS readable,
       c.relrowsecurity
         AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
         AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS filtered
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest($1::text[], $2::text[]) AS t(schema, name) ON t.schema = n.nspname AND t.name = c.relname
ORDER BY 1, 2
"""


async def refuse_unreadable(conn: asyncpg.Connection, tables: Seq[Table], user: str) -> None:
    """A table the role can't read fails the copy late; one RLS filters would lose rows silently."""
    rows = await conn.fetch(_READABILITY_SQL, [t.schema for t in tables], [t.name for t in tables])
    unreadable = [table_key(r["schema"], r["name"]) for r in rows if not r["readable"]]
    if unreadable:
        raise MigrationError(
            f"source role {user!r} may not read {', '.join(unreadable)}",
            "connect as the tables' owner (on Supabase: the postgres user) or GRANT USAGE on the schema "
            "and SELECT on the tables",
        )
    filtered = [table_key(r["schema"], r["name"]) for r in rows if r["filtered"]]
    if filtered:
        raise MigrationError(
            f"source role {user!r} is subject to row-level security on {', '.join(filtered)}: "
            "reading it would silently miss rows",
            "connect as the tables' owner or a role with BYPASSRLS (on Supabase: the postgres user)",
        )


# Per selected table on the target: does it exist, may the role own-level alter it (DISABLE
# TRIGGER, DROP INDEX/CONSTRAINT) and insert into it; and may it create what is missing.
_WRITABILITY_SQL = """
SELECT t.schema, t.name, c.oid IS NOT NULL AS exists, n.oid IS NOT NULL AS schema_exists,
       coalesce(pg_has_role(c.relowner, 'USAGE') AND has_table_privilege(c.oid, 'INSERT')
                AND has_table_privilege(c.oid, 'TRUNCATE'), false) AS writable,
       coalesce(has_schema_privilege(n.oid, 'CREATE'), false) AS schema_writable,
       has_database_privilege(current_database(), 'CREATE') AS can_create_schema,
       pg_is_in_recovery() AS standby
FROM unnest($1::text[], $2::text[]) AS t(schema, name)
LEFT JOIN pg_namespace n ON n.nspname = t.schema
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name AND c.relkind IN ('r', 'p')
ORDER BY 1, 2
"""


async def refuse_unwritable(conn: asyncpg.Connection, tables: Seq[Table], user: str, *, will_create: bool) -> None:
    """Before the first write: every privilege the load needs on the target, checked at once.
    `will_create`: the schema step creates missing tables (`migrate`), so it needs CREATE there."""
    rows = await conn.fetch(_WRITABILITY_SQL, [t.schema for t in tables] + [BOOKKEEPING_SCHEMA],
                            [t.name for t in tables] + [""])
    if rows and rows[0]["standby"]:
        raise MigrationError("the target is a read-only standby", "point --target at the primary (writer) endpoint")
    problems = []
    for r in rows:
        if r["name"] == "" and r["schema"] == BOOKKEEPING_SCHEMA:
            if not r["schema_exists"] and not r["can_create_schema"]:
                problems.append(f"create schema {BOOKKEEPING_SCHEMA} (the tool's bookkeeping)")
            continue
        key = table_key(r["schema"], r["name"])
        if r["exists"] and not r["writable"]:
            problems.append(f"own and load {key}")
        elif not r["exists"] and will_create and not (r["schema_writable"] if r["schema_exists"] else r["can_create_schema"]):
            problems.append(f"create {key}")
    if problems:
        shown = problems[:5] + ([f"{len(problems) - 5} more"] if len(problems) > 5 else [])
        raise MigrationError(
            f"target role {user!r} may not " + "; ".join(shown) + " (nothing was written)",
            "connect to the target as the master user (or the tables' owner), or GRANT the privileges",
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


def _ancestors(row: asyncpg.Record) -> tuple[tuple[str, str], ...]:
    return tuple(zip(row["ancestor_schemas"], row["ancestor_names"]))


async def read_catalog(
    conn: asyncpg.Connection, schemas: Seq[str] | None = None, tables: Seq[TableRef | str] | None = None
) -> Catalog:
    """The catalog of the selected schemas (default: every user schema), optionally narrowed to
    tables (`TableRef`s, or names in SQL syntax)."""
    selection = Selection.of(schemas, tables)
    selected = list(selection.schemas) if selection.schemas else await user_schemas(conn)
    rows = [r for r in await conn.fetch(_TABLES_SQL, selected) if selection.wants(r["schema"], r["name"], _ancestors(r))]
    safety = await _binary_safety(conn, {oid for r in rows for oid in r["type_oids"]})
    catalog = Catalog()
    for r in rows:
        columns = tuple(
            Column(name, typ, *safety.get(oid, (False, False)))
            for name, typ, oid in zip(r["columns"], r["types"], r["type_oids"])
        )
        catalog.tables.append(Table(
            r["schema"], r["name"], r["ident"], columns, r["bytes"], r["blocks"], r["est_rows"], r["partition_of"],
            _ancestors(r),
        ))
    kinds = {"i": "identity", "a": "serial"}
    owners = {pair for t in catalog.tables for pair in ((t.schema, t.name), *t.ancestors)}
    for r in await conn.fetch(_SEQUENCES_SQL, selected):
        owner = r["owner_table"]
        if selection.tables and (owner is None or (r["owner_schema"], owner) not in owners):
            continue  # --tables narrows sequences to the ones those tables own
        catalog.sequences.append(Sequence(r["schema"], r["name"], r["ident"], kinds.get(r["deptype"], "standalone"), r["owned_by"]))
    for r in await conn.fetch(_OTHER_RELATIONS_SQL, selected):
        if r["kind"] == "m":
            catalog.matviews.append(MatView(r["schema"], r["name"], r["ident"], r["populated"]))
        else:
            catalog.views.append(table_key(r["schema"], r["name"]))
    return catalog


async def resolve_selection(conn: asyncpg.Connection, selection: Selection, *, purpose: str = "copy") -> Catalog:
    """The source catalog of what the user selected, or one line saying why there is nothing:
    an unknown schema, a `--tables` entry that names no table, or a selection with no tables
    at all. Reads only, so every command can call it before its first write."""
    unknown_schemas = await missing_schemas(conn, selection.schemas or ())
    if unknown_schemas:
        raise MigrationError(f"source has no schema {', '.join(maybe_double_quote_name(s) for s in unknown_schemas)}",
                             "check --schemas (names are SQL identifiers: quote mixed case, e.g. '\"App Data\"')")
    catalog = await read_catalog(conn, selection.schemas, selection.tables)
    if selection.tables:
        unknown = [ref for ref in selection.tables
                   if not any(ref.matches(s, n) for t in catalog.tables for s, n in ((t.schema, t.name), *t.ancestors))]
        if unknown:
            raise MigrationError(f"source has no table {', '.join(str(r) for r in unknown)}"
                                 + (f" in schemas {', '.join(selection.schemas)}" if selection.schemas else ""),
                                 "check --tables and --schemas (names are SQL identifiers: schema.table, "
                                 "quote dots, spaces and capitals, e.g. 'a.\"b.c\"')")
    if selection.explicit and not catalog.tables:
        raise MigrationError(f"nothing to {purpose}: the source has no tables in {selection.describe()}",
                             "check --schemas and --tables")
    return catalog
