"""Progress of running copies: a rich bar per table on a terminal, structlog events otherwise.

The copy code only calls the `CopyProgress` methods; what a person sees is decided once, at the
CLI edge (`set_display`: bars on a console unless --quiet; events for JSON lines), or, when no
edge decided, by whether stderr is a terminal. Nothing here ever sees a URL, so no secret can
reach it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn, DownloadColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Finished bars are folded into one "done" line once more than this many units ran: a hundred
# tables must not push the running ones off the screen.
VISIBLE_FINISHED = 4


@dataclass
class Display:
    """What the CLI edge decided; `bars=None` means nobody did (library use, tests): ask the tty."""

    bars: bool | None = None
    console: Console | None = None
    active: "RichProgress | None" = None


DISPLAY = Display()


def set_display(*, bars: bool, console: Console | None = None) -> None:
    DISPLAY.bars, DISPLAY.console = bars, console


def pause_bars() -> None:
    """Stop redrawing the bars (they stay on screen as they are) so that a heading printed next
    appears below them, in pipeline order; the next unit that starts draws its bar again."""
    if DISPLAY.active is not None:
        DISPLAY.active.pause()


class RateColumn(ProgressColumn):
    """Bytes per second while running; the unit's average once it finished (never a bare '?')."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.finished and task.elapsed:
            speed = task.completed / task.elapsed
        return Text(f"{decimal(int(speed))}/s" if speed else "", style="progress.data.speed")


class EtaColumn(TimeRemainingColumn):
    """'eta 0:00:12' while running, 'done' once finished."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("done", style="green")
        return Text.assemble("eta ", super().render(task))


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


def _bars(console: Console | None) -> Progress:
    return Progress(
        TextColumn("  {task.description}"), BarColumn(), DownloadColumn(), RateColumn(),
        TextColumn("{task.fields[rows]:>9,} rows"), EtaColumn(), TimeElapsedColumn(),
        console=console or Console(stderr=True),
    )


@dataclass
class RichProgress:
    """One bar per running unit (bytes against the source's on-disk size, rows, rate, ETA); finished
    units beyond the last few fold into one "done" line with their total rows."""

    console: Console | None = None
    progress: Progress = field(init=False)
    tasks: dict[str, TaskID] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    finished_units: list[str] = field(default_factory=list)
    done_task: TaskID | None = None
    done_rows: int = 0
    done_bytes: int = 0

    def __post_init__(self) -> None:
        self.progress = _bars(self.console)

    def __enter__(self) -> "RichProgress":
        DISPLAY.active = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.pause()
        if DISPLAY.active is self:
            DISPLAY.active = None

    def pause(self) -> None:
        if not self.progress.live.is_started:
            return
        self.progress.stop()
        for task in self.progress.tasks:  # already on screen: a restart draws only what still runs
            if task.finished:
                self.progress.update(task.id, visible=False)
        self.finished_units.clear()
        self.done_task, self.done_rows, self.done_bytes = None, 0, 0

    def started(self, unit: str, expected_bytes: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        self.rows[unit] = 0
        if unit in self.tasks:  # a retried unit starts its bar again
            self.progress.reset(self.tasks[unit], total=max(expected_bytes, 1), rows=0, visible=True)
        else:
            self.tasks[unit] = self.progress.add_task(unit, total=max(expected_bytes, 1), rows=0)

    def advanced(self, unit: str, nbytes: int, rows: int | None) -> None:
        if rows:
            self.rows[unit] += rows
        self.progress.update(self.tasks[unit], advance=nbytes, rows=self.rows[unit])

    def finished(self, unit: str, rows: int, nbytes: int, seconds: float) -> None:
        task = self.tasks[unit]
        self.progress.update(task, completed=nbytes, total=max(nbytes, 1), rows=rows)
        self.finished_units.append(unit)
        if len(self.finished_units) > VISIBLE_FINISHED:
            self._fold(self.finished_units[-VISIBLE_FINISHED - 1])

    def _fold(self, unit: str) -> None:
        state = next(t for t in self.progress.tasks if t.id == self.tasks[unit])
        self.done_rows += int(state.fields.get("rows", 0))
        self.done_bytes += int(state.completed)
        self.progress.update(self.tasks[unit], visible=False)
        folded = len(self.finished_units) - VISIBLE_FINISHED
        description = f"{folded} more done"
        if self.done_task is None:
            self.done_task = self.progress.add_task(description, total=1, completed=1, rows=0)
        self.progress.update(self.done_task, description=description, total=max(self.done_bytes, 1),
                             completed=max(self.done_bytes, 1), rows=self.done_rows)


def default_progress() -> LogProgress | RichProgress:
    bars = DISPLAY.bars if DISPLAY.bars is not None else sys.stderr.isatty()
    return RichProgress(DISPLAY.console) if bars else LogProgress()


@dataclass
class Stopwatch:
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
