"""The dump's post-data split by the table it acts on, and applied statement by statement.

`migrate` builds a table's keys, indexes and triggers as soon as that table's copy ends,
while other tables are still copying (pgcopydb's overlap), adds a foreign key once both of
its tables are ready, and runs whatever is not tied to one copied table (partitioned
parents, matview indexes, comments, statistics objects) at the end, in dump order.
Grouping reads the statement's AST (pglast), never its text.

Each statement is recorded in `supabase_to_rds.post_data_statements` in the transaction
that applies it, keyed by a digest of its text: a run killed half-way through the
overlapped stage leaves exactly the applied statements recorded, and the rerun applies only
the others (no "already exists"). When every statement is in, the whole section is recorded
in `schema_migrations` as before, which is what the report and the schema diff read.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog
from pglast import ast, enums

from loaders import bookkeeping
from loaders.data.catalog import table_key
from loaders.errors import MigrationError
from loaders.schema.apply import apply_statements, first_line
from loaders.schema.clean import CleanStatement, parsed_statements
from loaders.schema.clean.model import Change
from loaders.schema.target import TargetServer, adapt_to_target

log = structlog.get_logger(stage="post_data")
TABLE = bookkeeping.POST_DATA_STATEMENTS
RECORD_STATEMENT = (f"INSERT INTO {TABLE} (digest, unit_checksum, relation) VALUES ($1, $2, $3) "
                    "ON CONFLICT (digest) DO NOTHING")
RESUME_FIX = "fix the cause and rerun with --resume: the statements already applied are recorded and kept"


class Step(enum.IntEnum):
    """Order inside one table's group: keys first (other statements may need them), then the
    other indexes, then table-level odds and ends, then triggers (they act on later writes)."""

    KEY = 1
    INDEX = 2
    OTHER = 3
    TRIGGER = 4


_KEYS = {enums.ConstrType.CONSTR_PRIMARY, enums.ConstrType.CONSTR_UNIQUE, enums.ConstrType.CONSTR_EXCLUSION}
_CONSTRAINT_STEPS = {**{k: Step.KEY for k in _KEYS}, enums.ConstrType.CONSTR_CHECK: Step.OTHER}


@dataclass(frozen=True)
class PostStatement:
    statement: CleanStatement
    digest: str
    table: str | None  # the table key it acts on; None: not tied to one table
    step: Step = Step.OTHER
    references: str | None = None  # a foreign key's referenced table

    @property
    def foreign_key(self) -> bool:
        return self.references is not None


@dataclass
class PostDataPlan:
    """Per table (in step order, dump order within a step), foreign keys, and the rest."""

    checksum: str
    tables: dict[str, list[PostStatement]] = field(default_factory=dict)
    foreign_keys: list[PostStatement] = field(default_factory=list)
    last: list[PostStatement] = field(default_factory=list)
    # pg_dump's header (SET …, set_config('search_path', …)): run on every connection first.
    session: list[CleanStatement] = field(default_factory=list)

    @property
    def all(self) -> list[PostStatement]:
        return [s for group in self.tables.values() for s in group] + self.foreign_keys + self.last


def digest(statement: CleanStatement) -> str:
    return hashlib.sha256(statement.sql.encode()).hexdigest()


def _key(rv: ast.RangeVar | None) -> str | None:
    return table_key(rv.schemaname or "public", rv.relname) if rv is not None else None


def _session_setting(node: ast.Node) -> bool:
    if isinstance(node, ast.VariableSetStmt):
        return True
    if not isinstance(node, ast.SelectStmt) or not node.targetList or len(node.targetList) != 1:
        return False
    call = node.targetList[0].val
    return isinstance(call, ast.FuncCall) and call.funcname[-1].sval == "set_config"


def _classify(node: ast.Node) -> tuple[str | None, Step, str | None]:
    """(table, step, referenced table) of one statement; (None, …) when it is not about one table."""
    if isinstance(node, ast.IndexStmt):
        return _key(node.relation), Step.INDEX, None
    if isinstance(node, ast.CreateTrigStmt):
        # A constraint trigger naming another table waits like a foreign key would: run it last.
        return (None if node.constrrel is not None else _key(node.relation)), Step.TRIGGER, None
    if isinstance(node, ast.AlterTableStmt) and node.objtype == enums.ObjectType.OBJECT_TABLE and node.cmds:
        cmds = list(node.cmds)
        if len(cmds) == 1 and cmds[0].subtype == enums.AlterTableType.AT_AddConstraint:
            constraint = cmds[0].def_
            if constraint.contype == enums.ConstrType.CONSTR_FOREIGN:
                return _key(node.relation), Step.OTHER, _key(constraint.pktable)
            if constraint.contype in _CONSTRAINT_STEPS:
                return _key(node.relation), _CONSTRAINT_STEPS[constraint.contype], None
    return None, Step.OTHER, None


def plan_post_data(statements: Sequence[CleanStatement], checksum: str, tables: Collection[str]) -> PostDataPlan:
    """Group the post-data by the copied tables (`tables`: their keys). A statement on anything
    else — a partitioned parent, a matview, a table outside the selection — goes last."""
    plan = PostDataPlan(checksum)
    wanted = set(tables)
    for statement in statements:
        nodes = parsed_statements(statement.sql)
        if len(nodes) == 1 and _session_setting(nodes[0]):
            plan.session.append(statement)
            continue
        table, step, references = _classify(nodes[0]) if len(nodes) == 1 else (None, Step.OTHER, None)
        item = PostStatement(statement, digest(statement), table, step, references)
        if table not in wanted or (references is not None and references not in wanted):
            plan.last.append(PostStatement(statement, item.digest, None))
        elif references is not None:
            plan.foreign_keys.append(item)
        else:
            plan.tables.setdefault(table, []).append(item)
    for group in plan.tables.values():
        group.sort(key=lambda s: s.step)  # stable: dump order within a step
    return plan


async def applied_digests(conn: asyncpg.Connection) -> set[str]:
    if not await bookkeeping.table_exists(conn, TABLE):
        return set()
    return {r["digest"] for r in await conn.fetch(f"SELECT digest FROM {TABLE}")}


class PostDataApplier:
    """Applies post-data statements, each in its own transaction with its record; skips those
    recorded by any earlier run (same text, same object). Shared by the pipeline's tasks."""

    def __init__(self, server: TargetServer, plan: PostDataPlan, applied: set[str]) -> None:
        self.server = server
        self.plan = plan
        self.applied = applied
        self.count = 0
        self.changes: list[Change] = []

    @classmethod
    async def open(cls, conn: asyncpg.Connection, plan: PostDataPlan) -> "PostDataApplier":
        await bookkeeping.ensure_schema(conn, TABLE)
        return cls(await TargetServer.read(conn), plan, await applied_digests(conn))

    def pending(self, statements: Iterable[PostStatement]) -> list[PostStatement]:
        return [s for s in statements if s.digest not in self.applied]

    async def apply(self, conn: asyncpg.Connection, statements: Iterable[PostStatement]) -> int:
        done = 0
        todo = self.pending(statements)
        if todo:
            session, _ = adapt_to_target(self.plan.session, self.server)
            await apply_statements(conn, session)
        for item in todo:
            adapted, changes = adapt_to_target([item.statement], self.server)
            self.changes += changes
            try:
                await apply_statements(conn, adapted, after=[(RECORD_STATEMENT, (item.digest, self.plan.checksum,
                                                                                  item.table or item.references))])
            except MigrationError as exc:
                exc.fix = RESUME_FIX
                raise
            except (asyncpg.InterfaceError, OSError) as exc:  # the session died (terminated, server gone)
                raise MigrationError(f"{item.statement.file}:{item.statement.line}: the target connection was lost "
                                     f"({type(exc).__name__}) — in statement: {first_line(item.statement)}",
                                     RESUME_FIX) from None
            self.applied.add(item.digest)
            done += 1
        self.count += done
        return done


__all__ = ["PostDataApplier", "PostDataPlan", "PostStatement", "Step", "applied_digests", "digest", "plan_post_data"]
