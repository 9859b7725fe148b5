"""Schema and data drift, day two: what changed since the migration was verified.

After cutover the application writes to RDS, so "target differs from source" is normal and
no longer an alarm. What still matters, and what the default check answers:

- **the old source still receives writes** — its rows or checksums moved away from the
  baseline the verified migration recorded (the cutover alarm: some writer was not moved);
- **the target's schema lost something** — an index, a constraint, a trigger gone since
  the recorded schema.

Comparing target with source row by row is meaningful only before cutover or during a
freeze; it is opt-in (`compare_target`), and there a target sequence ahead of the source is
fine. Every finding says how to fix it, and `accept_baseline` records a new baseline after a
deliberate change (a repair, a planned schema change).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


from loaders.connect import connection
from loaders.data.snapshot import open_snapshot
from loaders.data.verify import SourceMeasures, VerifyReport, measure_source, verify
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.live import read_baseline, recorded_baseline
from loaders.data.checksum import Proof
from loaders.migrate import RUNS_TABLE, RecordedRun, last_verified_run
from loaders.schema.diff import Difference, SchemaDiff, compare, diff_schemas, schema_catalog
from loaders.supabase import BOOKKEEPING_SCHEMA

DRIFT, BENIGN = "drift", "benign"
REPAIR = "python -m automation schema --repair --target-file FILE (or up --repair)"
ACCEPT = "python -m automation drift --accept --target-file FILE [--source-file FILE]"


@dataclass(frozen=True)
class DriftFinding:
    area: str  # infrastructure | schema | data
    object: str
    kind: str  # drift | benign
    detail: str
    severity: str = "warning"
    fix: str = ""


@dataclass
class DriftReport:
    checked: list[str] = field(default_factory=list)
    findings: list[DriftFinding] = field(default_factory=list)

    @property
    def drift(self) -> list[DriftFinding]:
        return [f for f in self.findings if f.kind == DRIFT]

    def to_dict(self) -> dict[str, Any]:
        return {"clean": not self.drift, "checked": self.checked, "drift": len(self.drift),
                "findings": [asdict(f) for f in self.findings]}

    def to_markdown(self) -> str:
        """A summary for a CI job page (GitHub's $GITHUB_STEP_SUMMARY renders it)."""
        status = "✅ no drift" if not self.drift else f"❌ {len(self.drift)} drift finding(s)"
        lines = [f"## supabase-to-rds drift check: {status}", "",
                 f"Checked: {', '.join(self.checked) or 'nothing'}", ""]
        if self.findings:
            lines += ["| area | object | kind | severity | detail | fix |", "| --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {f.area} | `{f.object}` | {f.kind} | {f.severity} | {f.detail.replace('|', '/')} "
                      f"| {f.fix.replace('|', '/')} |" for f in self.findings]
        return "\n".join(lines) + "\n"


async def require_master(target: DatabaseUrl) -> None:
    """The tool's records are readable by the master user only; the app role's URL (the one in
    backend.env) gets one line instead of a permission error half-way through."""
    async with connection(target) as conn:
        allowed = await conn.fetchval(
            "SELECT to_regnamespace($1) IS NULL OR has_schema_privilege(to_regnamespace($1), 'USAGE')", BOOKKEEPING_SCHEMA)
    if not allowed:
        raise MigrationError(f"the target URL logs in as {target.user!r}, which may not read the migration's records "
                             f"(schema {BOOKKEEPING_SCHEMA}) — it looks like the app role's URL",
                             "use the master URL (the RDS master user), not the backend's DATABASE_URL")


# -- schema ---------------------------------------------------------------------------------------

def _schema_fix(d: Difference, recorded_sql: dict[str, str]) -> str:
    if d.problem == "missing on target":
        sql = recorded_sql.get(d.object)
        return REPAIR + (f"; or run: {sql}" if sql else "")
    if d.problem == "only on target":
        return f"drop it if nobody meant to add it; if it was deliberate: {ACCEPT}"
    return f"change it back to the recorded definition ({d.source}); if the change was deliberate: {ACCEPT}"


def schema_findings(diff: SchemaDiff, recorded_sql: dict[str, str] | None = None) -> list[DriftFinding]:
    recorded_sql = recorded_sql or {}
    return [DriftFinding("schema", f"{d.kind} {d.object}", DRIFT, str(d),
                         "critical" if d.problem != "only on target" else "warning", _schema_fix(d, recorded_sql))
            for d in diff.differences]


def _recorded_sql(run: RecordedRun) -> dict[str, str]:
    """Recreating statements by the names schema diff uses (indexes share them)."""
    baseline = recorded_baseline(run.report)
    return {o.name: o.sql for o in baseline.objects if o.kind == "index"} if baseline else {}


async def schema_drift(source: DatabaseUrl | None, target: DatabaseUrl) -> list[DriftFinding]:
    """Against the live source when given, else against the schema the last verified run recorded."""
    if source is not None:
        return schema_findings(await diff_schemas(source, target))
    run = await last_verified_run(target)
    if run is None:
        raise MigrationError(f"target {target.safe} has no recorded migrate run to compare with",
                             "pass --source URL, or run migrate (or up) against this target first")
    current = await schema_catalog(target, kinds=list(run.schema_catalog))
    return schema_findings(compare(run.schema_catalog, current), _recorded_sql(run))


# -- data: the old source against the verified baseline (the cutover alarm) ------------------------

def _recorded_source(run: RecordedRun | None) -> dict[str, tuple[int, str | None]]:
    tables = ((run.report.get("verify") or {}).get("tables") or []) if run else []
    return {t["table"]: (t["source_rows"], t.get("source_checksum")) for t in tables}


def _short(checksum: str | None) -> str:
    return "none" if checksum is None else checksum if len(checksum) <= 12 else checksum[:12] + "…"


def stop_source_writes(source: DatabaseUrl) -> str:
    return (f"find the writer still using the old source and point it at RDS; then freeze the source: "
            f"ALTER DATABASE \"{source.database}\" SET default_transaction_read_only = on; "
            f"once the writes are accounted for: {ACCEPT}")


def source_findings(measured: SourceMeasures, recorded: dict[str, tuple[int, str | None]],
                    source: DatabaseUrl, *, checksums: bool) -> list[DriftFinding]:
    findings = []
    fix = stop_source_writes(source)
    for table in sorted(recorded):
        rows_then, checksum_then = recorded[table]
        if table not in measured:
            findings.append(DriftFinding("data", table, DRIFT, "table of the verified migration is gone from the old source",
                                         "critical", fix))
            continue
        rows_now, checksum_now, _ = measured[table]
        if rows_now != rows_then:
            detail = f"the old source took writes after the verified migration: rows {rows_then} → {rows_now}"
        elif checksums and checksum_then is not None and checksum_now != checksum_then:
            detail = (f"the old source took writes after the verified migration: content checksum "
                      f"{_short(checksum_then)} → {_short(checksum_now)} ({rows_now} rows, same count)")
        else:
            continue
        findings.append(DriftFinding("data", table, DRIFT, detail, "critical", fix))
    return findings


def checksum_proof(run: RecordedRun | None) -> Proof:
    """Checksums compare with the baseline only at the level it was taken with (runs recorded
    before proof levels existed hashed full rows); a baseline without checksums gets `fast`."""
    recorded = Proof((run.report.get("verify") or {}).get("proof", Proof.FULL.value)) if run else Proof.FAST
    return Proof.FAST if recorded is Proof.COUNTS else recorded


async def measure(source: DatabaseUrl, *, proof: Proof) -> SourceMeasures:
    """Every table of the old source in one snapshot (callers pick the recorded ones)."""
    async with open_snapshot(source, readers=2) as snap:
        return await measure_source(snap, proof=proof, jobs=2)


async def source_drift(source: DatabaseUrl, target: DatabaseUrl, *, checksums: bool) -> list[DriftFinding]:
    run = await last_verified_run(target)
    recorded = _recorded_source(run)
    if not recorded:
        raise MigrationError(f"target {target.safe} has no verified migration recorded to compare the source with",
                             "run migrate (or up) first, or compare live with --compare-target")
    measured = await measure(source, proof=checksum_proof(run) if checksums else Proof.COUNTS)
    return source_findings(measured, recorded, source, checksums=checksums)


# -- data: target against source (before cutover or during a freeze; opt-in after) -----------------

def data_findings(report: VerifyReport) -> list[DriftFinding]:
    findings = []
    for check in report.tables:
        if check.ok:
            continue
        fix = (f"before cutover: python -m automation copy --tables {check.table} --truncate; after cutover "
               f"the target is the database of record: find who wrote where, or drop --compare-target")
        if check.source_rows != check.target_rows:
            detail = f"source {check.source_rows} rows, target {check.target_rows}"
        elif check.note:
            detail = check.note
        else:
            detail = (f"same {check.source_rows} rows, content checksum source {_short(check.source_checksum)}, "
                      f"target {_short(check.target_checksum)}")
        findings.append(DriftFinding("data", check.table, DRIFT, detail, "critical", fix))
    for s in report.sequences:
        # A target sequence ahead of the source is what an app writing to the target does.
        if s.target is not None and s.target[0] >= s.source[0]:
            continue
        findings.append(DriftFinding(
            "data", s.sequence, DRIFT, f"sequence target {s.target[0] if s.target else 'missing'} behind source {s.source[0]}",
            "critical", f"SELECT setval('{s.sequence}', {s.source[0]}); on the target (never lower it)"))
    return findings


async def target_drift(source: DatabaseUrl, target: DatabaseUrl, *, checksums: bool) -> list[DriftFinding]:
    return data_findings(await verify(source, target, proof=Proof.FAST if checksums else Proof.COUNTS))


# -- accepting a new baseline -------------------------------------------------------------------

async def accept_baseline(source: DatabaseUrl | None, target: DatabaseUrl, *, checksums: bool) -> dict[str, Any]:
    """Record the target as it is now (schema, objects, write counters, rows) — and, with a
    source, the source's rows and checksums — as a new verified run: the next drift check
    compares with this, not with what the first migration saw."""
    run = await last_verified_run(target)
    if run is None:
        raise MigrationError(f"target {target.safe} has no verified migration to update", "run migrate (or up) first")
    report = dict(run.report)
    tables = [dict(t) for t in ((report.get("verify") or {}).get("tables") or [])]
    if source is not None:
        proof = checksum_proof(run) if checksums else Proof.COUNTS
        measured = await measure(source, proof=proof)
        for t in tables:
            if t["table"] in measured:
                t["source_rows"], t["source_checksum"], _ = measured[t["table"]]
        report["verify"] = {**(report.get("verify") or {}), "tables": tables, "proof": proof.value}
    async with connection(target) as conn:
        await conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)")
        idents = {r[0]: r[1] for r in await conn.fetch(
            "SELECT format('%s.%s', schemaname, relname), format('%I.%I', schemaname, relname) FROM pg_stat_user_tables")}
        rows = {t["table"]: int(await conn.fetchval(f"SELECT count(*) FROM {idents[t['table']]}"))
                for t in tables if t["table"] in idents}
    report["baseline"] = (await read_baseline(target, rows)).to_dict()
    report["accepted"] = True
    catalog = await schema_catalog(target, kinds=list(run.schema_catalog))
    async with connection(target) as conn:
        await conn.execute(f"INSERT INTO {RUNS_TABLE} (ok, report, schema_catalog) VALUES (true, $1::jsonb, $2::jsonb)",
                           json.dumps(report, default=str), json.dumps(catalog))
    return report
