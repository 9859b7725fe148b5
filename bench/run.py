"""One command for the whole benchmark: same servers, same dataset, every tool, median of reps.

    bash bench/setup.sh && python bench/run.py --sizes 0.5GB,2GB,5GB

What keeps it honest:
- One PG 15 source (Debian binaries) and one PG 18 target (embedded wheel), started here with
  the identical `SERVER_SETTINGS` below (durable, like RDS: fsync/full_page_writes on).
- The dataset is generated once per size (deterministic) and reused by every tool and rep.
- Every run starts from an EMPTY target database (dropped and re-created, then CHECKPOINT on
  both servers so no earlier run's dirty pages are flushed on the next run's clock).
- End-to-end tools are timed until indexes and constraints exist; each run is then checked
  (row counts of every table, index and FK counts) and a run that fails the check is reported
  as failed, not timed. The raw pipe is the data floor: tables pre-created (untimed), no indexes.
- One untimed warm-up run per size first (WAL segments created, source in the OS cache); then
  reps are interleaved (rep 1 of every tool, then rep 2 …) so a noisy neighbour hurts all tools
  alike; the median is reported with every sample kept in the JSON.
- The target logs in as a NON-superuser owner (`bench_owner`), like RDS's master user, so every
  tool runs with ownership not kept (`--no-owner`). Supabase's API roles exist on both servers.
- Peak RSS = the largest sum of RSS over the tool's whole process tree (sampled every 50 ms with
  psutil; servers not included). Shared pages are counted once per process: an upper bound.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import anyio
import asyncpg
import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.localpg import LocalPostgres, debian_bin_dir, embedded_bin_dir, rds_like_database  # noqa: E402
from bench import rawpipe  # noqa: E402
from bench.generate import (  # noqa: E402
    DEFAULT_SEED, DatasetInfo, create_roles, describe, generate, parse_size, table_row_counts,
)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SOURCE_MAJOR = 15
TARGET_DB = "bench_target"
TARGET_OWNER = "bench_owner"

# Identical on both servers. Durable (RDS never runs with fsync off); memory sized for a 2-core,
# 24 GiB box shared with other work; WAL/checkpoints spaced so a 5 GB load is not checkpoint-bound.
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "512MB",
    "work_mem": "64MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "replica",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_parallel_maintenance_workers": "2",
    "max_parallel_workers_per_gather": "2",
    "autovacuum": "on",
    "max_connections": "100",
}


@dataclass(frozen=True)
class Context:
    """Everything a tool's command line needs; passwords reach libpq tools via a pgpass file."""

    source_url: str
    target_url: str
    source_dsn: str  # no password (libpq reads PGPASSFILE)
    target_dsn: str
    pg_bin: Path
    work: Path
    jobs: int
    report: Path
    ours_repo: Path  # the checkout whose `python -m automation` is "ours" (default: this one)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSFILE": str(self.work / "pgpass"), "PGAPPNAME": "bench",
                "PG_CONFIG": str(self.pg_bin / "pg_config")}


@dataclass(frozen=True)
class Tool:
    key: str
    label: str
    end_to_end: bool  # False: data only (tables pre-created, no indexes)
    argv: Callable[[Context], list[str]]
    prepare: Callable[[Context], None] = lambda ctx: None  # untimed
    unavailable: Callable[[Context], str | None] = lambda ctx: None


