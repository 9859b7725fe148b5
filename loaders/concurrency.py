"""Task groups that raise the error a user can act on, and retries for transient failures.

anyio task groups wrap every failure in an ExceptionGroup; the CLI must still see the one
`MigrationError` (or the one real error) that caused the others to be cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import asyncpg
import structlog

from loaders.errors import MigrationError

T = TypeVar("T")
log = structlog.get_logger(stage="retry")


class Stalled(TimeoutError):
    """No byte moved for longer than the stall timeout while nothing waited on a lock."""


class PeerClosed(ConnectionError):
    """One side of a COPY pair lost its connection; the other side is cancelled with it."""


# Failures that say "the connection or server had a moment", not "the data or SQL is wrong".
# Not TooManyConnections: the job count is clamped to the servers' free slots up front, so
# hitting the limit means someone else took them, and retrying would only hammer the server.
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # admin shutdown / terminated backend (not query_canceled)
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,  # lock_timeout: the unit's transaction is redone after a pause
    ConnectionError,
    TimeoutError,
)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def primary_error(exc: BaseException) -> BaseException:
    """The most actionable leaf of an exception group: MigrationError > other error > cancellation."""
    leaves = _leaves(exc)
    for wanted in (MigrationError, Exception):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0]


@asynccontextmanager
async def task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        raise primary_error(group) from None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (asyncpg.QueryCanceledError, asyncpg.TooManyConnectionsError)):
        return False
    return isinstance(exc, TRANSIENT)


async def with_retry(
    fn: Callable[[], Awaitable[T]], *, what: str, attempts: int = 4, first_delay: float = 0.5
) -> T:
    """Run `fn`, retrying transient connection failures with exponential backoff. `fn` must be
    safe to redo from scratch (each copy unit is one target transaction, so it is)."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except BaseExceptionGroup as group:
            exc: BaseException = primary_error(group)
        except Exception as err:  # noqa: BLE001 - classified below
            exc = err
        if not is_transient(exc) or attempt == attempts:
            raise exc
        log.warning("transient_error_retrying", what=what, attempt=attempt, error=type(exc).__name__,
                    detail=str(exc)[:200], delay=delay)
        await anyio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")
