"""audit-code on the fixture backend (tests/fixtures/backend): every supabase-js call found with
file:line, the SQL each chain becomes, and the verdict of a real PG 18 target built from the
fixture's schema — including executing a few translations and comparing with the JSON PostgREST
documents for the same request."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from automation.cli import main
from loaders.audit.model import Call
from loaders.audit.report import AuditReport, pool_query
from loaders.audit.run import audit
from loaders.audit.scan import scan_source
from loaders.dsn import parse_url
from tests.conftest import create_database

BACKEND = Path(__file__).parent / "fixtures" / "backend"
ADA = "00000000-0000-0000-0000-00000000000a"
BOB = "00000000-0000-0000-0000-00000000000b"
SEED = f"""
INSERT INTO organizations (name) VALUES ('Acme'), ('Empty Org');
INSERT INTO branches (id, org_id, name, city) VALUES (1, 1, 'Main', 'Berlin'), (2, 1, 'East', 'Leipzig');
INSERT INTO profiles (id, full_name) VALUES ('{ADA}', 'Ada'), ('{BOB}', 'Bob');
INSERT INTO courses (id, branch_id, owner_id, title, status, price, created_at) VALUES
    (1, 1, '{ADA}', 'SQL Basics', 'published', 10.00, '2026-01-01'),
    (2, 1, '{BOB}', 'Advanced SQL', 'draft', NULL, '2026-02-01'),
    (3, 2, NULL, 'Lonely', 'published', 5.50, '2026-03-01');
INSERT INTO lessons (id, course_id, title, position) VALUES (1, 1, 'Select', 2), (2, 1, 'Intro', 1), (3, 2, 'Joins', 1);
INSERT INTO enrollments (course_id, student_id, progress) VALUES (1, '{BOB}', 50), (2, '{ADA}', 10);
INSERT INTO messages (sender_id, recipient_id, body, read_at) VALUES
    ('{ADA}', '{BOB}', 'hello there', NULL), ('{BOB}', '{ADA}', 'hi Ada', now());
