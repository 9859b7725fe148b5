"""Small readers over pglast's AST shared by the rules: names, roles, a generic walk."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast, enums

OT = enums.ObjectType


def object_type(value: int) -> str:
    return OT(value).name.removeprefix("OBJECT_").replace("_", " ")


def qual(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def names(items: object) -> str:
    if isinstance(items, ast.String):
        return items.sval
    if isinstance(items, ast.ObjectWithArgs):
        return names(items.objname) + "()"
    if isinstance(items, ast.TypeName):
        return names(items.names)
    if isinstance(items, (tuple, list)):
        return ".".join(names(i) for i in items)
    if isinstance(items, ast.RangeVar):
        return qual(items)
    return str(items)


def string_list(items: object) -> list[str] | None:
    if isinstance(items, (tuple, list)) and items and all(isinstance(i, ast.String) for i in items):
        return [i.sval for i in items]
    return None


def role(spec: object) -> str | None:
    if isinstance(spec, ast.RoleSpec) and spec.roletype == enums.RoleSpecType.ROLESPEC_CSTRING:
        return spec.rolename
    return None


def children(node: ast.Node) -> Iterator[object]:
    for name in type(node).__slots__:
        yield getattr(node, name, None)


def walk_nodes(value: object) -> Iterator[ast.Node]:
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from walk_nodes(item)
    elif isinstance(value, ast.Node):
        yield value
        for child in children(value):
            yield from walk_nodes(child)


def identity(schema: str | None, name: str) -> str:
    """Unquoted `schema.name`, unqualified names taken as `public` (the default search_path)."""
    return f"{schema or 'public'}.{name}"


def function_name(parts: object) -> tuple[str, str]:
    found = string_list(parts) or ["?"]
    return (found[-2] if len(found) > 1 else "public"), found[-1]


def declared(node: ast.Node) -> tuple[str, ...]:
    """Identities of what a statement creates (for "removed on purpose" in the diff)."""
    if isinstance(node, (ast.CreateStmt, ast.CreateTableAsStmt, ast.ViewStmt, ast.CreateSeqStmt)):
        rv = node.into.rel if isinstance(node, ast.CreateTableAsStmt) else (
            node.view if isinstance(node, ast.ViewStmt) else node.sequence if isinstance(node, ast.CreateSeqStmt)
            else node.relation)
        return (identity(rv.schemaname, rv.relname),)
    if isinstance(node, ast.CreateFunctionStmt):
        return (identity(*function_name(node.funcname)),)
    if isinstance(node, ast.CreateTrigStmt):
        return (f"{identity(node.relation.schemaname, node.relation.relname)} trigger {node.trigname}",)
    if isinstance(node, ast.IndexStmt) and node.idxname:
        return (identity(node.relation.schemaname, node.idxname),)
    return ()
