"""Benchmark dataset: a Supabase-shaped `public` schema filled server-side to a chosen size.

Why it looks like this: a typical Supabase app database is one or two large append-only
tables (events, logs) next to a couple of dozen small relational ones, keyed by uuids, with
jsonb, arrays, bytea, timestamptz, identity columns, enums, foreign keys, RLS policies,
grants to `anon`/`authenticated`, a trigger function and a view. Every object here is one
that pg_dump|psql, pg_restore, pgcopydb and our migrate can all carry, so the comparison is
about speed, not about who chokes on an exotic object (no generated columns, no extensions).

Every value is a pure function of (seed, row number) — md5 of both — so the data is the same
on every run and on every machine, whatever the server's parallel plan; no `random()`.
Rows are made by `INSERT … SELECT … generate_series` on the server: no Python row loop.
Indexes and foreign keys are added after the data, as any loader would.

Usage: python bench/generate.py --url postgresql://… --size 0.5GB   (or --scale 0.5)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GENERATOR_VERSION = 2
DEFAULT_SEED = "supabase-to-rds"
SUPABASE_ROLES = ("anon", "authenticated", "service_role")
# Rows per unit of scale (scale 1.0 ≈ 1 GB of table data, indexes not counted). Calibrated
# on PG 15 (scale 0.5 → 512 MiB): events ≈ 75 % of the bytes, the 20 small tables the rest.
EVENTS_PER_SCALE = 1_470_000
EVENT_CHUNK = 250_000  # events are inserted in chunks so two connections can fill in parallel


@dataclass(frozen=True)
class Table:
    """One table: DDL without indexes/FKs, the generator query, then what a loader builds after."""

    name: str
    ddl: str
    fill: str  # INSERT … SELECT over generate_series($2, $3); $1 is the seed
    base_rows: int  # rows at scale 1.0
    min_rows: int = 5
    indexes: tuple[str, ...] = ()
    foreign_keys: tuple[str, ...] = ()
    fixed: bool = False  # lookup tables keep their size whatever the scale
    count: int | None = None  # set when the row count is tied to a parent's (one row per parent)

    def rows(self, scale: float) -> int:
        if self.count is not None:
            return self.count
        return self.base_rows if self.fixed else max(self.min_rows, round(self.base_rows * scale))

    @property
    def has_sequence(self) -> bool:
        return "IDENTITY" in self.ddl or " serial " in self.ddl


def _uuid(kind: str, n: str) -> str:
    """SQL for the deterministic uuid of row `n` of entity `kind` (md5 is 128 bits: a uuid)."""
    return f"md5($1::text || ':{kind}:' || ({n}))::uuid"


@dataclass(frozen=True)
class Counts:
    """Row counts the foreign keys depend on, so referencing rows always hit existing keys."""

    orgs: int
    users: int
    projects: int
    posts: int
    tags: int


def tables(scale: float) -> list[Table]:
    """The schema, parents before children. Row counts scale; the FK targets are derived."""
    base = _tables_for(Counts(1, 1, 1, 1, 1))
    n = {t.name: t.rows(scale) for t in base}
    counts = Counts(n["organizations"], n["profiles"], n["projects"], n["posts"], n["tags"])
    return _tables_for(counts)


def _tables_for(c: Counts) -> list[Table]:
    org_of = lambda i: _uuid("org", f"(({i}) * 7) % {c.orgs} + 1")  # noqa: E731
    user_of = lambda i: _uuid("user", f"(({i}) * 104729) % {c.users} + 1")  # noqa: E731
    ts = "timestamptz '2024-01-01 00:00:00+00'"
    return [
        Table(
            "plans",
            "code text PRIMARY KEY, name text NOT NULL, price_cents integer NOT NULL CHECK (price_cents >= 0), "
            "features jsonb NOT NULL DEFAULT '{}'",
            "SELECT 'plan_' || i, 'Plan ' || i, i * 2500, jsonb_build_object('seats', i * 5, 'sso', i > 3) "
            "FROM generate_series($2::bigint, $3) i WHERE $1::text IS NOT NULL",
            5, fixed=True,
        ),
        Table(
            "countries",
            "code char(2) PRIMARY KEY, name text NOT NULL",
            "SELECT chr((65 + (i - 1) / 26)::int) || chr((65 + (i - 1) % 26)::int), 'Country ' || i "
            "FROM generate_series($2::bigint, $3) i WHERE $1::text IS NOT NULL",
            60, fixed=True,
        ),
        Table(
            "organizations",
            "id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, slug text NOT NULL UNIQUE, "
            "plan text NOT NULL, settings jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT {_uuid('org', 'i')}, 'Org ' || md5($1::text || i), 'org-' || i, 'plan_' || (i % 5 + 1), "
            f"jsonb_build_object('theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END, 'seats', i % 50), "
            f"{ts} + i * interval '1 hour' FROM generate_series($2::bigint, $3) i",
            5_000, min_rows=20,
            indexes=("CREATE INDEX organizations_plan_idx ON public.organizations (plan)",),
            foreign_keys=("organizations_plan_fkey FOREIGN KEY (plan) REFERENCES public.plans (code)",),
        ),
        Table(
            "profiles",
            "id uuid PRIMARY KEY, org_id uuid NOT NULL, email text NOT NULL UNIQUE, full_name text, "
            "avatar_url text, country char(2), metadata jsonb NOT NULL DEFAULT '{}', "
            "updated_at timestamptz NOT NULL DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT {_uuid('user', 'i')}, {org_of('i')}, 'user' || i || '@example.com', 'User ' || substr(md5($1::text || i), 1, 12), "
            f"CASE WHEN i % 3 = 0 THEN 'https://cdn.example.com/a/' || md5($1::text || 'av' || i) || '.png' END, "
            f"chr((65 + (i % 60) / 26)::int) || chr((65 + (i % 60) % 26)::int), "
            f"jsonb_build_object('onboarded', i % 4 <> 0, 'locale', (ARRAY['en','de','fr','ja'])[i % 4 + 1]), "
            f"{ts} + i * interval '7 minutes', {ts} + i * interval '5 minutes' FROM generate_series($2::bigint, $3) i",
            100_000, min_rows=50,
            indexes=("CREATE INDEX profiles_org_id_idx ON public.profiles (org_id)",),
            foreign_keys=(
                "profiles_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations (id) ON DELETE CASCADE",
                "profiles_country_fkey FOREIGN KEY (country) REFERENCES public.countries (code)",
            ),
        ),
        Table(
            "projects",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL, "
            "description text, is_public boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT i, {org_of('i * 3')}, 'project-' || i, repeat(md5($1::text || 'pd' || i), 1 + (i % 4)::int), i % 5 = 0, "
            f"{ts} + i * interval '13 minutes' FROM generate_series($2::bigint, $3) i",
            20_000, min_rows=20,
            indexes=("CREATE INDEX projects_org_id_idx ON public.projects (org_id)",),
            foreign_keys=("projects_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations (id) ON DELETE CASCADE",),
        ),
        Table(
            "memberships",
            "org_id uuid NOT NULL, user_id uuid NOT NULL, role public.member_role NOT NULL DEFAULT 'member', "
            "joined_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (org_id, user_id)",
            f"SELECT {org_of('i')}, {_uuid('user', 'i')}, (ARRAY['owner','admin','member','member'])[i % 4 + 1]::public.member_role, "
            f"{ts} + i * interval '6 minutes' FROM generate_series($2::bigint, $3) i",
            100_000, count=c.users,
            indexes=("CREATE INDEX memberships_user_id_idx ON public.memberships (user_id)",),
            foreign_keys=(
                "memberships_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations (id) ON DELETE CASCADE",
                "memberships_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.profiles (id) ON DELETE CASCADE",
            ),
        ),
        Table(
            "api_keys",
            "id uuid PRIMARY KEY, project_id bigint NOT NULL, key_hash bytea NOT NULL, scopes text[] NOT NULL DEFAULT '{}', "
            "expires_at timestamptz, last_used_at timestamptz",
            f"SELECT {_uuid('key', 'i')}, (i * 11) % {c.projects} + 1, decode(md5($1::text || 'k' || i) || md5($1::text || 'kk' || i), 'hex'), "
            f"ARRAY['read', CASE WHEN i % 3 = 0 THEN 'write' ELSE 'list' END], "
            f"CASE WHEN i % 4 = 0 THEN {ts} + i * interval '1 day' END, {ts} + i * interval '3 minutes' "
            f"FROM generate_series($2::bigint, $3) i",
            20_000, min_rows=20,
            indexes=(
                "CREATE INDEX api_keys_project_id_idx ON public.api_keys (project_id)",
                "CREATE INDEX api_keys_no_expiry_idx ON public.api_keys (project_id) WHERE expires_at IS NULL",
            ),
            foreign_keys=("api_keys_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects (id) ON DELETE CASCADE",),
        ),
        Table(
            "posts",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, author_id uuid NOT NULL, project_id bigint NOT NULL, "
            "title text NOT NULL, content text, status text NOT NULL CHECK (status IN ('draft', 'published', 'archived')), "
            "published_at timestamptz",
            f"SELECT i, {user_of('i')}, (i * 17) % {c.projects} + 1, 'Post ' || i || ' ' || substr(md5($1::text || 't' || i), 1, 20), "
            f"repeat(md5($1::text || 'c' || i) || ' ', 4 + (i % 12)::int), (ARRAY['draft','published','archived'])[i % 3 + 1], "
            f"CASE WHEN i % 3 = 1 THEN {ts} + i * interval '2 minutes' END FROM generate_series($2::bigint, $3) i",
            100_000, min_rows=50,
            indexes=(
                "CREATE INDEX posts_author_id_idx ON public.posts (author_id)",
                "CREATE INDEX posts_published_idx ON public.posts (published_at DESC) WHERE status = 'published'",
            ),
            foreign_keys=(
                "posts_author_id_fkey FOREIGN KEY (author_id) REFERENCES public.profiles (id) ON DELETE CASCADE",
                "posts_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects (id) ON DELETE CASCADE",
            ),
        ),
        Table(
            "comments",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, post_id bigint NOT NULL, author_id uuid NOT NULL, "
            "body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT i, (i * 31) % {c.posts} + 1, {user_of('i * 3')}, repeat(md5($1::text || 'cm' || i), 1 + (i % 5)::int), "
            f"{ts} + i * interval '1 minute' FROM generate_series($2::bigint, $3) i",
            200_000, min_rows=50,
            indexes=("CREATE INDEX comments_post_id_idx ON public.comments (post_id, created_at)",),
            foreign_keys=(
                "comments_post_id_fkey FOREIGN KEY (post_id) REFERENCES public.posts (id) ON DELETE CASCADE",
                "comments_author_id_fkey FOREIGN KEY (author_id) REFERENCES public.profiles (id) ON DELETE CASCADE",
            ),
        ),
        Table(
            "tags",
            "id serial PRIMARY KEY, name text NOT NULL UNIQUE",
            "SELECT i, 'tag-' || i FROM generate_series($2::bigint, $3) i WHERE $1::text IS NOT NULL",
            500, fixed=True,
        ),
        Table(
            "post_tags",
            "post_id bigint NOT NULL, tag_id integer NOT NULL, PRIMARY KEY (post_id, tag_id)",
            f"SELECT (i + 1) / 2, (((i + 1) / 2 + i % 2) % {c.tags}) + 1 FROM generate_series($2::bigint, $3) i WHERE $1::text IS NOT NULL",
            200_000, count=2 * c.posts,
            indexes=("CREATE INDEX post_tags_tag_id_idx ON public.post_tags (tag_id)",),
            foreign_keys=(
                "post_tags_post_id_fkey FOREIGN KEY (post_id) REFERENCES public.posts (id) ON DELETE CASCADE",
                "post_tags_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES public.tags (id) ON DELETE CASCADE",
            ),
        ),
        Table(
            "notifications",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id uuid NOT NULL, kind text NOT NULL, "
            "data jsonb NOT NULL, read_at timestamptz, created_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT i, {user_of('i * 7')}, (ARRAY['mention','reply','invite','billing'])[i % 4 + 1], "
            f"jsonb_build_object('post', (i * 31) % {c.posts} + 1, 'msg', md5($1::text || 'n' || i)), "
            f"CASE WHEN i % 3 = 0 THEN {ts} + i * interval '2 minutes' END, {ts} + i * interval '1 minute' "
            f"FROM generate_series($2::bigint, $3) i",
            200_000, min_rows=50,
            indexes=("CREATE INDEX notifications_unread_idx ON public.notifications (user_id) WHERE read_at IS NULL",),
            foreign_keys=("notifications_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.profiles (id) ON DELETE CASCADE",),
        ),
        Table(
            "audit_log",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, actor_id uuid, action text NOT NULL, target text NOT NULL, "
            "diff jsonb, ip inet, at timestamptz NOT NULL DEFAULT now()",
            f"SELECT i, {user_of('i * 13')}, (ARRAY['insert','update','delete'])[i % 3 + 1], 'posts/' || i, "
            f"jsonb_build_object('before', md5($1::text || 'b' || i), 'after', md5($1::text || 'a' || i)), "
            f"('10.' || i % 256 || '.' || (i / 256) % 256 || '.' || (i / 65536) % 256)::inet, {ts} + i * interval '30 seconds' "
            f"FROM generate_series($2::bigint, $3) i",
            200_000, min_rows=50,
            indexes=("CREATE INDEX audit_log_at_idx ON public.audit_log (at)",),
        ),
        Table(
            "files",
            "id uuid PRIMARY KEY, owner_id uuid NOT NULL, name text NOT NULL, mime text NOT NULL, size_bytes integer NOT NULL, "
            "content bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now()",
            # 2 KiB of incompressible bytes per row (64 md5 digests): TOASTed, like stored blobs.
            f"SELECT {_uuid('file', 'i')}, {user_of('i * 5')}, 'file-' || i || '.bin', 'application/octet-stream', 2048, "
            f"(SELECT string_agg(decode(md5($1::text || 'f' || i || ':' || j), 'hex'), ''::bytea) FROM generate_series(1, 128) j), "
            f"{ts} + i * interval '11 minutes' FROM generate_series($2::bigint, $3) i",
            20_000, min_rows=10,
            indexes=("CREATE INDEX files_owner_id_idx ON public.files (owner_id)",),
            foreign_keys=("files_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES public.profiles (id) ON DELETE CASCADE",),
        ),
        Table(
            "subscriptions",
            "id uuid PRIMARY KEY, org_id uuid NOT NULL UNIQUE, plan text NOT NULL, status text NOT NULL, "
            "current_period tstzrange NOT NULL, trial_ends_at timestamptz",
            f"SELECT {_uuid('sub', 'i')}, {_uuid('org', 'i')}, 'plan_' || (i % 5 + 1), (ARRAY['active','trialing','canceled'])[i % 3 + 1], "
            f"tstzrange({ts} + i * interval '1 hour', {ts} + i * interval '1 hour' + interval '30 days'), "
            f"CASE WHEN i % 3 = 1 THEN {ts} + i * interval '1 day' END FROM generate_series($2::bigint, $3) i",
            5_000, count=c.orgs,
            foreign_keys=(
                "subscriptions_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations (id) ON DELETE CASCADE",
                "subscriptions_plan_fkey FOREIGN KEY (plan) REFERENCES public.plans (code)",
            ),
        ),
        Table(
            "invoices",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id uuid NOT NULL, amount numeric(12,2) NOT NULL, "
            "currency char(3) NOT NULL DEFAULT 'USD', issued_at timestamptz NOT NULL, paid boolean NOT NULL DEFAULT false, "
            "lines jsonb NOT NULL DEFAULT '[]'",
            f"SELECT i, {org_of('i * 3')}, (i % 100000) / 100.0 + 9.99, (ARRAY['USD','EUR','GBP'])[i % 3 + 1], "
            f"{ts} + i * interval '17 minutes', i % 5 <> 0, "
            f"jsonb_build_array(jsonb_build_object('sku', 'seat', 'qty', i % 20 + 1), jsonb_build_object('sku', 'storage', 'gb', i % 100)) "
            f"FROM generate_series($2::bigint, $3) i",
            60_000, min_rows=20,
            indexes=("CREATE INDEX invoices_org_issued_idx ON public.invoices (org_id, issued_at DESC)",),
            foreign_keys=("invoices_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations (id) ON DELETE CASCADE",),
        ),
        Table(
            "feature_flags",
            "key text PRIMARY KEY, enabled boolean NOT NULL DEFAULT false, rules jsonb NOT NULL DEFAULT '{}'",
            "SELECT 'flag_' || i, i % 2 = 0, jsonb_build_object('percent', i % 100, 'orgs', jsonb_build_array(i, i + 1)) "
            "FROM generate_series($2::bigint, $3) i WHERE $1::text IS NOT NULL",
            50, fixed=True,
        ),
        Table(
            "webhooks",
            "id uuid PRIMARY KEY, project_id bigint NOT NULL, url text NOT NULL, secret bytea NOT NULL, "
            "events public.event_kind[] NOT NULL DEFAULT '{}', active boolean NOT NULL DEFAULT true",
            f"SELECT {_uuid('hook', 'i')}, (i * 7) % {c.projects} + 1, 'https://hooks.example.com/' || md5($1::text || 'h' || i), "
            f"decode(md5($1::text || 's' || i), 'hex'), ARRAY['signup', 'purchase']::public.event_kind[], i % 10 <> 0 "
            f"FROM generate_series($2::bigint, $3) i",
            5_000, min_rows=10,
            indexes=("CREATE INDEX webhooks_project_id_idx ON public.webhooks (project_id)",),
            foreign_keys=("webhooks_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects (id) ON DELETE CASCADE",),
        ),
        Table(
            "user_sessions",
            "id uuid PRIMARY KEY, user_id uuid NOT NULL, user_agent text, ip inet, created_at timestamptz NOT NULL, "
            "expires_at timestamptz NOT NULL",
            f"SELECT {_uuid('sess', 'i')}, {user_of('i * 3')}, 'Mozilla/5.0 (X11; Linux x86_64) Gecko/' || (20100101 + i % 1000), "
            f"('192.168.' || i % 256 || '.' || (i / 256) % 256)::inet, {ts} + i * interval '1 minute', "
            f"{ts} + i * interval '1 minute' + interval '7 days' FROM generate_series($2::bigint, $3) i",
            100_000, min_rows=50,
            indexes=("CREATE INDEX user_sessions_user_id_idx ON public.user_sessions (user_id)",),
            foreign_keys=("user_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.profiles (id) ON DELETE CASCADE",),
        ),
        Table(
            "kv_store",
            "key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT 'k/' || i, jsonb_build_object('v', md5($1::text || 'kv' || i), 'n', i), {ts} + i * interval '1 hour' "
            f"FROM generate_series($2::bigint, $3) i",
            1_000, min_rows=10,
        ),
        Table(
            "events",
            "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_uuid uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE, "
            "org_id uuid NOT NULL, user_id uuid, kind public.event_kind NOT NULL, payload jsonb NOT NULL, "
            "tags text[] NOT NULL DEFAULT '{}', body text, attachment bytea, amount numeric(12,2), "
            "created_at timestamptz NOT NULL DEFAULT now()",
            f"SELECT i, {_uuid('event', 'i')}, {org_of('i * 7919')}, CASE WHEN i % 17 <> 0 THEN {user_of('i')} END, "
            f"(ARRAY['page_view','click','signup','purchase','error'])[i % 5 + 1]::public.event_kind, "
            f"jsonb_build_object('session', substr(md5($1::text || 's' || i), 1, 16), 'path', '/p/' || i % 997, "
            f"'ua', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15', 'n', i % 1000, "
            f"'ok', i % 3 = 0, 'items', jsonb_build_array(i % 7, i % 11, i % 13), 'ref', md5($1::text || 'r' || i)), "
            f"ARRAY['t' || i % 10, 'u' || i % 7], "
            # mostly short bodies, every 97th a ~5 kB one (TOASTed and compressed, like real logs)
            f"CASE WHEN i % 97 = 0 THEN repeat(md5($1::text || 'B' || i) || md5($1::text || 'C' || i / 3), 75) "
            f"ELSE repeat(md5($1::text || 'b' || i), 1 + (i % 5)::int) END, "
            f"CASE WHEN i % 5 = 0 THEN decode(md5($1::text || 'a' || i) || md5($1::text || 'c' || i), 'hex') END, "
            f"CASE WHEN i % 4 = 0 THEN (i % 100000) / 100.0 END, {ts} + i * interval '1 second' "
            f"FROM generate_series($2::bigint, $3) i",
            EVENTS_PER_SCALE, min_rows=200,
            indexes=(
                "CREATE INDEX events_user_created_idx ON public.events (user_id, created_at DESC)",
                "CREATE INDEX events_org_kind_idx ON public.events (org_id, kind)",
                "CREATE INDEX events_created_at_idx ON public.events (created_at)",
            ),
            foreign_keys=(
                "events_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations (id) ON DELETE CASCADE",
                "events_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.profiles (id) ON DELETE SET NULL",
            ),
        ),
    ]


TYPES = (
    "CREATE TYPE public.event_kind AS ENUM ('page_view', 'click', 'signup', 'purchase', 'error')",
    "CREATE TYPE public.member_role AS ENUM ('owner', 'admin', 'member')",
)

# Supabase-like objects around the tables: trigger function, RLS, a view, comments.
EXTRAS = (
    """CREATE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$""",
    "CREATE TRIGGER profiles_set_updated_at BEFORE UPDATE ON public.profiles "
    "FOR EACH ROW EXECUTE FUNCTION public.set_updated_at()",
    """CREATE FUNCTION public.current_user_id() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid
