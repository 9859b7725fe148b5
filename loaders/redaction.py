"""Keep passwords and secret outputs out of every log line, error and report.

Redaction works on two levels: every secret the program learns (URL passwords, Pulumi
secret outputs, Secrets Manager values) is registered here, and any string that is
printed is scrubbed of registered values *and* of the password part of anything that
parses as a connection URL. The registry catches secrets that appear out of context
(e.g. inside a server error message); the URL rule catches URLs we never parsed.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote

MASK = "***"
_MIN_SECRET_LEN = 4
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that every later `scrub` hides it."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def userinfo_span(url: str) -> tuple[int, int] | None:
    """Where `USER:PASSWORD` sits in `scheme://USER:PASSWORD@host…`, found without a URL parser:
    from `://` to the LAST `@`. A parser stops the userinfo at an unencoded `/`, `?` or `#` in the
    password and then quotes the rest back in its error; this rule still covers the whole password
    (it may over-cover when an `@` sits in the query, which only hides more)."""
    start = url.find("://")
    end = url.rfind("@")
    if start < 0 or end < start + 3:
        return None
    return start + 3, end


def register_url_password(url: str) -> None:
    """Register the password of a URL (raw and percent-decoded) before anything tries to parse it."""
    span = userinfo_span(url)
    if span is None:
        return
    _user, sep, password = url[span[0]:span[1]].partition(":")
    if sep:
        register_secret(password)
        register_secret(unquote(password))


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (user, host, port and db stay readable);
    works on URLs no parser accepts, e.g. with an unencoded `/` or `#` in the password."""
    span = userinfo_span(url)
    if span is None:
        return url
    user, sep, _password = url[span[0]:span[1]].partition(":")
    if not sep:
        return url
    return f"{url[:span[0]]}{user}:{MASK}{url[span[1]:]}"


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
