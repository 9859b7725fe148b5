"""OID-bearing types travel as text: their binary form carries server-local OIDs (reg*), or
there is none (aclitem). One test per type family, with the referenced objects at different
OIDs on the two servers, in `auto` and in forced `binary` format."""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from loaders.data.catalog import read_catalog
from loaders.data.verify import verify
from loaders.dsn import parse_url
from loaders.localpg import LocalPostgres
from tests.datakit import copy_all, fetchrows, row_texts, run_sql

# family → (DDL creating the referenced objects and table t, INSERT, columns whose OIDs must differ)
FAMILIES: dict[str, tuple[str, str]] = {
    "relations, types, functions, operators": (
        """CREATE TABLE thing (x int);
           CREATE TYPE colour AS ENUM ('red');
           CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
           CREATE FUNCTION pick(colour, colour) RETURNS bool LANGUAGE sql AS 'SELECT true';
           CREATE OPERATOR === (LEFTARG = colour, RIGHTARG = colour, FUNCTION = pick);
           CREATE DOMAIN rel AS regclass;
           CREATE TABLE t (id int PRIMARY KEY, c regclass, ty regtype, p regproc, pp regprocedure,
                           o regoper, oo regoperator, cs regclass[], d rel)""",
        """INSERT INTO t VALUES (1, 'thing', 'colour', 'twice', 'twice(int)', '===', '===(colour,colour)',
                                 ARRAY['thing'::regclass, 'pg_class'::regclass], 'thing'),
                                (2, 'pg_class', 'int4', 'now', 'abs(int)', NULL, '+(int,int)', '{}', NULL),
                                (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""",
    ),
    "namespaces, roles, collations": (
        """CREATE SCHEMA space;
           CREATE COLLATION space.coll FROM "C";
           CREATE TABLE t (id int PRIMARY KEY, n regnamespace, r regrole, co regcollation, rs regrole[])""",
        """INSERT INTO t VALUES (1, 'space', '{role}', 'space.coll', ARRAY['{role}'::regrole, 'pg_monitor'::regrole]),
                                (2, 'public', 'pg_monitor', '"C"', NULL)""",
    ),
    "text search": (
        """CREATE TEXT SEARCH DICTIONARY my_dict (TEMPLATE = simple);
           CREATE TEXT SEARCH CONFIGURATION my_cfg (COPY = english);
           CREATE TABLE t (id int PRIMARY KEY, cfg regconfig, dict regdictionary)""",
        "INSERT INTO t VALUES (1, 'my_cfg', 'my_dict'), (2, 'english', 'simple')",
    ),
    "aclitem": (
        """CREATE DOMAIN acl AS aclitem;
           CREATE TABLE t (id int PRIMARY KEY, a aclitem, acls aclitem[], d acl)""",
        """INSERT INTO t VALUES (1, '{role}=r/{role}', ARRAY['{role}=arw/{role}'::aclitem, '=r/{role}'::aclitem],
                                    '{role}=U*/{role}'),
                                (2, NULL, '{}', NULL)""",
    ),
}
# Objects created on the target only, first, so the same names get other OIDs there.
PADDING = "CREATE TABLE pad1 (x int); CREATE TABLE pad2 (x int); CREATE TYPE pad3 AS ENUM ('x'); CREATE SCHEMA pad4;"


async def make_role(servers: list[LocalPostgres]) -> str:
    """Roles are per cluster: the same name on both servers, at different OIDs."""
    role = "integ_" + secrets.token_hex(4)
    for i, server in enumerate(servers):
        conn = await asyncpg.connect(server.url())
        try:
            for n in range(i * 3):  # shift the target's OID counter
                await conn.execute(f"CREATE ROLE {role}_pad{n}")
            await conn.execute(f"CREATE ROLE {role}")
        finally:
            await conn.close()
    return role


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("fmt", ["auto", "binary"])
async def test_oid_bearing_types_are_copied_as_text(
    pg15: LocalPostgres, pg18: LocalPostgres, source_db: str, target_db: str, family: str, fmt: str
) -> None:
    role = await make_role([pg15, pg18])
    ddl, insert = FAMILIES[family]
    await run_sql(source_db, ddl)
    await run_sql(target_db, PADDING + ddl)
    await run_sql(source_db, insert.replace("{role}", role))

    conn = await asyncpg.connect(source_db)
    try:
        table = (await read_catalog(conn, ["public"])).table("public.t")
    finally:
        await conn.close()
    assert table is not None
    assert {c.name for c in table.columns if c.text_only} == {c.name for c in table.columns} - {"id"}
    assert not table.binary_safe

    report = await copy_all(source_db, target_db, jobs=1, format=fmt)
    assert [t.format for t in report.tables if t.table == "public.t"] == ["text"]
    assert await row_texts(target_db, "public.t") == await row_texts(source_db, "public.t")
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.ok, result.mismatches()
    # the names survived while the numbers behind them differ between the servers
    first = next(c.name for c in table.columns if c.name != "id")
    if not first.startswith("a"):
        numbers = f"SELECT {first}::oid::bigint FROM t WHERE id = 1"
        assert (await fetchrows(source_db, numbers)) != (await fetchrows(target_db, numbers))