$$""",
    "ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY profiles_self ON public.profiles FOR ALL USING (id = public.current_user_id())",
    "ALTER TABLE public.posts ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY posts_read ON public.posts FOR SELECT USING (status = 'published' OR author_id = public.current_user_id())",
    "CREATE VIEW public.recent_events AS SELECT id, org_id, user_id, kind, created_at FROM public.events "
    "WHERE created_at > timestamptz '2024-06-01 00:00:00+00'",
    "COMMENT ON TABLE public.events IS 'Append-only product analytics events'",
    "COMMENT ON COLUMN public.profiles.email IS 'Login email, unique'",
)

ROLE_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO anon",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO authenticated, service_role",
    "CREATE POLICY posts_write ON public.posts FOR INSERT TO authenticated WITH CHECK (author_id = public.current_user_id())",
)


@dataclass
class DatasetInfo:
    """What the generator promises: tables, exact row counts and the bytes to move."""

    scale: float
    seed: str
    rows: dict[str, int]
    index_count: int
    foreign_key_count: int
    data_bytes: int = 0  # sum of pg_table_size (heap + TOAST), indexes not included
    seconds: float = 0.0
    extras: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def marker(self) -> str:
        return f"bench-dataset v{GENERATOR_VERSION} scale={self.scale:g} seed={self.seed}"


def parse_size(text: str) -> float:
    """`0.5GB`, `2GB`, `500MB` → scale (1.0 ≈ 1 GB of table data)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(GB|MB|G|M)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: use e.g. 0.5GB, 2GB or 500MB")
    value = float(match.group(1))
    unit = (match.group(2) or "GB").upper()
    return value / 1024 if unit.startswith("M") else value


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size - 1, total)) for lo in range(1, total + 1, size)]


