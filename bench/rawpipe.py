"""The data floor: `COPY … TO STDOUT | COPY … FROM STDIN` through an OS pipe, one table per pipe.

Nothing a migration tool could do moves rows faster than the server's own COPY streaming
straight into the other server's COPY: no parsing, no intermediate file, no index upkeep
(tables are created beforehand with the pre-data section only, so there are no indexes, no
constraints and no triggers while loading). Up to `jobs` pipes run at once, biggest table
first, so the floor uses the same parallelism as the tools it bounds. Text format, as psql's
`\\copy` and pg_dump use: binary would break on arrays of enums whose OIDs differ between servers.

Usage (tables must already exist on the target):
    BENCH_SOURCE_URL=… BENCH_TARGET_URL=… python bench/rawpipe.py --jobs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.localpg import embedded_bin_dir  # noqa: E402
from loaders.dsn import DatabaseUrl, parse_url  # noqa: E402


@dataclass(frozen=True)
class PipeTable:
    """A table to stream: quoted name and column list come from the server's format('%I')."""

    ident: str
    columns: str
    bytes: int


async def list_tables(source_url: str) -> list[PipeTable]:
    """User tables (not Supabase-managed / system schemas), biggest first; generated columns left out."""
    conn = await asyncpg.connect(source_url)
    try:
        rows = await conn.fetch(
            """
            SELECT format('%I.%I', n.nspname, c.relname) AS ident,
                   string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) AS columns,
                   pg_table_size(c.oid) AS bytes
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_%'
            GROUP BY n.nspname, c.relname, c.oid
            ORDER BY pg_table_size(c.oid) DESC, 1
            """
        )
    finally:
        await conn.close()
    return [PipeTable(r["ident"], r["columns"], int(r["bytes"])) for r in rows]


def _psql(url: DatabaseUrl, bin_dir: Path, sql: str) -> tuple[list[str], dict[str, str]]:
    argv = [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url.dsn(with_password=False), "-c", sql]
    return argv, {**os.environ, **url.libpq_env()}


def _pipe(producer: tuple[list[str], dict[str, str]], consumer: tuple[list[str], dict[str, str]],
          what: str) -> str:
    """producer | consumer through an OS pipe (no Python in the data path); the consumer's stdout."""
    reader = subprocess.Popen(producer[0], env=producer[1], stdout=subprocess.PIPE)
    try:
        writer = subprocess.run(consumer[0], env=consumer[1], stdin=reader.stdout, capture_output=True, text=True)
    finally:
        assert reader.stdout is not None
        reader.stdout.close()
        reader.wait()
    if reader.returncode or writer.returncode:
        raise RuntimeError(f"{what} failed: {writer.stderr.strip()}")
    return writer.stdout


def pipe_table(source: DatabaseUrl, target: DatabaseUrl, table: PipeTable, bin_dir: Path) -> int:
    """Stream one table; returns the row count the target's COPY reported."""
    consumer = _psql(target, bin_dir, f"COPY {table.ident} ({table.columns}) FROM STDIN")
    consumer[0].remove("-q")  # keep the "COPY n" tag: it is the row count
    out = _pipe(_psql(source, bin_dir, f"COPY {table.ident} ({table.columns}) TO STDOUT"), consumer,
                f"pipe for {table.ident}")
    return int(out.strip().rsplit(" ", 1)[-1])


def copy_tables(source_url: str, target_url: str, tables: Sequence[PipeTable], *, jobs: int = 2,
                bin_dir: Path | None = None) -> dict[str, int]:
    """Run the pipes, `jobs` at a time; {table: rows}. Tables must exist on the target."""
    source, target = parse_url(source_url, "source"), parse_url(target_url, "target")
    bins = bin_dir or embedded_bin_dir()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {t.ident: pool.submit(pipe_table, source, target, t, bins) for t in tables}
        return {ident: f.result() for ident, f in futures.items()}


def precreate_tables(source_url: str, target_url: str, *, bin_dir: Path | None = None) -> None:
    """Tables, types, functions, views — no indexes, constraints or triggers (pre-data section).

    Ownership is not kept (`--no-owner`): the target is owned by a non-superuser, as on RDS."""
    source, target = parse_url(source_url, "source"), parse_url(target_url, "target")
    bins = bin_dir or embedded_bin_dir()
    dump = ([str(bins / "pg_dump"), "--section=pre-data", "--no-owner", "-d", source.dsn(with_password=False)],
            {**os.environ, **source.libpq_env()})
    restore = ([str(bins / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target.dsn(with_password=False)],
               {**os.environ, **target.libpq_env()})
    _pipe(dump, restore, "pre-data restore")


def raw_pipe(source_url: str, target_url: str, *, jobs: int = 2, bin_dir: Path | None = None) -> dict[str, int]:
    """The whole floor for the tests: list source tables, then stream them all."""
    tables = anyio.run(list_tables, source_url)
    return copy_tables(source_url, target_url, tables, jobs=jobs, bin_dir=bin_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="COPY | COPY pipes, one per table (tables pre-created).")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--source", default=os.environ.get("BENCH_SOURCE_URL"), help="default: $BENCH_SOURCE_URL")
    parser.add_argument("--target", default=os.environ.get("BENCH_TARGET_URL"), help="default: $BENCH_TARGET_URL")
    args = parser.parse_args(argv)
    if not args.source or not args.target:
        parser.error("set --source/--target or BENCH_SOURCE_URL/BENCH_TARGET_URL")
    counts = raw_pipe(args.source, args.target, jobs=args.jobs)
    print(f"{len(counts)} tables, {sum(counts.values()):,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
