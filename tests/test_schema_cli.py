"""`python -m automation schema`: exit codes 0/1/2, dry run, JSON report."""

from __future__ import annotations

import json

import anyio

from automation.cli import main
from tests.schema_support import MIGRATIONS, apply_reference, execute, supabase_like


def test_dry_run_prints_cleaned_sql_and_changes(capsys, monkeypatch):
    monkeypatch.delenv("SOURCE_DATABASE_URL", raising=False)
    code = main(["schema", "--migrations", str(MIGRATIONS), "--skip-invalid", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "-- 20240103000000_tasks.sql:3 (migration)\nCREATE TABLE public.tasks (id bigserial PRIMARY KEY" in out
    assert "create policy" not in out.lower()
    assert "20240111000000_task_priority.sql:4: skipped INVALID" in err


def test_invalid_sql_exits_1_with_location(capsys, monkeypatch):
    monkeypatch.delenv("SOURCE_DATABASE_URL", raising=False)
    code = main(["schema", "--migrations", str(MIGRATIONS), "--dry-run"])
    assert code == 1
    assert "error: 20240111000000_task_priority.sql:4:" in capsys.readouterr().err


def test_apply_report_and_diff_exit_codes(pg15, target_db, tmp_path, capsys, monkeypatch):
    reference = anyio.run(supabase_like, pg15)
    anyio.run(apply_reference, reference)
    monkeypatch.setenv("SOURCE_DATABASE_URL", reference)
    monkeypatch.setenv("TARGET_DATABASE_URL", target_db)
    monkeypatch.setenv("APP_ROLE_PASSWORD", "app-secret-123")
    report_file = tmp_path / "schema-report.json"

    args = ["schema", "--migrations", str(MIGRATIONS), "--skip-invalid", "--report", str(report_file),
            "--app-role", "cli_app_role"]
    assert main(args) == 0
    report = json.loads(report_file.read_text())
    assert report["diff"]["equal"] and report["app_role"] == "cli_app_role"
    assert any(c["where"] == "20240111000000_task_priority.sql:4" and c["action"] == "skipped" for c in report["changes"])
    assert "app-secret-123" not in report_file.read_text() + capsys.readouterr().err

    anyio.run(execute, target_db, "DROP INDEX public.tasks_due_idx")
    assert main(args) == 2
    assert "schema differs: index public.tasks_due_idx: missing on target" in capsys.readouterr().err
