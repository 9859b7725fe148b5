"""References to Supabase-managed schemas: statements on them are dropped, foreign keys to
them (`REFERENCES auth.users`) are cut from otherwise kept tables, columns kept."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast, enums

from loaders.schema.clean.context import RuleContext
from loaders.schema.clean.nodes import OT, children, names, qual, role, string_list
from loaders.supabase import AUTH_SCHEMA, AUTH_SHIM_FUNCTIONS, EXTENSIONS_SCHEMA, PLATFORM_ROLES, is_managed_schema

AT = enums.AlterTableType
RLS_COMMANDS = {
    AT.AT_EnableRowSecurity, AT.AT_DisableRowSecurity, AT.AT_ForceRowSecurity, AT.AT_NoForceRowSecurity,
}
# Fields holding a qualified name as a list of String nodes: (schema, name[, member]).
_NAME_FIELDS = ("funcname", "defnames", "domainname", "objname", "typeName", "names", "object", "objects")


def managed(schema: str | None) -> bool:
    return is_managed_schema(schema) and schema != EXTENSIONS_SCHEMA


def is_dropped_fk(node: ast.Node) -> bool:
    return (
        isinstance(node, ast.Constraint) and node.contype == enums.ConstrType.CONSTR_FOREIGN
        and node.pktable is not None and managed(node.pktable.schemaname)
    )


def managed_reference(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    """Anything that creates, alters or reads an object in a Supabase-managed schema
    (auth.users, storage.objects, cron.schedule …) cannot run where those schemas don't exist."""
    found = _first_managed(node)
    if found is None:
        return node
    reason = f"touches {found}, which belongs to a Supabase-managed schema that stays on Supabase"
    ctx.record(_statement_object(node) or found, reason, "dropped")
    return None


