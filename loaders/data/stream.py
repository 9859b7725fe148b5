"""One pipe: source `COPY (SELECT …) TO STDOUT` → bounded buffer → target `COPY … FROM STDIN`.

Memory stays flat whatever the table size: the buffer holds at most `buffer_chunks` chunks,
and when it is full the source callback waits, which makes asyncpg pause reading the
socket (TCP back-pressure reaches the source server). Nothing touches disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import asyncpg

from loaders.data.catalog import Table
from loaders.concurrency import task_group

DEFAULT_BUFFER_CHUNKS = 16


@dataclass(frozen=True)
class BlockRange:
    """ctid block range [first, stop); None = open end. TID range scans make this cheap on PG 14+."""

    first: int | None
    stop: int | None

    def where(self) -> str:
        parts = []
        if self.first is not None:
            parts.append(f"ctid >= '({int(self.first)},0)'::tid")
        if self.stop is not None:
            parts.append(f"ctid < '({int(self.stop)},0)'::tid")
        return (" WHERE " + " AND ".join(parts)) if parts else ""

    def label(self) -> str:
        return f"[{self.first or 0}:{'' if self.stop is None else self.stop}]"


def source_query(table: Table, block_range: BlockRange | None = None) -> str:
    """`FROM ONLY` so inheritance children are never read twice; generated columns left out."""
    where = block_range.where() if block_range else ""
    return f"SELECT {table.select_list} FROM ONLY {table.ident}{where}"


def copied_rows(status: str) -> int:
    """asyncpg returns the command tag, e.g. 'COPY 1234'."""
    return int(status.rsplit(" ", 1)[-1])


async def pipe(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    table: Table,
    *,
    block_range: BlockRange | None = None,
    fmt: str = "binary",
    freeze: bool = False,
    buffer_chunks: int = DEFAULT_BUFFER_CHUNKS,
    on_chunk: Callable[[int, int | None], None] | None = None,
) -> tuple[int, int]:
    """Stream one table (or range) and return (rows, bytes). The caller owns both transactions."""
    send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=buffer_chunks)
    total = 0
    count_rows = fmt == "text"  # text rows end in a newline (embedded ones are escaped)

    async def produce() -> None:
        async with send:
            await source.copy_from_query(source_query(table, block_range), output=send.send, format=fmt)

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal total
        async with receive:
            async for chunk in receive:
                total += len(chunk)
                if on_chunk:
                    on_chunk(len(chunk), chunk.count(b"\n") if count_rows else None)
                yield chunk

    async with task_group() as tg:
        tg.start_soon(produce)
        status = await target.copy_to_table(
            table.name, schema_name=table.schema, columns=list(table.column_names) or None,
            source=chunks(), format=fmt, freeze=freeze or None,
        )
    return copied_rows(status), total
