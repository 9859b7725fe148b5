"""Applying the schema to a PG 18 target owned by a non-superuser, from both origins."""

from __future__ import annotations

import json
import secrets
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest
from pglast import ast, parser

from loaders.errors import MigrationError
from loaders.schema.migrations import read_folder
from loaders.schema.stage import SchemaOptions, finish_schema, plan_schema, prepare_schema
from loaders.schema.diff import diff_schemas
from tests.schema_support import (
    MIGRATIONS, apply_reference, execute, public_columns, source_url, supabase_like, supabase_source, target_url,
)


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def write_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


async def test_dump_of_supabase_source_applies_to_pg18(pg15, target_db):
    source = await supabase_source(pg15)
    src, tgt = source_url(source), target_url(target_db)
    assert (await fetch(target_db, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))[0][0] is False

    report = await prepare_schema(src, tgt, SchemaOptions())
    assert report.applied == ["pg_dump/pre-data.sql"]
    assert report.diff is not None and report.diff.equal, report.diff
    indexes_before = await fetch(target_db, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    assert indexes_before == []  # indexes wait for finish_schema (after the data load)

    report = await finish_schema(tgt, report, src)
    assert report.post_data_applied and report.diff.equal, report.diff.differences
    assert await public_columns(target_db) == await public_columns(source)

    changes = json.loads(report.to_json())["changes"]
    dropped_fks = {c["object"] for c in changes if "foreign key" in c["reason"]}
    assert dropped_fks == {
        "public.profiles constraint profiles_id_fkey → auth.users",
        "public.tasks constraint tasks_assignee_fkey → auth.users",
        "public.team_members constraint team_members_user_id_fkey → auth.users",
        "public.teams constraint teams_created_by_fkey → auth.users",
    }
    assert sum(c["kind"] == "CREATE POLICY" for c in changes) == 5
    assert sum("EnableRowSecurity" in c["object"] for c in changes) == 4
    assert sum("supabase_realtime" in c["object"] for c in changes) == 3
    assert all(c["where"].startswith("pg_dump/post-data.sql:") or c["where"].startswith("pg_dump/pre-data.sql:")
               for c in changes)

    # The AFTER INSERT trigger came along and works; auth.uid() (a column default) resolves.
    await fetch(target_db, "INSERT INTO public.teams (slug, name, created_by) VALUES ('a', 'A', gen_random_uuid())")
    await fetch(target_db, "INSERT INTO public.projects (team_id, name) SELECT id, 'p' FROM public.teams")
    await fetch(target_db, "INSERT INTO public.tasks (project_id, title) SELECT id, 't' FROM public.projects")
    assert (await fetch(target_db, "SELECT action FROM public.activity"))[0][0] == "created"

    again = await prepare_schema(src, tgt, SchemaOptions())
    assert again.applied == [] and again.already_applied == ["pg_dump/pre-data.sql"]


def count_policies(folder: Path) -> int:
    return sum(
        isinstance(raw.stmt, ast.CreatePolicyStmt)
        for unit in read_folder(folder)
        for raw in parser.parse_sql(unit.text.replace("where;", "where true;"))
    )


async def test_migrations_folder_matches_supabase_like_reference(pg15, target_db, tmp_path):
    reference = await supabase_like(pg15)
    await apply_reference(reference)
    options = SchemaOptions(migrations=MIGRATIONS, skip_invalid=True)
    tgt = target_url(target_db)

    report = await prepare_schema(None, tgt, options)
    assert len(report.applied) == len(read_folder(MIGRATIONS)) >= 20
    assert await public_columns(target_db) == await public_columns(reference)
    diff = await diff_schemas(source_url(reference), tgt)
    assert diff.equal, [str(d) for d in diff.differences]
    assert diff.compared["relation"] >= 20 and diff.compared["index"] >= 20

    invalid = [c for c in report.changes if c.action == "skipped"]
    assert [(c.file, c.line, c.kind) for c in invalid] == [("20240111000000_task_priority.sql", 4, "INVALID")]
    policies = [c for c in report.changes if c.kind == "CREATE POLICY"]
    assert len(policies) == count_policies(MIGRATIONS) >= 40
    assert all(c.where.split(":")[0].endswith(".sql") and c.line > 0 for c in report.changes)

    rerun = await prepare_schema(None, tgt, options)
    assert rerun.applied == [] and len(rerun.already_applied) == len(report.applied)

    folder = tmp_path / "copy"
    shutil.copytree(MIGRATIONS, folder)
    (folder / "20240123000000_new.sql").write_text("create table public.late_addition (id int primary key);")
    newer = await prepare_schema(None, tgt, SchemaOptions(migrations=folder, skip_invalid=True))
    assert newer.applied == ["20240123000000_new.sql"]

    changed = folder / "20240102000100_projects.sql"
    changed.write_text(changed.read_text() + "\nalter table public.projects add column extra int;\n")
    with pytest.raises(MigrationError) as err:
        await prepare_schema(None, tgt, SchemaOptions(migrations=folder, skip_invalid=True))
    assert "20240102000100_projects.sql" in err.value.cause and "new migration file" in err.value.fix


async def test_failing_file_applies_nothing_and_names_file_line(target_db, tmp_path):
    folder = write_folder(tmp_path, {
        "0001_ok.sql": "create table public.a (id int primary key);",
        "0002_bad.sql": "create table public.b (id int primary key);\n\ninsert into public.b values (1);\n"
                        "insert into public.b\n  (id, nope) values (2, 3);\n",
    })
    tgt = target_url(target_db)
    with pytest.raises(MigrationError) as err:
        await prepare_schema(None, tgt, SchemaOptions(migrations=folder))
    assert err.value.cause.startswith("0002_bad.sql:5: 42703")  # the line inside the statement
    assert 'column "nope" of relation "b" does not exist' in err.value.cause
    assert "in statement: insert into public.b" in err.value.cause
    tables = {r[0] for r in await fetch(target_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"a"}
    applied = [r[0] for r in await fetch(target_db, "SELECT file FROM supabase_to_rds.schema_migrations")]
    assert applied == ["0001_ok.sql"]


async def test_file_with_own_transaction_rolls_back_its_open_transaction(target_db, tmp_path):
    folder = write_folder(tmp_path, {
        "0001_tx.sql": "begin;\ncreate table public.x (id int);\ncreate table public.x (id int);\ncommit;\n",
    })
    with pytest.raises(MigrationError) as err:
        await prepare_schema(None, target_url(target_db), SchemaOptions(migrations=folder))
    assert err.value.cause.startswith("0001_tx.sql:3: 42P07")
    assert await fetch(target_db, "SELECT 1 FROM pg_tables WHERE tablename = 'x'") == []


async def test_invalid_sql_without_skip_touches_nothing(target_db):
    with pytest.raises(MigrationError) as err:
        await prepare_schema(None, target_url(target_db), SchemaOptions(migrations=MIGRATIONS))
    assert err.value.cause.startswith("20240111000000_task_priority.sql:4:")
    assert await fetch(target_db, "SELECT 1 FROM pg_namespace WHERE nspname = 'supabase_to_rds'") == []


SHIM_APP = {
    "0001_notes.sql": """
create table public.notes (
  id bigint generated always as identity primary key,
  owner uuid not null references auth.users (id),
  body text not null
);
alter table public.notes enable row level security;
create policy "Owners read their notes"
  on public.notes for select
  to authenticated
  using (
    owner = auth.uid()
    and auth.role() = 'authenticated'
  );
grant select on public.notes to authenticated;
""",
}


async def test_shim_policy_filters_rows_for_a_non_owner_role(pg18, target_db, tmp_path):
    folder = write_folder(tmp_path, SHIM_APP)
    report = await prepare_schema(None, target_url(target_db), SchemaOptions(migrations=folder, rls="shim"))
    assert [c.object for c in report.changes] == ["public.notes.owner → auth.users"]
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    await fetch(target_db, "INSERT INTO public.notes (owner, body) VALUES ($1, 'mine'), ($2, 'theirs')", mine, theirs)

    tester, password = "shim_" + secrets.token_hex(4), secrets.token_urlsafe(12)
    database = target_db.rsplit("/", 1)[1]
    await execute(pg18.url(database), f"CREATE ROLE {tester} LOGIN PASSWORD '{password}'; GRANT authenticated TO {tester}")
    conn = await asyncpg.connect(pg18.url(database, user=tester, password=password))
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE authenticated")
            claims = json.dumps({"sub": str(mine), "role": "authenticated"})
            await conn.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
            assert [r[0] for r in await conn.fetch("SELECT body FROM public.notes")] == ["mine"]
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE authenticated")
            await conn.execute("SELECT set_config('request.jwt.claim.sub', $1, true)", str(theirs))
            await conn.execute("SELECT set_config('request.jwt.claim.role', 'authenticated', true)")
            assert [r[0] for r in await conn.fetch("SELECT body FROM public.notes")] == ["theirs"]
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE authenticated")
            assert await conn.fetch("SELECT body FROM public.notes") == []
    finally:
        await conn.close()


async def test_app_role_can_write_rows_but_not_change_schema(pg18, target_db, tmp_path):
    folder = write_folder(tmp_path, {
        "0001.sql": 'create extension if not exists "uuid-ossp";\n'
                    "create table public.items (id serial primary key, name text not null,\n"
                    "  public_id uuid not null default extensions.uuid_generate_v4());",
    })
    role, password = "app_" + secrets.token_hex(4), secrets.token_urlsafe(12)
    options = SchemaOptions(migrations=folder, app_role=role, app_role_password=password)
    report = await prepare_schema(None, target_url(target_db), options)
    assert report.app_role_schemas == ["public"]
    await prepare_schema(None, target_url(target_db), options)  # idempotent
    await fetch(target_db, "CREATE TABLE public.later (id int)")  # default privileges cover it

    database = target_db.rsplit("/", 1)[1]
    conn = await asyncpg.connect(pg18.url(database, user=role, password=password))
    try:
        await conn.execute("INSERT INTO public.items (name) VALUES ('a'), ('b')")
        await conn.execute("UPDATE public.items SET name = 'c' WHERE id = 1")
        await conn.execute("DELETE FROM public.items WHERE id = 2")
        assert await conn.fetchval("SELECT count(*) FROM public.items WHERE public_id IS NOT NULL") == 1
        assert await conn.fetchval("SELECT extensions.uuid_generate_v4() IS NOT NULL")
        await conn.execute("INSERT INTO public.later VALUES (1)")
        for ddl in ("CREATE TABLE public.evil (id int)", "DROP TABLE public.items",
                    "ALTER TABLE public.items ADD COLUMN x int", "TRUNCATE public.items"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(ddl)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT count(*) FROM supabase_to_rds.schema_migrations")
    finally:
        await conn.close()


async def test_app_role_without_password_fails_before_writing(target_db, tmp_path):
    folder = write_folder(tmp_path, {"0001.sql": "create table public.t (id int);"})
    with pytest.raises(MigrationError) as err:
        await prepare_schema(None, target_url(target_db), SchemaOptions(migrations=folder, app_role="app"))
    assert "APP_ROLE_PASSWORD" in err.value.fix
    assert await fetch(target_db, "SELECT 1 FROM pg_tables WHERE tablename = 't'") == []


async def test_plan_touches_nothing(target_db):
    plan = await plan_schema(None, SchemaOptions(migrations=MIGRATIONS, skip_invalid=True))
    assert "CREATE POLICY" not in {s.kind for u in plan.units for s in u.cleaned.statements}
    assert "create table public.tasks" in plan.sql().lower()
    assert await fetch(target_db, "SELECT 1 FROM pg_namespace WHERE nspname = 'supabase_to_rds'") == []


async def test_dump_with_shim_keeps_public_policies_and_rls(pg15, target_db):
    source = await supabase_source(pg15)
    report = await prepare_schema(source_url(source), target_url(target_db), SchemaOptions(rls="shim"))
    await finish_schema(target_url(target_db), report)
    assert not any(c.kind == "CREATE POLICY" for c in report.changes)
    policies = await fetch(target_db, "SELECT tablename, policyname FROM pg_policies ORDER BY 1, 2")
    assert [tuple(p) for p in policies] == [
        ("profiles", "Profiles are viewable by everyone"), ("profiles", "Users update their own profile"),
        ("projects", "Members read projects"), ("tasks", "Members manage tasks"), ("teams", "Members read their teams"),
    ]
    rls = await fetch(target_db, "SELECT relname FROM pg_class WHERE relrowsecurity ORDER BY 1")
    assert [r[0] for r in rls] == ["profiles", "projects", "tasks", "teams"]
    assert await fetch(target_db, "SELECT rolname FROM pg_roles WHERE rolname = 'authenticated' AND NOT rolcanlogin")
