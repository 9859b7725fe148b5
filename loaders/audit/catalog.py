"""Step 3: what the target database offers — tables and views with their columns, primary keys,
foreign keys (which decide how PostgREST embeds resources) and functions (for `.rpc()`).

Read once, in one read-only transaction, as the user the backend will connect as: what that user
cannot see is what the backend will not find either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from loaders.supabase import BOOKKEEPING_SCHEMA, is_managed_schema

TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
       (a.attgenerated <> '' OR a.attidentity = 'a') AS generated
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname, a.attnum
"""

KEYS_SQL = """
SELECT con.conname AS name, con.contype AS type,
       n.nspname AS schema, c.relname AS table,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.i) AS columns,
       rn.nspname AS ref_schema, rc.relname AS ref_table,
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.i) AS ref_columns
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype IN ('p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY con.conname
"""

FUNCTIONS_SQL = """
SELECT n.nspname AS schema, p.proname AS name, coalesce(p.proargnames, '{}') AS argnames,
       coalesce(p.proargmodes::text[], '{}') AS argmodes, p.pronargs AS nargs, p.pronargdefaults AS ndefaults
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind IN ('f', 'p')
"""


@dataclass(frozen=True)
class ForeignKey:
    name: str
    schema: str
    table: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Function:
    schema: str
    name: str
    inputs: tuple[str, ...]      # IN/INOUT/VARIADIC argument names, in order
    required: int                # how many of them have no default


@dataclass(frozen=True)
class Relationship:
    """How an embedded resource joins its parent: `child.cols = parent.cols`.

    `to_one` is PostgREST's many-to-one (the parent holds the foreign key) — embedded as an object;
    otherwise one-to-many — embedded as an array.
    """

    schema: str
    table: str
    to_one: bool
    pairs: tuple[tuple[str, str], ...]   # (embedded column, parent column)
    constraint: str


@dataclass
class Catalog:
    tables: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    primary_keys: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    functions: dict[tuple[str, str], list[Function]] = field(default_factory=dict)
    generated: set[tuple[str, str, str]] = field(default_factory=set)  # columns an INSERT may not name

    def has_table(self, schema: str, table: str) -> bool:
        return (schema, table) in self.tables

    def has_column(self, schema: str, table: str, column: str) -> bool:
        return column in self.tables.get((schema, table), {})

    def relationships(self, schema: str, parent: str, embedded: str) -> list[Relationship]:
        """Every direct foreign key between the two tables, in either direction (PostgREST's candidates)."""
        found: list[Relationship] = []
        for fk in self.foreign_keys:
            if (fk.schema, fk.table) == (schema, parent) and fk.ref_table == embedded:
                found.append(Relationship(fk.ref_schema, embedded, True, tuple(zip(fk.ref_columns, fk.columns)), fk.name))
            if (fk.ref_schema, fk.ref_table) == (schema, parent) and fk.table == embedded:
                # a self-reference appears once per direction; PostgREST treats both as candidates too
                found.append(Relationship(fk.schema, embedded, False, tuple(zip(fk.columns, fk.ref_columns)), fk.name))
        return found


class RelationshipError(LookupError):
    """No or several foreign keys join the two tables: PostgREST answers PGRST200 / PGRST201."""


def resolve(catalog: Catalog, schema: str, parent: str, embedded: str, hint: str | None) -> Relationship:
    """PostgREST's choice: the single foreign key between the tables, or the one a hint names
    (by constraint name or by one of its columns)."""
    candidates = catalog.relationships(schema, parent, embedded)
    if hint:
        candidates = [r for r in candidates
                      if r.constraint == hint or hint in (c for pair in r.pairs for c in pair)]
    if not candidates:
        raise RelationshipError(f"no foreign key between {parent} and {embedded}"
                                + (f" matching hint {hint!r}" if hint else ""))
    if len(candidates) > 1:
        names = ", ".join(sorted(r.constraint for r in candidates))
        raise RelationshipError(f"{parent} and {embedded} are joined by several foreign keys ({names}): "
                                f"add a hint, e.g. {embedded}!{candidates[0].constraint}(...)")
    return candidates[0]


async def read_catalog(conn: asyncpg.Connection) -> Catalog:
    catalog = Catalog()
    async with conn.transaction(readonly=True):
        for row in await conn.fetch(TABLES_SQL):
            if is_managed_schema(row["schema"]) or row["schema"] == BOOKKEEPING_SCHEMA:
                continue
            columns = catalog.tables.setdefault((row["schema"], row["name"]), {})
            if row["column"] is not None:
                columns[row["column"]] = row["type"]
                if row["generated"]:
                    catalog.generated.add((row["schema"], row["name"], row["column"]))
        for row in await conn.fetch(KEYS_SQL):
            if row["type"] == "p":
                catalog.primary_keys[(row["schema"], row["table"])] = tuple(row["columns"])
            else:
                catalog.foreign_keys.append(ForeignKey(row["name"], row["schema"], row["table"], tuple(row["columns"]),
                                                       row["ref_schema"], row["ref_table"], tuple(row["ref_columns"])))
        for row in await conn.fetch(FUNCTIONS_SQL):
            names, modes = list(row["argnames"]), list(row["argmodes"])
            inputs = tuple(name for i, name in enumerate(names)
                           if not modes or modes[i] in ("i", "b", "v")) if names else ()
            catalog.functions.setdefault((row["schema"], row["name"]), []).append(
                Function(row["schema"], row["name"], inputs, row["nargs"] - row["ndefaults"]))
    return catalog
