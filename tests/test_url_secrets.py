"""Whatever a password contains, unencoded, nothing of it comes out of URL handling.

A seeded random sweep over passwords built from every URL-special character, on several host
and query shapes: each URL either parses (and then its repr, libpq argv form and `safe` form, and
scrubbed free text quoting the URL hold no piece of the password) or fails with a MigrationError
whose line holds none. Any other exception type fails the test too (it would become a traceback).
"""

from __future__ import annotations

import random
import re
import string

from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.redaction import scrub

ALPHABET = string.ascii_letters + string.digits + "/#?@:%[]!$&'()*+,;= ~\\\"<>{}|^`"
HOSTS = ("127.0.0.1", "db.abcdefgh.supabase.co", "[::1]", "h")
TAILS = ("/db", ":5432/db", "", "/db?sslmode=require", ":5432/db?port=12", "/db?application_name=x")


def test_no_piece_of_any_password_survives_parsing_or_its_errors() -> None:
    rng = random.Random(20261124)
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(3000):
        password = "Zq" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(4, 16))) + "Xw"
        url = f"postgresql://user:{password}@{rng.choice(HOSTS)}{rng.choice(TAILS)}"
        try:
            parsed = parse_url(url, "source")
            shown = scrub(f"connecting {url} {parsed!r} {parsed.dsn(with_password=False)} {parsed.safe}")
            assert parsed.password == password or "%" in password  # %XX sequences are decoded, as libpq does
            outcomes["parsed"] += 1
        except MigrationError as exc:
            shown = scrub(exc.one_line())
            outcomes["refused"] += 1
        pieces = [password, *(p for p in re.split(r"[^A-Za-z0-9]", password) if len(p) >= 4)]
        assert not [p for p in pieces if p in shown], (url, shown)
    assert min(outcomes.values()) > 500  # both paths exercised


def test_a_password_in_the_query_is_taken_out_of_it() -> None:
    url = parse_url("postgresql://u@db.abcdefgh.supabase.co/postgres?password=Qpw-in-query", "source")
    assert url.password == "Qpw-in-query"
    assert "Qpw-in-query" not in url.dsn(with_password=False) + repr(url)
    assert "Qpw-in-query" not in scrub("server said: Qpw-in-query")
