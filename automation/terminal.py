"""What a person sees on a terminal: stage headings, warnings, tables, one summary line per command.

The event stream (structlog) is the record; on a terminal it is *shown* only with `-v`, otherwise
its events are turned into stage headings and warnings here, so the same fact never appears
twice. Off a terminal (`--log-format json`) nothing here prints: the summary becomes one more
JSON event. Decided once, at the CLI edge (`automation.logs.configure`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.markup import escape

from loaders import progress
from loaders.redaction import scrub

EXIT_MEANINGS = {0: "ok", 1: "error", 2: "mismatch or drift found", 64: "usage error", 130: "interrupted"}

# The `stage` a loader binds to its logger, and the pipeline step a person knows it as.
STAGE_HEADINGS = {
    "local": "local servers", "stack": "infrastructure (Pulumi)",
    "schema-export": "schema", "schema": "schema", "app-role": "schema",
    "snapshot": "data", "copy": "data", "guard": "data", "retry": "data",
    "sequences": "sequences", "verify": "verification",
}


@dataclass
class Terminal:
    """How this process talks to a person; one per process, configured at the CLI edge."""

    log_format: str = "json"  # console | json
    verbosity: int = 0  # -1 --quiet, 0 default, 1 -v, 2 -vv
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    heading: str | None = None
    headings: set[str] = field(default_factory=set)
    summary_line: str | None = None
    report_path: Path | None = None

    @property
    def human(self) -> bool:
        """Headings, bars, tables and the summary are printed (console format, not --quiet)."""
        return self.log_format == "console" and self.verbosity >= 0

    @property
    def events_shown(self) -> bool:
        """The raw event stream reaches the screen: always as JSON lines, on a console only with -v."""
        return self.log_format == "json" or self.verbosity >= 1

    def print(self, text: str, *, style: str | None = None) -> None:
        if self.human:
            self.console.print(escape(scrub(text)), style=style, soft_wrap=True)

    def note(self, text: str, event: str, **fields: Any) -> None:
        """A fact worth a line: printed on a console, one more event in JSON lines."""
        if self.log_format == "json":
            structlog.get_logger(stage="summary").info(event, note=text, **fields)
        else:
            self.print(text)

    def stage(self, name: str) -> None:
        """A heading when the pipeline enters a new step (called for every event; prints on change)."""
        if name == "schema" and "data" in self.headings:
            name = "schema: indexes, constraints, triggers (post-data)"
        if name != self.heading:
            self.heading = name
            self.headings.add(name)
            if self.human:
                progress.pause_bars()
            self.print(f"▸ {name}", style="bold cyan")

    def warning(self, text: str) -> None:
        if self.log_format == "console":
            self.console.print(escape(scrub(text)), style="yellow", soft_wrap=True)

    def summary(self, text: str, *, report: str | Path | None = None) -> None:
        """The one line a long command ends with; printed by the CLI edge with the exit code's meaning."""
        self.summary_line = text
        self.report_path = Path(report) if report else None

    def summary_text(self, exit_code: int) -> str | None:
        if self.summary_line is None:
            return None
        meaning = EXIT_MEANINGS.get(exit_code, "error")
        report = f" · report {self.report_path}" if self.report_path else ""
        return f"{self.summary_line} · exit {exit_code} ({meaning}){report}"


TERMINAL = Terminal()


def reset(log_format: str, verbosity: int) -> Terminal:
    global TERMINAL
    TERMINAL = Terminal(log_format=log_format, verbosity=verbosity)
    return TERMINAL


def current() -> Terminal:
    return TERMINAL


def step_line(event: dict[str, Any]) -> str | None:
    """The few info events a person wants under a heading without -v: what a long step is doing
    (a Pulumi resource being created takes minutes; an unchanged one is not news)."""
    if event.get("stage") == "stack" and event.get("event") == "resource" and event.get("op") not in (None, "same"):
        return f"  {event['op']} {event.get('type')} {event.get('name')}"
    if event.get("stage") == "local" and event.get("event") == "seeding_sample_source":
        return "  seeding the demo Supabase project (once)"
    return None


