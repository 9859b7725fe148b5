"""The audit in pipeline order: scan → (catalog) → translate → (check) → report."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from loaders.audit.catalog import Catalog, read_catalog
from loaders.audit.check import check_calls
from loaders.audit.report import AuditReport
from loaders.audit.scan import scan_paths, source_files
from loaders.audit.translate import translate
from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError

log = structlog.get_logger(stage="audit")


def report_root(paths: list[Path]) -> Path:
    """File names in the report are relative to the one folder audited, else to the working directory."""
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0].resolve()
    return Path.cwd().resolve()


def check_paths(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise MigrationError(f"no such file or folder: {', '.join(missing)}", "pass the backend's source folder")
    if not source_files(paths):
        raise MigrationError(f"no .ts/.tsx/.js/.jsx files under {', '.join(map(str, paths))}",
                             "pass the folder holding the backend's source (node_modules is skipped)")


async def audit(paths: list[Path], target: DatabaseUrl | None = None) -> AuditReport:
    check_paths(paths)
    resolved = [p.resolve() for p in paths]
    started = time.perf_counter()
    found = scan_paths(resolved, root=report_root(paths))
    scan_seconds = time.perf_counter() - started
    log.info("scanned", calls=len(found), seconds=round(scan_seconds, 3))
    report = AuditReport(calls=[], files_scanned=len(source_files(resolved)), scan_seconds=scan_seconds)
    if target is None:
        report.calls = [translate(f, None) for f in found]
        return report
    async with connection(target) as conn:
        catalog: Catalog = await read_catalog(conn)
        report.calls = [translate(f, catalog) for f in found]
        await check_calls(conn, report.calls, catalog)
    report.target_checked = True
    return report
