"""Functions whose bodies cannot run on RDS, what depends on them, and `--skip`.

A function body is a string to the grammar, so without reading it a trigger calling
`net.http_post` is kept and every INSERT on its table fails after cutover. Each kept
function's body is read (`bodies.read_body`); one that calls an extension RDS lacks
(pg_net, http, pgjwt …), reads or writes a schema that stays on Supabase (auth.users,
storage.objects, vault …), calls a function removed before it, or is a Supabase Auth hook
(only Supabase Auth calls it) is removed, and so are its triggers, grants, comments and
owner changes — a trigger that cannot run is worse than none: it fails the app's writes.
Removing rather than keeping-and-flagging is deliberate: the report names each with what
the app must do instead, and a kept function that can never succeed would fail the schema
diff's promise that what is on the target works.
"""

from __future__ import annotations

from pglast import ast, enums

from loaders.schema.clean.bodies import BodyRefs, read_body
from loaders.schema.clean.context import RuleContext
from loaders.schema.clean.nodes import OT, declared, function_name, identity, qual, role, string_list
from loaders.schema.clean.rules.references import managed
from loaders.schema.extensions import extension_catalog, rds_offers
from loaders.supabase import AUTH_SCHEMA, AUTH_SHIM_FUNCTIONS

AUTH_HOOK_ROLE = "supabase_auth_admin"
# Languages every PostgreSQL has; any other is an extension of the same name (plv8, plperl …).
CORE_LANGUAGES = frozenset({"sql", "plpgsql", "c", "internal"})
AT = enums.AlterTableType
_FUNCTION_OBJECTS = (OT.OBJECT_FUNCTION, OT.OBJECT_PROCEDURE, OT.OBJECT_ROUTINE)