"""

# Every call in the fixture: (file, line, kind, name, operation, status, check on the target).
EXPECTED = [
    ("src/components/CourseList.tsx", 10, "table", "courses", "select", "translated", "ok"),
    ("src/jobs/reports.js", 7, "table", "enrollments", "select", "translated", "ok"),
    ("src/jobs/reports.js", 16, "table", "audit_log", "insert", "translated", "ok"),
    ("src/jobs/reports.js", 21, "table", "courses", "update", "translated", "ok"),
    ("src/jobs/reports.js", 28, "functions", "send-digest", "call", "replace", None),
    ("src/routes/courses.ts", 12, "table", "courses", "select", "translated", "ok"),
    ("src/routes/courses.ts", 24, "table", "courses", "select", "translated", "ok"),
    ("src/routes/courses.ts", 40, "table", "branches", "select", "translated", "ok"),
    ("src/routes/courses.ts", 49, "table", "courses", "select", "translated", "ok"),
    ("src/routes/enrollments.ts", 7, "table", "courses", "select", "translated", "ok"),
    ("src/routes/enrollments.ts", 15, "table", "enrollments", "upsert", "translated", "ok"),
    ("src/routes/enrollments.ts", 21, "table", "enrollments", "select", "translated", "ok"),
    ("src/routes/enrollments.ts", 28, "rpc", "course_stats", "call", "translated", "ok"),
    ("src/routes/lessons.ts", 5, "table", "lessons", "insert", "translated", "ok"),
    ("src/routes/lessons.ts", 14, "table", "lessons", "update", "translated", "ok"),
    ("src/routes/lessons.ts", 18, "table", "lessons", "delete", "translated", "ok"),
    ("src/routes/lessons.ts", 22, "table", "lessons", "upsert", "translated", "ok"),
    ("src/routes/lessons.ts", 33, "table", "lessons", "select", "translated", "ok"),
    ("src/routes/messages.tsx", 7, "table", "messages", "select", "translated", "ok"),
    ("src/routes/messages.tsx", 18, "table", "messages", "select", "translated", "ok"),
    ("src/routes/messages.tsx", 27, "table", "messages", "update", "translated", "ok"),
    ("src/routes/messages.tsx", 37, "table", "messages", "select", "manual", "error"),
    ("src/services/auth.ts", 6, "auth", None, "getUser", "replace", None),
    ("src/services/auth.ts", 11, "auth", None, "admin.inviteUserByEmail", "replace", None),
    ("src/services/auth.ts", 15, "auth", None, "signOut", "replace", None),
    ("src/services/generic.ts", 8, "table", "this.table", "select", "manual", None),
    ("src/services/generic.ts", 12, "table", "courses", "select", "manual", None),
    ("src/services/generic.ts", 16, "table", "courses", "update", "manual", None),
    ("src/services/generic.ts", 22, "table", "certificates", "select", "translated", "missing-table"),
    ("src/services/generic.ts", 27, "table", "courses", "select", "translated", "missing-column"),
    ("src/services/generic.ts", 31, "table", "courses", "select", "translated", "ok"),
    ("src/services/organizations.ts", 4, "table", "organizations", "insert", "translated", "ok"),
    ("src/services/organizations.ts", 9, "table", "organizations", "select", "translated", "ok"),
    ("src/services/organizations.ts", 16, "table", "organizations", "delete", "translated", "ok"),
    ("src/services/realtime.ts", 5, "realtime", "`inbox:${userId}`", "channel", "replace", None),
    ("src/services/realtime.ts", 8, "realtime", None, "removeChannel", "replace", None),
    ("src/services/search.ts", 4, "rpc", "search_courses", "call", "translated", "ok"),
    ("src/services/search.ts", 9, "table", "courses", "select", "translated", "ok"),
    ("src/services/search.ts", 14, "table", "courses", "select", "translated", "ok"),
    ("src/services/search.ts", 22, "table", "courses", "select", "translated", "ok"),
    ("src/services/search.ts", 26, "table", "courses", "select", "translated", "ok"),
    ("src/services/storage.ts", 7, "storage", "courses", "upload", "replace", None),
    ("src/services/storage.ts", 14, "storage", "avatars", "getPublicUrl", "replace", None),
    ("src/services/storage.ts", 18, "storage", "courses", "createSignedUrl", "replace", None),
    ("src/services/storage.ts", 24, "storage", "avatars", "remove", "replace", None),
]

# (file, line) → (SQL, parameters as the code's expressions).
EXPECTED_SQL = {
    ("src/routes/lessons.ts", 33): (
        "SELECT title, duration_min FROM lessons WHERE course_id = $1 AND duration_min >= $2 AND duration_min < $3"
        " AND title <> $4 LIMIT $5", ["courseId", "30", "120", "''", "10"]),
    ("src/routes/courses.ts", 12): (
        "SELECT courses.id, courses.title, courses.status, (SELECT jsonb_build_object('name', branches.name, 'city', "
        "branches.city) FROM branches WHERE branches.id = courses.branch_id) AS branch, count(*) OVER () AS total_count"
        " FROM courses WHERE courses.status = $1 AND courses.deleted_at IS NULL ORDER BY courses.created_at DESC"
        " LIMIT $3::bigint - $2::bigint + 1 OFFSET $2::bigint",
        ["'published'", "page * pageSize", "page * pageSize + pageSize - 1"]),
    ("src/routes/courses.ts", 24): (
        "SELECT courses.id, courses.title, courses.price, (SELECT jsonb_build_object('full_name', profiles.full_name,"
        " 'avatar_url', profiles.avatar_url) FROM profiles WHERE profiles.id = courses.owner_id) AS owner, (SELECT "
        "coalesce(jsonb_agg(jsonb_build_object('id', lessons.id, 'title', lessons.title, 'position', lessons.\"position\")"
        " ORDER BY lessons.\"position\"), '[]') FROM lessons WHERE lessons.course_id = courses.id) AS lessons FROM courses"
        " WHERE courses.id = $1 LIMIT 2", ["req.params.id"]),
    ("src/routes/courses.ts", 49): (
        "SELECT id, meta->>'level' AS level, price::text AS price FROM courses WHERE id = $1 LIMIT 2", ["req.params.id"]),
    ("src/routes/enrollments.ts", 7): (
        "SELECT courses.id, courses.title, (SELECT coalesce(jsonb_agg(jsonb_build_object('progress', "
        "enrollments.progress)), '[]') FROM enrollments WHERE enrollments.course_id = courses.id AND "
        "enrollments.student_id = $1) AS enrollments FROM courses WHERE EXISTS (SELECT 1 FROM enrollments WHERE "
        "enrollments.course_id = courses.id AND enrollments.student_id = $1)", ["userId"]),
    ("src/routes/enrollments.ts", 15): (
        "INSERT INTO enrollments (course_id, student_id) VALUES ($1, $2) ON CONFLICT (course_id, student_id) DO NOTHING",
        ["courseId", "studentId"]),
    ("src/routes/enrollments.ts", 21): ("SELECT count(*) AS count FROM enrollments WHERE course_id = $1", ["courseId"]),
    ("src/routes/enrollments.ts", 28): ("SELECT * FROM course_stats(course => $1) AS course_stats", ["courseId"]),
    ("src/routes/lessons.ts", 5): (
        'INSERT INTO lessons (course_id, title, "position") VALUES ($1, $2, $3) RETURNING id, "position"',
        ["courseId", "title", "position"]),
    ("src/routes/lessons.ts", 22): (
        'INSERT INTO lessons (id, course_id, title, "position") VALUES ($1, $2, $3, $4), ($5, $6, $7, $8) ON CONFLICT'
        ' (id) DO UPDATE SET course_id = EXCLUDED.course_id, title = EXCLUDED.title, "position" = EXCLUDED."position"',
        ["rows[0].id", "courseId", "'Intro'", "1", "rows[1].id", "courseId", "'Outro'", "2"]),
    ("src/routes/lessons.ts", 18): ("DELETE FROM lessons WHERE id = $1", ["id"]),
    ("src/routes/messages.tsx", 7): (
        "SELECT messages.id, messages.body, messages.read_at, (SELECT jsonb_build_object('full_name', profiles.full_name)"
        " FROM profiles WHERE profiles.id = messages.sender_id) AS sender FROM messages WHERE messages.recipient_id = $1"
        " AND (messages.body ILIKE $2 OR messages.read_at IS NULL) ORDER BY messages.created_at DESC NULLS LAST LIMIT $3",
        ["userId", "`%${query}%`", "50"]),
    ("src/routes/messages.tsx", 27): (
        "UPDATE messages SET read_at = $1 WHERE id = ANY ($2) RETURNING *", ["new Date().toISOString()", "ids"]),
    ("src/jobs/reports.js", 21): (
        "UPDATE courses SET status = $1, deleted_at = $2 WHERE id = ANY ($3) AND NOT (status IS NULL)",
        ["'archived'", "new Date().toISOString()", "ids"]),
    ("src/services/search.ts", 4): (
        "SELECT * FROM search_courses(q => $1, max_results => $2) AS search_courses", ["q", "10"]),
    ("src/services/search.ts", 9): (
        "SELECT id, title FROM courses WHERE search @@ websearch_to_tsquery('english', $1)", ["q"]),
    ("src/services/search.ts", 14): (
        "SELECT id, title, tags FROM courses WHERE tags @> $1 AND tags && $2 AND NOT (status = $3)",
        ["tags", "['beginner', 'intro']", "'archived'"]),
    ("src/services/search.ts", 22): (
        "SELECT id FROM courses WHERE meta @> $1::jsonb AND tags <@ $2", ["JSON.stringify({ level: level })", "['a', 'b', 'c']"]),
    ("src/services/search.ts", 26): ("SELECT id, title FROM courses WHERE title ILIKE ANY ($1) AND price > $2", ["words", "'0'"]),
    ("src/services/organizations.ts", 4): (
        "INSERT INTO organizations (name, created_at) SELECT name, created_at FROM jsonb_populate_recordset("
        "NULL::organizations, $1::jsonb) RETURNING id, name", ["JSON.stringify([].concat(body))"]),
    ("src/services/organizations.ts", 9): (
        "SELECT organizations.name, (SELECT coalesce(jsonb_agg(jsonb_build_object('name', branches.name, 'city', "
        "branches.city)), '[]') FROM branches WHERE branches.org_id = organizations.id AND branches.city = $1) AS branches"
        " FROM organizations WHERE organizations.id = $2", ["'Berlin'", "orgId"]),
}


@pytest.fixture(scope="module")
async def target(pg18) -> str:
    url = await create_database(pg18, owner_is_superuser=False)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((BACKEND / "schema.sql").read_text())
        await conn.execute(SEED)
    finally:
        await conn.close()
    return url


@pytest.fixture(scope="module")
async def checked(target: str) -> AuditReport:
    return await audit([BACKEND], parse_url(target, "target"))


def by_place(report: AuditReport) -> dict[tuple[str, int], Call]:
    return {(c.file, c.line): c for c in report.calls}


def test_every_call_is_found_and_classified(checked: AuditReport) -> None:
    got = [(c.file, c.line, c.kind, c.name, c.operation, c.status, c.check) for c in checked.calls]
    assert got == EXPECTED


def test_translated_sql_and_parameters(checked: AuditReport) -> None:
    calls = by_place(checked)
    for place, (sql, params) in EXPECTED_SQL.items():
        assert (calls[place].sql, calls[place].params) == (sql, params), place


def test_every_translation_prepares_on_the_target_except_the_broken_ones(checked: AuditReport) -> None:
    translated = [c for c in checked.database_calls if c.sql is not None]
    assert len(translated) == sum(1 for e in EXPECTED if e[5] == "translated") == 31
    failing = {(c.file, c.line): c.check for c in translated if c.check != "ok"}
    assert failing == {("src/services/generic.ts", 22): "missing-table", ("src/services/generic.ts", 27): "missing-column"}
    calls = by_place(checked)
    assert "did you mean status?" in calls[("src/services/generic.ts", 27)].message
    assert calls[("src/services/generic.ts", 22)].message.startswith("table public.certificates does not exist")
    assert "several foreign keys" in calls[("src/routes/messages.tsx", 37)].message


async def test_a_type_error_is_the_servers_verdict(target: str, tmp_path: Path) -> None:
    """PREPARE is the server's word: a type error no name check can see is reported as `error`."""
    (tmp_path / "bad.ts").write_text("export const f = () => supabase.from('courses').select('id').ilike('price', '1%')\n")
    report = await audit([tmp_path], parse_url(target, "target"))
    [call] = report.calls
    assert call.check == "error" and "operator does not exist: numeric ~~* " in call.message


