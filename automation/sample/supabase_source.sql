-- A small Supabase-shaped project: the platform's scaffolding (roles, auth, storage,
-- extensions, realtime publication) plus an app in `public` that leans on all of it the way
-- real apps do. Run as a superuser on a fresh database; roles are cluster-wide, so they are
-- created only when missing.

DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'supabase_admin',
                           'supabase_auth_admin', 'supabase_storage_admin', 'authenticator'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
END
$$;

-- Platform schemas ---------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;

CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION supabase_auth_admin;

CREATE TABLE auth.users (
  instance_id uuid,
  id uuid NOT NULL PRIMARY KEY,
  aud varchar(255),
  role varchar(255),
  email varchar(255) UNIQUE,
  encrypted_password varchar(255),
  raw_user_meta_data jsonb,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz
);

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

CREATE SCHEMA IF NOT EXISTS storage AUTHORIZATION supabase_storage_admin;

CREATE TABLE storage.buckets (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  owner uuid REFERENCES auth.users (id),
  public boolean DEFAULT false,
  created_at timestamptz DEFAULT now()
);

CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(),
  bucket_id text REFERENCES storage.buckets (id),
  name text,
  owner uuid REFERENCES auth.users (id),
  metadata jsonb,
  created_at timestamptz DEFAULT now()
);

CREATE OR REPLACE FUNCTION storage.foldername(name text) RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN (string_to_array(name, '/'))[1:array_length(string_to_array(name, '/'), 1) - 1];
END
$$;

CREATE PUBLICATION supabase_realtime;

-- The application ----------------------------------------------------------------------
CREATE TYPE public.member_role AS ENUM ('owner', 'admin', 'member');
CREATE TYPE public.task_status AS ENUM ('todo', 'doing', 'done');

CREATE TABLE public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  username text UNIQUE CHECK (char_length(username) >= 3),
  full_name text,
  avatar_path text,
  created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.profiles IS 'One row per auth user.
Created by the on_auth_user_created trigger; the id is the auth user''s id.';

CREATE TABLE public.teams (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  slug text NOT NULL UNIQUE,
  name text NOT NULL,
  created_by uuid NOT NULL DEFAULT auth.uid(),
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT teams_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users (id)
);

CREATE TABLE public.team_members (
  team_id bigint NOT NULL REFERENCES public.teams (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  role public.member_role NOT NULL DEFAULT 'member',
  joined_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, user_id)
);

CREATE TABLE public.projects (
  id serial PRIMARY KEY,
  team_id bigint NOT NULL REFERENCES public.teams (id) ON DELETE CASCADE,
  name text NOT NULL,
  public_id uuid NOT NULL DEFAULT extensions.uuid_generate_v4(),
  budget_cents bigint NOT NULL DEFAULT 0,
  budget numeric(12, 2) GENERATED ALWAYS AS (budget_cents / 100.0) STORED,
  archived boolean NOT NULL DEFAULT false
);
CREATE INDEX projects_team_idx ON public.projects (team_id) WHERE NOT archived;

CREATE TABLE public.tasks (
  id bigserial PRIMARY KEY,
  project_id integer NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
  title text NOT NULL,
  status public.task_status NOT NULL DEFAULT 'todo',
  assignee uuid REFERENCES auth.users (id),
  due date,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_project_status_idx ON public.tasks (project_id, status);

CREATE TABLE public.activity (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  task_id bigint NOT NULL,
  action text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.events (
  id bigint GENERATED ALWAYS AS IDENTITY,
  occurred_at timestamptz NOT NULL,
  kind text NOT NULL,
  payload jsonb,
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_kind_idx ON public.events (kind);

CREATE VIEW public.open_tasks AS
  SELECT t.id, t.title, p.name AS project
  FROM public.tasks t JOIN public.projects p ON p.id = t.project_id
  WHERE t.status <> 'done';

-- Trigger: every new task writes an activity row.
CREATE OR REPLACE FUNCTION public.log_task_created() RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
  -- a semicolon; inside the body, and a $$ that is not a delimiter here
  INSERT INTO public.activity (task_id, action) VALUES (NEW.id, 'created');
  RETURN NEW;
END;
$body$;

CREATE TRIGGER tasks_log_created AFTER INSERT ON public.tasks
  FOR EACH ROW EXECUTE FUNCTION public.log_task_created();

-- Supabase's classic "profile on signup" trigger on auth.users.
CREATE OR REPLACE FUNCTION public.handle_new_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
AS $$
BEGIN
  INSERT INTO public.profiles (id, full_name) VALUES (NEW.id, NEW.raw_user_meta_data ->> 'full_name');
  RETURN NEW;
END;
$$;

CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();

CREATE OR REPLACE FUNCTION public.is_team_member(p_team bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT EXISTS (SELECT 1 FROM public.team_members m WHERE m.team_id = p_team AND m.user_id = auth.uid());
$$;

-- Row level security, as a Supabase app writes it.
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Profiles are viewable by everyone" ON public.profiles
  FOR SELECT USING (true);

CREATE POLICY "Users update their own profile" ON public.profiles
  FOR UPDATE TO authenticated
  USING (auth.uid() = id)
  WITH CHECK (auth.uid() = id);

CREATE POLICY "Members read their teams" ON public.teams
  FOR SELECT TO authenticated
  USING (
    EXISTS (
      SELECT 1
      FROM public.team_members m
      WHERE m.team_id = teams.id
        AND m.user_id = auth.uid()
    )
  );

CREATE POLICY "Members read projects" ON public.projects
  FOR SELECT TO authenticated
  USING (public.is_team_member(team_id));

CREATE POLICY "Members manage tasks" ON public.tasks
  FOR ALL TO authenticated
  USING (
    EXISTS (
      SELECT 1 FROM public.projects p
      JOIN public.team_members m ON m.team_id = p.team_id
      WHERE p.id = tasks.project_id AND m.user_id = auth.uid()
    )
  );

CREATE POLICY "Avatar images are publicly accessible" ON storage.objects
  FOR SELECT USING (bucket_id = 'avatars');

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT ON public.profiles TO anon;
GRANT ALL ON ALL TABLES IN SCHEMA public TO authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO authenticated, service_role;

ALTER PUBLICATION supabase_realtime ADD TABLE public.tasks, public.projects;