def skip(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    """`--skip NAME|FILE:LINE`: the user's own decision for what no rule covers."""
    if not ctx.state.skip:
        return node
    wanted = {ctx.where} | set(declared(node))
    wanted |= {d.removeprefix("public.") for d in declared(node)}
    entry = next((e for e in ctx.state.skip if e in wanted), None)
    if entry is None:
        return node
    ctx.state.skips_used.add(entry)
    ctx.record(_label(node) or entry, f"skipped on request (--skip {entry})", "skipped")
    if isinstance(node, ast.CreateFunctionStmt):
        ctx.state.removed_functions[function_name(node.funcname)] = f"skipped on request (--skip {entry})"
    return None


def _label(node: ast.Node) -> str | None:
    if isinstance(node, ast.CreateFunctionStmt):
        return "function " + identity(*function_name(node.funcname))
    if isinstance(node, ast.CreateTrigStmt):
        return f"trigger {node.trigname} on {qual(node.relation)}"
    found = declared(node)
    return found[0] if found else None


def function_body(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if not isinstance(node, ast.CreateFunctionStmt):
        return node
    name = function_name(node.funcname)
    refs = read_body(node)
    why = _cannot_run(name, refs, ctx)
    if why:
        reason, instead = why
        ctx.state.removed_functions[name] = reason
        ctx.record(f"function {identity(*name)}", f"{reason}; instead: {instead}", "dropped")
        return None
    if refs.language not in CORE_LANGUAGES:
        ctx.state.languages.setdefault(refs.language, []).append(f"{identity(*name)} ({ctx.where})")
    ctx.result.body_calls |= refs.calls
    ctx.result.auth_functions |= {n for s, n in refs.calls if s == AUTH_SCHEMA and n in AUTH_SHIM_FUNCTIONS}
    return node


def _cannot_run(name: tuple[str, str], refs: BodyRefs, ctx: RuleContext) -> tuple[str, str] | None:
    """(why the function cannot run on the target, what the app must do instead), or None."""
    if name in ctx.state.auth_hooks:
        return (f"Supabase Auth hook (granted to {AUTH_HOOK_ROLE}): only Supabase Auth calls it",
                "move the hook's logic to the auth provider the app uses after the move")
    if refs.language not in CORE_LANGUAGES and not rds_offers(refs.language):
        return f"written in {refs.language}, which Amazon RDS does not offer", "rewrite it in PL/pgSQL or SQL"
    catalog = extension_catalog()
    for schema, fn in sorted(refs.calls, key=str):
        if schema == AUTH_SCHEMA and fn in AUTH_SHIM_FUNCTIONS:
            continue
        missing = catalog.by_name(schema, fn)
        if missing:
            return (f"calls {_q(schema, fn)} ({missing.name}, which Amazon RDS does not offer)", missing.instead)
        if managed(schema):
            return f"calls {schema}.{fn}, which stays on Supabase", "do this in the application"
        removed = ctx.state.removed_functions.get((schema or "public", fn))
        if removed:
            return f"calls {identity(schema, fn)}, removed too ({removed})", "replace both in the application"
    for schema, type_name in sorted(refs.types, key=str):
        missing = catalog.by_name(schema, type_name, type_name=True)
        if missing:
            return (f"uses type {_q(schema, type_name)} ({missing.name}, which Amazon RDS does not offer)",
                    missing.instead)
    for verb, relations in (("writes", refs.writes), ("reads", refs.reads)):
        for schema, rel in sorted(relations, key=str):
            if managed(schema):
                return (f"{verb} {schema}.{rel}, which stays on Supabase",
                        "do this through the auth/storage service's API from the application")
    return None


def _q(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def function_dependents(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    """Triggers, grants, comments and ALTERs of a removed function go with it, and so do the
    ENABLE/DISABLE TRIGGER commands and comments of its removed triggers."""
    removed = ctx.state.removed_functions
    if not removed:
        return node
    if isinstance(node, ast.CreateTrigStmt):
        fn = function_name(node.funcname)
        if fn in removed:
            ctx.state.removed_triggers.add((identity(node.relation.schemaname, node.relation.relname), node.trigname))
            ctx.record(f"trigger {node.trigname} on {qual(node.relation)}",
                       f"calls function {identity(*fn)}, removed: {removed[fn]}; a trigger that cannot run "
                       "would fail every write to the table", "dropped")
            return None
        return node
    if isinstance(node, ast.AlterTableStmt) or (isinstance(node, ast.CommentStmt) and node.objtype == OT.OBJECT_TRIGGER):
        return _removed_trigger_commands(node, ctx)
    objects = _function_objects(node)
    if not objects:
        return node
    gone = [o for o in objects if function_name(o.objname) in removed]
    if not gone:
        return node
    what = ", ".join(identity(*function_name(o.objname)) for o in gone)
    if isinstance(node, ast.GrantStmt) and len(gone) < len(objects):
        node.objects = tuple(o for o in objects if o not in gone)
        ctx.modified = True
        ctx.record(f"function {what}", "the function was removed (see above)", "modified")
        return node
    ctx.record(f"function {what}", "the function was removed (see above)", "dropped")
    return None


_TRIGGER_TOGGLES = {AT.AT_EnableTrig, AT.AT_EnableAlwaysTrig, AT.AT_EnableReplicaTrig, AT.AT_DisableTrig}


def _removed_trigger_commands(node: ast.AlterTableStmt | ast.CommentStmt, ctx: RuleContext) -> ast.Node | None:
    gone = ctx.state.removed_triggers
    if isinstance(node, ast.CommentStmt):
        parts = string_list(node.object)
        if parts and (identity(*(parts[-3:-1] if len(parts) > 2 else [None, parts[-2]])), parts[-1]) in gone:
            ctx.record(f"trigger {parts[-1]}", "the trigger was removed (see above)", "dropped")
            return None
        return node
    table = identity(node.relation.schemaname, node.relation.relname)
    cmds = list(node.cmds or ())
    kept = [c for c in cmds if not (c.subtype in _TRIGGER_TOGGLES and (table, c.name) in gone)]
    if len(kept) == len(cmds):
        return node
    action = "modified" if kept else "dropped"
    ctx.record(f"{qual(node.relation)} enable/disable of removed trigger(s)", "the trigger was removed (see above)", action)
    if not kept:
        return None
    node.cmds = tuple(kept)
    ctx.modified = True
    return node


def _function_objects(node: ast.Node) -> list[ast.ObjectWithArgs]:
    if isinstance(node, ast.GrantStmt) and node.objtype in _FUNCTION_OBJECTS:
        return [o for o in node.objects or () if isinstance(o, ast.ObjectWithArgs)]
    if isinstance(node, (ast.CommentStmt, ast.AlterOwnerStmt)) and node.objtype in _FUNCTION_OBJECTS:
        return [node.object] if isinstance(node.object, ast.ObjectWithArgs) else []
    if isinstance(node, ast.AlterFunctionStmt):
        return [node.func]
    return []


def auth_hooks(nodes: list[ast.Node]) -> set[tuple[str, str]]:
    """Functions granted to Supabase Auth's role: Auth hooks, which only Supabase Auth calls.
    Found before cleaning, because the grant comes after the function it names."""
    found: set[tuple[str, str]] = set()
    for node in nodes:
        if (isinstance(node, ast.GrantStmt) and node.is_grant and node.objtype in _FUNCTION_OBJECTS
                and any(role(g) == AUTH_HOOK_ROLE for g in node.grantees or ())):
            found |= {function_name(o.objname) for o in node.objects or () if isinstance(o, ast.ObjectWithArgs)}
    return found

