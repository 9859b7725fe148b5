"""The schema step of `migrate`: plan (clean), prepare (before the data), finish (after it).

Two origins, one path: a migrations folder is a list of tracked units, one per file; a
pg_dump of the source is two tracked units, pre-data and post-data. Tracking both in
`supabase_to_rds.schema_migrations` makes every run resumable: a rerun applies only what is
new and refuses what changed. The dump's post-data (indexes, constraints, triggers) is
applied by `finish_schema` after the data load; a migrations folder is applied whole by
`prepare_schema`, because its files interleave tables and indexes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import structlog

from loaders.schema.app_role import ensure_app_role
from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.schema.migrations import RECORD, SqlUnit, applied_checksums, ensure_tracking, pending, read_folder
from loaders.redaction import scrub_value
from loaders.schema.apply import apply_statements
from loaders.schema.clean import Change, CleanResult, CleanStatement, clean_sql
from loaders.schema.diff import KINDS, PRE_DATA_KINDS, SchemaDiff, diff_schemas
from loaders.schema.export import dump_schema
from loaders.schema.target import (
    TargetServer,
    adapt_to_target,
    api_roles,
    auth_shim,
    base_setup,
    preinstalled_extensions,
)

log = structlog.get_logger(stage="schema")
PRE_DATA = "pg_dump/pre-data.sql"
POST_DATA = "pg_dump/post-data.sql"
# Session settings while applying: Supabase's search_path (unqualified extension calls
# resolve), and function bodies checked at call time as pg_dump does — bodies that read
# auth.users are created even though auth stays on Supabase.
SESSION = ("SET search_path TO \"$user\", public, extensions", "SET check_function_bodies = off")


@dataclass
class SchemaOptions:
    migrations: Path | None = None
    rls: str = "strip"
    skip_invalid: bool = False
    app_role: str | None = None
    app_role_password: str | None = field(default=None, repr=False)
    diff: bool = True


@dataclass
class PlannedUnit:
    """One tracked unit: its text (for the checksum) and what cleaning made of it."""

    unit: SqlUnit
    cleaned: CleanResult
    phase: str  # "migration" | "pre-data" | "post-data"


@dataclass
class SchemaPlan:
    origin: str  # "migrations" | "pg_dump"
    rls: str
    units: list[PlannedUnit]

    @property
    def changes(self) -> list[Change]:
        return [c for u in self.units for c in u.cleaned.changes]

    def phase(self, *phases: str) -> list[PlannedUnit]:
        return [u for u in self.units if u.phase in phases]

    def needs_auth_functions(self) -> bool:
        return self.rls == "shim" or any(u.cleaned.auth_functions for u in self.units)

    def roles_needed(self) -> set[str]:
        return set().union(*(u.cleaned.roles_needed for u in self.units)) if self.rls == "shim" else set()

    def sql(self) -> str:
        """The cleaned SQL as it would run, each statement tagged with its origin (for --dry-run)."""
        parts = []
        for u in self.units:
            for s in u.cleaned.statements:
                parts.append(f"-- {s.file}:{s.line} ({u.phase})\n{s.sql};\n")
        return "\n".join(parts)


@dataclass
class SchemaReport:
    origin: str
    rls: str
    changes: list[Change] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    statements_applied: int = 0
    target_setup: list[str] = field(default_factory=list)
    post_data: list[CleanStatement] = field(default_factory=list)
    post_data_checksum: str | None = None
    post_data_applied: bool = False
    app_role: str | None = None
    app_role_schemas: list[str] = field(default_factory=list)
    diff: SchemaDiff | None = None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["changes"] = [{**asdict(c), "where": c.where} for c in self.changes]
        data["post_data"] = [asdict(s) for s in self.post_data]
        data["diff"] = self.diff.to_dict() if self.diff else None
        return scrub_value(data)  # type: ignore[return-value]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def _clean_unit(unit: SqlUnit, phase: str, options: SchemaOptions) -> PlannedUnit:
    cleaned = clean_sql(unit.text, source_name=unit.name, rls=options.rls, skip_invalid=options.skip_invalid)
    return PlannedUnit(unit, cleaned, phase)


async def plan_schema(source: DatabaseUrl | None, options: SchemaOptions) -> SchemaPlan:
    """Read and clean the schema; touches no target (the source is only read, by pg_dump)."""
    if options.migrations is not None:
        units = [_clean_unit(u, "migration", options) for u in read_folder(options.migrations)]
        return SchemaPlan("migrations", options.rls, units)
    if source is None:
        raise MigrationError("no schema source given", "pass --source URL (dump the live schema) or --migrations DIR")
    dump = await dump_schema(source)
    units = [
        _clean_unit(SqlUnit.of(PRE_DATA, dump.pre_data), "pre-data", options),
        _clean_unit(SqlUnit.of(POST_DATA, dump.post_data), "post-data", options),
    ]
    return SchemaPlan("pg_dump", options.rls, units)


def setup_statements(plan: SchemaPlan) -> list[CleanStatement]:
    statements = base_setup()
    if plan.needs_auth_functions():
        statements += api_roles(plan.roles_needed()) + auth_shim()
    return statements


CHANGED_DUMP_FIX = "the source schema changed since the first run; start over on a fresh target database"


async def _apply_units(
    conn: asyncpg.Connection, units: list[PlannedUnit], server: TargetServer, report: SchemaReport
) -> None:
    applied = await applied_checksums(conn)
    fix = CHANGED_DUMP_FIX if report.origin == "pg_dump" else None
    todo = {u.name for u in pending([p.unit for p in units], applied, fix=fix)}
    for planned in units:
        name = planned.unit.name
        if name not in todo:
            report.already_applied.append(name)
            continue
        statements, changes = adapt_to_target(planned.cleaned.statements, server)
        report.changes += changes
        log.info("applying", file=name, statements=len(statements), own_transactions=planned.cleaned.manages_transactions)
        await apply_statements(
            conn, statements, own_transactions=planned.cleaned.manages_transactions,
            after=[(RECORD, (name, planned.unit.checksum))],
        )
        report.applied.append(name)
        report.statements_applied += len(statements)


async def _prepare_session(conn: asyncpg.Connection) -> TargetServer:
    for setting in SESSION:
        await conn.execute(setting)
    await ensure_tracking(conn)
    return await TargetServer.read(conn)


async def prepare_schema(
    source: DatabaseUrl | None, target: DatabaseUrl, options: SchemaOptions, plan: SchemaPlan | None = None
) -> SchemaReport:
    """Everything that must exist before the data load: target setup, then the migrations
    folder, or the dump's pre-data; the app role; and, with a source, a diff of what exists so far."""
    if options.app_role and not options.app_role_password:
        raise MigrationError(f"no password for application role {options.app_role!r}",
                             "set APP_ROLE_PASSWORD (or SchemaOptions.app_role_password)")
    plan = plan or await plan_schema(source, options)
    report = SchemaReport(plan.origin, plan.rls, changes=plan.changes)
    setup = setup_statements(plan)
    report.target_setup = [s.sql.splitlines()[0] for s in setup]
    async with connection(target) as conn:
        await apply_statements(conn, setup)
        server = await _prepare_session(conn)
        wanted = preinstalled_extensions(s for u in plan.units for s in u.cleaned.statements)
        extensions, changes = adapt_to_target(wanted, server)
        await apply_statements(conn, extensions)
        report.changes += changes
        report.target_setup += [s.sql for s in extensions]
        await _apply_units(conn, plan.phase("migration", "pre-data"), server, report)
        post = plan.phase("post-data")
        if post:
            report.post_data = post[0].cleaned.statements
            report.post_data_checksum = post[0].unit.checksum
        if options.app_role:
            report.app_role = options.app_role
            report.app_role_schemas = await ensure_app_role(conn, options.app_role, options.app_role_password or "")
    if source is not None and options.diff:
        kinds = PRE_DATA_KINDS if report.post_data else KINDS
        report.diff = await diff_schemas(source, target, kinds=kinds)
    return report


async def finish_schema(target: DatabaseUrl, report: SchemaReport, source: DatabaseUrl | None = None) -> SchemaReport:
    """After the data load: the dump's post-data (indexes, constraints, triggers), tracked
    like a migration so a rerun skips it; with a source, the full schema diff."""
    if report.post_data and report.post_data_checksum:
        planned = PlannedUnit(SqlUnit(POST_DATA, report.post_data_checksum), CleanResult(report.post_data, []), "post-data")
        async with connection(target) as conn:
            server = await _prepare_session(conn)
            await _apply_units(conn, [planned], server, report)
        report.post_data_applied = True
    if source is not None:
        report.diff = await diff_schemas(source, target)
    return report
