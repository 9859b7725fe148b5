"""Helpers shared by the names lane's tests: the CLI in a thread, its one error line, logging reset."""

from __future__ import annotations

import anyio
import pytest
import structlog

from automation.cli import main


@pytest.fixture(autouse=True)
def fresh_logging():
    """`main` points structlog at the test's captured stderr; don't leave later tests writing there."""
    yield
    structlog.reset_defaults()


async def cli(argv: list[str]) -> int:
    """The CLI runs its own event loop (anyio.run), so it gets a thread of its own here."""
    return await anyio.to_thread.run_sync(main, argv)


def last_line(err: str) -> str:
    """The one line the CLI prints for an error (log lines are JSON)."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("{")][-1]
