"""Supabase platform pieces: Realtime's publication, platform extensions, event triggers,
the `extensions` schema, and calls into the auth functions the shim provides."""

from __future__ import annotations

from pglast import ast

from loaders.schema.clean.context import RuleContext
from loaders.schema.clean.nodes import OT, names, string_list, walk_nodes
from loaders.schema.extensions import rds_offers
from loaders.supabase import AUTH_SCHEMA, EXTENSIONS_SCHEMA, REALTIME_PUBLICATION


def publication(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if isinstance(node, (ast.CreatePublicationStmt, ast.AlterPublicationStmt)):
        pubs = {node.pubname}
    elif isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_PUBLICATION:
        pubs = {names(o) for o in node.objects}
    else:
        return node
    if REALTIME_PUBLICATION in pubs:
        ctx.record(f"publication {REALTIME_PUBLICATION}",
                   "Supabase Realtime's publication; Realtime stays on Supabase", "dropped")
        return None
    return node


def extension(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    if isinstance(node, ast.CommentStmt) and node.objtype == OT.OBJECT_EXTENSION:
        ctx.record(f"extension {names(node.object)}",
                   "an extension's comment comes with the extension and only its owner may change it", "dropped")
        return None
    if isinstance(node, (ast.AlterExtensionStmt, ast.AlterExtensionContentsStmt)):
        extnames = [node.extname]
    elif isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_EXTENSION:
        extnames = [names(o) for o in node.objects]
    elif isinstance(node, ast.CreateExtensionStmt):
        extnames = [node.extname]
    else:
        return node
    missing = [n for n in extnames if not rds_offers(n)]
    if missing:
        ctx.record("extension " + ", ".join(missing),
                   "extension not offered by Amazon RDS (Supabase platform extension)", "dropped")
        return None
    if isinstance(node, ast.CreateExtensionStmt):
        return _place_extension(node, ctx)
    return node


def _place_extension(node: ast.CreateExtensionStmt, ctx: RuleContext) -> ast.Node:
    """Keep the extension; without an explicit schema put it in `extensions` as Supabase
    does, so `extensions.uuid_generate_v4()` resolves on the target too."""
    options = list(node.options or ())
    has_schema = any(o.defname == "schema" for o in options)
    if has_schema and node.if_not_exists:
        return node
    if not has_schema and node.extname != "plpgsql":
        options.append(ast.DefElem(defname="schema", arg=ast.String(sval=EXTENSIONS_SCHEMA)))
        ctx.record(f"extension {node.extname}",
                   f"created in schema {EXTENSIONS_SCHEMA} like on Supabase, so qualified references resolve", "rewritten")
    node.options = tuple(options) or None
    node.if_not_exists = True
    ctx.modified = True
    return node


def event_trigger(node: ast.Node, ctx: RuleContext) -> ast.Node | None:
    is_event = isinstance(node, (ast.CreateEventTrigStmt, ast.AlterEventTrigStmt)) or (
        isinstance(node, (ast.DropStmt, ast.CommentStmt))
        and (node.removeType if isinstance(node, ast.DropStmt) else node.objtype) == OT.OBJECT_EVENT_TRIGGER
    )
    if not is_event:
        return node
    name = node.trigname if hasattr(node, "trigname") else names(getattr(node, "objects", None) or node.object)
    ctx.record(f"event trigger {name}", "event triggers need a superuser (Supabase platform hooks)", "dropped")
    return None


def extensions_schema(node: ast.Node, ctx: RuleContext) -> ast.Node:
    if isinstance(node, ast.CreateSchemaStmt) and node.schemaname == EXTENSIONS_SCHEMA and not node.if_not_exists:
        node.if_not_exists = True
        ctx.modified = True
        ctx.record(f"schema {EXTENSIONS_SCHEMA}", "the tool creates schema extensions on the target first", "rewritten")
    return node


def auth_calls(node: ast.Node, ctx: RuleContext) -> ast.Node:
    for sub in walk_nodes(node):
        if isinstance(sub, ast.FuncCall):
            parts = string_list(sub.funcname)
            if parts and len(parts) == 2 and parts[0] == AUTH_SCHEMA:
                ctx.result.auth_functions.add(parts[1])
    return node
