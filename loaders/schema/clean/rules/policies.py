"""Row-level-security policies: stripped, or kept for the auth shim (`--rls shim`)."""

from __future__ import annotations

from pglast import ast

from loaders.schema.clean.context import RuleContext
from loaders.schema.clean.nodes import OT, names, qual, role
from loaders.supabase import API_ROLES, PLATFORM_ROLES


def _policy_target(node: ast.Node) -> tuple[str, set[str]] | None:
    if isinstance(node, (ast.CreatePolicyStmt, ast.AlterPolicyStmt)):
        return f"policy {node.policy_name!r} on {qual(node.table)}", {r for r in map(role, node.roles or ()) if r}
    if isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_POLICY:
        return "policy " + ", ".join(names(o) for o in node.objects), set()
    if isinstance(node, ast.RenameStmt) and node.renameType == OT.OBJECT_POLICY:
        return f"policy {node.subname!r} on {qual(node.relation)}", set()
    if isinstance(node, ast.CommentStmt) and node.objtype == OT.OBJECT_POLICY:
        return "policy " + names(node.object), set()
    return None


def policy(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    target = _policy_target(node)
    if target is None:
        return node
    obj, roles = target
    if ctx.rls == "strip":
        ctx.record(obj, "row level security policies are stripped (--rls strip)", "dropped")
        return None
    foreign = sorted((roles & PLATFORM_ROLES) - API_ROLES)
    if foreign:
        ctx.record(obj, f"names Supabase role(s) {', '.join(foreign)}, absent on the target", "dropped")
        return None
    ctx.result.roles_needed |= roles & API_ROLES
    return node
