"""Target adaptation (pure) and the pg_dump guards: version check, no password on argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from loaders.localpg import debian_bin_dir
from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.schema.clean import clean_sql
from loaders.schema.export import default_pg_dump, dump_command, dump_schema, without_restrict
from loaders.schema.target import TargetServer, adapt_to_target

PG16_LIKE = TargetServer(frozenset({"plpgsql", "pg_trgm"}), frozenset({"search_path", "lock_timeout"}))


def test_unknown_settings_dropped_known_and_custom_kept():
    cleaned = clean_sql("SET transaction_timeout = 0;\nSET lock_timeout = 0;\nSET app.tenant = 'x';",
                        source_name="pre-data.sql")
    statements, changes = adapt_to_target(cleaned.statements, PG16_LIKE)
    assert [s.sql for s in statements] == ["SET lock_timeout = 0", "SET app.tenant = 'x'"]
    assert [(c.line, c.object, c.action) for c in changes] == [(1, "setting transaction_timeout", "dropped")]


def test_missing_extension_gets_fallback_or_a_clear_error():
    cleaned = clean_sql('create extension if not exists "uuid-ossp";\ncreate extension pg_trgm;', source_name="x.sql")
    statements, changes = adapt_to_target(cleaned.statements, PG16_LIKE)
    assert statements[0].sql.startswith('CREATE OR REPLACE FUNCTION "extensions".uuid_generate_v4() RETURNS uuid')
    assert statements[1].kind == "CREATE EXTENSION"
    assert changes[0].object == "extension uuid-ossp" and changes[0].action == "rewritten"

    postgis = clean_sql("create extension postgis;", source_name="y.sql")
    with pytest.raises(MigrationError) as err:
        adapt_to_target(postgis.statements, PG16_LIKE)
    assert err.value.cause == "y.sql:1: extension postgis is not available on the target server"


def test_pg_dump_gets_no_password_on_argv():
    url = parse_url("postgresql://u:pa55-word-x@db.example.com:5432/app?sslmode=require", "source")
    command = dump_command(Path("/bin/pg_dump"), url, "pre-data", "KEY")
    assert not any("pa55-word-x" in arg for arg in command)
    assert "--schema-only" in command and "--no-owner" in command and "--no-acl" in command
    assert ["--exclude-schema", "auth"] == command[command.index("auth") - 1: command.index("auth") + 1]
    assert url.libpq_env()["PGPASSWORD"] == "pa55-word-x"


def test_restrict_lines_removed_only_for_our_key():
    text = "--\n\\restrict K1\n\nCREATE TABLE t ();\n$$\n\\restrict other\n$$\n\\unrestrict K1\n"
    assert without_restrict(text, "K1") == "--\n\nCREATE TABLE t ();\n$$\n\\restrict other\n$$\n"


async def test_older_pg_dump_refuses_newer_source(pg18):
    old = debian_bin_dir(15)
    assert old is not None and default_pg_dump().exists()
    with pytest.raises(MigrationError) as err:
        await dump_schema(parse_url(pg18.url(), "source"), pg_dump=old / "pg_dump")
    assert err.value.cause == "source server is PostgreSQL 18 but pg_dump is 15"