def _bash(script: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", script]


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _pg_dump_psql(ctx: Context) -> list[str]:
    return _bash(
        f"{_q(ctx.pg_bin / 'pg_dump')} --no-owner -d {_q(ctx.source_dsn)} | "
        f"{_q(ctx.pg_bin / 'psql')} -X -q -v ON_ERROR_STOP=1 -d {_q(ctx.target_dsn)} >/dev/null"
    )


def _dump_dir(ctx: Context) -> Path:
    return ctx.work / "dumpdir"


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _pg_dump_restore_j(ctx: Context) -> list[str]:
    d = _dump_dir(ctx)
    return _bash(
        f"{_q(ctx.pg_bin / 'pg_dump')} -Fd -j {ctx.jobs} --no-owner -f {_q(d)} -d {_q(ctx.source_dsn)} && "
        f"{_q(ctx.pg_bin / 'pg_restore')} -j {ctx.jobs} --no-owner --exit-on-error -d {_q(ctx.target_dsn)} {_q(d)}"
    )


def _pgcopydb_dir(ctx: Context) -> Path:
    return ctx.work / "pgcopydb"


def _pgcopydb(ctx: Context) -> list[str]:
    # PG_CONFIG (see Context.env) points pgcopydb at the PG 18 pg_dump/pg_restore, which must be
    # >= the source server; its own libpq is Debian's.
    return ["pgcopydb", "clone", "--source", ctx.source_dsn, "--target", ctx.target_dsn,
            "--table-jobs", str(ctx.jobs), "--index-jobs", str(ctx.jobs), "--no-owner",
            "--dir", str(_pgcopydb_dir(ctx))]


def _pgcopydb_missing(ctx: Context) -> str | None:
    return None if shutil.which("pgcopydb") else "pgcopydb not installed (run bash bench/setup.sh)"


def _raw_pipe(ctx: Context) -> list[str]:
    return [sys.executable, str(BENCH / "rawpipe.py"), "--jobs", str(ctx.jobs)]


def _raw_prepare(ctx: Context) -> None:
    rawpipe.precreate_tables(ctx.source_url, ctx.target_url, bin_dir=ctx.pg_bin)


def _ours(command: str, *extra: str) -> Callable[[Context], list[str]]:
    """`python -m automation <command>` run from ctx.ours_repo (cwd), so that checkout's code runs."""
    def argv(ctx: Context) -> list[str]:
        return [sys.executable, "-m", "automation", command, "--source", ctx.source_url, "--target", ctx.target_url,
                "--jobs", str(ctx.jobs), "--report", str(ctx.report), *extra]
    return argv


def _ours_missing(command: str) -> Callable[[Context], str | None]:
    def probe(ctx: Context) -> str | None:
        done = subprocess.run([sys.executable, "-m", "automation", command, "--help"], cwd=ctx.ours_repo,
                              capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        return None if done.returncode == 0 else f"`python -m automation {command}` does not exist in {ctx.ours_repo} yet"
    return probe


TOOLS: tuple[Tool, ...] = (
    Tool("pg_dump_psql", "pg_dump | psql", True, _pg_dump_psql),
    Tool("pg_dump_restore_j", "pg_dump -Fd -jN + pg_restore -jN", True, _pg_dump_restore_j,
         prepare=lambda ctx: _fresh_dir(_dump_dir(ctx))),
    Tool("pgcopydb", "pgcopydb clone", True, _pgcopydb, prepare=lambda ctx: _fresh_dir(_pgcopydb_dir(ctx)),
         unavailable=_pgcopydb_missing),
    Tool("raw_pipe", "raw COPY|COPY pipe (data only, no indexes)", False, _raw_pipe, prepare=_raw_prepare),
    Tool("ours", "ours: migrate (--verify fast)", True, _ours("migrate"), unavailable=_ours_missing("migrate")),
    Tool("ours_full", "ours: migrate --verify full", True, _ours("migrate", "--verify", "full"),
         unavailable=_ours_missing("migrate")),
    Tool("ours_no_checksums", "ours: migrate --verify counts", True, _ours("migrate", "--verify", "counts"),
         unavailable=_ours_missing("migrate")),
    # Ours' data phase alone, on the raw pipe's terms (tables pre-created, no indexes): the
    # issue's "data phase ≤ 1.15× raw pipe" read straight off the clock, whatever the report says.
    Tool("ours_copy", "ours: copy (data only, no indexes)", False, _ours("copy"), prepare=_raw_prepare,
         unavailable=_ours_missing("copy")),
)
OURS = "ours"


@dataclass
class RunResult:
    tool: str
    rep: int
    ok: bool
    seconds: float | None = None
    peak_rss_mb: float | None = None
    peak_pss_mb: float | None = None
    error: str | None = None
    report: dict | None = None
    load1_before: float | None = None  # 1-min load average when the run started (shared machine)
    gaps: list[str] = field(default_factory=list)  # schema extras the tool did not recreate


@dataclass
class ToolSummary:
    tool: str
    label: str
    ok_runs: int
    median_seconds: float | None
    rows_per_s: float | None
    mb_per_s: float | None
    peak_rss_mb: float | None  # max over reps
    peak_pss_mb: float | None
    ours_over_tool: float | None  # ours' median ÷ this tool's median (< 1: ours is faster)
    samples: list[float] = field(default_factory=list)
    note: str | None = None
    phases: dict[str, float] = field(default_factory=dict)  # median seconds per phase (ours' --report)


DATA_PHASES = ("copy", "data", "copy+post_data")  # names ours' report may give its data phase (the last: copy overlapped with per-table post-data)


def report_phases(report: dict | None) -> dict[str, float]:
    """Seconds per phase from a --report JSON: `phases: {name: seconds}` when the report has it
    (migrate does), else every top-level object carrying a numeric `seconds` (copy's report)."""
    if not isinstance(report, dict):
        return {}
    if isinstance(report.get("phases"), dict):
        return {name: float(v) for name, v in report["phases"].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
    phases = {name: float(v["seconds"]) for name, v in report.items()
              if isinstance(v, dict) and isinstance(v.get("seconds"), (int, float))}
    if isinstance(report.get("seconds"), (int, float)):
        phases["total"] = float(report["seconds"])
    return phases


class RssSampler:
    """Peak of Σ RSS (and Σ PSS) over a process and all its descendants, polled in a thread.

    Σ RSS counts a page shared by N forked workers N times (an upper bound, and what `ps` shows);
    Σ PSS divides shared pages among their sharers, so it is the tree's real footprint."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> tuple[int, int]:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return 0, 0
        rss = pss = 0
        for p in procs:
            try:
                mem = p.memory_full_info()
            except psutil.Error:
                continue
            rss += mem.rss
            pss += getattr(mem, "pss", mem.rss)
        return rss, pss

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss, pss = self._sample()
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> tuple[float, float, float, int]:
    """(wall seconds, peak Σ RSS MiB, peak Σ PSS MiB, exit code); output goes to a log file."""
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        with RssSampler(proc.pid) as sampler:
            code = proc.wait()
        seconds = time.perf_counter() - started
    return seconds, sampler.peak / 2**20, sampler.peak_pss / 2**20, code


# ---------------------------------------------------------------- servers and databases


def _settings_fingerprint(bin_dir: Path) -> str:
    return hashlib.sha256(json.dumps([str(bin_dir), SERVER_SETTINGS], sort_keys=True).encode()).hexdigest()[:16]


def start_server(data_dir: Path, bin_dir: Path) -> LocalPostgres:
    """Reuse a server made by an earlier run only if it has exactly today's settings."""
    stamp = data_dir.parent / f"{data_dir.name}.settings"
    server = LocalPostgres(data_dir, bin_dir=bin_dir, settings=SERVER_SETTINGS)
    if server.initialized and (not stamp.exists() or stamp.read_text() != _settings_fingerprint(bin_dir)):
        server.stop()
        shutil.rmtree(data_dir)
    server.start()
    stamp.write_text(_settings_fingerprint(bin_dir))
    return server


async def admin_execute(server: LocalPostgres, *sql: str, database: str = "postgres") -> None:
    conn = await asyncpg.connect(server.url(database))
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def reset_target(target: LocalPostgres) -> None:
    """A cold, empty target database owned by an RDS-like non-superuser."""
    conn = await asyncpg.connect(target.url())
    try:
        await create_roles(conn)
        await conn.execute(f"DROP DATABASE IF EXISTS {TARGET_DB} WITH (FORCE)")
    finally:
        await conn.close()
    await rds_like_database(target, TARGET_DB, TARGET_OWNER)


def _size_label(scale: float) -> str:
    return f"{scale:g}GB"


def _db_name(scale: float) -> str:
    return "bench_" + f"{scale:g}".replace(".", "_") + "gb"


async def ensure_dataset(source: LocalPostgres, scale: float, seed: str, jobs: int, regenerate: bool) -> DatasetInfo:
    """Generate once per size; later runs reuse it when its marker and row counts still match."""
    name = _db_name(scale)
    conn = await asyncpg.connect(source.url())
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    if exists and not regenerate:
        found = await describe(source.url(name))
        if found is not None and found.seed == seed and found.scale == scale:
            print(f"[{_size_label(scale)}] reusing dataset {name}: {found.total_rows:,} rows, "
                  f"{found.data_bytes / 2**20:,.0f} MiB", flush=True)
            return found
    await admin_execute(source, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    print(f"[{_size_label(scale)}] generating dataset {name} …", flush=True)
    info = await generate(source.url(name), scale, seed=seed, jobs=jobs)
    print(f"[{_size_label(scale)}] {info.total_rows:,} rows, {info.data_bytes / 2**20:,.0f} MiB of table data, "
          f"{info.index_count} indexes in {info.seconds:.0f}s", flush=True)
    return info


OBJECT_QUERIES: dict[str, str] = {
    "indexes": "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
    "foreign keys": "SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f'",
    "check constraints": "SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'c'",
    "policies": "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'",
    "triggers": "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal",
    "views": "SELECT count(*) FROM pg_views WHERE schemaname = 'public'",
    "functions": "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    "grants to API roles": "SELECT count(*) FROM information_schema.role_table_grants "
                           "WHERE table_schema = 'public' AND grantee IN ('anon', 'authenticated', 'service_role')",
    "sequence positions": "SELECT coalesce(string_agg(format('%s=%s', sequencename, last_value), ',' "
                          "ORDER BY sequencename), '') FROM pg_sequences WHERE schemaname = 'public'",
}


async def schema_objects(url: str) -> dict[str, object]:
    """Counts of what an end-to-end migration must recreate besides rows (the source's are the truth)."""
    conn = await asyncpg.connect(url)
    try:
        return {name: await conn.fetchval(sql) for name, sql in OBJECT_QUERIES.items()}
    finally:
        await conn.close()


async def check_target(target_url: str, info: DatasetInfo, expected_objects: dict[str, object],
                       end_to_end: bool) -> tuple[str | None, list[str]]:
    """(fatal problem, missing extras). Fatal: rows or indexes/FKs differ — the run is not counted.
    Extras (grants, policies, sequence positions …) that differ are reported next to the timing."""
    conn = await asyncpg.connect(target_url)
    try:
        rows = await table_row_counts(conn)
    finally:
        await conn.close()
    if rows != info.rows:
        wrong = sorted(k for k in set(rows) | set(info.rows) if rows.get(k) != info.rows.get(k))
        return f"row counts differ for {', '.join(wrong[:5])}", []
    if not end_to_end:
        return None, []
    found = await schema_objects(target_url)
    differs = [name for name, value in expected_objects.items() if found.get(name) != value]
    fatal = [name for name in differs if name in ("indexes", "foreign keys")]
    if fatal:
        return "; ".join(f"{n}: {found[n]} on target vs {expected_objects[n]} on source" for n in fatal), []
    return None, [f"{n} differ" for n in differs]


# ---------------------------------------------------------------- the run


def run_one(tool: Tool, ctx: Context, rep: int, info: DatasetInfo, expected: dict[str, object],
            source: LocalPostgres, target: LocalPostgres, logs: Path) -> RunResult:
    anyio.run(reset_target, target)
    tool.prepare(ctx)
    ctx.report.unlink(missing_ok=True)
    anyio.run(admin_execute, source, "CHECKPOINT")
    anyio.run(admin_execute, target, "CHECKPOINT")
    env = ctx.env()
    if tool.key == "raw_pipe":
        env |= {"BENCH_SOURCE_URL": ctx.source_url, "BENCH_TARGET_URL": ctx.target_url}
    log = logs / f"{_size_label(info.scale)}-{tool.key}-rep{rep}.log"
    load = os.getloadavg()[0]
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write into another checkout (--ours-repo)
    seconds, rss, pss, code = timed(tool.argv(ctx), env, log, ctx.ours_repo if tool.key.startswith(OURS) else REPO)
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return RunResult(tool.key, rep, False, error=f"exit {code}: {' | '.join(tail)}", load1_before=load)
    problem, gaps = anyio.run(check_target, ctx.target_url, info, expected, tool.end_to_end)
    report = json.loads(ctx.report.read_text()) if ctx.report.exists() else None
    if problem:
        return RunResult(tool.key, rep, False, seconds, rss, error=problem, report=report, load1_before=load)
    return RunResult(tool.key, rep, True, round(seconds, 3), round(rss, 1), round(pss, 1), report=report, gaps=gaps,
                     load1_before=load)


def summarise(tools: Sequence[Tool], results: Sequence[RunResult], info: DatasetInfo,
              skipped: dict[str, str]) -> list[ToolSummary]:
    medians: dict[str, float] = {}
    out: list[ToolSummary] = []
    for tool in tools:
        mine = [r for r in results if r.tool == tool.key]
        good = [r for r in mine if r.ok]
        samples = [r.seconds for r in good if r.seconds is not None]
        med = statistics.median(samples) if samples else None
        if med is not None:
            medians[tool.key] = med
        gaps = sorted({g for r in good for g in r.gaps})
        note = skipped.get(tool.key) or next((r.error for r in mine if not r.ok), None) or ("; ".join(gaps) or None)
        out.append(ToolSummary(
            tool.key, tool.label, len(good), round(med, 2) if med else None,
            round(info.total_rows / med) if med else None,
            round(info.data_bytes / 2**20 / med, 1) if med else None,
            max((r.peak_rss_mb for r in good if r.peak_rss_mb is not None), default=None),
            max((r.peak_pss_mb for r in good if r.peak_pss_mb is not None), default=None),
            None, samples, note,
        ))
    ours = medians.get(OURS)
    for s in out:
        if ours and s.median_seconds:
            s.ours_over_tool = round(ours / s.median_seconds, 2)
        per_run = [report_phases(r.report) for r in results if r.tool == s.tool and r.ok]
        names = sorted({n for p in per_run for n in p})
        s.phases = {n: round(statistics.median(p[n] for p in per_run if n in p), 2) for n in names}
    return out


def phase_lines(summaries: Sequence[ToolSummary]) -> list[str]:
    """Ours' phases, and its data phase against the raw pipe (the issue's ≤ 1.15× target)."""
    floor = next((s.median_seconds for s in summaries if s.tool == "raw_pipe"), None)
    copy = next((s.median_seconds for s in summaries if s.tool == "ours_copy"), None)
    lines = [f"- ours: copy ÷ raw pipe (data phase, same terms) = {copy / floor:.2f}"] if copy and floor else []
    for s in summaries:
        if not s.phases:
            continue
        parts = ", ".join(f"{n} {v:.1f}s" for n, v in s.phases.items())
        data = next((s.phases[n] for n in DATA_PHASES if n in s.phases), None)
        vs = f"; data phase ÷ raw pipe = {data / floor:.2f}" if data and floor else ""
        lines.append(f"- {s.label} phases (median): {parts}{vs}")
    return lines


def table_markdown(size: str, info: DatasetInfo, summaries: Sequence[ToolSummary]) -> str:
    def fmt(value: float | None, spec: str) -> str:
        return "not measured" if value is None else format(value, spec)

    lines = [
        f"**{size}** — {info.total_rows:,} rows in {len(info.rows)} tables, "
        f"{info.data_bytes / 2**20:,.0f} MiB of table data, {info.index_count} indexes, {info.foreign_key_count} FKs",
        "",
        "| tool | median wall s | rows/s | MiB/s | peak Σ RSS MiB | peak Σ PSS MiB | ours ÷ tool | runs ok | samples s | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in summaries:
        ratio = "—" if s.ours_over_tool is None else f"{s.ours_over_tool:.2f}"
        samples = ", ".join(f"{x:.1f}" for x in s.samples)
        label = s.label.replace("|", "\\|")
        lines.append(f"| {label} | {fmt(s.median_seconds, '.1f')} | {fmt(s.rows_per_s, ',.0f')} | "
                     f"{fmt(s.mb_per_s, '.1f')} | {fmt(s.peak_rss_mb, '.0f')} | {fmt(s.peak_pss_mb, '.0f')} | {ratio} | {s.ok_runs} | {samples} | "
                     f"{(s.note or '').replace('|', '/')} |")
    extra = phase_lines(summaries)
    return "\n".join(lines + ([""] + extra if extra else []))


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (out.stdout or out.stderr).strip().splitlines()
    return next((line for line in text if "version" in line.lower() or "PostgreSQL" in line), text[0] if text else "")


def machine_info(work: Path) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    disk = shutil.disk_usage(work)
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "disk_total_gib": round(disk.total / 2**30), "disk_free_gib": round(disk.free / 2**30),
        "kernel": platform.release(), "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def _pgpass(work: Path, source: LocalPostgres, target: LocalPostgres) -> Path:
    path = work / "pgpass"
    path.write_text(f"127.0.0.1:{source.port}:*:postgres:{source.password}\n"
                    f"127.0.0.1:{target.port}:*:{TARGET_OWNER}:{target.password}\n")
    path.chmod(0o600)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark migrate against pg_dump|psql, pg_restore -j, pgcopydb "
                                                 "and the raw COPY pipe, PG 15 → PG 18, on local servers.")
    parser.add_argument("--sizes", default="0.5GB", help="comma-separated table-data sizes, e.g. 0.5GB,2GB,5GB")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallelism for every tool")
    parser.add_argument("--tools", default=",".join(t.key for t in TOOLS), help="comma-separated subset of tools")
    parser.add_argument("--ours-repo", type=Path, default=REPO,
                        help="checkout whose `python -m automation` is benchmarked as ours (default: this one)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the reps, per size")
    parser.add_argument("--seed", default=DEFAULT_SEED)
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="server data dirs and scratch space")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the dataset even if one exists")
    parser.add_argument("--keep-servers", action="store_true", help="leave both servers running at the end")
    args = parser.parse_args(argv)
    known = {t.key for t in TOOLS}
    args.tool_keys = [k for k in args.tools.split(",") if k]
    if unknown := set(args.tool_keys) - known:
        parser.error(f"unknown tools {sorted(unknown)}; choose from {sorted(known)}")
    args.scales = [parse_size(s) for s in args.sizes.split(",") if s]
    return args


def run_size(args: argparse.Namespace, tools: Sequence[Tool], ctx: Context, info: DatasetInfo,
             source: LocalPostgres, target: LocalPostgres, logs: Path) -> tuple[list[ToolSummary], list[RunResult]]:
    """Warm-up, then `reps` interleaved rounds of every available tool on one dataset."""
    size = _size_label(info.scale)
    expected = anyio.run(schema_objects, ctx.source_url)
    skipped = {t.key: why for t in tools if (why := t.unavailable(ctx))}
    runnable = [t for t in tools if t.key not in skipped]
    for key, why in skipped.items():
        print(f"[{size}] skipping {key}: {why}", flush=True)
    for _ in range(args.warmup if runnable else 0):
        # Untimed: the first run on fresh servers pays for WAL segment creation and a cold OS
        # cache; without this, rep 1 of whichever tool goes first is penalised (seen: +60 %).
        w = run_one(runnable[0], ctx, 0, info, expected, source, target, logs)
        print(f"[{size}] warm-up {runnable[0].key}: {w.seconds or 0:.1f}s (not counted)", flush=True)
    results: list[RunResult] = []
    for rep in range(1, args.reps + 1):
        for tool in runnable:
            r = run_one(tool, ctx, rep, info, expected, source, target, logs)
            results.append(r)
            print(f"[{size}] rep {rep}/{args.reps} {tool.key}: {_describe_run(r)}", flush=True)
    return summarise(tools, results, info, skipped), results


def _describe_run(r: RunResult) -> str:
    if not r.ok:
        return f"FAILED: {r.error}"
    gaps = f" ({'; '.join(r.gaps)})" if r.gaps else ""
    return f"{r.seconds:.1f}s, peak RSS {r.peak_rss_mb:.0f} MiB, PSS {r.peak_pss_mb:.0f} MiB{gaps}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools = [t for t in TOOLS if t.key in args.tool_keys]
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    source_bin = debian_bin_dir(SOURCE_MAJOR)
    if source_bin is None:
        print("PostgreSQL 15 is missing: run `bash bench/setup.sh`", file=sys.stderr)
        return 1
    pg_bin = embedded_bin_dir()
    source = start_server(work / "pg15", source_bin)
    target = start_server(work / "pg18", pg_bin)
    results_doc: dict = {
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(work), "server_settings": SERVER_SETTINGS, "jobs": args.jobs, "reps": args.reps,
        "versions": {
            "source_server": _version([str(source_bin / "postgres"), "--version"]),
            "target_server": _version([str(pg_bin / "postgres"), "--version"]),
            "client_tools": _version([str(pg_bin / "pg_dump"), "--version"]),
            "pgcopydb": _version(["pgcopydb", "--version"]),
        },
        "sizes": [],
    }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_file = args.out / f"bench-{stamp}.json"
    try:
        anyio.run(create_roles_on, target)
        _pgpass(work, source, target)
        for scale in args.scales:
            size = _size_label(scale)
            info = anyio.run(ensure_dataset, source, scale, args.seed, args.jobs, args.regenerate)
            db = _db_name(scale)
            ctx = Context(
                source_url=source.url(db), target_url=target.url(TARGET_DB, user=TARGET_OWNER),
                source_dsn=f"postgresql://postgres@127.0.0.1:{source.port}/{db}",
                target_dsn=f"postgresql://{TARGET_OWNER}@127.0.0.1:{target.port}/{TARGET_DB}",
                pg_bin=pg_bin, work=work, jobs=args.jobs, report=work / "ours-report.json",
                ours_repo=args.ours_repo.resolve(),
            )
            summaries, results = run_size(args, tools, ctx, info, source, target, logs)
            table = table_markdown(size, info, summaries)
            print("\n" + table + "\n", flush=True)
            results_doc["sizes"].append({
                "size": size, "dataset": {**asdict(info), "total_rows": info.total_rows},
                "summaries": [asdict(s) for s in summaries], "runs": [asdict(r) for r in results],
                "markdown": table,
            })
            results_doc["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            results_doc["machine"]["load_average_at_end"] = os.getloadavg()
            out_file.write_text(json.dumps(results_doc, indent=2, default=str))
        anyio.run(admin_execute, target, f"DROP DATABASE IF EXISTS {TARGET_DB} WITH (FORCE)")
    finally:
        if not args.keep_servers:
            source.stop()
            target.stop()
    print(f"results: {out_file}")
    return 0


async def create_roles_on(server: LocalPostgres) -> None:
    conn = await asyncpg.connect(server.url())
    try:
        await create_roles(conn)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
