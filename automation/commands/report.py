"""Writing a command's JSON report: one place, so every report is scrubbed of secrets the same way."""

from __future__ import annotations

import json
from pathlib import Path

from loaders.redaction import scrub_value


def write_report(path: str | Path | None, payload: dict[str, object]) -> None:
    """Scrubbed, indented JSON at `path` (parent folders created); nothing when no path is given."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(scrub_value(payload), indent=2, default=str) + "\n")
