"""Local measurement of the copy path: PG 15 → PG 18 on this machine, figures printed as JSON lines.

    python -m bench.copy_bench [--rows 200000] [--memory]

Each case gets a fresh target database (owned by a non-superuser, like RDS) with the table,
its primary key and one secondary index; the source holds `--rows` rows (~150 B each).
`--memory` instead copies in a child process and reports its peak RSS, to show memory stays
flat as the table grows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import asyncpg
import structlog

from loaders.localpg import FAST_UNSAFE, LocalPostgres, debian_bin_dir, embedded_bin_dir
from loaders.dsn import parse_url
from tests.conftest import create_database
from tests.datakit import copy_all, run_sql

TABLE_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, n int, label text, at timestamptz, amount numeric(12, 2), flags boolean[]);
         CREATE INDEX {t}_label_idx ON {t} (label);"""
TABLE_FILL = """INSERT INTO {t} SELECT g, g % 1000, md5(g::text) || md5((g * 7)::text), now() - g * interval '1 minute',
          g / 7.0, ARRAY[g % 2 = 0, g % 3 = 0] FROM generate_series(1, {rows}) g; ANALYZE {t};"""
DDL = TABLE_DDL.format(t="big")
FILL = TABLE_FILL.replace("{t}", "big")


def layout(tables: int) -> list[str]:
    return ["big"] if tables == 1 else [f"big_{i}" for i in range(1, tables + 1)]
CASES = [
    {"format": "binary", "jobs": 1}, {"format": "text", "jobs": 1},
    {"format": "binary", "jobs": 2}, {"format": "text", "jobs": 2},
    {"format": "binary", "jobs": 2, "split_bytes": 1 << 20, "max_ranges": 2},
    {"format": "text", "jobs": 2, "split_bytes": 1 << 20, "max_ranges": 2},
    {"format": "binary", "jobs": 1, "drop_indexes": False},
]


async def fresh_target(target: LocalPostgres) -> str:
    url = await create_database(target, owner_is_superuser=False)
    await run_sql(url, DDL)
    return url


async def run_cases(source: LocalPostgres, target: LocalPostgres, rows: int, repeat: int, tables: int) -> None:
    """Median of `repeat` runs per case: the machine is shared, single runs are noisy."""
    names = layout(tables)
    ddl = "".join(TABLE_DDL.format(t=t) for t in names)
    source_url = await create_database(source)
    await run_sql(source_url, ddl + "".join(TABLE_FILL.format(t=t, rows=rows // tables) for t in names))
    conn = await asyncpg.connect(source_url)
    size = await conn.fetchval("SELECT sum(pg_table_size(c.oid))::bigint FROM pg_class c WHERE relname = ANY($1::text[])", names)
    await conn.close()
    for case in CASES:
        times = []
        for _ in range(repeat):
            target_url = await create_database(target, owner_is_superuser=False)
            await run_sql(target_url, ddl)
            started = time.perf_counter()
            report = await copy_all(source_url, target_url, **case)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        print(json.dumps({**case, "tables": tables, "rows": report.rows, "table_mb": round(size / 1e6, 1), "seconds": round(seconds, 3),
                          "rows_per_s": round(report.rows / seconds), "stream_mb": round(report.bytes / 1e6, 1)}),
              flush=True)
    if tables > 1:
        return
    times = []
    for _ in range(repeat):
        target_url = await fresh_target(target)
        times.append(await anyio.to_thread.run_sync(psql_pipe, source_url, target_url))
    seconds = statistics.median(times)
    print(json.dumps({"baseline": "psql \\copy | psql \\copy, text, indexes kept", "rows": rows,
                      "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}), flush=True)


def psql_pipe(source_url: str, target_url: str) -> float:
    """Baseline: psql's \\copy out piped into psql's \\copy in (one stream, text, indexes kept)."""
    psql = str(embedded_bin_dir() / "psql")
    src, tgt = parse_url(source_url, "source"), parse_url(target_url, "target")
    started = time.perf_counter()
    out = subprocess.Popen([psql, "-qX", "-d", src.dsn(with_password=False), "-c", "\\copy big TO STDOUT"],
                           stdout=subprocess.PIPE, env={**os.environ, **src.libpq_env()})
    subprocess.run([psql, "-qX", "-d", tgt.dsn(with_password=False), "-c", "\\copy big FROM STDIN"],
                   stdin=out.stdout, check=True, env={**os.environ, **tgt.libpq_env()})
    out.wait()
    return time.perf_counter() - started


async def memory_case(source_port_file: str, target_port_file: str, rows: int) -> None:
    """Child process: copy `rows` rows and report peak RSS."""
    source = LocalPostgres(Path(source_port_file), bin_dir=debian_bin_dir(15)).start()
    target = LocalPostgres(Path(target_port_file)).start()
    source_url = await create_database(source)
    await run_sql(source_url, DDL + FILL.format(rows=rows))
    target_url = await create_database(target, owner_is_superuser=False)
    await run_sql(target_url, DDL)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    report = await copy_all(source_url, target_url, format="binary", jobs=2)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    print(json.dumps({"rows": report.rows, "stream_mb": round(report.bytes / 1e6, 1), "seconds": round(seconds, 2),
                      "our_process_cpu_s": round(cpu, 2),
                      "peak_rss_mb_before_copy": round(usage.ru_maxrss / 1024, 1),
                      "peak_rss_mb_after_copy": round(after.ru_maxrss / 1024, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tables", type=int, default=1, help="spread the rows over this many tables")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.child:
        anyio.run(memory_case, *args.child, args.rows)
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = LocalPostgres(Path(tmp) / "pg15", bin_dir=debian_bin_dir(15), settings=FAST_UNSAFE).start()
        target = LocalPostgres(Path(tmp) / "pg18", bin_dir=embedded_bin_dir(), settings=FAST_UNSAFE).start()
        try:
            if args.memory:
                for rows in (args.rows, args.rows * 5):
                    subprocess.run([sys.executable, "-m", "bench.copy_bench", "--rows", str(rows), "--child",
                                    str(source.data_dir), str(target.data_dir)], check=True)
            else:
                anyio.run(run_cases, source, target, args.rows, args.repeat, args.tables)
        finally:
            source.stop()
            target.stop()


if __name__ == "__main__":
    main()
