"""The migration plan `preview` prints: what would be copied and what cleaning would remove.

It reads the source only (catalog queries and a schema-only pg_dump, both read-only) and
touches no target, so it is safe to run against production at any time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table as RichTable

from loaders.data.catalog import read_catalog
from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.schema.stage import SchemaOptions, plan_schema
from loaders.schema.clean import Change


@dataclass(frozen=True)
class PlannedTable:
    table: str
    bytes: int
    est_rows: int


@dataclass
class MigrationPlan:
    origin: str
    tables: list[PlannedTable] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tables)

    def removals_by_kind(self) -> Counter[str]:
        return Counter(f"{c.action} {c.kind}" for c in self.changes)


async def build_migration_plan(source: DatabaseUrl, options: SchemaOptions) -> MigrationPlan:
    schema = await plan_schema(source, options)
    async with connection(source) as conn:
        catalog = await read_catalog(conn)
    tables = sorted((PlannedTable(t.key, t.bytes, t.est_rows) for t in catalog.tables), key=lambda t: -t.bytes)
    return MigrationPlan(schema.origin, tables, schema.changes)


def render_plan(plan: MigrationPlan, console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    grid = RichTable(title=f"tables to copy ({plan.total_bytes / 1e6:.1f} MB)")
    for column in ("table", "size", "rows (estimate)"):
        grid.add_column(column)
    for t in plan.tables:
        grid.add_row(t.table, f"{t.bytes / 1e6:.1f} MB", str(max(t.est_rows, 0)))
    console.print(grid)
    console.print(f"schema from {plan.origin}: {len(plan.changes)} change(s)")
    for what, count in plan.removals_by_kind().most_common():
        console.print(f"  {count:4d} × {what}")
    for change in plan.changes:
        console.print(f"  {change.where}: {change.action} {change.kind} {change.object} — {change.reason}")
