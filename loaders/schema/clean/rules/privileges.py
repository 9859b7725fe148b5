"""Grants, ownership and roles that name Supabase's platform roles, absent on RDS."""

from __future__ import annotations

from pglast import ast, enums

from loaders.schema.clean.context import RuleContext
from loaders.schema.clean.nodes import names, object_type, role
from loaders.supabase import API_ROLES, PLATFORM_ROLES

OWNER_REASON = "owner is a Supabase role; objects belong to the user applying the schema"


def grant(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if isinstance(node, ast.AlterDefaultPrivilegesStmt):
        return _default_privileges(node, ctx)
    if isinstance(node, ast.GrantRoleStmt):
        return _role_membership(node, ctx)
    if isinstance(node, ast.GrantStmt):
        return _object_grant(node, ctx)
    return node


def _default_privileges(node: ast.AlterDefaultPrivilegesStmt, ctx: RuleContext) -> ast.Node | None:
    for option in node.options or ():
        owners = {role(r) for r in option.arg or ()} if option.defname == "roles" else set()
        if owners & PLATFORM_ROLES:
            ctx.record("default privileges for " + ", ".join(sorted(owners & PLATFORM_ROLES)),
                       "default privileges of a Supabase role", "dropped")
            return None
    inner = grant(node.action, ctx)
    if inner is None:
        return None
    node.action = inner
    return node


def _role_membership(node: ast.GrantRoleStmt, ctx: RuleContext) -> ast.Node | None:
    members = {p.priv_name for p in node.granted_roles or ()} | {role(r) for r in node.grantee_roles or ()}
    platform = sorted(n for n in members if n in PLATFORM_ROLES)
    if platform:
        ctx.record("role membership " + ", ".join(platform), "names Supabase roles", "dropped")
        return None
    return node


def _object_grant(node: ast.GrantStmt, ctx: RuleContext) -> ast.Node | None:
    keep_roles = API_ROLES if ctx.rls == "shim" else frozenset()
    grantees = node.grantees or ()
    kept = [g for g in grantees if role(g) not in PLATFORM_ROLES or role(g) in keep_roles]
    if len(kept) == len(grantees):
        ctx.result.roles_needed |= {role(g) for g in grantees} & API_ROLES
        return node
    removed = sorted(role(g) for g in grantees if g not in kept)
    action = "modified" if kept else "dropped"
    what = " ".join(filter(None, [object_type(node.objtype).lower(), names(node.objects or ())]))
    if node.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
        what = f"all {object_type(node.objtype).lower()}s in schema {names(node.objects or ())}"
    preposition = "to" if node.is_grant else "from"
    ctx.record(f"{what} {preposition} {', '.join(removed)}",
               "privileges for Supabase roles; --app-role gets its own (DML on tables, sequences, EXECUTE on "
               "functions, USAGE on schemas)", action)
    if not kept:
        return None
    ctx.result.roles_needed |= {role(g) for g in kept} & API_ROLES
    node.grantees = tuple(kept)
    ctx.modified = True
    return node


def owner(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if isinstance(node, ast.AlterOwnerStmt) and role(node.newowner) in PLATFORM_ROLES:
        ctx.record(f"{names(node.object)} owner {role(node.newowner)}", OWNER_REASON, "dropped")
        return None
    if isinstance(node, ast.CreateSchemaStmt) and role(node.authrole) in PLATFORM_ROLES:
        ctx.record(f"schema {node.schemaname} authorization {role(node.authrole)}", OWNER_REASON, "modified")
        node.authrole = None
        ctx.modified = True
    return node


def roles(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if isinstance(node, (ast.CreateRoleStmt, ast.DropRoleStmt, ast.AlterRoleStmt, ast.AlterRoleSetStmt)):
        named = {node.role} if isinstance(node, ast.CreateRoleStmt) else (
            {role(r) for r in node.roles} if isinstance(node, ast.DropRoleStmt) else {role(node.role)})
        platform = sorted(n for n in named if n in PLATFORM_ROLES)
        if platform:
            ctx.record("role " + ", ".join(platform),
                       "Supabase platform role; --rls shim creates the API roles on the target", "dropped")
            return None
    return node