async def _run_parallel(pool: asyncpg.Pool, jobs: int, work: Sequence[tuple[str, tuple]]) -> None:
    """Run independent statements on up to `jobs` connections; the pool caps concurrency."""
    limiter = anyio.CapacityLimiter(jobs)

    async def one(sql: str, args: tuple) -> None:
        async with limiter, pool.acquire() as conn:
            await conn.execute(sql, *args)

    async with anyio.create_task_group() as tg:
        for sql, args in work:
            tg.start_soon(one, sql, args)


async def create_roles(conn: asyncpg.Connection) -> None:
    """Supabase's API roles; pg_dump does not carry roles, so both servers must have them."""
    for role in SUPABASE_ROLES:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if not exists:
            await conn.execute(f"CREATE ROLE {role} NOLOGIN")


async def generate(url: str, scale: float, *, seed: str = DEFAULT_SEED, jobs: int = 2,
                   supabase_roles: bool = True) -> DatasetInfo:
    """Fill the (empty) database at `url`. With supabase_roles the cluster gets anon/authenticated/
    service_role (global objects) and the schema grants to them, as on Supabase."""
    started = time.monotonic()
    spec = tables(scale)
    info = DatasetInfo(
        scale=scale, seed=seed, rows={t.name: t.rows(scale) for t in spec},
        index_count=0, foreign_key_count=sum(len(t.foreign_keys) for t in spec),
    )
    pool = await asyncpg.create_pool(url, min_size=1, max_size=max(1, jobs))
    try:
        async with pool.acquire() as conn:
            existing = await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")
            if existing:
                raise SystemExit("generate: the database already has tables in public; use an empty database")
            for sql in TYPES:
                await conn.execute(sql)
            for t in spec:
                await conn.execute(f"CREATE TABLE public.{t.name} ({t.ddl})")
        fills: list[tuple[str, tuple]] = []
        for t in spec:
            overriding = " OVERRIDING SYSTEM VALUE" if "GENERATED ALWAYS AS IDENTITY" in t.ddl else ""
            for lo, hi in _chunks(t.rows(scale), EVENT_CHUNK):
                fills.append((f"INSERT INTO public.{t.name}{overriding} {t.fill}", (seed, lo, hi)))
        fills.sort(key=lambda w: w[0].startswith("INSERT INTO public.events"), reverse=True)  # big first
        await _run_parallel(pool, jobs, fills)
        await _run_parallel(pool, jobs, [(sql, ()) for t in spec for sql in t.indexes])
        async with pool.acquire() as conn:
            for t in spec:  # FKs one by one: each locks two tables, in parallel they would queue anyway
                for fk in t.foreign_keys:
                    await conn.execute(f"ALTER TABLE public.{t.name} ADD CONSTRAINT {fk}")
            for t in spec:  # ids were written explicitly as 1..rows: move each sequence past them
                if t.has_sequence:
                    await conn.execute("SELECT setval(pg_get_serial_sequence($1, 'id'), $2)",
                                       f"public.{t.name}", t.rows(scale))
            for sql in EXTRAS:
                await conn.execute(sql)
            info.extras = ["enum types", "trigger function + trigger", "RLS + policies", "view", "comments"]
            if supabase_roles:
                await create_roles(conn)
                for sql in ROLE_GRANTS:
                    await conn.execute(sql)
                info.extras.append("grants/policies to anon, authenticated, service_role")
            database = await conn.fetchval("SELECT current_database()")
            info.seconds = time.monotonic() - started
            await conn.execute(f"COMMENT ON DATABASE {_quote_ident(database)} IS {_quote_literal(info.marker())}")
        await _run_parallel(pool, jobs, [(f"VACUUM (ANALYZE, FREEZE) public.{t.name}", ()) for t in spec])
        async with pool.acquire() as conn:
            await conn.execute("CHECKPOINT")
            info.index_count, info.data_bytes = await _measure(conn)
    finally:
        await pool.close()
    info.seconds = time.monotonic() - started
    return info


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _measure(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') AS indexes, "
        "(SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        " WHERE n.nspname = 'public' AND c.relkind = 'r') AS bytes")
    return int(row["indexes"]), int(row["bytes"])


