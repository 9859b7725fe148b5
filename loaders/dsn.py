"""Connection URLs: parse once, fail early with a fix, never show the password.

A bad URL is the first thing a user gets wrong, so it is checked before any connection
is tried, and the Supabase transaction pooler (port 6543) is refused here: it keeps no
session state, so exported snapshots and `SET TRANSACTION SNAPSHOT` cannot work through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from loaders.errors import MigrationError
from loaders.redaction import register_secret

TRANSACTION_POOLER_PORT = 6543
DEFAULT_PORT = 5432
ENV_VARS = {"source": "SOURCE_DATABASE_URL", "target": "TARGET_DATABASE_URL"}


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed postgres URL; `role` ("source"/"target") makes every message say which side."""

    role: str
    user: str
    password: str | None
    host: str
    port: int
    database: str
    query: tuple[tuple[str, str], ...] = ()

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def safe(self) -> str:
        """`user@host:port/db`: enough to recognise the server, nothing secret."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def dsn(self, *, with_password: bool = True) -> str:
        """A URL asyncpg and libpq both accept (sockets go in `host=`)."""
        auth = quote(self.user, safe="")
        if with_password and self.password:
            auth += ":" + quote(self.password, safe="")
        query = list(self.query)
        if self.is_socket:
            netloc = f"{auth}@"
            query = [("host", self.host), ("port", str(self.port)), *query]
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            netloc = f"{auth}@{host}:{self.port}"
        return urlunsplit(("postgresql", netloc, "/" + quote(self.database, safe=""), urlencode(query), ""))

    def libpq_env(self) -> dict[str, str]:
        """Environment for libpq tools (pg_dump, psql): the password travels here, not in argv."""
        env = {"PGAPPNAME": "supabase-to-rds", "PGCONNECT_TIMEOUT": "15"}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def with_database(self, database: str) -> "DatabaseUrl":
        return replace(self, database=database)

    def with_credentials(self, user: str, password: str | None) -> "DatabaseUrl":
        register_secret(password)
        return replace(self, user=user, password=password)


def _bad(role: str, what: str) -> MigrationError:
    return MigrationError(
        f"{role} URL is not a valid PostgreSQL URL ({what})",
        "use postgresql://USER:PASSWORD@HOST:5432/DBNAME (percent-encode special characters in the password)",
    )


def parse_url(url: str | None, role: str) -> DatabaseUrl:
    """Parse and validate; refuse the transaction pooler before anything connects."""
    if not url:
        env = ENV_VARS.get(role, "DATABASE_URL")
        raise MigrationError(f"no {role} database URL given", f"pass --{role} URL or set {env}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise _bad(role, str(exc)) from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise _bad(role, f"scheme {parts.scheme or '(none)'!r}, expected postgresql://")
    query = dict(parse_qsl(parts.query))
    host = parts.hostname or query.pop("host", "")
    if "port" in query:
        port = int(query.pop("port"))
    if not host:
        raise _bad(role, "no host")
    user = unquote(parts.username) if parts.username else ""
    if not user:
        raise _bad(role, "no user name")
    password = unquote(parts.password) if parts.password is not None else None
    register_secret(password)
    database = unquote(parts.path.lstrip("/")) or user
    parsed = DatabaseUrl(role, user, password, host, port or DEFAULT_PORT, database, tuple(query.items()))
    refuse_transaction_pooler(parsed)
    return parsed


def refuse_transaction_pooler(url: DatabaseUrl) -> None:
    if url.port == TRANSACTION_POOLER_PORT:
        raise MigrationError(
            f"{url.role} {url.host}:{url.port} is Supabase's transaction pooler, which cannot hold a "
            "snapshot or session state for a consistent copy",
            "use the direct connection (db.<ref>.supabase.co:5432) or the session pooler "
            "(aws-0-<region>.pooler.supabase.com:5432)",
        )


def url_from(arg: str | None, role: str) -> DatabaseUrl:
    """The URL from a CLI flag, else from SOURCE_/TARGET_DATABASE_URL."""
    return parse_url(arg or os.environ.get(ENV_VARS[role]), role)
