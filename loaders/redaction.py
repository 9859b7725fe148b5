"""Keep passwords and secret outputs out of every log line, error and report.

Redaction works on two levels: every secret the program learns (URL passwords, Pulumi
secret outputs, Secrets Manager values) is registered here, and any string that is
printed is scrubbed of registered values *and* of the password part of anything that
parses as a connection URL. The registry catches secrets that appear out of context
(e.g. inside a server error message); the URL rule catches URLs we never parsed.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_MIN_SECRET_LEN = 4
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that every later `scrub` hides it."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (user, host, port and db stay readable)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _scrub_urls(text: str) -> str:
    if "://" not in text:
        return text
    words = text.split(" ")
    for i, word in enumerate(words):
        if "://" in word and "@" in word:
            words[i] = mask_url(word)
    return " ".join(words)


def scrub(text: str) -> str:
    """Hide registered secrets and URL passwords in free text."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return _scrub_urls(text)


def scrub_value(value: object) -> object:
    """`scrub` applied through dicts, lists and strings (for structlog event dicts and JSON reports)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(v) for v in value)
    return value