def alter_table(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if not isinstance(node, ast.AlterTableStmt):
        return node
    table = qual(node.relation)
    kept, removed = [], []
    for cmd in node.cmds or ():
        reason = _alter_command_reason(cmd, ctx.rls)
        if reason:
            removed.append(reason)
            continue
        if cmd.subtype == AT.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            ctx.modified |= _strip_column_fks(cmd.def_, table, ctx)
        kept.append(cmd)
    if not removed:
        return node
    action = "modified" if kept else "dropped"
    for obj, why in removed:
        ctx.record(f"{table}{obj}", why, action)
    if not kept:
        return None
    node.cmds = tuple(kept)
    ctx.modified = True
    return node


def _alter_command_reason(cmd: ast.AlterTableCmd, rls: str) -> tuple[str, str] | None:
    if cmd.subtype in RLS_COMMANDS and rls == "strip":
        toggle = AT(cmd.subtype).name.removeprefix("AT_")
        return f" ({toggle})", "row level security toggles are stripped (--rls strip)"
    if cmd.subtype == AT.AT_ChangeOwner and role(cmd.newowner) in PLATFORM_ROLES:
        return f" owner {role(cmd.newowner)}", "owner is a Supabase role; objects belong to the user applying the schema"
    if cmd.subtype == AT.AT_AddConstraint and is_dropped_fk(cmd.def_):
        return (
            f" constraint {cmd.def_.conname or ''} → {qual(cmd.def_.pktable)}".replace("  ", " "),
            "foreign key to a Supabase-managed table (auth stays on Supabase); column kept",
        )
    return None


def _strip_column_fks(col: ast.ColumnDef, table: str, ctx: RuleContext) -> bool:
    constraints = col.constraints or ()
    dropped = [c for c in constraints if is_dropped_fk(c)]
    for c in dropped:
        ctx.record(
            f"{table}.{col.colname} → {qual(c.pktable)}",
            "inline foreign key to a Supabase-managed table (auth stays on Supabase); column kept",
            "modified", at=c.location,
        )
    if dropped:
        col.constraints = tuple(c for c in constraints if not is_dropped_fk(c)) or None
    return bool(dropped)


def create_table(node: ast.Node, ctx: RuleContext) -> ast.Node:
    if not isinstance(node, ast.CreateStmt):
        return node
    table = qual(node.relation)
    elements = []
    for element in node.tableElts or ():
        if isinstance(element, ast.ColumnDef):
            ctx.modified |= _strip_column_fks(element, table, ctx)
        elif is_dropped_fk(element):
            cols = ", ".join(names(k) for k in element.fk_attrs or ())
            ctx.record(
                f"{table} constraint {element.conname or '(' + cols + ')'} → {qual(element.pktable)}",
                "foreign key to a Supabase-managed table (auth stays on Supabase); columns kept", "modified",
                at=element.location,
            )
            ctx.modified = True
            continue
        elements.append(element)
    node.tableElts = tuple(elements)
    return node


def _first_managed(node: ast.Node) -> str | None:
    """The first object in a Supabase-managed schema the statement names, if any.

    FKs to auth/storage are exempt (the FK rule drops the constraint, not the table), and so
    are calls to the auth functions the shim provides (auth.uid() in a column default)."""
    for name in _schema_names(node):
        if managed(name):
            return f"schema {name}"
    for sub in _walk_skipping_dropped_fks(node):
        found = _managed_name(sub)
        if found:
            return found
    return None


def _schema_names(node: ast.Node) -> list[str]:
    """Bare schema names a statement acts on (GRANT … ON SCHEMA auth, CREATE SCHEMA storage …)."""
    if isinstance(node, ast.CreateSchemaStmt):
        return [node.schemaname]
    if isinstance(node, ast.GrantStmt) and node.objtype == OT.OBJECT_SCHEMA:
        return [names(o) for o in node.objects or ()]
    if isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_SCHEMA:
        return [names(o) for o in node.objects or ()]
    if isinstance(node, (ast.CommentStmt, ast.AlterOwnerStmt)) and node.objtype == OT.OBJECT_SCHEMA:
        return [names(node.object)]
    if isinstance(node, ast.AlterDefaultPrivilegesStmt):
        return [names(s) for o in node.options or () if o.defname == "schemas" for s in o.arg]
    return []


def _walk_skipping_dropped_fks(value: object) -> Iterator[ast.Node]:
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _walk_skipping_dropped_fks(item)
    elif isinstance(value, ast.Node) and not is_dropped_fk(value):
        yield value
        for child in children(value):
            yield from _walk_skipping_dropped_fks(child)


def _managed_name(node: ast.Node) -> str | None:
    if isinstance(node, ast.RangeVar):
        return qual(node) if managed(node.schemaname) else None
    if isinstance(node, ast.ColumnRef):
        return None
    if isinstance(node, ast.FuncCall):
        parts = string_list(node.funcname) or []
        if len(parts) == 2 and parts[0] == AUTH_SCHEMA and parts[1] in AUTH_SHIM_FUNCTIONS:
            return None
        return ".".join(parts) if len(parts) >= 2 and managed(parts[0]) else None
    for name in _NAME_FIELDS:
        value = getattr(node, name, None) if name in type(node).__slots__ else None
        for candidate in ([value] if string_list(value) else value if isinstance(value, (tuple, list)) else []):
            parts = string_list(candidate)
            if parts and len(parts) >= 2 and managed(parts[0]):
                return ".".join(parts)
    return None


def _statement_object(node: ast.Node) -> str | None:
    if isinstance(node, (ast.CreatePolicyStmt, ast.AlterPolicyStmt)):
        return f"policy {node.policy_name!r} on {qual(node.table)}"
    for name in ("relation", "table", "view", "sequence"):
        value = getattr(node, name, None) if name in type(node).__slots__ else None
        if isinstance(value, ast.RangeVar):
            label = "trigger " + node.trigname + " on " if isinstance(node, ast.CreateTrigStmt) else ""
            return label + qual(value)
    if isinstance(node, ast.CreateFunctionStmt):
        return "function " + names(node.funcname)
    return None
