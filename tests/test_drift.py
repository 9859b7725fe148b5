"""Schema and data drift after a clean migrate, against real servers; and the scheduled
workflow that runs the check."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import anyio
import pytest
import yaml

from automation.cli import build_parser, main
from loaders.dsn import parse_url
from loaders.migrate import MigrateOptions, migrate
from tests.datakit import run_sql

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def migrated(seeded_source: str, target_db: str) -> tuple[str, str]:
    report = await migrate(parse_url(seeded_source, "source"), parse_url(target_db, "target"), MigrateOptions())
    assert report.ok
    return seeded_source, target_db


async def drift(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    out = tmp_path / "drift.json"
    code = await anyio.to_thread.run_sync(main, ["drift", *argv, "--report", str(out), "--markdown", str(tmp_path / "d.md")])
    return code, json.loads(out.read_text()) if out.exists() else {}


def named(report: dict, area: str) -> list[str]:
    return [f["object"] for f in report["findings"] if f["area"] == area and f["kind"] == "drift"]


async def test_clean_migrate_has_no_drift(migrated: tuple[str, str], tmp_path: Path) -> None:
    source, target = migrated
    code, report = await drift(tmp_path, "--source", source, "--target", target, "--checksums")
    assert code == 0, report
    assert report["clean"] and report["checked"] == [
        "schema (against the recorded migration)", "old source since the verified migration (checksums)"]
    assert "no drift" in (tmp_path / "d.md").read_text()


async def test_added_row_on_target_is_data_drift_only_when_comparing_target(migrated: tuple[str, str], tmp_path: Path) -> None:
    source, target = migrated
    await run_sql(target, "INSERT INTO public.teams (slug, name, created_by) VALUES ('x', 'x', gen_random_uuid())")
    assert (await drift(tmp_path, "--source", source, "--target", target))[0] == 0  # day two: the app writes there
    code, report = await drift(tmp_path, "--source", source, "--target", target, "--compare-target")
    # the target's sequence moved ahead of the source's: that is what an app writing there does, not drift
    assert code == 2 and named(report, "data") == ["public.teams"]
    assert "| data | `public.teams` | drift" in (tmp_path / "d.md").read_text()


async def test_changed_row_needs_checksums_to_be_seen(migrated: tuple[str, str], tmp_path: Path) -> None:
    source, target = migrated
    await run_sql(target, "UPDATE public.tasks SET title = 'edited by hand' WHERE id = 7")
    assert (await drift(tmp_path, "--source", source, "--target", target, "--compare-target"))[0] == 0
    code, report = await drift(tmp_path, "--source", source, "--target", target, "--checksums", "--compare-target")
    assert code == 2 and named(report, "data") == ["public.tasks"]
    [finding] = [f for f in report["findings"] if f["object"] == "public.tasks"]
    assert "content checksum source" in finding["detail"] and "copy --tables public.tasks" in finding["fix"]


async def test_writes_reaching_the_old_source_are_flagged(migrated: tuple[str, str], tmp_path: Path) -> None:
    source, target = migrated
    await run_sql(source, "DELETE FROM public.activity WHERE id = 1")
    code, report = await drift(tmp_path, "--source", source, "--target", target)
    assert code == 2
    details = [f["detail"] for f in report["findings"] if f["object"] == "public.activity"]
    assert any("the old source took writes after the verified migration: rows 3000 → 2999" in d for d in details)


async def test_dropped_index_is_schema_drift_with_or_without_source(migrated: tuple[str, str], tmp_path: Path) -> None:
    source, target = migrated
    await run_sql(target, "DROP INDEX public.tasks_project_status_idx")
    for argv in (("--source", source, "--target", target, "--compare-target"), ("--target", target)):
        code, report = await drift(tmp_path, *argv)
        assert code == 2
        assert any("tasks_project_status_idx" in o for o in named(report, "schema")), report


async def test_changed_column_type_is_schema_drift(migrated: tuple[str, str], tmp_path: Path) -> None:
    source, target = migrated
    await run_sql(target, "ALTER TABLE public.teams ALTER COLUMN name TYPE varchar(200)")
    code, report = await drift(tmp_path, "--target", target)
    assert code == 2 and any("teams" in o and "name" in o for o in named(report, "schema")), report


def test_nothing_to_check_is_an_error(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARGET_DATABASE_URL", raising=False)
    monkeypatch.delenv("SOURCE_DATABASE_URL", raising=False)
    assert main(["drift"]) == 1
    assert "nothing to check" in capsys.readouterr().err


def _drift_commands(text: str) -> list[list[str]]:
    """Every `python -m automation drift …` command line in a workflow or unit file."""
    found = []
    for line in text.splitlines():
        if "-m automation drift" in line:
            words = shlex.split(line.split("=", 1)[1] if line.startswith("ExecStart=") else line.split("run:", 1)[-1])
            found.append(words[words.index("automation") + 1:])
    return found


def test_scheduled_workflow_is_valid_and_runs_an_existing_command() -> None:
    text = (ROOT / "ops/github-actions/drift.yml").read_text()
    workflow = yaml.safe_load(text)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"].split()[1] == "3" and "workflow_dispatch" in triggers
    steps = workflow["jobs"]["drift"]["steps"]
    assert any("pip install" in s.get("run", "") for s in steps)
    commands = _drift_commands(text)
    assert commands, "the workflow must run the drift command"
    for words in commands + _drift_commands((ROOT / "ops/systemd/supabase-to-rds-drift.service").read_text()):
        args = build_parser().parse_args([w for w in words])
        assert args.handler.__module__ == "automation.commands.drift" and args.stack


async def test_drift_ends_with_one_summary_line_by_severity(migrated: tuple[str, str], tmp_path: Path) -> None:
    """Like every long command: one last line with the findings by severity and the exit code's
    meaning — on a terminal as text, off it as the `summary` JSON event."""
    from tests.test_cli_edge import cli_env, run_cli, run_on_tty

    source, target = migrated
    env = cli_env(SOURCE_DATABASE_URL=source, TARGET_DATABASE_URL=target)
    code, screen = run_on_tty("drift", env=env)
    assert code == 0, screen[-2000:]
    [clean] = [line for line in screen.splitlines() if line.startswith("drift check of ")]
    assert clean == ("drift check of schema (against the recorded migration), old source since the verified "
                     "migration (row counts): no drift · exit 0 (ok)")

    await run_sql(target, "DROP INDEX public.tasks_project_status_idx; CREATE TABLE public.scratch (id int)")
    await run_sql(source, "INSERT INTO public.teams (slug, name, created_by) "
                          "SELECT 'late', 'written after cutover', created_by FROM public.teams LIMIT 1")
    report = tmp_path / "drift.json"
    code, screen = run_on_tty("drift", "--report", str(report), env=env)
    assert code == 2, screen[-2000:]
    findings = json.loads(report.read_text())["findings"]
    critical = sum(f["severity"] == "critical" for f in findings)
    warning = sum(f["severity"] == "warning" for f in findings)
    assert critical >= 2 and warning >= 1 and critical + warning == len(findings)
    [line] = [line for line in screen.splitlines() if line.startswith("drift check of ")]
    assert line.endswith(f": {critical + warning} drift findings ({critical} critical, {warning} warning) "
                         f"· exit 2 (mismatch or drift found) · report {report}")

    off_tty = run_cli("drift", env=env)
    assert off_tty.returncode == 2
    [event] = [json.loads(e) for e in off_tty.stderr.splitlines() if '"event": "summary"' in e]
    assert event["exit_code"] == 2 and event["summary"] == line.split(" · exit")[0]
