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
