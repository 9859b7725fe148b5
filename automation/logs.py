"""structlog, configured once per process: a calm console on a terminal, JSON lines otherwise.

On a console the event stream is the record, not the display: without `-v` info events become
stage headings (automation/terminal.py) and warnings one plain line each, so a person sees each
fact once. The redaction processor runs before any rendering, so no code path (including a
server error message that echoes a connection string) can print a password. Libraries' own
chatter (asyncio's "Task exception was never retrieved", asyncpg's unclosed-connection
warnings, Pulumi's loggers) is silenced here unless `--debug`: the CLI edge's one line is the
only thing a failure prints.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import structlog

from automation import terminal as term
from loaders import progress
from loaders.redaction import scrub, scrub_value

LOG_FORMATS = ("console", "json")
QUIET_LOGGERS = ("asyncio", "asyncpg", "pulumi", "grpc", "urllib3", "botocore", "boto3")
_HIDDEN_FIELDS = {"event", "level", "timestamp", "stage", "fix", "exc_info", "exception"}


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return scrub_value(event_dict)  # type: ignore[return-value]


def one_line(event_dict: dict[str, Any]) -> str:
    """A warning as a person reads it: `warning: event (key=value, …) — fix: …`."""
    level = str(event_dict.get("level", "warning"))
    fields = ", ".join(f"{k}={v}" for k, v in event_dict.items() if k not in _HIDDEN_FIELDS)
    text = f"{level}: {event_dict.get('event')}" + (f" ({fields})" if fields else "")
    if event_dict.get("fix"):
        text += f" — fix: {event_dict['fix']}"
    return text


def calm(terminal: term.Terminal) -> structlog.types.Processor:
    """Turn the stream into headings and warnings; pass events on to the renderer only with -v."""

    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        heading = term.heading_for(event_dict)
        if heading:
            terminal.stage(heading)
        if terminal.verbosity >= 1:
            return event_dict
        if event_dict.get("level") in ("warning", "error", "critical"):
            terminal.warning(one_line(event_dict))
        elif (step := term.step_line(event_dict)) is not None:
            terminal.print(step)
        raise structlog.DropEvent

    return processor


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        return True


_EDGE_HANDLER = "supabase_to_rds_edge"


def quiet_libraries(*, debug: bool) -> None:
    """Nothing but our own lines on stderr; with --debug, library logs and warnings (scrubbed) too."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _EDGE_HANDLER]:
        root.removeHandler(handler)
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_ScrubFilter())
        root.setLevel(logging.WARNING)
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: print(
            scrub(warnings.formatwarning(message, category, filename, lineno, line)), end="", file=sys.stderr)
    else:
        handler = logging.NullHandler()  # also keeps logging's last-resort handler from printing
        warnings.simplefilter("ignore")
        sys.unraisablehook = lambda _unraisable: None  # "Exception ignored in …" at interpreter exit
    handler.set_name(_EDGE_HANDLER)
    root.addHandler(handler)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if debug else logging.CRITICAL + 1)


def default_format() -> str:
    return "console" if sys.stderr.isatty() else "json"


def configure(*, log_format: str | None = None, verbosity: int = 0, level: str | None = None,
              debug: bool = False) -> term.Terminal:
    """Human output on a terminal, machine-readable JSON when piped or in CI; returns the terminal."""
    log_format = log_format or default_format()
    terminal = term.reset(log_format, verbosity)
    quiet_libraries(debug=debug)
    progress.set_display(bars=terminal.human, console=terminal.console)
    if level is None:
        level = "warning" if verbosity < 0 else "debug" if verbosity >= 2 or debug else "info"
    tail: list[Any]
    if log_format == "json":
        tail = [structlog.processors.JSONRenderer()]
    else:
        tail = [calm(terminal), structlog.dev.ConsoleRenderer(colors=terminal.console.is_terminal)]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # sys.stderr is looked up per logger, not captured once: it may be replaced (tests, redirection).
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    return terminal
