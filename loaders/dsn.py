"""Connection URLs: parse once, fail early with a fix, never show the password.

A bad URL is the first thing a user gets wrong, so it is checked before any connection
is tried, and the Supabase transaction pooler (port 6543) is refused here: it keeps no
session state, so exported snapshots and `SET TRANSACTION SNAPSHOT` cannot work through it.

The password is registered for redaction before the URL is parsed, because a parser that
fails on it (an unencoded `/`, `#` or `?`) would otherwise quote it back in its error.
TLS is decided here too, once for every client (asyncpg and pg_dump): a host off this machine
gets `sslmode=require` unless the URL says otherwise, `verify-full` when a CA file is given.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import structlog

from loaders.errors import MigrationError
from loaders.redaction import register_secret, register_url_password

TRANSACTION_POOLER_PORT = 6543
DEFAULT_PORT = 5432
ENV_VARS = {"source": "SOURCE_DATABASE_URL", "target": "TARGET_DATABASE_URL"}
URL_FILE_FLAGS = {"source": "--source-file", "target": "--target-file"}
CA_FLAGS = {"source": "--source-ca", "target": "--ca-bundle"}
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_REQUIRED = ("require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")
LIBPQ_DEFAULT_SSLMODE = "prefer"


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed postgres URL; `role` ("source"/"target") makes every message say which side."""

    role: str
    user: str
    password: str | None = field(repr=False)
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

    @property
    def sslmode(self) -> str:
        return dict(self.query).get("sslmode", LIBPQ_DEFAULT_SSLMODE)

    @property
    def sslrootcert(self) -> str | None:
        return dict(self.query).get("sslrootcert")

    @property
    def tls_required(self) -> bool:
        return self.sslmode in TLS_REQUIRED and not self.is_socket

    def libpq_env(self) -> dict[str, str]:
        """Environment for libpq tools (pg_dump, psql): the password travels here, not in argv,
        and the TLS settings are repeated so a tool given only host and database still uses them."""
        env = {"PGAPPNAME": "supabase-to-rds", "PGCONNECT_TIMEOUT": "15", "PGSSLMODE": self.sslmode}
        if self.sslrootcert:
            env["PGSSLROOTCERT"] = self.sslrootcert
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
        "use postgresql://USER:PASSWORD@HOST:5432/DBNAME and percent-encode special characters in the "
        "password (/ %2F, # %23, ? %3F, @ %40, : %3A, % %25)",
    )


def _port(role: str, text: str | None) -> int:
    """The port, never echoed: after a mis-split URL it may be a piece of the password."""
    if text is None or text == "":
        return DEFAULT_PORT
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise _bad(role, "the port is not a number from 1 to 65535")
    return int(text)


def _at_after_netloc(rest: str) -> bool:
    """An `@` past the first `/`, `?` or `#`: a password with one of those unencoded. Parsers then
    take a piece of the password for the host, port or database name and print it."""
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    return bool(ends) and "@" in rest[min(ends):]


def is_loopback(host: str) -> bool:
    """This machine, judged from the URL alone (no DNS): a Unix socket, `localhost` or a loopback
    address. A name that merely resolves to 127.0.0.1 counts as remote, the stricter side."""
    if host.startswith("/") or host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_ca_file(role: str, path: str) -> None:
    """A CA file that is missing or not PEM fails here, with the flag that named it, not deep in a handshake."""
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise MigrationError(f"{role} CA file {path} does not exist",
                             f"download the server's CA certificate and pass its path with {CA_FLAGS[role]}") from None
    except (ssl.SSLError, OSError) as exc:
        raise MigrationError(f"{role} CA file {path} is not a PEM certificate file ({type(exc).__name__})",
                             "pass the PEM bundle itself (Supabase: the .crt from Database settings; RDS: global-bundle.pem)") from None


def tls_settings(role: str, host: str, query: dict[str, str], ca: str | None) -> dict[str, str]:
    """`sslmode`/`sslrootcert` for this host: what the URL says, else `verify-full` with a CA file,
    `require` off this machine, libpq's `prefer` on it. A CA file with a weaker explicit sslmode is
    a contradiction and refused rather than silently ignored."""
    sslmode = query.get("sslmode")
    rootcert = ca or query.get("sslrootcert")
    if sslmode is not None and sslmode not in SSLMODES:
        raise _bad(role, f"sslmode must be one of {', '.join(SSLMODES)}")
    if rootcert:  # asyncpg has no sslrootcert=system: a file is needed on both clients
        _check_ca_file(role, rootcert)
    if sslmode is None:
        sslmode = "verify-full" if rootcert else (LIBPQ_DEFAULT_SSLMODE if is_loopback(host) else "require")
    elif ca and sslmode not in VERIFYING:
        raise MigrationError(f"{role} URL says sslmode={sslmode} but {CA_FLAGS[role]} asks to verify the server",
                             "drop sslmode from the URL (verify-full is then used) or set sslmode=verify-full")
    if sslmode in VERIFYING and not rootcert:
        raise MigrationError(f"{role} URL asks for sslmode={sslmode} but no CA certificate is given",
                             f"pass the server's CA file with {CA_FLAGS[role]}")
    if sslmode not in TLS_REQUIRED and not is_loopback(host):
        structlog.get_logger(stage="connect").warning(
            "tls_not_required", role=role, host=host, sslmode=sslmode,
            note="the URL allows an unencrypted connection to a remote host")
    settings = {**query, "sslmode": sslmode}
    if rootcert:
        settings["sslrootcert"] = rootcert
    return settings