def test_dynamic_calls_are_reported_not_guessed(checked: AuditReport) -> None:
    calls = by_place(checked)
    assert calls[("src/services/generic.ts", 8)].message.startswith("dynamic table name (this.table)")
    assert calls[("src/services/generic.ts", 12)].message == "match() object is built at run time (filters): not translated"
    assert "update() payload is built at run time ({ ...changes })" in calls[("src/services/generic.ts", 16)].message
    assert "kept in `query`" in calls[("src/services/generic.ts", 31)].message
    assert all(c.sql is None for c in checked.calls if c.status in ("manual", "replace"))


def test_storage_auth_realtime_functions_need_replacements(checked: AuditReport) -> None:
    calls = by_place(checked)
    assert "S3 PutObject" in calls[("src/services/storage.ts", 7)].message
    assert "s3-request-presigner" in calls[("src/services/storage.ts", 18)].message
    assert "JWT" in calls[("src/services/auth.ts", 6)].message
    assert "LISTEN/NOTIFY" in calls[("src/services/realtime.ts", 5)].message
    assert "Lambda" in calls[("src/jobs/reports.js", 28)].message
    # Array.from / Buffer.from / Uint8Array.from sit in lib/supabase.ts, storage.ts, messages.tsx, CourseList.tsx
    assert not [c for c in checked.calls if c.file == "src/lib/supabase.ts"]


