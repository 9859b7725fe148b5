"""Step 6: the audit as JSON (for CI and tools), Markdown (a checklist a person works through during
the backend swap, grouped by file, each call with its suggested `pool.query(...)`), and a short
terminal summary. The exit code is decided here too, so the three agree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table as RichTable

from loaders.audit.model import Call

DATABASE_KINDS = ("table", "rpc")
LATER_PHASE_KINDS = ("storage", "auth", "realtime", "functions")
RESULT_SHAPES = {
    "many": "const {{ rows }} = await pool.query({args});",
    "one": "const {{ rows: [row] }} = await pool.query({args}); // single(): exactly one row expected",
    "maybe-one": "const {{ rows: [row] }} = await pool.query({args}); // maybeSingle(): row may be undefined",
    "count": "const {{ rows: [{{ count }}] }} = await pool.query({args});",
    "none": "await pool.query({args});",
}


def pool_query(call: Call) -> str | None:
    """The suggested node-postgres line for a translated call."""
    if call.sql is None:
        return None
    sql = "`" + call.sql.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${") + "`"
    args = sql + (", [" + ", ".join(call.params) + "]" if call.params else "")
    return RESULT_SHAPES.get(call.returns, RESULT_SHAPES["many"]).format(args=args)


@dataclass
class AuditReport:
    calls: list[Call]
    files_scanned: int
    target_checked: bool = False
    scan_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def database_calls(self) -> list[Call]:
        return [c for c in self.calls if c.kind in DATABASE_KINDS]

    @property
    def problems(self) -> list[Call]:
        """Database calls that are not ready: not translated, or rejected by the target."""
        return [c for c in self.database_calls if c.status == "manual" or c.check not in (None, "ok")]

    def exit_code(self, *, gate: bool = False, strict: bool = False) -> int:
        """0 ready, 2 not ready. With `gate`, any remaining database call (and with `strict` any
        Storage/Auth/Realtime/Functions call) counts: the cutover's "no supabase. left" check."""
        if gate:
            remaining = self.database_calls + ([c for c in self.calls if c.kind in LATER_PHASE_KINDS] if strict else [])
            return 2 if remaining else 0
        return 2 if self.problems else 0

    def per_file(self) -> dict[str, dict[str, int]]:
        summary: dict[str, Counter[str]] = defaultdict(Counter)
        for call in self.calls:
            summary[call.file][call.kind] += 1
            if call.kind in DATABASE_KINDS and call in self.problems:
                summary[call.file]["problems"] += 1
        return {file: dict(counts) for file, counts in sorted(summary.items())}

    def per_table(self) -> dict[str, dict[str, object]]:
        tables: dict[str, dict[str, object]] = {}
        for call in self.calls:
            if call.kind != "table" or call.name is None:
                continue
            entry = tables.setdefault(call.name, {"calls": 0, "operations": Counter(), "checks": Counter(), "files": set()})
            entry["calls"] += 1  # type: ignore[operator]
            entry["operations"][call.operation] += 1  # type: ignore[index]
            entry["checks"][call.check or ("manual" if call.status == "manual" else "unchecked")] += 1  # type: ignore[index]
            entry["files"].add(call.file)  # type: ignore[union-attr]
        return {name: {"calls": e["calls"], "operations": dict(e["operations"]), "checks": dict(e["checks"]),  # type: ignore[arg-type]
                       "files": sorted(e["files"])} for name, e in sorted(tables.items())}  # type: ignore[arg-type]

    def totals(self) -> dict[str, object]:
        kinds = Counter(c.kind for c in self.calls)
        return {"files_scanned": self.files_scanned, "calls": len(self.calls), "by_kind": dict(kinds),
                "translated": sum(1 for c in self.database_calls if c.sql is not None),
                "manual": sum(1 for c in self.database_calls if c.status == "manual"),
                "checks": dict(Counter(c.check for c in self.database_calls if c.check)),
                "target_checked": self.target_checked, "scan_seconds": round(self.scan_seconds, 3)}

    def to_dict(self) -> dict[str, object]:
        return {"summary": self.totals(), "files": self.per_file(), "tables": self.per_table(),
                "calls": [c.to_dict() for c in self.calls], "notes": self.notes}

    def to_markdown(self) -> str:
        t = self.totals()
        lines = ["# Supabase client calls to replace", "",
                 f"{t['calls']} calls in {len(self.per_file())} of {t['files_scanned']} files: "
                 + ", ".join(f"{n} {k}" for k, n in sorted(t["by_kind"].items()))  # type: ignore[union-attr]
                 + f". Database calls translated: {t['translated']}, manual: {t['manual']}."
                 + (" Target: " + ", ".join(f"{n} {k}" for k, n in sorted(t["checks"].items())) + "."  # type: ignore[union-attr]
                    if self.target_checked else " Not checked against a target (pass --target)."), ""]
        by_file: dict[str, list[Call]] = defaultdict(list)
        for call in self.calls:
            by_file[call.file].append(call)
        for file, calls in sorted(by_file.items()):
            lines += [f"## {file}", ""]
            for call in calls:
                state = call.check or call.status
                lines.append(f"- [ ] **line {call.line}** — {call.kind} `{call.name or ''}` {call.operation} — {state}")
                lines.append(f"  - code: `{call.source}`")
                suggested = pool_query(call)
                if suggested:
                    lines += ["", "    ```ts", f"    {suggested}", "    ```", ""]
                if call.message:
                    lines.append(f"  - {call.message}")
            lines.append("")
        return "\n".join(lines)

    def render(self, console: Console) -> None:
        grid = RichTable(title="supabase calls by file")
        for column in ("file", "table", "rpc", "storage", "auth", "realtime", "functions", "problems"):
            grid.add_column(column, justify="left" if column == "file" else "right")
        for file, counts in self.per_file().items():
            grid.add_row(file, *(str(counts.get(k, "")) for k in
                                 ("table", "rpc", "storage", "auth", "realtime", "functions", "problems")))
        console.print(grid)
        t = self.totals()
        console.print(f"{t['calls']} calls; database: {t['translated']} translated, {t['manual']} manual"
                      + (f"; target: {t['checks']}" if self.target_checked else "; not checked (no --target)")
                      + f"; scanned {t['files_scanned']} files in {t['scan_seconds']} s")
        for call in self.problems[:20]:
            console.print(f"  {call.file}:{call.line} {call.name} {call.check or call.status}: {call.message}",
                          markup=False, highlight=False)
        if len(self.problems) > 20:
            console.print(f"  … and {len(self.problems) - 20} more (see the report)")
