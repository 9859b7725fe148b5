"""The suite's own servers behave like the real ones in the ways the product depends on."""

import asyncpg
import pytest

from loaders.connect import connect
from loaders.dsn import parse_url
from loaders.errors import MigrationError


async def test_target_owner_is_not_superuser(target_db: str) -> None:
    conn = await asyncpg.connect(target_db)
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        assert await conn.fetchval("SHOW server_version_num") >= "180000"
    finally:
        await conn.close()


async def test_source_is_pg15(source_db: str) -> None:
    conn = await asyncpg.connect(source_db)
    try:
        assert (await conn.fetchval("SHOW server_version_num")).startswith("15")
    finally:
        await conn.close()


async def test_wrong_password_is_one_clear_line(pg18) -> None:
    url = parse_url(pg18.url(password="definitely-wrong"), "target")
    with pytest.raises(MigrationError) as info:
        await connect(url)
    line = info.value.one_line()
    assert "password authentication failed" in line and "fix:" in line
    assert "definitely-wrong" not in line


async def test_source_sessions_cannot_write(source_db: str) -> None:
    conn = await connect(parse_url(source_db, "source"))
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE should_not_exist (id int)")
    finally:
        await conn.close()


async def test_refused_port_names_the_side() -> None:
    url = parse_url("postgresql://u:pw@127.0.0.1:1/db", "source")
    with pytest.raises(MigrationError, match="source u@127.0.0.1:1/db: connection refused"):
        await connect(url)
