"""Function bodies, `--skip`, the diff's "removed on purpose", NOT VALID CHECKs and the
report on failure (issues 11 and 17.8). The cleaner's decisions are checked without a
server (they are pure); everything that touches a database uses the real PG 15 → PG 18 pair."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from automation.cli import main
from loaders.errors import MigrationError
from loaders.schema.clean import CleanState, clean_sql
from loaders.schema.clean.bodies import read_body
from loaders.schema.stage import SchemaOptions, plan_schema
from loaders.schema.target import extension_needs
from pglast import parser
from tests.datakit import fetchrows, fetchval, run_sql
from tests.schema_support import supabase_source

TRIGGER_FILE = """create table public.docs (id bigint primary key, title text);
create function public.notify() returns trigger language plpgsql as $$
begin
  perform net.http_post(url := 'https://x', body := jsonb_build_object('id', new.id));
  return new;
end $$;
create function public.title_of(p bigint) returns text language sql stable as $$ select title from public.docs where id = p $$;
"""
POST_FILE = """create trigger docs_notify after insert on public.docs for each row execute function public.notify();
comment on function public.notify() is 'calls the embedder';
grant execute on function public.notify(), public.title_of(bigint) to service_role, app;
"""


def test_a_removed_function_takes_its_trigger_grant_and_comment_in_a_later_file() -> None:
    state = CleanState()
    first = clean_sql(TRIGGER_FILE, source_name="pre.sql", state=state)
    second = clean_sql(POST_FILE, source_name="post.sql", state=state)
    assert [s.kind for s in first.statements] == ["CREATE TABLE", "CREATE FUNCTION"]
    (removed,) = first.changes
    assert (removed.where, removed.object, removed.action) == ("pre.sql:2", "function public.notify", "dropped")
    assert "net.http_post" in removed.reason and "pg_net" in removed.reason and "instead:" in removed.reason
    assert removed.removes == ("public.notify",)
    assert [(c.where, c.object, c.action) for c in second.changes][:3] == [
        ("post.sql:1", "trigger docs_notify on public.docs", "dropped"),
        ("post.sql:2", "function public.notify", "dropped"),
        ("post.sql:3", "function public.notify", "modified"),
    ]
    assert second.changes[0].removes == ("public.docs trigger docs_notify",)
    # the grant keeps the function that can run, and its non-Supabase grantee
    assert [s.sql for s in second.statements] == ["GRANT EXECUTE ON FUNCTION public.title_of (bigint) TO app"]


@pytest.mark.parametrize(("body", "needle"), [
    ("create function f() returns int language sql as $$ select status from extensions.http(('GET','u',null,null,null)::extensions.http_request) $$",
     "extensions.http (http"),
    ("create function f() returns void language plpgsql as $$ declare r extensions.http_response; begin r := extensions.http_get('u'); end $$",
     "extensions.http_get (http"),
    ("create function f() returns void language sql as $$ delete from auth.users where id = auth.uid() $$",
     "writes auth.users"),
    ("create function f() returns bigint language sql begin atomic; select count(*) from storage.objects; end",
     "storage.objects"),
    ("create function f() returns text language plpgsql as $$ begin return vault.read_secret('k'); end $$",
     "vault.read_secret (supabase_vault"),
    ("create function f() returns int language plpython3u as $$ return 1 $$", "plpython3u"),
])
def test_functions_that_cannot_run_on_rds_are_removed_with_the_reason(body: str, needle: str) -> None:
    result = clean_sql(body, source_name="f.sql")
    assert result.statements == []
    assert needle in result.changes[0].reason, result.changes[0].reason


def test_kept_bodies_tell_which_extensions_and_auth_functions_they_need() -> None:
    sql = """create function public.token() returns text language plpgsql as $$
    declare t text := encode(gen_random_bytes(16), 'hex');
    begin
      if auth.uid() is null then raise exception 'signed in only'; end if;
      t := t || encode(extensions.digest(t, 'sha256'), 'hex');
      return t;
    end $$;"""
    result = clean_sql(sql, source_name="t.sql")
    assert len(result.statements) == 1 and result.changes == []
    assert result.auth_functions == {"uid"}
    assert extension_needs(result.statements, result.body_calls) == {"pgcrypto": {"gen_random_bytes", "digest"}}


def test_read_body_follows_assignments_conditions_and_dynamic_sql() -> None:
    node = parser.parse_sql("""create function f() returns trigger language plpgsql as $$
    declare n int;
    begin
      n := (select count(*) from public.a);
      if exists (select from public.b where x = new.x) then update public.c set y = 1; end if;
      execute format('delete from %I', tg_table_name);
      return new;
    end $$""")[0].stmt
    refs = read_body(node)
    assert {("public", "a"), ("public", "b"), ("public", "c")} <= refs.reads
    assert refs.writes == {("public", "c")} and refs.dynamic_sql and refs.complete


async def test_skip_by_name_and_by_file_line_and_an_unmatched_skip_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "01.sql").write_text(TRIGGER_FILE + POST_FILE + "select pg_sleep(0) frobnicate;\n")
    plan = await plan_schema(None, SchemaOptions(migrations=folder, skip=("public.title_of", "01.sql:11")))
    skipped = [(c.where, c.object) for c in plan.changes if c.action == "skipped"]
    # by name (a function: its grant goes too), and a statement that doesn't even parse by file:line
    assert skipped == [("01.sql:7", "function public.title_of"), ("01.sql:11", "01.sql:11")]
    assert not any("title_of" in s.sql for u in plan.units for s in u.cleaned.statements)
    with pytest.raises(MigrationError, match="--skip public.nope matches no statement"):
        await plan_schema(None, SchemaOptions(migrations=folder, skip=("public.nope", "01.sql:11")))


async def cli(argv: list[str]) -> int:
    return await anyio.to_thread.run_sync(main, argv)


async def test_not_valid_check_and_a_storage_view_migrate_from_a_dump(
    pg15, target_db: str, tmp_path: Path
) -> None:
    """17.8: pg_dump puts a NOT VALID CHECK in post-data; the pre-data diff must not call it
    missing. The view over storage.objects is removed by the cleaner: explained, not a mismatch."""
    source = await supabase_source(pg15)
    await run_sql(source, """
        CREATE TABLE public.orders (id int PRIMARY KEY, qty int NOT NULL);
        INSERT INTO public.orders VALUES (1, -5), (2, 3);
        ALTER TABLE public.orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
        CREATE VIEW public.my_files AS SELECT id, name FROM storage.objects;
    """)
    report_path = tmp_path / "r.json"
    code = await cli(["migrate", "--source", source, "--target", target_db, "--jobs", "2", "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0, report.get("error") or report["schema"]["diff"]
    assert await fetchrows(target_db, "SELECT conname, convalidated FROM pg_constraint WHERE conname = 'qty_positive'") == [
        ("qty_positive", False)]
    assert await fetchval(target_db, "SELECT qty FROM public.orders WHERE id = 1") == -5
    explained = {d["object"] for d in report["schema"]["diff"]["removed_on_purpose"]}
    assert "public.my_files" in explained and report["schema"]["diff"]["differences"] == []


async def test_a_failed_schema_run_writes_what_it_applied_and_the_error(
    target_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "01_ok.sql").write_text("create table public.a (id int primary key);\n")
    (folder / "02_bad.sql").write_text("create table public.b (id int references public.nope (id));\n")
    report_path = tmp_path / "r.json"
    code = await cli(["schema", "--target", target_db, "--migrations", str(folder), "--report", str(report_path)])
    assert code == 1
    report = json.loads(report_path.read_text())
    assert report["applied"] == ["01_ok.sql"]
    assert "02_bad.sql:1" in report["error"] and "nope" in report["error"]
    assert await fetchval(target_db, "SELECT to_regclass('public.a') IS NOT NULL")
    assert await fetchval(target_db, "SELECT to_regclass('public.b') IS NULL")


def test_an_inline_foreign_key_is_reported_at_its_own_line() -> None:
    result = clean_sql("""select 1;
create table public.t (
  id int primary key,
  owner uuid
    references auth.users (id),
  other uuid,
  constraint fk_other foreign key (other) references auth.users (id)
);""", source_name="x.sql")
    assert [(c.where, c.object) for c in result.changes] == [
        ("x.sql:5", "public.t.owner → auth.users"), ("x.sql:7", "public.t constraint fk_other → auth.users")]


def test_enable_disable_and_comment_of_a_removed_trigger_go_with_it() -> None:
    state = CleanState()
    clean_sql(TRIGGER_FILE, source_name="pre.sql", state=state)
    post = clean_sql(POST_FILE + """alter table only public.docs disable trigger docs_notify;
comment on trigger docs_notify on public.docs is 'embeds';
alter table public.docs disable trigger docs_notify, add column extra int;
""", source_name="post.sql", state=state)
    assert [(c.where, c.action) for c in post.changes][-3:] == [
        ("post.sql:4", "dropped"), ("post.sql:5", "dropped"), ("post.sql:6", "modified")]
    assert post.statements[-1].sql == "ALTER TABLE public.docs ADD COLUMN extra integer"
