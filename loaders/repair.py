"""`schema --repair` / `up --repair`: put back what the verified migration had, then add what
the source gained since, after a plan the user confirms.

Two sources of truth, never guessed: the objects the last verified run recorded on the
target (loaders/live.py: indexes, constraints, triggers, functions, each with the server's
own statement that recreates it), and the live source's cleaned schema for objects it
gained since. Each step runs in its own transaction, so one failure (a duplicate that blocks
a unique index, say) is recorded and the others still go in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from pglast import ast, parser

from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.live import Baseline, RecordedObject, read_objects
from loaders.schema.app_role import app_schemas, grant_app_role
from loaders.schema.clean import CleanStatement

log = structlog.get_logger(stage="repair")
SESSION = ("SET search_path TO \"$user\", public, extensions", "SET check_function_bodies = off")


@dataclass
class RepairStep:
    kind: str
    name: str
    sql: str
    origin: str  # "recorded" (the verified migration had it) | "source" (new on the source)
    status: str = "planned"  # planned | done | failed
    error: str | None = None


@dataclass
class RepairPlan:
    steps: list[RepairStep] = field(default_factory=list)
    # Same name, other definition: shown with the recorded statement, never replaced silently.
    differs: list[RecordedObject] = field(default_factory=list)
    app_role: str | None = None

    @property
    def empty(self) -> bool:
        return not self.steps and self.app_role is None

    def describe(self) -> list[str]:
        lines = [f"{s.origin}: create {s.kind} {s.name}" for s in self.steps]
        lines += [f"differs (not changed): {d.kind} {d.name}; recorded definition: {d.sql.splitlines()[0]}"
                  for d in self.differs]
        if self.app_role:
            lines.append(f"grants: re-grant DML to {self.app_role} on every app table and sequence")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [vars(s) for s in self.steps], "differs": [vars(d) for d in self.differs],
                "app_role": self.app_role, "failed": [s.name for s in self.steps if s.status == "failed"]}


def missing_objects(recorded: list[RecordedObject], current: list[RecordedObject]) -> tuple[list[RecordedObject], list[RecordedObject]]:
    """(missing on the target now, present but defined differently), in repair order."""
    now = {(o.kind, o.name): o for o in current}
    missing = [o for o in recorded if (o.kind, o.name) not in now]
    differs = [o for o in recorded if (o.kind, o.name) in now and now[(o.kind, o.name)].sql != o.sql]
    return sorted(missing, key=lambda o: (o.rank, o.name)), differs


# -- objects the source gained since the migration ------------------------------------------------

def _relation(rv: ast.RangeVar) -> tuple[str, str]:
    return (rv.schemaname or "public", rv.relname)


def _name_list(names: Any) -> tuple[str, str]:
    parts = [n.sval for n in names]
    return (parts[0], parts[-1]) if len(parts) > 1 else ("public", parts[0])


def created_object(node: ast.Node) -> tuple[str, tuple[str, ...]] | None:
    """What a statement creates, as (kind, name parts), read from the parse tree; None for
    statements that only alter or decorate something (handled with the object they touch)."""
    if isinstance(node, (ast.CreateStmt, ast.CreateSeqStmt)):
        return ("relation", _relation(node.relation if isinstance(node, ast.CreateStmt) else node.sequence))
    if isinstance(node, ast.ViewStmt):
        return ("relation", _relation(node.view))
    if isinstance(node, ast.CreateTableAsStmt):
        return ("relation", _relation(node.into.rel))
    if isinstance(node, ast.IndexStmt) and node.idxname:
        return ("index", (node.relation.schemaname or "public", node.idxname))
    if isinstance(node, (ast.CreateEnumStmt, ast.CreateDomainStmt)):
        return ("type", _name_list(node.typeName if isinstance(node, ast.CreateEnumStmt) else node.domainname))
    if isinstance(node, ast.CompositeTypeStmt):
        return ("type", _relation(node.typevar))
    if isinstance(node, ast.CreateFunctionStmt):
        return ("function", _name_list(node.funcname))
    if isinstance(node, ast.CreateTrigStmt):
        return ("trigger", (*_relation(node.relation), node.trigname))
    if isinstance(node, ast.AlterTableStmt) and node.cmds:
        names = [c.def_.conname for c in node.cmds if isinstance(c, ast.AlterTableCmd)
                 and isinstance(c.def_, ast.Constraint) and c.def_.conname]
        if len(names) == 1:
            return ("constraint", (*_relation(node.relation), names[0]))
    return None


def touched_relation(node: ast.Node) -> tuple[str, str] | None:
    """The relation a follow-on statement (ALTER TABLE/SEQUENCE, COMMENT) belongs to."""
    if isinstance(node, ast.AlterTableStmt):
        return _relation(node.relation)
    if isinstance(node, ast.AlterSeqStmt):
        return _relation(node.sequence)
    return None


EXISTS = {
    "relation": "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
    "index": "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
    "type": "SELECT to_regtype(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
    "function": "SELECT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = $1 AND p.proname = $2)",
    "trigger": "SELECT EXISTS (SELECT FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgname = $3 "
               "AND t.tgrelid = to_regclass(format('%I.%I', $1::text, $2::text)))",
    "constraint": "SELECT EXISTS (SELECT FROM pg_constraint k WHERE k.conname = $3 "
                  "AND k.conrelid = to_regclass(format('%I.%I', $1::text, $2::text)))",
}


QUOTED = "SELECT array_to_string(array(SELECT quote_ident(x) FROM unnest($1::text[]) AS x), '.')"


async def new_source_steps(conn: asyncpg.Connection, statements: list[CleanStatement],
                           planned: set[tuple[str, str]] = frozenset()) -> list[RepairStep]:  # type: ignore[assignment]
    """The cleaned source statements that create something the target lacks (and that the
    recorded repair does not already bring back: `planned` holds (kind, quoted name)), plus
    the statements that alter a relation created here (defaults, OWNED BY, keys of a new table)."""
    planned_functions = {name.split("(", 1)[0] for kind, name in planned if kind == "function"}
    steps: list[RepairStep] = []
    new_relations: set[tuple[str, str]] = set()
    for stmt in statements:
        node = parser.parse_sql(stmt.sql)[0].stmt
        created = created_object(node)
        if created is not None:
            kind, name = created
            if kind in ("constraint", "trigger") and name[:2] in new_relations:
                steps.append(RepairStep(kind, ".".join(name), stmt.sql, "source"))
                continue
            quoted = await conn.fetchval(QUOTED, list(name))
            if (kind, quoted) in planned or (kind == "function" and quoted in planned_functions):
                continue
            if await conn.fetchval(EXISTS[kind], *name):
                continue
            if kind == "relation":
                new_relations.add(name)  # type: ignore[arg-type]
            steps.append(RepairStep(kind, ".".join(name), stmt.sql, "source"))
            continue
        relation = touched_relation(node)
        if relation is not None and relation in new_relations:
            steps.append(RepairStep("alter", ".".join(relation), stmt.sql, "source"))
    return steps


# -- plan and apply -------------------------------------------------------------------------------

async def plan_repair(target: DatabaseUrl, baseline: Baseline | None, source_statements: list[CleanStatement],
                      app_role: str | None) -> RepairPlan:
    plan = RepairPlan()
    async with connection(target) as conn:
        if baseline is not None:
            current = await read_objects(conn, baseline.schemas)
            missing, plan.differs = missing_objects(baseline.objects, current)
            plan.steps += [RepairStep(o.kind, o.name, o.sql, "recorded") for o in missing]
        if source_statements:
            await conn.execute("SELECT pg_catalog.set_config('search_path', '\"$user\", public, extensions', false)")
            plan.steps += await new_source_steps(conn, source_statements, {(s.kind, s.name) for s in plan.steps})
        if app_role and await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", app_role):
            plan.app_role = app_role
    return plan


async def apply_repair(target: DatabaseUrl, plan: RepairPlan) -> RepairPlan:
    """Each step in its own transaction; a failure is recorded on the step and the rest go on."""
    async with connection(target) as conn:
        for setting in SESSION:
            await conn.execute(setting)
        for step in plan.steps:
            try:
                async with conn.transaction():
                    await conn.execute(step.sql)
                step.status = "done"
            except asyncpg.PostgresError as exc:
                step.status, step.error = "failed", f"{exc.sqlstate} {exc}"
                log.warning("repair_step_failed", kind=step.kind, name=step.name, error=step.error)
        if plan.app_role:
            try:
                async with conn.transaction():
                    await grant_app_role(conn, plan.app_role, await app_schemas(conn))
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"re-granting {plan.app_role}: {exc}",
                                     "run the repair as the target's master user") from None
    log.info("repaired", done=sum(s.status == "done" for s in plan.steps),
             failed=sum(s.status == "failed" for s in plan.steps))
    return plan
