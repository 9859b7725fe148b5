"""Open asyncpg connections and pools that explain their own failures.

asyncpg raises a dozen exception types for "couldn't connect"; users need one line that
says which side failed, why, and what to do. Source sessions are opened read-only at the
server (`default_transaction_read_only`), so no code path can write to the source.

A connection that dies silently (server restarted, NAT entry dropped, cable pulled) must not
leave a COPY waiting forever: both ends get TCP keepalives — the client socket here, the
server's via `tcp_keepalives_*`/`tcp_user_timeout` in the startup packet (so a pool's
`RESET ALL` keeps them) — and unacknowledged data fails the socket after `tcp_user_timeout`.
"""

from __future__ import annotations

import socket
import ssl

import anyio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg

from loaders.dsn import CA_FLAGS, DatabaseUrl
from loaders.errors import MigrationError

APP_NAME = "supabase-to-rds"
CONNECT_TIMEOUT = 15.0
# asyncpg raises a bare ConnectionError with this text when the server answers an SSLRequest with
# "N" (no TLS) and sslmode does not allow plaintext; there is no dedicated exception type.
NO_TLS_MARKER = "rejected SSL upgrade"
# X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH: the chain is fine, the name is not.
NAME_MISMATCH = (62, 64)
CA_SOURCES = "Supabase: the CA from the project's Database settings; RDS: global-bundle.pem"
# Probe an idle peer after 30 s, every 10 s, give up after 3 misses; unacknowledged writes
# fail after 60 s. Both sides, so neither the tool nor the server waits on a dead peer.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT, USER_TIMEOUT_MS = 30, 10, 3, 60_000
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": str(KEEPALIVE_IDLE), "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
    "tcp_keepalives_count": str(KEEPALIVE_COUNT), "tcp_user_timeout": str(USER_TIMEOUT_MS),
}


def server_settings(url: DatabaseUrl) -> dict[str, str]:
    settings = {"application_name": APP_NAME}
    if not url.is_socket:
        settings.update(SERVER_KEEPALIVES)
    if url.role == "source":
        settings["default_transaction_read_only"] = "on"
    return settings


def explain_tls(exc: BaseException, url: DatabaseUrl) -> MigrationError | None:
    """TLS failures are OSErrors too; without this they would read as "unreachable"."""
    where = f"{url.role} {url.safe}"
    flag = CA_FLAGS.get(url.role, "--ca-bundle")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "certificate verify failed"
        if exc.verify_code in NAME_MISMATCH:
            return MigrationError(f"{where}: the server's TLS certificate is not valid for host {url.host!r} ({detail})",
                                  "connect by the host name the certificate names (the Supabase or RDS endpoint), not an alias or IP")
        return MigrationError(f"{where}: the server's TLS certificate is not signed by the CA in "
                              f"{url.sslrootcert or 'the given CA file'} ({detail})",
                              f"pass the CA that signed the server's certificate with {flag} ({CA_SOURCES})")
    if isinstance(exc, ssl.SSLError):
        return MigrationError(f"{where}: TLS handshake failed ({exc.reason or type(exc).__name__})",
                              f"check sslmode and the CA file ({CA_SOURCES})")
    if isinstance(exc, ConnectionError) and NO_TLS_MARKER in str(exc):
        return MigrationError(f"{where}: TLS required but the server offers none (sslmode={url.sslmode})",
                              "enable TLS on the server; only on a network you trust, add sslmode=prefer to the URL")
    return None


def _keepalive(conn: asyncpg.Connection) -> None:
    """Client-side keepalives on the connection's TCP socket (asyncpg sets none)."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                        ("TCP_KEEPCNT", KEEPALIVE_COUNT), ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS)):
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def too_many_connections(where: str) -> MigrationError:
    return MigrationError(f"{where}: the server has no free connection slot (too many connections)",
                          "lower --jobs, or close other sessions on that server, then rerun with --resume")


def explain(exc: BaseException, url: DatabaseUrl) -> MigrationError:
    """Translate a connection failure into cause + fix, naming the side but not the password."""
    where = f"{url.role} {url.safe}"
    tls = explain_tls(exc, url)
    if tls is not None:
        return tls
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return MigrationError(f"{where}: password authentication failed", f"check the password in the {url.role} URL")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return MigrationError(f"{where}: role or host not allowed ({exc})", "check the user name and the server's pg_hba rules")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return too_many_connections(where)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return MigrationError(f"{where}: database {url.database!r} does not exist", "create it or fix the database name in the URL")
    if isinstance(exc, socket.gaierror):
        return MigrationError(
            f"{where}: host name {url.host!r} does not resolve",
            "check the host; Supabase direct hosts are IPv6-only, use the session pooler on IPv4 networks",
        )
    if isinstance(exc, ConnectionRefusedError):
        return MigrationError(f"{where}: connection refused", "check that the server runs and listens on that host and port")
    if isinstance(exc, (TimeoutError, OSError)):
        return MigrationError(
            f"{where}: unreachable ({type(exc).__name__})",
            "check the host, port, firewall or security group (RDS allows only allowedCidrs)",
        )
    if isinstance(exc, asyncpg.PostgresError):
        return MigrationError(f"{where}: {exc}", "fix the connection settings")
    return MigrationError(f"{where}: {type(exc).__name__}: {exc}", "check the URL")


async def connect(url: DatabaseUrl, **kwargs: object) -> asyncpg.Connection:
    try:
        conn = await asyncpg.connect(
            url.dsn(), timeout=CONNECT_TIMEOUT, server_settings=server_settings(url), **kwargs
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise explain(exc, url) from None
    _keepalive(conn)
    return conn


@asynccontextmanager
async def connection(url: DatabaseUrl, **kwargs: object) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(url, **kwargs)
    try:
        yield conn
    finally:
        await close_quietly(conn)


async def close_quietly(conn: asyncpg.Connection, timeout: float = 5) -> None:
    """Close even when cancelled; a close that hangs (dead peer) is cut off by dropping the socket."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(timeout):
                await conn.close()
        except (TimeoutError, asyncpg.InterfaceError, OSError):
            try:
                conn.terminate()
            except asyncpg.InterfaceError:
                pass


async def create_pool(url: DatabaseUrl, size: int, **kwargs: object) -> asyncpg.Pool:
    """Every pooled connection (also the ones the pool opens later) gets keepalives; a caller's
    `init=` still runs after that."""
    user_init = kwargs.pop("init", None)

    async def init(conn: asyncpg.Connection) -> None:
        _keepalive(conn)
        if user_init is not None:
            await user_init(conn)  # type: ignore[operator]

    try:
        return await asyncpg.create_pool(
            url.dsn(), min_size=1, max_size=size, timeout=CONNECT_TIMEOUT,
            server_settings=server_settings(url), init=init, **kwargs,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise explain(exc, url) from None
