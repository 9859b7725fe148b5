"""Schema and data drift after cutover: is the target still what the migration verified?

During the rollback window the old Supabase database stays read-only, so target and source
must keep matching; a difference means either the target drifted (a dropped index, a
changed column, a stray row) or writes still reached the old source. Schema drift needs no
source: the target is compared with the schema recorded by the last verified `migrate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.migrate import RecordedRun, last_verified_run
from loaders.schema.diff import SchemaDiff, compare, diff_schemas, schema_catalog
from loaders.data.checksum import Proof
from loaders.data.verify import VerifyReport, verify

DRIFT, BENIGN = "drift", "benign"


@dataclass(frozen=True)
class DriftFinding:
    area: str  # infrastructure | schema | data
    object: str
    kind: str  # drift | benign
    detail: str
    severity: str = "warning"


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
            lines += ["| area | object | kind | severity | detail |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {f.area} | `{f.object}` | {f.kind} | {f.severity} | {f.detail.replace('|', '/')} |"
                      for f in self.findings]
        return "\n".join(lines) + "\n"


def schema_findings(diff: SchemaDiff) -> list[DriftFinding]:
    return [DriftFinding("schema", f"{d.kind} {d.object}", DRIFT, str(d), "critical" if d.problem != "only on target" else "warning")
            for d in diff.differences]


async def schema_drift(source: DatabaseUrl | None, target: DatabaseUrl) -> list[DriftFinding]:
    """Against the live source when given, else against the schema the last migrate recorded."""
    if source is not None:
        return schema_findings(await diff_schemas(source, target))
    run = await last_verified_run(target)
    if run is None:
        raise MigrationError(f"target {target.safe} has no recorded migrate run to compare with",
                             "pass --source URL, or run migrate (or up) against this target first")
    current = await schema_catalog(target, kinds=list(run.schema_catalog))
    return schema_findings(compare(run.schema_catalog, current))


def _recorded_source(run: RecordedRun | None) -> dict[str, tuple[int, str | None]]:
    tables = ((run.report.get("verify") or {}).get("tables") or []) if run else []
    return {t["table"]: (t["source_rows"], t.get("source_checksum")) for t in tables}


def data_findings(report: VerifyReport, recorded: dict[str, tuple[int, str | None]]) -> list[DriftFinding]:
    findings = []
    for check in report.tables:
        if not check.ok:
            detail = (f"source {check.source_rows} rows, target {check.target_rows}" if check.source_rows != check.target_rows
                      else check.note or "same row count, different content (checksum)")
            findings.append(DriftFinding("data", check.table, DRIFT, detail, "critical"))
        before = recorded.get(check.table)
        if before is None:
            continue
        rows_then, checksum_then = before
        changed = rows_then != check.source_rows or (
            report.checksums and checksum_then is not None and checksum_then != check.source_checksum)
        if changed:
            findings.append(DriftFinding(
                "data", check.table, DRIFT,
                f"writes reached the old source after cutover (rows {rows_then} → {check.source_rows})", "critical"))
    findings += [DriftFinding("data", s.sequence, DRIFT, f"sequence source {s.source}, target {s.target}")
                 for s in report.sequences if not s.ok]
    return findings


def checksum_proof(run: RecordedRun | None) -> Proof:
    """Checksums compare with the baseline only at the level it was taken with (runs recorded
    before proof levels existed hashed full rows); a baseline without checksums gets `fast`."""
    recorded = Proof((run.report.get("verify") or {}).get("proof", Proof.FULL.value)) if run else Proof.FAST
    return Proof.FAST if recorded is Proof.COUNTS else recorded


async def data_drift(source: DatabaseUrl, target: DatabaseUrl, *, checksums: bool) -> list[DriftFinding]:
    run = await last_verified_run(target)
    proof = checksum_proof(run) if checksums else Proof.COUNTS
    return data_findings(await verify(source, target, proof=proof), _recorded_source(run))
