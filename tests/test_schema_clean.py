"""The cleaner on tricky SQL: pure function, no database."""

from __future__ import annotations

import pytest
from pglast import parser

from loaders.errors import MigrationError
from loaders.schema.clean import clean_sql

TRICKY = """\
-- profile table
create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  owner uuid,
  note text default 'references auth.users; not a FK',
  constraint profiles_owner_fkey foreign key (owner) references auth.users (id)
);

alter table public.profiles enable row level security;

create policy "Members read profiles"
  on public.profiles for select
  to authenticated
  using (
    exists (
      select 1 from public.profiles p
      where p.id = auth.uid()
    )
  );

create function public.touch() returns trigger language plpgsql as $body$
begin
  -- create policy "not a policy" on x using (true);
  new.note := 'x; y';
  return new;
end;
$body$;

comment on table public.profiles is 'Multi-line
comment; with a semicolon';

do $$ begin perform 1; end $$;

alter table public.profiles add constraint profiles_owner2 foreign key (owner) references auth.users (id), owner to postgres;
grant select on public.profiles to anon, authenticated, app_backend;
create trigger on_auth_user_created after insert on auth.users for each row execute function public.touch();
alter publication supabase_realtime add table public.profiles;
create extension if not exists pg_net;
create extension if not exists "uuid-ossp";
"""


def by_line(result):
    return {c.line: c for c in result.changes}


def test_every_removal_is_recorded_with_its_line():
    result = clean_sql(TRICKY, source_name="0001_init.sql")
    changes = by_line(result)
    assert changes[9].kind == "ALTER TABLE" and changes[9].action == "dropped"
    assert changes[11].kind == "CREATE POLICY" and changes[11].object == "policy 'Members read profiles' on public.profiles"
    line34 = [c for c in result.changes if c.line == 34]
    assert {c.object for c in line34} == {
        "public.profiles constraint profiles_owner2 → auth.users", "public.profiles owner postgres"}
    assert all(c.action == "dropped" for c in line34)
    assert changes[36].kind == "CREATE TRIGGER" and "auth.users" in changes[36].object
    assert changes[37].kind == "ALTER PUBLICATION"
    assert changes[38].object == "extension pg_net" and changes[38].action == "dropped"
    assert changes[39].action == "rewritten"
    assert all(c.file == "0001_init.sql" for c in result.changes)


def test_multiline_policy_removed_whole_and_rest_parses():
    result = clean_sql(TRICKY, source_name="f.sql")
    text = ";\n".join(s.sql for s in result.statements)
    parser.parse_sql(text)  # nothing left behind that doesn't parse
    kinds = [s.kind for s in result.statements]
    assert "CREATE POLICY" not in kinds
    assert not any("auth.uid" in s.sql for s in result.statements if s.kind != "CREATE FUNCTION")


def test_inline_and_table_level_auth_fks_dropped_columns_kept():
    result = clean_sql(TRICKY, source_name="f.sql")
    create = next(s for s in result.statements if s.kind == "CREATE TABLE")
    node = parser.parse_sql(create.sql)[0].stmt
    columns = [e.colname for e in node.tableElts if hasattr(e, "colname")]
    assert columns == ["id", "owner", "note"]
    assert "REFERENCES" not in create.sql.upper().replace("'REFERENCES AUTH.USERS; NOT A FK'", "")
    assert "PRIMARY KEY" in create.sql
    assert "'references auth.users; not a FK'" in create.sql
    # each constraint is reported at its own line, not the CREATE TABLE's
    fk_changes = [c for c in result.changes if c.line in (3, 6)]
    assert {(c.line, c.object) for c in fk_changes} == {
        (3, "public.profiles.id → auth.users"), (6, "public.profiles constraint profiles_owner_fkey → auth.users")}
    assert all(c.action == "modified" for c in fk_changes)


def test_dollar_bodies_comments_and_do_blocks_untouched():
    result = clean_sql(TRICKY, source_name="f.sql")
    by_kind = {s.kind: s for s in result.statements}
    function = by_kind["CREATE FUNCTION"]
    start = TRICKY.index("create function")
    assert function.sql == TRICKY[start:TRICKY.index("$body$;") + len("$body$")]
    assert function.line == 21
    assert by_kind["COMMENT ON TABLE"].sql == "comment on table public.profiles is 'Multi-line\ncomment; with a semicolon'"
    assert by_kind["DO"].sql == "do $$ begin perform 1; end $$"


def test_grants_keep_only_non_supabase_roles():
    result = clean_sql(TRICKY, source_name="f.sql")
    grant = next(s for s in result.statements if s.kind == "GRANT")
    node = parser.parse_sql(grant.sql)[0].stmt
    assert [g.rolename for g in node.grantees] == ["app_backend"]
    assert by_line(result)[35].object == "table public.profiles to anon, authenticated"


def test_kept_extension_goes_to_schema_extensions():
    result = clean_sql(TRICKY, source_name="f.sql")
    ext = next(s for s in result.statements if s.kind == "CREATE EXTENSION")
    node = parser.parse_sql(ext.sql)[0].stmt
    assert node.extname == "uuid-ossp" and node.if_not_exists
    assert [(o.defname, o.arg.sval) for o in node.options] == [("schema", "extensions")]


def test_shim_keeps_policies_rls_and_api_role_grants():
    result = clean_sql(TRICKY, source_name="f.sql", rls="shim")
    kinds = [s.kind for s in result.statements]
    assert "CREATE POLICY" in kinds and kinds.count("ALTER TABLE") == 1
    assert result.roles_needed == {"anon", "authenticated"}
    assert "uid" in result.auth_functions


def test_invalid_statement_stops_with_file_line_col():
    sql = "select 1;\n\n-- a draft\ncreate tabel broken (id int);\nselect 2;\n"
    with pytest.raises(MigrationError) as err:
        clean_sql(sql, source_name="0002_bad.sql")
    assert err.value.cause == '0002_bad.sql:4:8: syntax error at or near "tabel"'
    assert "--skip-invalid" in err.value.fix


def test_skip_invalid_records_and_keeps_the_rest():
    sql = ("select 1;\n-- never ran\ncreate index i on t (a) where;\n"
           "create function f() returns int language sql begin atomic select 1; select 2; end;\nselect 3;")
    result = clean_sql(sql, source_name="0003.sql", skip_invalid=True)
    assert [s.kind for s in result.statements] == ["SELECT", "CREATE FUNCTION", "SELECT"]
    assert result.statements[1].sql.endswith("select 2; end")
    (change,) = result.changes
    assert (change.line, change.kind, change.action) == (3, "INVALID", "skipped")
    assert "0003.sql:3:" in change.reason


def test_transaction_control_detected():
    result = clean_sql("begin;\ncreate table t (id int);\ncommit;", source_name="tx.sql")
    assert result.manages_transactions
    assert not clean_sql("create table t (id int);", source_name="tx.sql").manages_transactions
    concurrently = clean_sql("create index concurrently i on t (id);", source_name="ix.sql")
    assert concurrently.manages_transactions


def test_rename_of_stripped_policy_dropped_too():
    sql = 'alter policy "a" on public.t rename to "b";\ncomment on policy "b" on public.t is \'x\';'
    result = clean_sql(sql, source_name="p.sql")
    assert result.statements == [] and [c.line for c in result.changes] == [1, 2]
