"""One pipe: source `COPY (SELECT …) TO STDOUT` → bounded buffer → target `COPY … FROM STDIN`.

Memory stays flat whatever the table size: the buffer holds at most `buffer_chunks` chunks,
and when it is full the source callback waits, which makes asyncpg pause reading the
socket (TCP back-pressure reaches the source server). Nothing touches disk.

The two COPYs are one unit that lives and dies together. asyncpg's COPY FROM waits for
"writing allowed" and for the next chunk without ever looking at its connection, so a target
that dies mid-COPY would leave this side waiting forever while the source sits in
`ClientWrite`. A watchdog beside the pair therefore ends it when either connection closes,
or when no byte has moved for `stall_seconds` while the target is not waiting on a lock;
the caller then drops both connections and redoes the unit from a clean state.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import asyncpg

from loaders.data.catalog import Table
from loaders.concurrency import PeerClosed, Stalled, task_group

DEFAULT_BUFFER_CHUNKS = 16
DEFAULT_STALL_SECONDS = 300.0


@dataclass(frozen=True)
class Liveness:
    """When a pipe gives up on its pair. `waiting_on_lock(target_pid)` is asked before a stall
    is declared: a COPY queued behind another session's lock is slow, not dead."""

    stall_seconds: float = DEFAULT_STALL_SECONDS
    waiting_on_lock: Callable[[int], Awaitable[bool]] | None = None
    tick: float = 0.5


def _closed(conn: asyncpg.Connection) -> bool:
    """A pooled connection that died is handed back to its pool at once: that counts as closed."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


async def _watch(source: asyncpg.Connection, target: asyncpg.Connection, liveness: Liveness,
                 last_moved: Callable[[], float]) -> None:
    """Raise as soon as the pair cannot finish; runs until the pipe cancels it."""
    target_pid = target.get_server_pid()
    while True:
        await anyio.sleep(liveness.tick)
        for side, conn in (("source", source), ("target", target)):
            if _closed(conn):
                raise PeerClosed(f"the {side} connection closed in the middle of the COPY")
        idle = time.monotonic() - last_moved()
        if idle < liveness.stall_seconds:
            continue
        if liveness.waiting_on_lock is not None and await liveness.waiting_on_lock(target_pid):
            continue
        raise Stalled(f"no data moved for {idle:.0f} s (stall timeout {liveness.stall_seconds:g} s) "
                      "and the target was not waiting on a lock")


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
    liveness: Liveness | None = None,
) -> tuple[int, int]:
    """Stream one table (or range) and return (rows, bytes). The caller owns both transactions
    and, when this raises, must drop both connections: either may be mid-protocol."""
    send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=buffer_chunks)
    total = 0
    moved = time.monotonic()
    count_rows = fmt == "text"  # text rows end in a newline (embedded ones are escaped)

    async def produce() -> None:
        async with send:
            await source.copy_from_query(source_query(table, block_range), output=send.send, format=fmt)

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal total, moved
        async with receive:
            async for chunk in receive:
                moved = time.monotonic()
                total += len(chunk)
                if on_chunk:
                    on_chunk(len(chunk), chunk.count(b"\n") if count_rows else None)
                yield chunk

    async with task_group() as tg:
        tg.start_soon(produce)
        tg.start_soon(_watch, source, target, liveness or Liveness(), lambda: moved)
        status = await target.copy_to_table(
            table.name, schema_name=table.schema, columns=list(table.column_names) or None,
            source=chunks(), format=fmt, freeze=freeze or None,
        )
        tg.cancel_scope.cancel()  # the watchdog; the producer has finished (its stream ended)
    return copied_rows(status), total
