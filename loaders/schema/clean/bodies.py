"""Read function bodies: what a function calls, reads, writes and which types it names.

A body is a string to the SQL grammar, so a schema that parses can still fail at the first
INSERT after cutover (a trigger calling `net.http_post`). PL/pgSQL bodies are parsed with
pglast's `parse_plpgsql` (the server's own PL/pgSQL grammar) and every embedded SQL
expression with `parse_sql`; SQL-language bodies with `parse_sql`, or straight from the AST
for `BEGIN ATOMIC`. What `parse_plpgsql` cannot handle (it refuses variables declared with a
schema-qualified type) falls back to the SQL scanner's tokens: qualified names and calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pglast
from pglast import ast, parser
from pglast.stream import RawStream

from loaders.schema.clean.nodes import string_list, walk_nodes

Name = tuple[str | None, str]  # (schema or None when unqualified, name)

# parseMode of a PLpgSQL_expr (PostgreSQL's RawParseMode): 0 a whole statement, 1 a type
# name, 2 an expression, 3-5 an assignment `target := expression`.
_STATEMENT, _TYPE, _EXPRESSION = 0, 1, 2
_PLAIN_LANGUAGES = {"sql", "plpgsql"}


@dataclass
class BodyRefs:
    """Everything a body names. `complete` is False when part of it could only be scanned."""

    language: str
    calls: set[Name] = field(default_factory=set)
    reads: set[Name] = field(default_factory=set)
    writes: set[Name] = field(default_factory=set)
    types: set[Name] = field(default_factory=set)
    dynamic_sql: bool = False
    complete: bool = True

    def add_tree(self, tree: object) -> None:
        for node in walk_nodes(tree):
            if isinstance(node, ast.FuncCall):
                self.calls.add(_split(string_list(node.funcname)))
            elif isinstance(node, ast.RangeVar):
                self.reads.add((node.schemaname, node.relname))
            elif isinstance(node, ast.TypeName):
                parts = string_list(node.names)
                if parts and parts[0] != "pg_catalog":
                    self.types.add(_split(parts))
            if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
                self.writes.add((node.relation.schemaname, node.relation.relname))


def _split(parts: list[str] | None) -> Name:
    parts = parts or ["?"]
    return (parts[-2] if len(parts) > 1 else None), parts[-1]


def function_language(node: ast.CreateFunctionStmt) -> str:
    for option in node.options or ():
        if option.defname == "language":
            return option.arg.sval.lower()
    return "sql"


def _body_text(node: ast.CreateFunctionStmt) -> str | None:
    for option in node.options or ():
        if option.defname == "as":
            values = string_list(option.arg)
            return values[0] if values else None
    return None


def read_body(node: ast.CreateFunctionStmt) -> BodyRefs:
    """What the function's body references; languages other than SQL and PL/pgSQL are
    returned empty (their bodies are not SQL), with only the language recorded."""
    refs = BodyRefs(function_language(node))
    if refs.language not in _PLAIN_LANGUAGES:
        return refs
    if node.sql_body is not None:
        refs.add_tree(node.sql_body)
        return refs
    body = _body_text(node)
    if body is None:
        return refs
    if refs.language == "sql":
        try:
            refs.add_tree(parser.parse_sql(body))
        except parser.ParseError:
            _scan_into(refs, body)
        return refs
    try:
        tree = pglast.parse_plpgsql(RawStream()(node))
    except parser.ParseError:
        _scan_into(refs, body)
        return refs
    for query, mode in _plpgsql_expressions(tree, refs):
        try:
            refs.add_tree(parser.parse_sql(_as_statement(query, mode)))
        except parser.ParseError:
            _scan_into(refs, query)
    return refs


def _plpgsql_expressions(tree: object, refs: BodyRefs) -> Iterator[tuple[str, int]]:
    if isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_expressions(item, refs)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            if key == "PLpgSQL_expr" and isinstance(value, dict) and "query" in value:
                yield value["query"], value.get("parseMode", _STATEMENT)
                continue
            if key == "PLpgSQL_stmt_dynexecute":
                refs.dynamic_sql = True
            if key == "PLpgSQL_type" and isinstance(value, dict) and "typname" in value:
                yield value["typname"], _TYPE
                continue
            yield from _plpgsql_expressions(value, refs)


def _as_statement(query: str, mode: int) -> str:
    """A PL/pgSQL expression as a statement `parse_sql` accepts: expressions and type names
    are wrapped in a SELECT, an assignment keeps what follows its `:=` token."""
    if mode == _STATEMENT:
        return query
    if mode == _TYPE:
        return f"SELECT NULL::{query}"
    if mode == _EXPRESSION:
        return f"SELECT {query}"
    assign = next((t for t in parser.scan(query) if t.name == "COLON_EQUALS" or t.name == "ASCII_61"), None)
    return f"SELECT {query[assign.end + 1:]}" if assign else f"SELECT {query}"


def _scan_into(refs: BodyRefs, text: str) -> None:
    """Token fallback: `a.b` is a qualified name, a name before `(` a call. Conservative on
    purpose: it only widens what is looked up in the lists of missing schemas/extensions."""
    refs.complete = False
    try:
        tokens = [t for t in parser.scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    except parser.ParseError:
        return
    words = [text[t.start:t.end + 1] if t.name == "IDENT" or t.kind != "NO_KEYWORD" else None for t in tokens]
    for i, word in enumerate(words):
        if word is None:
            continue
        qualified = i + 2 < len(words) and tokens[i + 1].name == "ASCII_46" and words[i + 2] is not None
        if qualified:
            name: Name = (word.lower(), words[i + 2].lower())  # type: ignore[union-attr]
            follow = tokens[i + 3].name if i + 3 < len(tokens) else ""
            (refs.calls if follow == "ASCII_40" else refs.reads).add(name)
            refs.types.add(name)
        elif i + 1 < len(tokens) and tokens[i + 1].name == "ASCII_40" and (i == 0 or tokens[i - 1].name != "ASCII_46"):
            refs.calls.add((None, word.lower()))
