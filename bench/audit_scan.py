"""How fast `audit-code` reads a real-sized backend: the fixture backend copied into a larger tree
(default 40 copies ≈ 1,800 calls, 1,200+ database chains in 520 files), then scan + translate timed,
and — with --target URL (a database holding tests/fixtures/backend/schema.sql) — the catalog check
and PREPARE of every statement too.

Usage: python bench/audit_scan.py [--copies 40] [--target URL]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import anyio

from loaders.audit.run import audit
from loaders.dsn import parse_url

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "backend"


def build_tree(root: Path, copies: int) -> None:
    for i in range(copies):
        shutil.copytree(FIXTURE / "src", root / f"module{i:03d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--target", metavar="URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_tree(root, args.copies)
        started = time.perf_counter()
        target = parse_url(args.target, "target") if args.target else None
        report = anyio.run(audit, [root], target)
        total = time.perf_counter() - started
    t = report.totals()
    chains = len(report.database_calls)
    print(f"{t['files_scanned']} files, {t['calls']} calls ({chains} database chains): scan {report.scan_seconds:.2f} s,"
          f" scan+translate{'+check' if target else ''} {total:.2f} s ({chains / total:.0f} chains/s)")


if __name__ == "__main__":
    main()
