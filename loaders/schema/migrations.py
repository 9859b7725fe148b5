"""A team's migrations folder: ordered files, applied once each, tracked on the target.

The tracking table lives in our own schema (`supabase_to_rds.schema_migrations`) and is
written in the same transaction as the file, so a crash never leaves a file applied but
unrecorded. A file whose checksum changed after it was applied is refused: rerunning it
could not reproduce what the database already has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from loaders.errors import MigrationError
from loaders import bookkeeping

TABLE = bookkeeping.SCHEMA_MIGRATIONS
TRACKING_DDL = bookkeeping.statements(TABLE)
RECORD = f"INSERT INTO {TABLE} (file, checksum) VALUES ($1, $2)"


@dataclass(frozen=True)
class SqlUnit:
    """One tracked unit of SQL: a migration file, or a pg_dump section."""

    name: str
    checksum: str
    text: str = ""

    @classmethod
    def of(cls, name: str, text: str) -> "SqlUnit":
        return cls(name, hashlib.sha256(text.encode()).hexdigest(), text)


def read_folder(folder: Path) -> list[SqlUnit]:
    """`*.sql` in lexical order of file name (`20240101_a.sql` before `20240101_b.sql`)."""
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {folder} does not exist", "pass the folder holding the *.sql files")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sql" and p.is_file())
    if not files:
        raise MigrationError(f"no *.sql files in {folder}", "pass the folder holding the migration files")
    return [SqlUnit.of(p.name, p.read_text(encoding="utf-8")) for p in files]


async def ensure_tracking(conn: asyncpg.Connection) -> None:
    for ddl in TRACKING_DDL:
        await conn.execute(ddl)


async def applied_checksums(conn: asyncpg.Connection) -> dict[str, str]:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
    if not exists:
        return {}
    return {r["file"]: r["checksum"] for r in await conn.fetch(f"SELECT file, checksum FROM {TABLE}")}


CHANGED_FIX = "restore the applied version of the file and put the change in a new migration file"


def pending(units: list[SqlUnit], applied: dict[str, str], *, fix: str | None = None) -> list[SqlUnit]:
    """Units not applied yet; refuses when an applied one changed since."""
    changed = [u.name for u in units if u.name in applied and applied[u.name] != u.checksum]
    if changed:
        raise MigrationError(
            f"already applied but changed since: {', '.join(changed)} (checksum differs from {TABLE})",
            fix or CHANGED_FIX,
        )
    return [u for u in units if u.name not in applied]