async def run_translated(url: str, call: Call, values: dict[str, object]) -> list[dict[str, object]]:
    """Execute the translation with the given values for its parameters, as PostgREST would shape it:
    `json_agg` over the statement's rows."""
    conn = await asyncpg.connect(url)
    try:
        args = [values[p] for p in call.params]
        return json.loads(await conn.fetchval(f"SELECT coalesce(json_agg(r), '[]') FROM ({call.sql}) r", *args))
    finally:
        await conn.close()


# (file, line), parameter values, and the JSON PostgREST documents for that request (by hand).
POSTGREST_SHAPES = [
    (("src/routes/courses.ts", 24), {"req.params.id": 1},
     [{"id": 1, "title": "SQL Basics", "price": 10.00, "owner": {"full_name": "Ada", "avatar_url": None},
       "lessons": [{"id": 2, "title": "Intro", "position": 1}, {"id": 1, "title": "Select", "position": 2}]}]),
    (("src/routes/courses.ts", 40), {"req.params.id": 1},
     [{"id": 1, "name": "Main", "courses": [{"id": 1, "title": "SQL Basics", "lessons": [{"count": 2}]},
                                            {"id": 2, "title": "Advanced SQL", "lessons": [{"count": 1}]}]}]),
    (("src/routes/enrollments.ts", 7), {"userId": BOB},
     [{"id": 1, "title": "SQL Basics", "enrollments": [{"progress": 50}]}]),
    (("src/services/organizations.ts", 9), {"'Berlin'": "Berlin", "orgId": 1},
     [{"name": "Acme", "branches": [{"name": "Main", "city": "Berlin"}]}]),
    (("src/routes/messages.tsx", 7), {"userId": BOB, "`%${query}%`": "%hello%", "50": 50},
     [{"id": 1, "body": "hello there", "read_at": None, "sender": {"full_name": "Ada"}}]),
    (("src/routes/courses.ts", 12), {"'published'": "published", "page * pageSize": 0,
                                     "page * pageSize + pageSize - 1": 0},
     [{"id": 3, "title": "Lonely", "status": "published", "branch": {"name": "East", "city": "Leipzig"},
       "total_count": 2}]),
]


