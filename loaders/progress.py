"""Progress of running copies: a rich bar per table on a terminal, structlog events otherwise.

The copy code only calls the `CopyProgress` methods; what a person sees is decided once, by
whether stderr is a terminal. Nothing here ever sees a URL, so no secret can reach it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TransferSpeedColumn,
)


class CopyProgress(Protocol):
    def started(self, unit: str, expected_bytes: int) -> None: ...
    def advanced(self, unit: str, nbytes: int, rows: int | None) -> None: ...
    def finished(self, unit: str, rows: int, nbytes: int, seconds: float) -> None: ...


@dataclass
class LogProgress:
    """Structured events only (CI, pipes): one at start, one at the end of each unit."""

    log: Any = field(default_factory=lambda: structlog.get_logger(stage="copy"))

    def started(self, unit: str, expected_bytes: int) -> None:
        self.log.info("table_started", table=unit, expected_bytes=expected_bytes)

    def advanced(self, unit: str, nbytes: int, rows: int | None) -> None:
        return None

    def finished(self, unit: str, rows: int, nbytes: int, seconds: float) -> None:
        rate = round(nbytes / seconds) if seconds > 0 else None
        self.log.info("table_copied", table=unit, rows=rows, bytes=nbytes, seconds=round(seconds, 3), bytes_per_second=rate)


@dataclass
class RichProgress:
    """One bar per running unit (bytes against the source's on-disk size, rows, rate)."""

    progress: Progress = field(default_factory=lambda: Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TextColumn("{task.fields[rows]} rows"), TimeElapsedColumn(), console=Console(stderr=True),
    ))
    tasks: dict[str, TaskID] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, unit: str, expected_bytes: int) -> None:
        self.rows[unit] = 0
        if unit in self.tasks:  # a retried unit starts its bar again
            self.progress.reset(self.tasks[unit], total=max(expected_bytes, 1), rows=0)
        else:
            self.tasks[unit] = self.progress.add_task(unit, total=max(expected_bytes, 1), rows=0)

    def advanced(self, unit: str, nbytes: int, rows: int | None) -> None:
        if rows:
            self.rows[unit] += rows
        self.progress.update(self.tasks[unit], advance=nbytes, rows=self.rows[unit])

    def finished(self, unit: str, rows: int, nbytes: int, seconds: float) -> None:
        task = self.tasks[unit]
        self.progress.update(task, completed=nbytes, total=max(nbytes, 1), rows=rows)


def default_progress() -> LogProgress | RichProgress:
    return RichProgress() if sys.stderr.isatty() else LogProgress()


@dataclass
class Stopwatch:
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
