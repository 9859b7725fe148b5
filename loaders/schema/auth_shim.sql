-- Supabase's JWT helpers for `--rls shim`: policies that call auth.uid() keep working on the
-- target when the backend sets the request's claims per transaction, e.g.
--   SELECT set_config('request.jwt.claims', '{"sub": "…", "role": "authenticated"}', true);
-- Newer Supabase reads the JSON `request.jwt.claims`; older code set one setting per claim
-- (`request.jwt.claim.sub`), which is read first, as Supabase does.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
  )::uuid
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
  )::text
$$;

CREATE OR REPLACE FUNCTION auth.email() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email'
  )::text
$$;

COMMENT ON SCHEMA auth IS 'supabase-to-rds: JWT claim helpers only; users stay in Supabase Auth';
GRANT USAGE ON SCHEMA auth TO PUBLIC;
