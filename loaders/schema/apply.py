"""Apply cleaned statements to the target, all or nothing, with errors that point at the file.

Statements are sent one at a time so a failure names the exact statement and, using the
server's error position, the line inside the file. Everything runs in one transaction
unless the SQL brings its own BEGIN/COMMIT, so a failed file leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from loaders.errors import MigrationError
from loaders.schema.clean import CleanStatement

log = structlog.get_logger(stage="schema")
SNIPPET = 160


def first_line(stmt: CleanStatement) -> str:
    """The statement's first line, cut to SNIPPET characters: enough to recognise it in an error."""
    first = stmt.sql.strip().splitlines()[0] if stmt.sql.strip() else ""
    return first if len(first) <= SNIPPET else first[:SNIPPET] + "…"


def statement_error(stmt: CleanStatement, exc: asyncpg.PostgresError) -> MigrationError:
    """file:line (of the error inside the statement when the server says where), the server's
    message, and the statement's first line."""
    line = stmt.line
    position = getattr(exc, "position", None)
    if position and str(position).isdigit():
        line += stmt.sql[: int(position) - 1].count("\n")
    snippet = first_line(stmt)
    detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
    return MigrationError(
        f"{stmt.file}:{line}: {exc.sqlstate} {exc}{detail} — in statement: {snippet}",
        "fix the statement or what it depends on and rerun; nothing of this file was applied",
    )


async def execute(conn: asyncpg.Connection, stmt: CleanStatement) -> None:
    try:
        await conn.execute(stmt.sql)
    except asyncpg.PostgresError as exc:
        raise statement_error(stmt, exc) from None


async def apply_statements(
    conn: asyncpg.Connection, statements: Sequence[CleanStatement], *, own_transactions: bool = False,
    after: Sequence[tuple[str, tuple[object, ...]]] = (),
) -> None:
    """Run `statements` then the bookkeeping queries `after` in one transaction; when the SQL
    manages its own transactions, run it as written and roll back whatever is open on error."""
    if not own_transactions:
        async with conn.transaction():
            for stmt in statements:
                await execute(conn, stmt)
            for query, args in after:
                await conn.execute(query, *args)
        return
    try:
        for stmt in statements:
            await execute(conn, stmt)
    except MigrationError as exc:
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        exc.fix = "fix the statement and rerun; this file manages its own transactions, so only its open transaction was rolled back"
        raise
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
        raise MigrationError(
            f"{statements[-1].file}: leaves a transaction open (BEGIN without COMMIT)",
            "add the missing COMMIT to the file; its open transaction was rolled back",
        )
    async with conn.transaction():
        for query, args in after:
            await conn.execute(query, *args)
