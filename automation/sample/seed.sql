-- Demo rows for the sample Supabase project (after supabase_source.sql). Deterministic:
-- ids derive from generate_series, so every `up --local` starts from the same data.
-- The on_auth_user_created trigger fills public.profiles and tasks_log_created fills
-- public.activity, exactly as they would on Supabase.

INSERT INTO auth.users (id, aud, role, email, raw_user_meta_data, created_at)
SELECT md5('user' || g)::uuid, 'authenticated', 'authenticated', 'user' || g || '@example.com',
       jsonb_build_object('full_name', 'Demo User ' || g, 'locale', (ARRAY['en', 'fr', 'de', 'ja'])[1 + g % 4]),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes'
FROM generate_series(1, 400) AS g;

UPDATE public.profiles p
SET username = 'user_' || substr(p.id::text, 1, 8),
    avatar_path = CASE WHEN get_byte(decode(md5(p.id::text), 'hex'), 0) % 3 = 0 THEN NULL ELSE 'avatars/' || p.id || '.png' END;

INSERT INTO public.teams (slug, name, created_by, created_at)
SELECT 'team-' || g, 'Team ' || g || ' — équipe 団体', md5('user' || (g * 7 % 400 + 1))::uuid,
       timestamptz '2024-02-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, 40) AS g;

INSERT INTO public.team_members (team_id, user_id, role)
SELECT t.id, md5('user' || ((t.id * 13 + k * 29) % 400 + 1))::uuid,
       (ARRAY['owner', 'admin', 'member', 'member']::public.member_role[])[1 + (k % 4)]
FROM public.teams t, generate_series(0, 11) AS k
ON CONFLICT DO NOTHING;

INSERT INTO public.projects (team_id, name, budget_cents, archived)
SELECT 1 + g % 40, 'Project ' || g, (g * 104729) % 10000000, g % 9 = 0
FROM generate_series(1, 160) AS g;

INSERT INTO public.tasks (project_id, title, status, assignee, due, created_at)
SELECT 1 + g % 160,
       CASE WHEN g % 50 = 0 THEN '' ELSE 'Task ' || g || ': ' || repeat('détail ', g % 5) END,
       (ARRAY['todo', 'doing', 'done']::public.task_status[])[1 + g % 3],
       CASE WHEN g % 7 = 0 THEN NULL ELSE md5('user' || (g % 400 + 1))::uuid END,
       date '2025-01-01' + (g % 365),
       timestamptz '2024-06-01 00:00:00+00' + g * interval '13 minutes'
FROM generate_series(1, 3000) AS g;

INSERT INTO public.events (occurred_at, kind, payload)
SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '4 hours',
       (ARRAY['login', 'upload', 'invite', 'export'])[1 + g % 4],
       CASE WHEN g % 11 = 0 THEN NULL
            ELSE jsonb_build_object('n', g, 'ratio', g / 7.0, 'tags', jsonb_build_array('a', g % 5), 'note', 'ünïcødé ✓') END
FROM generate_series(1, 2000) AS g;

INSERT INTO storage.buckets (id, name, owner, public) VALUES ('avatars', 'avatars', md5('user1')::uuid, true);
INSERT INTO storage.objects (bucket_id, name, owner, metadata)
SELECT 'avatars', 'avatars/' || md5('user' || g)::uuid || '.png', md5('user' || g)::uuid,
       jsonb_build_object('size', 1000 + g, 'mimetype', 'image/png')
FROM generate_series(1, 100) AS g;
