"""How many index builds / ANALYZE / proofs to run beside the copy streams (`MigrateOptions.side_jobs`).

Runs `migrate` on bench/run.py's servers and dataset, variants interleaved rep by rep so load
from a neighbour hits every variant alike, each on a cold, empty target database:

    python bench/pipeline_jobs.py --size 0.5GB --reps 3 --side-jobs 1,2 [--baseline-repo /work/main]

`--baseline-repo` times another checkout's `migrate` the same way (e.g. main before the
per-table pipeline). Every run goes through the same child process (`--child`) with that
checkout as cwd, so only the code under test differs. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def child(argv: list[str]) -> None:
    """One timed `migrate` in this process, with the cwd's code; prints its report's timings."""
    sys.path.insert(0, os.getcwd())
    from loaders.data.copy import CopyOptions
    from loaders.dsn import parse_url
    from loaders.migrate import MigrateOptions, migrate

    source, target, jobs, side = argv[0], argv[1], int(argv[2]), int(argv[3])
    options = MigrateOptions(copy=CopyOptions(jobs=jobs))
    if hasattr(options, "side_jobs"):
        options.side_jobs = side
    started = time.perf_counter()
    report = anyio.run(migrate, parse_url(source, "source"), parse_url(target, "target"), options)
    print(json.dumps({"seconds": time.perf_counter() - started, "ok": report.ok, "phases": report.phases}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="0.5GB")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--side-jobs", default="1,2")
    parser.add_argument("--baseline-repo", type=Path)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.run import (DEFAULT_SEED, SOURCE_MAJOR, TARGET_DB, TARGET_OWNER, _db_name, admin_execute,
                           create_roles_on, ensure_dataset, reset_target, start_server)
    from loaders.localpg import debian_bin_dir, embedded_bin_dir

    scale = float(args.size.removesuffix("GB"))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source = start_server(work / "pg15", debian_bin_dir(SOURCE_MAJOR))  # type: ignore[arg-type]
    target = start_server(work / "pg18", embedded_bin_dir())
    variants = [(f"pipeline side_jobs={n}", REPO, int(n)) for n in args.side_jobs.split(",")]
    if args.baseline_repo:
        variants.insert(0, (f"baseline {args.baseline_repo}", args.baseline_repo.resolve(), 1))
    samples: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    try:
        anyio.run(create_roles_on, target)
        anyio.run(ensure_dataset, source, scale, DEFAULT_SEED, args.jobs, False)
        source_url, target_url = source.url(_db_name(scale)), target.url(TARGET_DB, user=TARGET_OWNER)
        for rep in range(args.reps + 1):  # rep 0: untimed warm-up
            for name, repo, side in variants:
                anyio.run(reset_target, target)
                anyio.run(admin_execute, target, "CHECKPOINT")
                anyio.run(admin_execute, source, "CHECKPOINT")
                done = subprocess.run(
                    [sys.executable, str(BENCH / "pipeline_jobs.py"), "--child", source_url, target_url,
                     str(args.jobs), str(side)],
                    cwd=repo, capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                result = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"rep {rep} {name}: {result['seconds']:.2f} s ok={result['ok']} "
                      f"phases={ {k: round(v, 2) for k, v in result['phases'].items()} }", flush=True)
                if rep:
                    samples[name].append(result)
    finally:
        source.stop()
        target.stop()
    first = statistics.median(s["seconds"] for s in samples[variants[0][0]])
    for name, _, _ in variants:
        median = statistics.median(s["seconds"] for s in samples[name])
        print(f"{name}: median {median:.2f} s, ratio to {variants[0][0]}: {median / first:.3f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