async def describe(url: str) -> DatasetInfo | None:
    """Re-read a database made by `generate` (from its COMMENT marker) so a run can reuse it."""
    conn = await asyncpg.connect(url)
    try:
        marker = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()")
        if not marker or not marker.startswith(f"bench-dataset v{GENERATOR_VERSION} "):
            return None
        fields = dict(part.split("=", 1) for part in marker.split()[2:])
        scale, seed = float(fields["scale"]), fields["seed"]
        spec = tables(scale)
        rows = await table_row_counts(conn)
        if rows != {t.name: t.rows(scale) for t in spec}:
            return None
        indexes, data_bytes = await _measure(conn)
        fks = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = 'public' AND c.contype = 'f'")
        return DatasetInfo(scale=scale, seed=seed, rows=rows, index_count=indexes,
                           foreign_key_count=int(fks), data_bytes=data_bytes)
    finally:
        await conn.close()


async def table_row_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Exact count(*) of every table in `public` (the ground truth every tool is checked against)."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname")
    counts = {}
    for r in names:
        counts[r["relname"]] = await conn.fetchval(f"SELECT count(*) FROM public.{_quote_ident(r['relname'])}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fill an empty database with the benchmark dataset.")
    parser.add_argument("--url", required=True, help="postgresql:// URL of an EMPTY database")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--size", type=parse_size, dest="scale", help="target table-data size, e.g. 0.5GB, 2GB, 5GB")
    size.add_argument("--scale", type=float, dest="scale", help="scale factor (1.0 ≈ 1 GB)")
    parser.add_argument("--seed", default=DEFAULT_SEED)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-roles", action="store_true", help="skip the anon/authenticated/service_role grants")
    args = parser.parse_args(argv)
    info = anyio.run(lambda: generate(args.url, args.scale, seed=args.seed, jobs=args.jobs,
                                      supabase_roles=not args.no_roles))
    print(f"{len(info.rows)} tables, {info.total_rows:,} rows, {info.data_bytes / 2**20:,.1f} MiB of table data, "
          f"{info.index_count} indexes, {info.foreign_key_count} FKs in {info.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
