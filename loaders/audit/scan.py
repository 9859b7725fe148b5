"""Step 1: find every supabase-js call in a source tree with the real TypeScript/TSX parser.

A call is recognised by its shape, not by the client variable's name: `X.from('t')` followed by a
query-builder method is a table, `X.storage.from('b')` a bucket, `X.auth.*` Auth, `X.channel(…)`
Realtime, `X.functions.invoke(…)` an Edge Function, `X.rpc('f')` a database function.
`Array.from`/`Buffer.from` and friends never qualify: their receivers are JavaScript globals and
nothing chains a query-builder method onto them.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import tree_sitter
import tree_sitter_typescript

from loaders.audit.model import ArrayValue, Expr, FoundCall, Method, ObjectValue, Template, Value

EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mts", ".cts", ".mjs", ".cjs")
SKIP_DIRS = {"node_modules", ".git", "dist", "build", ".next", "coverage", ".turbo", ".vercel"}
# Receivers whose `.from()` is JavaScript's own (or a well-known library's), never a table.
NOT_CLIENTS = {"Array", "Buffer", "Object", "String", "Set", "Map", "Promise", "Date", "Uint8Array",
               "Uint16Array", "Uint32Array", "Int8Array", "Int16Array", "Int32Array", "Float32Array",
               "Float64Array", "BigInt64Array", "BigUint64Array", "Uint8ClampedArray", "Iterator",
               "Observable", "Readable", "Stream", "Rx", "rxjs", "Blob", "File", "Intl", "AsyncIterator"}
BUILDER_METHODS = {"select", "insert", "update", "upsert", "delete"}
WRAPPERS = {"await_expression", "non_null_expression", "parenthesized_expression"}
REALTIME_METHODS = {"channel", "removeChannel", "removeAllChannels", "getChannels"}
AUTH_NAMESPACES = {"admin", "mfa"}
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "v": "\v"}


@lru_cache(maxsize=2)
def parser_for(tsx: bool) -> tree_sitter.Parser:
    language = tree_sitter_typescript.language_tsx() if tsx else tree_sitter_typescript.language_typescript()
    return tree_sitter.Parser(tree_sitter.Language(language))


def source_files(paths: Iterable[Path]) -> list[Path]:
    """Every JS/TS file under the given paths, in a stable order, skipping dependency/build folders."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
            continue
        for file in sorted(path.rglob("*")):
            if file.suffix in EXTENSIONS and file.is_file() and not SKIP_DIRS.intersection(file.parts) \
                    and not file.name.endswith(".d.ts"):
                found.append(file)
    return found


def scan_paths(paths: Iterable[Path], *, root: Path | None = None) -> list[FoundCall]:
    calls: list[FoundCall] = []
    for file in source_files(paths):
        name = str(file.relative_to(root)) if root and file.is_relative_to(root) else str(file)
        calls += scan_source(file.read_bytes(), name, tsx=file.suffix not in (".ts", ".mts", ".cts"))
    return calls


def scan_source(source: bytes, file: str, *, tsx: bool = True) -> list[FoundCall]:
    tree = parser_for(tsx).parse(source)
    constants = string_constants(tree.root_node)
    calls = [found for node in call_nodes(tree.root_node)
             if (found := classify(node, file, constants)) is not None]
    return sorted(calls, key=lambda c: c.line)


