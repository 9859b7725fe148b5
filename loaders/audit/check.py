"""Step 5: does the target accept each translated call? First by name against the catalog (a clear
`missing-table`/`missing-column`/`missing-function` with a suggestion), then by the server itself:
every statement is PREPAREd — parsed, analysed and type-checked, never executed — inside a read-only
transaction that is rolled back, as the user the URL names (so missing grants show up too).
"""

from __future__ import annotations

import difflib

import asyncpg
import structlog

from loaders.audit.catalog import Catalog
from loaders.audit.model import Call

log = structlog.get_logger(stage="audit-check")


def suggestion(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def catalog_problem(call: Call, catalog: Catalog) -> tuple[str, str] | None:
    """The first name the target lacks, as (check, message)."""
    for ref in call.refs:
        if not catalog.has_table(ref.schema, ref.table):
            names = [t for s, t in catalog.tables if s == ref.schema]
            return "missing-table", f"table {ref.schema}.{ref.table} does not exist on the target" + suggestion(ref.table, names)
    for ref in call.refs:
        if ref.column is not None and not catalog.has_column(ref.schema, ref.table, ref.column):
            columns = list(catalog.tables[(ref.schema, ref.table)])
            return "missing-column", (f"column {ref.table}.{ref.column} does not exist on the target"
                                      + suggestion(ref.column, columns))
    for schema, name, args in call.functions:
        overloads = catalog.functions.get((schema, name))
        if not overloads:
            names = [n for s, n in catalog.functions if s == schema]
            return "missing-function", f"function {schema}.{name} does not exist on the target" + suggestion(name, names)
        if not any(set(args) <= set(f.inputs) and len(args) >= f.required for f in overloads):
            takes = " or ".join("(" + ", ".join(f.inputs) + ")" for f in overloads)
            return "missing-function", f"function {schema}.{name} takes {takes}, not ({', '.join(args)})"
    return None


async def check_calls(conn: asyncpg.Connection, calls: list[Call], catalog: Catalog) -> None:
    """Set `check` and `message` on every database call; nothing is executed or committed."""
    outer = conn.transaction(readonly=True)
    await outer.start()
    try:
        for call in calls:
            if call.kind not in ("table", "rpc"):
                continue
            if call.check is not None:
                continue  # translation already found what the target lacks
            problem = catalog_problem(call, catalog)
            if problem is not None:
                call.check, message = problem
                call.message = "; ".join(filter(None, [message, call.message]))
                continue
            if call.sql is None:
                continue
            call.check = await prepare(conn, call)
    finally:
        await outer.rollback()


async def prepare(conn: asyncpg.Connection, call: Call) -> str:
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        await conn.prepare(call.sql)
        return "ok"
    except asyncpg.PostgresError as exc:
        call.message = "; ".join(filter(None, [f"target: {exc}", call.message]))
        log.info("prepare_failed", file=call.file, line=call.line, error=str(exc))
        return "error"
    finally:
        await savepoint.rollback()
