"""structlog, configured once per process: console on a TTY, JSON lines otherwise.

The redaction processor runs last before rendering so that no code path (including a
server error message that echoes a connection string) can print a password.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from loaders.redaction import scrub_value


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return scrub_value(event_dict)  # type: ignore[return-value]


def configure(*, json_lines: bool | None = None, level: str = "info") -> None:
    """Human output on a terminal, machine-readable JSON when piped or in CI."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # sys.stderr is looked up per logger, not captured once: it may be replaced (tests, redirection).
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