def call_nodes(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "call_expression":
            yield node
        stack.extend(node.named_children)


def text(node: tree_sitter.Node) -> str:
    return node.text.decode("utf-8", "replace")


def unwrap(node: tree_sitter.Node | None) -> tree_sitter.Node | None:
    while node is not None and node.type in WRAPPERS | {"as_expression", "satisfies_expression"}:
        node = node.named_children[0] if node.named_children else None
    return node


def member_parts(call: tree_sitter.Node) -> tuple[tree_sitter.Node, str, tree_sitter.Node] | None:
    """(receiver, method name, property node) of `receiver.method(…)`, or None for a plain call."""
    function = unwrap(call.child_by_field_name("function"))
    if function is None or function.type != "member_expression":
        return None
    prop = function.child_by_field_name("property")
    receiver = unwrap(function.child_by_field_name("object"))
    if prop is None or receiver is None:
        return None
    return receiver, text(prop), prop


def property_name(node: tree_sitter.Node) -> str | None:
    """`x.storage` → 'storage'; anything else → None."""
    if node.type == "member_expression":
        prop = node.child_by_field_name("property")
        return text(prop) if prop is not None else None
    return None


def classify(call: tree_sitter.Node, file: str, constants: dict[str, str]) -> FoundCall | None:
    parts = member_parts(call)
    if parts is None:
        return None
    receiver, method, prop = parts
    line = prop.start_point[0] + 1
    args = arguments(call, constants)
    receiver_name = property_name(receiver)
    if method == "from" and receiver_name == "storage":
        return found(call, file, line, "storage", args[0] if args else None, constants)
    if method == "from":
        if receiver.type == "identifier" and text(receiver) in NOT_CLIENTS:
            return None
        chain, _ = chain_above(call, constants)
        stored = stored_variable(top_of_chain(call))
        if not (chain and chain[0].name in BUILDER_METHODS) and stored is None:
            return None
        result = found(call, file, line, "table", args[0] if args else None, constants)
        result.schema = schema_of(receiver, constants)
        return result
    if method == "rpc":
        return found(call, file, line, "rpc", args[0] if args else None, constants, first=Method("rpc", args))
    if method == "invoke" and receiver_name == "functions":
        return found(call, file, line, "functions", args[0] if args else None, constants,
                     first=Method("invoke", args))
    if receiver_name == "auth" or (receiver_name in AUTH_NAMESPACES and receiver.type == "member_expression"
                                   and property_name(unwrap(receiver.child_by_field_name("object"))) == "auth"):
        operation = method if receiver_name == "auth" else f"{receiver_name}.{method}"
        return found(call, file, line, "auth", None, constants, first=Method(operation, args))
    if method in REALTIME_METHODS and receiver.type in ("identifier", "member_expression"):
        if method == "channel" and not (args and isinstance(args[0], (str, Template, Expr))):
            return None
        return found(call, file, line, "realtime", args[0] if args and method == "channel" else None, constants,
                     first=Method(method, args))
    return None


def schema_of(receiver: tree_sitter.Node, constants: dict[str, str]) -> str:
    """`supabase.schema('billing').from('t')` reads table `billing.t`."""
    if receiver.type == "call_expression":
        parts = member_parts(receiver)
        if parts and parts[1] == "schema":
            args = arguments(receiver, constants)
            if args and isinstance(args[0], str):
                return args[0]
    return "public"


def found(call: tree_sitter.Node, file: str, line: int, kind: str, name: Value, constants: dict[str, str],
          *, first: Method | None = None) -> FoundCall:
    chain, top = chain_above(call, constants)
    if first is not None:
        chain.insert(0, first)
    snippet = " ".join(text(top).split())
    return FoundCall(file=file, line=line, kind=kind, name=name, chain=chain,
                     source=snippet if len(snippet) <= 240 else snippet[:237] + "...",
                     stored_in=stored_variable(top) if kind == "table" else None)


def chain_above(call: tree_sitter.Node, constants: dict[str, str]) -> tuple[list[Method], tree_sitter.Node]:
    """The methods chained onto `call` (`.select(…).eq(…)…`) and the outermost call of the chain."""
    chain: list[Method] = []
    node = call
    while True:
        member = node.parent
        while member is not None and member.type in WRAPPERS and member.named_children[0] == node:
            node, member = member, member.parent
        if member is None or member.type != "member_expression" or member.child_by_field_name("object") != node:
            return chain, node
        outer = member
        while outer.parent is not None and outer.parent.type in WRAPPERS:
            outer = outer.parent
        parent = outer.parent
        if parent is None or parent.type != "call_expression" or parent.child_by_field_name("function") != outer:
            return chain, node
        chain.append(Method(text(member.child_by_field_name("property")), arguments(parent, constants)))
        node = parent


def top_of_chain(call: tree_sitter.Node) -> tree_sitter.Node:
    return chain_above(call, {})[1]


def stored_variable(top: tree_sitter.Node) -> str | None:
    """The variable a builder (not its awaited result) is kept in: later statements may extend it."""
    node = top
    while node.parent is not None and node.parent.type in {"parenthesized_expression", "as_expression",
                                                            "non_null_expression", "satisfies_expression"}:
        node = node.parent
    parent = node.parent
    if parent is None:
        return None
    if parent.type == "variable_declarator" and parent.child_by_field_name("value") == node:
        name = parent.child_by_field_name("name")
        return text(name) if name is not None and name.type == "identifier" else None
    if parent.type == "assignment_expression" and parent.child_by_field_name("right") == node:
        return text(parent.child_by_field_name("left"))
    return None


def arguments(call: tree_sitter.Node, constants: dict[str, str]) -> tuple[Value, ...]:
    args = call.child_by_field_name("arguments")
    if args is None:
        return ()
    return tuple(value(arg, constants) for arg in args.named_children if arg.type != "comment")


def string_value(node: tree_sitter.Node) -> str:
    out: list[str] = []
    for child in node.named_children:
        if child.type == "escape_sequence":
            raw = text(child)[1:]
            out.append(ESCAPES.get(raw, None) or (codecs.decode("\\" + raw, "unicode_escape") if raw[:1] in "xu" else raw))
        elif child.type == "string_fragment":
            out.append(text(child))
    return "".join(out)


def value(node: tree_sitter.Node, constants: dict[str, str]) -> Value:
    """A literal as its Python value; anything computed as `Expr(source text)`."""
    kind = node.type
    if kind == "string":
        return string_value(node)
    if kind == "template_string":
        parts: list[str | Expr] = []
        for child in node.named_children:
            if child.type == "template_substitution":
                inner = child.named_children[0] if child.named_children else child
                parts.append(Expr(text(inner)))
            elif child.type == "escape_sequence":
                parts.append(string_value_of_escape(child))
            else:
                parts.append(text(child))
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
        return Template(tuple(parts))
    if kind == "number":
        raw = text(node).replace("_", "")
        try:
            return int(raw, 0)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                return Expr(raw)
    if kind in ("true", "false"):
        return kind == "true"
    if kind in ("null", "undefined"):
        return None
    if kind == "identifier" and text(node) in constants:
        return constants[text(node)]
    if kind == "identifier" and text(node) == "undefined":
        return None
    if kind == "object":
        return object_value(node, constants)
    if kind == "array":
        return ArrayValue(tuple(value(child, constants) for child in node.named_children if child.type != "comment"))
    if kind == "binary_expression" and text(node.child_by_field_name("operator")) == "+":
        left = value(node.child_by_field_name("left"), constants)
        right = value(node.child_by_field_name("right"), constants)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
    if kind in WRAPPERS | {"as_expression", "satisfies_expression"} and node.named_children:
        inner = value(node.named_children[0], constants)
        return inner if not isinstance(inner, Expr) else Expr(text(node))
    return Expr(text(node))


def string_value_of_escape(node: tree_sitter.Node) -> str:
    raw = text(node)[1:]
    return ESCAPES.get(raw, raw)


def object_value(node: tree_sitter.Node, constants: dict[str, str]) -> ObjectValue:
    items: list[tuple[str, Value]] = []
    spread: list[str] = []
    for child in node.named_children:
        if child.type == "pair":
            key = child.child_by_field_name("key")
            val = child.child_by_field_name("value")
            if key is None or val is None:
                continue
            if key.type == "computed_property_name":
                spread.append(text(key))
                continue
            name = string_value(key) if key.type == "string" else text(key)
            items.append((name, value(val, constants)))
        elif child.type == "shorthand_property_identifier":
            items.append((text(child), Expr(text(child))))
        elif child.type == "spread_element":
            spread.append(text(child))
        elif child.type == "method_definition":
            spread.append(text(child.child_by_field_name("name")))
    return ObjectValue(tuple(items), tuple(spread))


def string_constants(root: tree_sitter.Node) -> dict[str, str]:
    """Top-level `const NAME = 'literal'` (or `as const`): select lists are often kept in one."""
    constants: dict[str, str] = {}
    for statement in root.named_children:
        node = statement.named_children[0] if statement.type == "export_statement" and statement.named_children else statement
        if node.type != "lexical_declaration" or not text(node).startswith("const"):
            continue
        for declarator in node.named_children:
            if declarator.type != "variable_declarator":
                continue
            name, val = declarator.child_by_field_name("name"), declarator.child_by_field_name("value")
            if name is not None and val is not None and name.type == "identifier":
                literal = value(val, constants)
                if isinstance(literal, str):
                    constants[text(name)] = literal
    return constants
