"""The catalog diff: equal objects on PG 15 and PG 18 compare equal; drift is named."""

from __future__ import annotations

from tests.schema_support import execute, source_url, target_url
from loaders.schema.diff import PRE_DATA_KINDS, diff_schemas

SCHEMA = """
create type public.mood as enum ('sad', 'ok', 'happy');
create table public.readings (
  id bigint generated always as identity primary key,
  sensor text not null check (sensor <> ''),
  qty integer not null default 0,
  note text,
  mood public.mood,
  taken_at timestamptz not null default now(),
  unique (sensor, taken_at)
);
create index readings_taken_idx on public.readings (taken_at desc) where note is not null;
create sequence public.batch_seq increment 5;
create table public.batches (id int primary key default nextval('public.batch_seq'), reading_id bigint references public.readings (id));
"""


async def test_equal_schemas_on_pg15_and_pg18_are_equal_then_drift_is_named(source_db, target_db):
    await execute(source_db, SCHEMA)
    await execute(target_db, SCHEMA)
    src, tgt = source_url(source_db), target_url(target_db)

    diff = await diff_schemas(src, tgt)
    assert diff.equal, [str(d) for d in diff.differences]
    assert diff.compared == {"relation": 2, "column": 8, "constraint": 5, "index": 4, "sequence": 2, "enum": 1,
                             "trigger": 0, "function": 0, "view": 0}

    await execute(target_db, """
        drop index public.readings_taken_idx;
        alter table public.readings alter column qty type bigint;
        alter table public.readings drop column note;
        alter type public.mood add value 'ecstatic';
        alter table public.batches drop constraint batches_reading_id_fkey;
        alter table public.readings add column extra int;
    """)
    diff = await diff_schemas(src, tgt)
    found = {(d.kind, d.object, d.problem) for d in diff.differences}
    assert found == {
        ("index", "public.readings_taken_idx", "missing on target"),
        ("column", "public.readings.qty", "differs"),
        ("column", "public.readings.note", "missing on target"),
        ("column", "public.readings.extra", "only on target"),
        ("enum", "public.mood", "differs"),
        ("constraint", "public.batches constraint batches_reading_id_fkey", "missing on target"),
    }
    qty = next(d for d in diff.differences if d.object == "public.readings.qty")
    assert (qty.source, qty.target) == ("integer not null default 0", "bigint not null default 0")
    assert "qty" in str(qty) and not diff.to_dict()["equal"]

    pre = await diff_schemas(src, tgt, kinds=PRE_DATA_KINDS)
    assert {d.kind for d in pre.differences} == {"column", "enum"}


async def test_fks_to_auth_and_supabase_schemas_are_ignored(source_db, target_db):
    await execute(source_db, """
        create schema auth; create table auth.users (id uuid primary key);
        create table public.p (id uuid primary key references auth.users (id));
    """)
    await execute(target_db, "create table public.p (id uuid primary key);")
    diff = await diff_schemas(source_url(source_db), target_url(target_db))
    assert diff.equal, [str(d) for d in diff.differences]
    strict = await diff_schemas(source_url(source_db), target_url(target_db), ignore_fks_to=())
    assert [d.object for d in strict.differences] == ["public.p constraint p_id_fkey"]
