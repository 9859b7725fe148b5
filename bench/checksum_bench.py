"""What each proof level costs on the benchmark dataset: one side's checksum pass per table.

Runs the exact SQL `verify` runs (`measure_sql`) at counts, fast and full on one server, the
levels interleaved round by round so background load hits them alike; prints per-level
median seconds and the ratios the issue's targets are stated in.

Usage: python -m bench.checksum_bench --size 0.1GB [--rounds 5] [--major 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import asyncpg

from bench.generate import generate, parse_size
from loaders.data.catalog import read_catalog
from loaders.data.checksum import Proof, column_kinds, measure_sql
from loaders.data.snapshot import apply_canonical
from loaders.localpg import FAST_UNSAFE, LocalPostgres, debian_bin_dir, embedded_bin_dir


async def measure(url: str, rounds: int) -> dict[str, list[float]]:
    conn = await asyncpg.connect(url)
    try:
        await apply_canonical(conn)
        catalog = await read_catalog(conn)
        kinds = await column_kinds(conn, catalog.tables)
        times: dict[str, list[float]] = {p.value: [] for p in Proof}
        for _ in range(rounds):
            for proof in Proof:
                started = time.perf_counter()
                for table in catalog.tables:
                    await conn.fetchrow(measure_sql(table, proof, kinds.get(table.ident)))
                times[proof.value].append(time.perf_counter() - started)
        return times
    finally:
        await conn.close()


async def run(size: float, rounds: int, major: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = debian_bin_dir(major) if major != 18 else embedded_bin_dir()
        server = LocalPostgres(Path(tmp) / "pg", bin_dir=bin_dir, settings=FAST_UNSAFE).start()
        try:
            admin = await asyncpg.connect(server.url())
            await admin.execute("CREATE DATABASE bench")
            await admin.close()
            url = server.url("bench")
            await generate(url, size)
            await (await asyncpg.connect(url)).execute("VACUUM ANALYZE")  # warm: every level reads hot pages
            times = await measure(url, rounds)
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"major": major, "scale": size, "rounds": rounds, "median_seconds": {k: round(v, 3) for k, v in med.items()},
            "full_over_fast": round(med["full"] / med["fast"], 2),
            "fast_over_counts": round(med["fast"] / med["counts"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="0.1GB", help="dataset size (bench/generate.py sizes)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--major", type=int, default=15, choices=[15, 18])
    args = parser.parse_args()
    print(json.dumps(anyio.run(run, parse_size(args.size), args.rounds, args.major), indent=2))


if __name__ == "__main__":
    main()
