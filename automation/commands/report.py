"""Every command's JSON report: one writer and one wrapper, so every report is scrubbed the same way
and says which tool, version, command and arguments produced it, when, and with what exit code.

A report is written while the command runs (the exit code is not known yet: `exit_code` and
`ended_at` are null), and the CLI edge completes every report of the run once the exit code is
decided (`finish_run`). A report left with `exit_code: null` therefore means the run never got
to its end (killed), which is the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from importlib import metadata
from pathlib import Path, PurePath

from loaders.redaction import mask_url, scrub_value

TOOL = "supabase-to-rds"
WRAPPER_KEYS = ("tool", "version", "command", "arguments", "started_at", "ended_at", "exit_code")


def tool_version() -> str:
    """The installed distribution's version; the source tree's pyproject when run uninstalled."""
    try:
        return metadata.version(TOOL)
    except metadata.PackageNotFoundError:  # pragma: no cover - the project is always installed here
        return "unknown"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def jsonable(value: object) -> object:
    """Plain JSON values, never Python reprs: dataclasses become objects of their fields, paths and
    times their text, enums their value, sets sorted lists, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def safe_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The parsed arguments a report may show: no handler, every URL's password masked, and every
    registered secret scrubbed (a URL file's path is kept, its content never read here)."""
    shown: dict[str, object] = {}
    for name, value in sorted(vars(args).items()):
        if callable(value):
            continue
        value = jsonable(value)
        if isinstance(value, str) and "://" in value:
            value = mask_url(value)
        shown[name] = value
    return scrub_value(shown)  # type: ignore[return-value]


@dataclass
class Run:
    """The command being run, as the report wrapper names it."""

    command: str | None = None
    arguments: dict[str, object] = field(default_factory=dict)
    started_at: str = field(default_factory=now)
    reports: list[Path] = field(default_factory=list)

    def header(self, *, ended_at: str | None = None, exit_code: int | None = None) -> dict[str, object]:
        return {"tool": TOOL, "version": tool_version(), "command": self.command, "arguments": self.arguments,
                "started_at": self.started_at, "ended_at": ended_at, "exit_code": exit_code}


_run = Run()


def begin_run(args: argparse.Namespace) -> Run:
    """Called by the CLI edge once the arguments are parsed: what every report of this run carries."""
    global _run
    _run = Run(command=getattr(args, "command", None), arguments=safe_arguments(args))
    return _run


def wrapped(body: Mapping[str, object], *, run: Run | None = None, ended_at: str | None = None,
            exit_code: int | None = None) -> dict[str, object]:
    """The wrapper's fields first, then the command's own body (the wrapper's names win)."""
    run = run or _run
    plain = jsonable(body)
    assert isinstance(plain, dict)
    return scrub_value({**run.header(ended_at=ended_at, exit_code=exit_code),
                        **{k: v for k, v in plain.items() if k not in WRAPPER_KEYS}})  # type: ignore[return-value]


def _write_atomically(target: Path, payload: object) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: str | Path | None, payload: Mapping[str, object]) -> None:
    """Scrubbed, indented JSON at `path` (parent folders created), inside the run's wrapper;
    nothing when no path is given. The CLI edge fills in `ended_at` and `exit_code` at the end."""
    if not path:
        return
    target = Path(path)
    _write_atomically(target, wrapped(payload))
    if target not in _run.reports:
        _run.reports.append(target)


def finish_run(exit_code: int) -> list[Path]:
    """Complete every report this run wrote with the end time and the exit code; returns them.
    A report that cannot be rewritten any more (removed meanwhile) is left as it is."""
    ended = now()
    done: list[Path] = []
    for path in _run.reports:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        _write_atomically(path, {**body, "ended_at": ended, "exit_code": exit_code})
        done.append(path)
    return done
