"""The schema step of `migrate`: plan (clean), prepare (before the data), finish (after it).

Two origins, one path: a migrations folder is a list of tracked units, one per file; a
pg_dump of the source is two tracked units, pre-data and post-data. Tracking both in
`supabase_to_rds.schema_migrations` makes every run resumable: a rerun applies only what is
new and refuses what changed. The dump's post-data (indexes, constraints, triggers) comes
after the data load, statement by statement, each recorded as it commits (post_data.py):
`migrate` applies each table's share as soon as that table is copied (loaders/pipeline.py)
and `finish_schema` the rest; a migrations folder is applied whole by `prepare_schema`,
because its files interleave tables and indexes.
"""

from __future__ import annotations

import json
from collections.abc import Collection
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
from loaders.schema.post_data import PostDataApplier, PostDataPlan, PostStatement, digest, plan_post_data
from loaders.schema.clean import Change, CleanResult, CleanState, CleanStatement, clean_sql, parsed_statements
from loaders.schema.clean.rules.functions import AUTH_HOOK_ROLE, auth_hooks
from loaders.schema.diff import KINDS, PRE_DATA_KINDS, SchemaDiff, diff_schemas
from loaders.schema.seeded import SeededTables
from loaders.schema.export import auth_hooks_on_source, dump_schema
from loaders.schema.target import (
    TargetServer,
    adapt_to_target,
    api_roles,
    auth_shim,
    base_setup,
    extension_needs,
    extension_of,
    precheck_extensions,
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
    # `--skip NAME|FILE:LINE`: statements the user chose to leave out (reported).
    skip: tuple[str, ...] = ()
    # Set by `migrate`: rows the migration files insert are replaced by the copy from the
    # source (the source is the truth), so those tables are emptied after the files ran.
    refill_from_source: bool = False


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
    state: CleanState = field(default_factory=CleanState)

    @property
    def changes(self) -> list[Change]:
        return [c for u in self.units for c in u.cleaned.changes]

    def extension_needs(self) -> dict[str, set[str]]:
        return extension_needs((s for u in self.units for s in u.cleaned.statements),
                               set().union(*(u.cleaned.body_calls for u in self.units)), self.state.languages)

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
    extension_check: str | None = None
    # Tables the migration files filled; `migrate` empties them so the copy refills them from the source.
    seeded_tables: list[str] = field(default_factory=list)
    seeded_tables_emptied: bool = False
    error: str | None = None

    @property
    def removed_on_purpose(self) -> set[str]:
        """What the cleaner removed (objects' unquoted identities): not "missing on target"."""
        return {r for c in self.changes for r in c.removes}

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["changes"] = [{**asdict(c), "where": c.where} for c in self.changes]
        data["post_data"] = [asdict(s) for s in self.post_data]
        data["diff"] = self.diff.to_dict() if self.diff else None
        return scrub_value(data)  # type: ignore[return-value]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


class SchemaFailed(MigrationError):
    """A schema step that failed part-way: the error plus the report of what was done, so the
    command can write the report (what was applied and committed) before exiting."""

    def __init__(self, error: MigrationError, report: "SchemaReport") -> None:
        super().__init__(error.cause, error.fix)
        self.exit_code = error.exit_code
        self.report = report


def _clean_units(
    named: list[tuple[SqlUnit, str]], options: SchemaOptions, hooks: set[tuple[str, str]] | None = None
) -> tuple[list[PlannedUnit], CleanState]:
    """Clean the units in order with one shared state: a function removed in one file takes
    its triggers in a later one (pg_dump puts triggers in post-data). Auth hooks come from
    the files' grants, or (a dump has no grants) from the source's catalog."""
    nodes = [n for unit, _ in named for n in parsed_statements(unit.text)]
    state = CleanState(skip=tuple(options.skip), auth_hooks=auth_hooks(nodes) | (hooks or set()))
    units = [
        PlannedUnit(unit, clean_sql(unit.text, source_name=unit.name, rls=options.rls,
                                    skip_invalid=options.skip_invalid, state=state), phase)
        for unit, phase in named
    ]
    unused = [s for s in options.skip if s not in state.skips_used]
    if unused:
        raise MigrationError(f"--skip {', '.join(unused)} matches no statement (nothing was written)",
                             "give FILE:LINE as the report or the error shows it, or the object's name (schema.name)")
    _drop_unused_languages(units, state)
    return units, state


def _drop_unused_languages(units: list[PlannedUnit], state: CleanState) -> None:
    """CREATE EXTENSION of a procedural language whose functions were all removed (a plv8
    Auth hook): the extension would only make the target need what nothing uses."""
    languages = {"plv8", "plls", "plcoffee", "plperl", "plperlu", "pltcl", "pltclu", "plpython3u", "plrust", "pljava"}
    for planned in units:
        kept = []
        for statement in planned.cleaned.statements:
            found = extension_of(statement) if statement.kind == "CREATE EXTENSION" else None
            if found and found[0] in languages and found[0] not in state.languages:
                planned.cleaned.changes.append(Change(
                    statement.file, statement.line, statement.kind, f"extension {found[0]}",
                    f"no kept function is written in {found[0]} (its functions were removed above)", "dropped"))
                continue
            kept.append(statement)
        planned.cleaned.statements = kept


async def plan_schema(source: DatabaseUrl | None, options: SchemaOptions) -> SchemaPlan:
    """Read and clean the schema; touches no target (the source is only read, by pg_dump)."""
    if options.migrations is not None:
        units, state = _clean_units([(u, "migration") for u in read_folder(options.migrations)], options)
        return SchemaPlan("migrations", options.rls, units, state)
    if source is None:
        raise MigrationError("no schema source given", "pass --source URL (dump the live schema) or --migrations DIR")
    dump = await dump_schema(source)
    units, state = _clean_units(
        [(SqlUnit.of(PRE_DATA, dump.pre_data), "pre-data"), (SqlUnit.of(POST_DATA, dump.post_data), "post-data")],
        options, await auth_hooks_on_source(source, AUTH_HOOK_ROLE))
    return SchemaPlan("pg_dump", options.rls, units, state)


def setup_statements(plan: SchemaPlan) -> list[CleanStatement]:
    statements = base_setup()
    if plan.needs_auth_functions():
        statements += api_roles(plan.roles_needed()) + auth_shim()
    return statements


CHANGED_DUMP_FIX = ("the source schema changed since the first run; start over with `migrate --fresh --yes` (drops what "
                    "the tool created, the app's rows too) or on a fresh target database")


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
    folder, or the dump's pre-data; the app role; and, with a source, a diff of what exists so far.
    On failure raises `SchemaFailed`, carrying the report of what was applied before it."""
    if options.app_role and not options.app_role_password:
        raise MigrationError(f"no password for application role {options.app_role!r}",
                             "set APP_ROLE_PASSWORD (or SchemaOptions.app_role_password)")
    plan = plan or await plan_schema(source, options)
    report = SchemaReport(plan.origin, plan.rls, changes=plan.changes)
    try:
        await _prepare(source, target, options, plan, report)
    except MigrationError as exc:
        report.error = exc.one_line()
        raise SchemaFailed(exc, report) from exc
    return report


async def _prepare(
    source: DatabaseUrl | None, target: DatabaseUrl, options: SchemaOptions, plan: SchemaPlan, report: SchemaReport
) -> None:
    setup = setup_statements(plan)
    needs = plan.extension_needs()
    async with connection(target) as conn:
        # Read-only checks first: a missing extension stops the run before any change.
        report.extension_check = precheck_extensions(needs, await TargetServer.read(conn))
        log.info("extensions checked", line=report.extension_check)
        await apply_statements(conn, setup)
        report.target_setup = [s.sql.splitlines()[0] for s in setup]
        server = await _prepare_session(conn)
        extensions, changes = adapt_to_target(preinstalled_extensions(needs), server)
        await apply_statements(conn, extensions)
        report.changes += changes
        report.target_setup += [s.sql for s in extensions]
        seeded = await SeededTables.measure(conn)
        await _apply_units(conn, plan.phase("migration", "pre-data"), server, report)
        if report.applied:
            await _seeded_tables(conn, seeded, options, report)
        post = plan.phase("post-data")
        if post:
            report.post_data = post[0].cleaned.statements
            report.post_data_checksum = post[0].unit.checksum
        if options.app_role:
            report.app_role = options.app_role
            report.app_role_schemas = await ensure_app_role(conn, options.app_role, options.app_role_password or "")
    if source is not None and options.diff:
        kinds = PRE_DATA_KINDS if report.post_data else KINDS
        report.diff = await diff_schemas(source, target, kinds=kinds, removed=report.removed_on_purpose,
                                         app_role=options.app_role)


async def _seeded_tables(conn: asyncpg.Connection, seeded: SeededTables, options: SchemaOptions,
                         report: SchemaReport) -> None:
    report.seeded_tables = await seeded.after_files(conn)
    if not report.seeded_tables or not options.refill_from_source:
        return
    refused = await seeded.empty(conn)
    if refused:
        log.warning("seeded tables kept", tables=report.seeded_tables, reason=refused)
        return
    report.seeded_tables_emptied = True
    log.info("rows written by the migration files replaced by the source's", tables=report.seeded_tables)


def post_data_plan(report: SchemaReport, tables: Collection[str] = ()) -> PostDataPlan | None:
    """The dump's post-data grouped by the copied tables (`tables`: their keys); None without one."""
    if not report.post_data or not report.post_data_checksum:
        return None
    return plan_post_data(report.post_data, report.post_data_checksum, tables)


async def post_data_applier(conn: asyncpg.Connection, report: SchemaReport,
                            plan: PostDataPlan) -> PostDataApplier | None:
    """The applier for what is still to do, or None when an earlier run recorded the whole
    section; a section that changed since it was recorded is refused (CHANGED_DUMP_FIX)."""
    await _prepare_session(conn)
    recorded = await applied_checksums(conn)
    pending([SqlUnit(POST_DATA, plan.checksum)], recorded, fix=CHANGED_DUMP_FIX)
    if POST_DATA in recorded:
        return None
    return await PostDataApplier.open(conn, plan)


async def finish_schema(target: DatabaseUrl, report: SchemaReport, source: DatabaseUrl | None = None,
                        *, app_role: str | None = None, applier: PostDataApplier | None = None) -> SchemaReport:
    """After the data load: whatever of the dump's post-data is not applied yet (all of it, or
    what `migrate`'s per-table pipeline left: statements not tied to one table), in dump order,
    each statement recorded as it commits; then the section as a whole, like a migration, so a
    rerun skips it. With a source, the full schema diff (post-data objects — CHECKs incl.
    NOT VALID, indexes, FKs, triggers — are only compared now)."""
    try:
        plan = applier.plan if applier is not None else post_data_plan(report)
        if plan is not None:
            async with connection(target) as conn:
                await _finish_post_data(conn, report, plan, applier)
            report.post_data_applied = True
        if source is not None:
            report.diff = await diff_schemas(source, target, removed=report.removed_on_purpose,
                                             app_role=app_role or report.app_role)
    except MigrationError as exc:
        report.error = exc.one_line()
        raise SchemaFailed(exc, report) from exc
    return report


async def _finish_post_data(conn: asyncpg.Connection, report: SchemaReport, plan: PostDataPlan,
                            applier: PostDataApplier | None) -> None:
    fresh = await post_data_applier(conn, report, plan)
    if fresh is None:
        report.already_applied.append(POST_DATA)
        return
    applier = applier or fresh
    log.info("applying", file=POST_DATA, statements=len(applier.pending(plan.all)))
    await applier.apply(conn, [PostStatement(s, digest(s), None) for s in report.post_data
                               if s not in plan.session])
    await conn.execute(RECORD, POST_DATA, plan.checksum)
    report.applied.append(POST_DATA)
    report.statements_applied += applier.count
    report.changes += applier.changes