@pytest.mark.parametrize(("place", "values", "expected"), POSTGREST_SHAPES, ids=[f"{p[0]}:{p[1]}" for p, _, _ in POSTGREST_SHAPES])
async def test_translation_returns_the_json_postgrest_returns(checked: AuditReport, target: str, place, values,
                                                              expected) -> None:
    call = by_place(checked)[place]
    got = await run_translated(target, call, values)
    for row in got:  # embedded arrays carry no order unless the request asks for one (PostgREST's too)
        for key, value in row.items():
            if isinstance(value, list) and key != "lessons":
                value.sort(key=lambda item: item.get("id", 0))
    assert got == expected


async def test_without_a_target_embeds_wait_for_the_catalog_and_nothing_is_checked() -> None:
    report = await audit([BACKEND])
    calls = by_place(report)
    assert not report.target_checked and all(c.check is None for c in report.calls)
    assert calls[("src/routes/courses.ts", 24)].message == (
        "embedded resource 'profiles' needs --target to resolve it through foreign keys")
    assert (calls[("src/routes/lessons.ts", 33)].sql, calls[("src/routes/lessons.ts", 33)].params) == \
        EXPECTED_SQL[("src/routes/lessons.ts", 33)]
    assert [(c.file, c.line, c.kind) for c in report.calls] == [e[:3] for e in EXPECTED]


def test_look_alikes_are_not_calls() -> None:
    source = b"""
    const a = Array.from(x).map(f); const b = Buffer.from(s, 'hex'); const c = Uint8Array.from(b)
    const d = from(obs).pipe(map(f)); const e = rxjs.from([1]).subscribe(g); const g = Object.fromEntries(p)
    const bucket = await client.storage.from('profiles').download('a.png')
    const t = await anyNameAtAll.from('profiles').select('id')
    """
    found = scan_source(source, "x.ts", tsx=False)
    assert [(f.kind, f.name, f.line) for f in found] == [("storage", "profiles", 4), ("table", "profiles", 5)]


def test_markdown_lists_every_call_with_its_pool_query(checked: AuditReport) -> None:
    markdown = checked.to_markdown()
    assert markdown.count("- [ ] **line") == len(EXPECTED)
    call = by_place(checked)[("src/routes/lessons.ts", 5)]
    assert pool_query(call) == ('const { rows: [row] } = await pool.query(`INSERT INTO lessons (course_id, title, '
                                '"position") VALUES ($1, $2, $3) RETURNING id, "position"`, [courseId, title, position]);'
                                " // single(): exactly one row expected")
    assert pool_query(call) in markdown
    assert "## src/services/generic.ts" in markdown


def test_cli_writes_reports_and_gates(target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("TARGET_DATABASE_URL", target)
    report, markdown = tmp_path / "audit.json", tmp_path / "audit.md"
    code = main(["audit-code", str(BACKEND), "--report", str(report), "--markdown", str(markdown)])
    assert code == 2  # a missing table, a missing column, an ambiguous embed and dynamic calls remain
    payload = json.loads(report.read_text())
    assert len(payload["calls"]) == len(EXPECTED)
    assert payload["tables"]["courses"]["checks"]["missing-column"] == 1
    assert payload["files"]["src/services/storage.ts"] == {"storage": 4}
    assert markdown.read_text().startswith("# Supabase client calls to replace")
    assert "password" not in report.read_text()

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "ok.ts").write_text("export const f = (id: number) => db.from('lessons').select('id').eq('id', id)\n"
                                 "export const g = (p: string) => db.storage.from('b').download(p)\n")
    assert main(["audit-code", str(clean)]) == 0
    assert main(["audit-code", str(clean), "--gate"]) == 2        # a database call remains
    (clean / "ok.ts").write_text("export const g = (p: string) => db.storage.from('b').download(p)\n")
    assert main(["audit-code", str(clean), "--gate"]) == 0        # Storage moves in a later phase
    assert main(["audit-code", str(clean), "--gate", "--strict"]) == 2


def test_cli_bad_path_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit-code", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0] and "fix:" in err[0]