def heading_for(event: dict[str, Any]) -> str | None:
    stage = event.get("stage")
    return STAGE_HEADINGS.get(stage) if isinstance(stage, str) else None


# -- what schema cleaning changed, by kind ------------------------------------------------------

VERBS = {"dropped": "removed", "rewritten": "rewrote", "modified": "modified", "skipped": "skipped"}


PREPOSITIONS = (" to ", " on ", " naming ", " in ", " that ")


def plural(noun: str) -> str:
    """The noun's plural, inflecting its head word: the last one before a preposition
    ('foreign key to auth.users' → 'foreign keys to auth.users', 'RLS policy' → 'RLS policies')."""
    cut = min((noun.find(p) for p in PREPOSITIONS if p in noun), default=len(noun))
    head, tail = noun[:cut], noun[cut:]
    stem, sep, word = head.rpartition(" ")
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy")):
        word = word[:-1] + "ies"
    elif word.endswith(("s", "x", "ch", "sh")):
        word += "es"
    else:
        word += "s"
    return f"{stem}{sep}{word}{tail}"


def count(n: int, noun: str) -> str:
    """'9,080 rows', '1 table', '3 RLS policies'."""
    return f"{n:,} {noun if n == 1 else plural(noun)}"


def change_noun(kind: str, obj: str, reason: str) -> str:
    """What one recorded change is about, in the words a person would count it by."""
    if kind in ("CREATE POLICY", "ALTER POLICY"):
        return "RLS policy"
    if "RowSecurity" in obj:
        return "RLS switch"
    if "→" in obj and "foreign key" in reason:
        return f"foreign key to {obj.rsplit('→', 1)[1].strip()}"
    if obj.startswith("event trigger"):
        return "event trigger"
    if "TRIGGER" in kind:
        return "auth trigger" if "auth." in f"{obj} {reason}" else "trigger on Supabase tables"
    if reason.startswith("touches ") and kind == "CREATE SCHEMA":
        return "Supabase schema"
    if reason.startswith("touches ") and kind.startswith("CREATE "):
        return f"{kind.removeprefix('CREATE ').lower()} in Supabase schemas"
    if obj.startswith("publication"):
        return "Realtime publication statement"
    if obj.startswith("extension"):
        return "extension"
    if obj.startswith("setting"):
        return "unknown setting"
    if kind in ("GRANT", "REVOKE", "GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES") or "membership" in obj:
        return "grant naming Supabase roles"
    if " owner " in obj or "authorization" in obj:
        return "owner naming a Supabase role"
    if obj.startswith("role "):
        return "Supabase role statement"
    if kind == "INVALID":
        return "unparsable statement"
    return f"{kind} statement" if kind else "statement"


def changes_by_kind(changes: Iterable[Any]) -> str:
    """E.g. 'removed 5 RLS policies, 4 foreign keys to auth.users; rewrote 1 extension' — read from
    the schema report's records (objects with action/kind/object/reason, or their dicts)."""
    counted: dict[str, Counter[str]] = {}
    for change in changes:
        get = change.get if isinstance(change, dict) else (lambda name, c=change: getattr(c, name, ""))
        noun = change_noun(str(get("kind")), str(get("object")), str(get("reason")))
        # a foreign key stripped from a kept CREATE TABLE is as removed as a dropped ALTER TABLE … ADD
        verb = "removed" if noun.startswith("foreign key") else VERBS.get(str(get("action")), str(get("action")))
        counted.setdefault(verb, Counter())[noun] += 1
    parts = []
    for verb, nouns in counted.items():
        parts.append(f"{verb} " + ", ".join(count(n, noun) for noun, n in nouns.most_common()))
    return "; ".join(parts)

