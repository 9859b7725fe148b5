"""Real Supabase app patterns (issue 11), end to end through `migrate --migrations`: the
folder runs on a Supabase-like source as Supabase runs it, then moves onto an RDS-like
target owned by a non-superuser. After `migrate` the app's own statements run **as the
application role**: DML on every table, every kept function called, nothing failing for a
reason the report does not name.

pgcrypto: the embedded PG 18 wheel has no pgcrypto, so the token generator runs PG 15 →
PG 15 (Debian's contrib has it, as RDS does); onto PG 18 it shows the extension pre-check
refusing before any change. pgvector: PG 15 here has no `vector`, so the chat app runs
PG 18 → PG 18; the target's non-superuser master creates `vector` itself, as RDS lets its
master user do (the local stand-in marks RDS's extensions trusted; issue 11.7).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import asyncpg
import pytest

from automation.cli import main
from loaders.dsn import parse_url
from loaders.localpg import LocalPostgres
from loaders.schema.apply import apply_statements
from loaders.schema.clean import split_statements
from loaders.schema.migrations import read_folder
from loaders.schema.target import extension_of
from tests.conftest import create_database
from tests.datakit import fetchrows, fetchval, run_sql
from tests.schema_support import supabase_like

APPS = Path(__file__).parent / "fixtures" / "apps"
APP_ROLE, APP_PASSWORD = "app_backend", "app-pw-test-4711"
# A stand-in for plv8 on the source only: a language whose bodies are stored, never run,
# in schema `extensions` (left out of dumps and diffs, like Supabase's own plv8).
PLV8_STAND_IN = """
CREATE FUNCTION extensions.plv8_stand_in() RETURNS language_handler AS '$libdir/plpgsql', 'plpgsql_call_handler' LANGUAGE c;
CREATE LANGUAGE plv8 HANDLER extensions.plv8_stand_in;
"""


async def cli(argv: list[str]) -> int:
    return await anyio.to_thread.run_sync(main, argv)


async def run_folder_as_supabase(url: str, folder: Path) -> None:
    """Raw statements, file by file, as on Supabase: platform extensions this server lacks are
    skipped (Supabase has them), bodies are not checked at creation (they call pg_net/http)."""
    conn = await asyncpg.connect(url)
    try:
        available = {r[0] for r in await conn.fetch("SELECT name FROM pg_available_extensions")}
        await conn.execute("SET check_function_bodies = off")
        for unit in read_folder(folder):
            statements = [s for s in split_statements(unit.text, source_name=unit.name)
                          if s.kind != "CREATE EXTENSION" or extension_of(s)[0] in available]
            await apply_statements(conn, statements)
    finally:
        await conn.close()


async def as_app_role(target: str, sql: str, *args: object) -> object:
    url = parse_url(target, "target").with_credentials(APP_ROLE, APP_PASSWORD).dsn()
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def migrate(source: str, target: str, folder: Path, report: Path, *extra: str) -> tuple[int, dict]:
    code = await cli(["migrate", "--source", source, "--target", target, "--migrations", str(folder),
                      "--app-role", APP_ROLE, "--jobs", "2", "--report", str(report), *extra])
    return code, json.loads(report.read_text())


@pytest.fixture
async def docs_source(pg15: LocalPostgres) -> str:
    url = await supabase_like(pg15)
    await run_sql(url, PLV8_STAND_IN)
    await run_folder_as_supabase(url, APPS / "docs_app")
    # Life after the migrations: rows, and the config row changed at runtime (the source is the truth).
    await run_sql(url, """
        ALTER TABLE public.documents DISABLE TRIGGER on_document_created;
        INSERT INTO public.documents (title, body) SELECT 'doc ' || i, 'text' FROM generate_series(1, 50) i;
        UPDATE public.app_config SET value = '"text-embedding-3-large"' WHERE key = 'embedding_model';
        INSERT INTO public.app_config VALUES ('max_upload_mb', '25');
    """)
    return url


async def test_document_app_migrates_and_runs_as_the_app_role(
    docs_source: str, target_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ROLE_PASSWORD", APP_PASSWORD)
    code, report = await migrate(docs_source, target_db, APPS / "docs_app", tmp_path / "report.json")
    assert code == 0, report.get("error")
    assert report["ok"]
    schema = report["schema"]
    changes = {(c["where"], c["object"]): c for c in schema["changes"]}

    # Each loss reported with file:line, the object, the missing dependency and what to do.
    trigger_fn = changes[("20240301000100_documents.sql:10", "function public.notify_document_created")]
    assert "net.http_post" in trigger_fn["reason"] and "pg_net" in trigger_fn["reason"] and "instead:" in trigger_fn["reason"]
    assert ("20240301000100_documents.sql:24", "trigger on_document_created on public.documents") in changes
    assert "extensions.http" in changes[("20240301000200_webhooks.sql:2", "function public.ping_webhook")]["reason"]
    assert "Auth hook" in changes[("20240301000300_auth_hook.sql:2", "function public.custom_access_token_hook")]["reason"]
    assert "auth.users" in changes[("20240301000300_auth_hook.sql:17", "function public.delete_my_account")]["reason"]
    assert ("20240301000500_storage_view.sql:2", "public.my_files") in changes

    # The diff knows what the cleaner removed: listed, not a mismatch.
    explained = {d["object"] for d in schema["diff"]["removed_on_purpose"]}
    assert {"public.my_files", "public.notify_document_created()", "public.ping_webhook(payload jsonb)",
            "public.custom_access_token_hook(event jsonb)", "public.delete_my_account()"} <= explained
    assert schema["diff"]["differences"] == []

    # The config row came from the migration files: emptied, then refilled from the source.
    assert schema["seeded_tables"] == ["public.app_config"] and schema["seeded_tables_emptied"]
    assert await fetchrows(target_db, "SELECT key, value::text FROM public.app_config ORDER BY key") == [
        ("embedding_model", '"text-embedding-3-large"'), ("max_upload_mb", "25")]

    # A rerun before the app writes converges: nothing new applied, the copied rows are kept, still verified.
    code, again = await migrate(docs_source, target_db, APPS / "docs_app", tmp_path / "again.json", "--resume")
    assert code == 0 and again["schema"]["applied"] == [] and again["schema"]["seeded_tables"] == []
    assert await fetchval(target_db, "SELECT count(*) FROM public.app_config") == 2
    assert await fetchval(target_db, "SELECT count(*) FROM public.documents") == 50

    # No trigger left that cannot run; the app's statements work as the application role.
    assert await fetchrows(target_db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == []
    new_id = await as_app_role(target_db, "SELECT public.add_document('from the app', 'body')")
    assert await as_app_role(target_db, "SELECT public.document_count()") == 51
    assert await as_app_role(target_db, "UPDATE public.documents SET body = 'edited' WHERE id = $1 RETURNING id", new_id) == new_id
    assert await as_app_role(target_db, "DELETE FROM public.documents WHERE id = $1 RETURNING id", new_id) == new_id
    assert await as_app_role(target_db, "INSERT INTO public.app_config VALUES ('k', '1') RETURNING key") == "k"
    assert await as_app_role(target_db, "DELETE FROM public.app_config WHERE key = 'k' RETURNING key") == "k"
    # …though the kept ALTER DEFAULT PRIVILEGES took EXECUTE from PUBLIC, as on the source.
    assert not await fetchval(target_db, "SELECT has_function_privilege('public', 'public.document_count()', 'EXECUTE')")

    # Once the app has written, a rerun refuses to touch the live target and changes nothing.
    code, again = await migrate(docs_source, target_db, APPS / "docs_app", tmp_path / "again.json", "--resume")
    assert code == 1 and "is live" in again["error"]
    assert await fetchval(target_db, "SELECT count(*) FROM public.documents") == 50


async def test_chat_app_with_pgvector_keeps_search_and_drops_the_http_trigger(
    pg18: LocalPostgres, target_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ROLE_PASSWORD", APP_PASSWORD)
    source = await create_database(pg18)
    await run_sql(source, "CREATE SCHEMA extensions; CREATE EXTENSION vector WITH SCHEMA extensions;")
    await run_folder_as_supabase(source, APPS / "chat_app")
    await run_sql(source, """
        ALTER TABLE public.messages DISABLE TRIGGER embed_on_insert;
        INSERT INTO public.messages (room, content, embedding)
        SELECT 'general', 'message ' || i, ARRAY[i, i % 7, 1]::extensions.vector FROM generate_series(1, 40) i;
    """)
    # Nothing prepared on the target: its master creates the schema and `vector` as on RDS.
    assert not await fetchval(target_db, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
    code, report = await migrate(source, target_db, APPS / "chat_app", tmp_path / "chat.json")
    assert code == 0, report.get("error")
    reasons = {c["object"]: c["reason"] for c in report["schema"]["changes"]}
    assert "http" in reasons["function public.embed_message"]
    assert "trigger embed_on_insert on public.messages" in reasons
    assert "USING hnsw" in str(await fetchval(
        target_db, "SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_embedding_idx'"))
    assert await as_app_role(target_db, "INSERT INTO public.messages (room, content, embedding) "
                                        "VALUES ('general', 'hi', '[1,2,3]') RETURNING room") == "general"
    nearest = await as_app_role(target_db, "SELECT content FROM public.match_messages('[1,2,3]', 1)")
    assert nearest == "hi"


async def test_token_generator_gets_pgcrypto_from_its_body(
    pg15: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ROLE_PASSWORD", APP_PASSWORD)
    source = await supabase_like(pg15)
    await run_folder_as_supabase(source, APPS / "tokens_app")
    target = await create_database(pg15, owner_is_superuser=False)
    code, report = await migrate(source, target, APPS / "tokens_app", tmp_path / "tokens.json")
    assert code == 0, report.get("error")
    assert 'CREATE EXTENSION IF NOT EXISTS "pgcrypto" WITH SCHEMA extensions' in report["schema"]["target_setup"]
    assert "pgcrypto" in report["schema"]["extension_check"]
    raw = await as_app_role(target, "SELECT public.create_api_key('ci')")
    assert len(raw) == 48
    assert await fetchval(target, "SELECT key_hash = encode(extensions.digest($1, 'sha256'), 'hex') FROM public.api_keys", raw)


async def test_extension_precheck_refuses_before_any_change_and_writes_the_report(
    pg15: LocalPostgres, target_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("APP_ROLE_PASSWORD", APP_PASSWORD)
    source = await supabase_like(pg15)
    await run_folder_as_supabase(source, APPS / "tokens_app")
    code, report = await migrate(source, target_db, APPS / "tokens_app", tmp_path / "fail.json")
    assert code == 1
    err = capsys.readouterr().err
    assert "extension pre-check" in err and "pgcrypto" in err and "gen_random_bytes" in err
    assert "extension pre-check" in report["error"] and report["schema"]["applied"] == []
    assert await fetchval(target_db, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('supabase_to_rds', 'extensions')") == 0


async def test_document_app_from_a_dump_of_the_source(
    docs_source: str, target_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the folder: pg_dump's pre-data holds the functions, its post-data the trigger;
    the Auth hook is known from the source's grants (a dump carries none)."""
    monkeypatch.setenv("APP_ROLE_PASSWORD", APP_PASSWORD)
    report_path = tmp_path / "dump.json"
    code = await cli(["migrate", "--source", docs_source, "--target", target_db, "--app-role", APP_ROLE,
                      "--jobs", "2", "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0, report.get("error") or report["schema"]["diff"]
    removed = {c["object"]: c["where"] for c in report["schema"]["changes"] if c["action"] == "dropped"}
    assert removed["trigger on_document_created on public.documents"].startswith("pg_dump/post-data.sql:")
    assert {"function public.notify_document_created", "function public.custom_access_token_hook",
            "function public.ping_webhook", "function public.delete_my_account"} <= set(removed)
    assert await fetchrows(target_db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == []
    new_id = await as_app_role(target_db, "SELECT public.add_document('from the app')")
    assert await as_app_role(target_db, "DELETE FROM public.documents WHERE id = $1 RETURNING id", new_id) == new_id