def parse_url(url: str | None, role: str, *, ca: str | None = None) -> DatabaseUrl:
    """Register the password, then parse and validate; refuse the transaction pooler before
    anything connects. `ca` is the CA file from --source-ca / --ca-bundle."""
    if not url:
        env = ENV_VARS.get(role, "DATABASE_URL")
        raise MigrationError(f"no {role} database URL given",
                             f"set {env}, or pass {URL_FILE_FLAGS.get(role, '--' + role + '-file')} FILE (or --{role} URL)")
    text = url.strip()
    register_url_password(text)
    try:
        parts = urlsplit(text)
    except ValueError:
        raise _bad(role, "the host cannot be read; IPv6 addresses go in [brackets]") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise _bad(role, f"scheme {parts.scheme or '(none)'!r}, expected postgresql://")
    if _at_after_netloc(text[len(parts.scheme) + 3:]):
        raise _bad(role, "an @ after the first /, # or ?; is there an unencoded /, # or ? in the password?")
    query = dict(parse_qsl(parts.query))
    # libpq also takes ?password=…; kept in the query it would reach pg_dump's argv and the logs.
    in_query = query.pop("password", None)
    password = unquote(parts.password) if parts.password is not None else in_query
    register_secret(in_query)
    register_secret(password)
    host = parts.hostname or query.pop("host", "")
    netloc_port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    port = _port(role, query.pop("port", None) or netloc_port)
    if not host:
        raise _bad(role, "no host")
    user = unquote(parts.username) if parts.username else ""
    if not user:
        raise _bad(role, "no user name")
    database = unquote(parts.path.lstrip("/")) or user
    query = tls_settings(role, host, query, ca)
    parsed = DatabaseUrl(role, user, password, host, port, database, tuple(query.items()))
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


def read_url_file(path: str | Path, role: str) -> str:
    """The URL kept in a file (first line that is not blank or a # comment): out of argv and shell
    history. A file other users can read gets a warning, not a refusal."""
    file = Path(path)
    try:
        lines = file.read_text().splitlines()
        mode = file.stat().st_mode
    except OSError as exc:
        raise MigrationError(f"{role} URL file {file} cannot be read ({exc.strerror})",
                             f"write the URL alone into that file (chmod 600) or set {ENV_VARS[role]}") from None
    url = next((line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    register_url_password(url)
    if not url:
        raise MigrationError(f"{role} URL file {file} holds no URL", "write postgresql://USER:PASSWORD@HOST:5432/DBNAME into it")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        structlog.get_logger(stage="connect").warning(
            "url_file_readable_by_others", role=role, file=str(file), mode=oct(mode & 0o777), fix=f"chmod 600 {file}")
    return url


def warn_password_in_argv(url: DatabaseUrl) -> None:
    """A password in argv is readable by every local user (`ps`, /proc) and lands in shell history."""
    if url.password:
        structlog.get_logger(stage="connect").warning(
            "password_on_command_line", role=url.role, why="other local users can read it in ps and shell history",
            fix=f"set {ENV_VARS[url.role]} or pass {URL_FILE_FLAGS[url.role]} FILE instead of --{url.role} URL")


def url_from(arg: str | None, role: str, *, file: str | Path | None = None, ca: str | None = None) -> DatabaseUrl:
    """The URL from --source/--target, else from --source-file/--target-file, else from
    SOURCE_/TARGET_DATABASE_URL; a password given in argv works but is warned about."""
    if arg:
        register_url_password(arg)
        if file:
            raise MigrationError(f"both --{role} and {URL_FILE_FLAGS[role]} given", "pass only one of them")
        parsed = parse_url(arg, role, ca=ca)
        warn_password_in_argv(parsed)
        return parsed
    if file:
        return parse_url(read_url_file(file, role), role, ca=ca)
    return parse_url(os.environ.get(ENV_VARS[role]), role, ca=ca)


def url_given(arg: str | None, role: str, *, file: str | Path | None = None) -> bool:
    """Whether any of the three ways names a URL for `role` (for commands where it is optional)."""
    return bool(arg or file or os.environ.get(ENV_VARS[role]))
