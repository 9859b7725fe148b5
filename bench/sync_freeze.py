"""The write freeze of an online migration (`sync`), next to the downtime `migrate` needs.

    python bench/sync_freeze.py --size 0.5GB --rate 200

Own servers under bench/.work/sync/ (the durable settings of bench/run.py, plus wal_level=logical
on the PG 15 source), the dataset of bench/generate.py, an RDS-like non-superuser target owner
granted pg_create_subscription. Then:

1. `migrate` into a fresh target database with no writes: its wall time is the downtime an
   offline migration needs (the app must be stopped for all of it).
2. A steady write load on the source (`--rate` transactions/s: an upsert into kv_store and an
   insert into tags, i.e. a sequence too) for the rest of the run.
3. `sync start` into another fresh target database, `--settle` seconds of replication, then
   `sync cutover`. The freeze is the tool's own figure, fence → target ready (caught up to the
   fence, sequences set, every table counted and checksummed, subscription dropped); the app
   side is also measured: the last accepted write before the fence and the first refused one.

Writes bench/results/sync-freeze-<UTC>.json and prints one Markdown table row per figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import anyio
import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import DEFAULT_SEED, create_roles, generate, parse_size  # noqa: E402
from bench.run import SERVER_SETTINGS, admin_execute  # noqa: E402
from loaders.dsn import parse_url  # noqa: E402
from loaders.localpg import LocalPostgres, debian_bin_dir, embedded_bin_dir, rds_like_database  # noqa: E402
from loaders.migrate import MigrateOptions, migrate  # noqa: E402
from loaders.data.copy import CopyOptions, default_jobs  # noqa: E402
from loaders.sync.cutover import CutoverOptions, cutover  # noqa: E402
from loaders.sync.start import StartOptions, start  # noqa: E402
from loaders.sync.status import sync_status  # noqa: E402

BENCH = Path(__file__).resolve().parent
OWNER = "bench_owner"
LOGICAL_SETTINGS = {**SERVER_SETTINGS, "wal_level": "logical", "max_replication_slots": "8", "max_wal_senders": "8"}


@dataclass
class Load:
    """A steady app: `rate` small write transactions per second until the source refuses."""

    url: str
    rate: float
    accepted: int = 0
    last_accepted: float | None = None
    first_refused: float | None = None

    async def run(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            n = 0
            while True:
                n += 1
                try:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO public.kv_store (key, value) VALUES ('live', jsonb_build_object('n', $1::int)) "
                                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()", n)
                        await conn.execute("INSERT INTO public.tags (name) VALUES ('live-' || $1::int)", n)
                    self.accepted, self.last_accepted = self.accepted + 1, time.perf_counter()
                except asyncpg.ReadOnlySQLTransactionError:
                    self.first_refused = time.perf_counter()
                    return
                await anyio.sleep(1 / self.rate)
        finally:
            await conn.close()


def fresh_server(data_dir: Path, bin_dir: Path) -> LocalPostgres:
    """A new server every run: bench/run.py's durable settings, plus what logical replication needs."""
    old = LocalPostgres(data_dir, bin_dir=bin_dir)
    if old.initialized:
        old.stop()
        shutil.rmtree(data_dir)
    return LocalPostgres(data_dir, bin_dir=bin_dir, settings=LOGICAL_SETTINGS).start()


async def fresh_target(server, name: str) -> str:  # type: ignore[no-untyped-def]
    await admin_execute(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    url = await rds_like_database(server, name, OWNER)
    await admin_execute(server, f"GRANT pg_create_subscription TO {OWNER}")
    return url


async def run(args: argparse.Namespace) -> dict:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source_bin = debian_bin_dir(15)
    if source_bin is None:
        raise SystemExit("PostgreSQL 15 is missing: run `bash bench/setup.sh`")
    source_server = fresh_server(work / "pg15", source_bin)
    target_server = fresh_server(work / "pg18", embedded_bin_dir())
    for server in (source_server, target_server):
        conn = await asyncpg.connect(server.url())
        try:
            await create_roles(conn)
        finally:
            await conn.close()
    try:
        db = "sync_" + f"{args.scale:g}".replace(".", "_") + "gb"
        await admin_execute(source_server, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", f"CREATE DATABASE {db}")
        info = await generate(source_server.url(db), args.scale, seed=DEFAULT_SEED, jobs=args.jobs)
        source = parse_url(source_server.url(db), "source")
        copy = CopyOptions(jobs=args.jobs)

        offline_target = parse_url(await fresh_target(target_server, "sync_offline"), "target")
        t0 = time.perf_counter()
        offline = await migrate(source, offline_target, MigrateOptions(copy=copy))
        migrate_seconds = time.perf_counter() - t0

        target = parse_url(await fresh_target(target_server, "sync_online"), "target")
        load = Load(source_server.url(db), args.rate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run)
            t0 = time.perf_counter()
            started = await start(source, target, StartOptions(migrate=MigrateOptions(copy=CopyOptions(jobs=args.jobs))))
            start_seconds = time.perf_counter() - t0
            await anyio.sleep(args.settle)
            status = await sync_status(source, target, counts=False)
            fence_t = time.perf_counter()
            report = await cutover(source, target, CutoverOptions(jobs=args.jobs))
        return {
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "size": f"{args.scale:g}GB", "rows": info.total_rows, "data_mib": round(info.data_bytes / 2**20),
            "rate_per_s": args.rate, "jobs": args.jobs, "settle_s": args.settle,
            "migrate_offline_s": round(migrate_seconds, 2), "migrate_ok": offline.ok,
            "sync_start_s": round(start_seconds, 2), "lag_after_start_bytes": started.lag_bytes,
            "lag_before_cutover_bytes": status.lag_bytes,
            "freeze_s": round(report.freeze_seconds, 3), "freeze_phases_s": {k: round(v, 3) for k, v in report.phases.items()},
            "cutover_ok": report.ok, "writes_accepted": load.accepted,
            "app_last_write_before_cutover_call_s": round(fence_t - load.last_accepted, 3) if load.last_accepted else None,
            "app_first_refusal_after_cutover_call_s": round(load.first_refused - fence_t, 3) if load.first_refused else None,
            "settings": LOGICAL_SETTINGS,
        }
    finally:
        if not args.keep_servers:
            source_server.stop()
            target_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="0.5GB", help="dataset size (bench/generate.py), e.g. 0.1GB, 0.5GB")
    parser.add_argument("--rate", type=float, default=200.0, help="write transactions per second during sync")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of replication before the cutover")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--work", type=Path, default=BENCH / ".work" / "sync")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--keep-servers", action="store_true")
    args = parser.parse_args(argv)
    args.scale = parse_size(args.size)
    result = anyio.run(run, args)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"sync-freeze-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"| {result['size']} | {result['rows']:,} | {result['migrate_offline_s']} | {result['freeze_s']} | "
          + ", ".join(f"{k} {v}" for k, v in result["freeze_phases_s"].items()) + f" | {result['rate_per_s']:g}/s |")
    print(f"results: {out}")
    return 0 if result["cutover_ok"] and result["migrate_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
