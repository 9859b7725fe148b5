"""Split SQL into parsed statements with positions, so every change can name `file:line`.

The whole text is parsed at once; only when that fails are the scanner's statement
boundaries used, so the statements that don't parse can be told apart from the ones that do.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from pglast import ast, enums, parser

from loaders.errors import MigrationError
from loaders.schema.clean.nodes import object_type

# How many scanner pieces may be re-joined when one fails to parse on its own: a
# `BEGIN ATOMIC … END` body contains semicolons the scanner splits on.
MERGE_WINDOW = 64
INVALID_FIX = "correct the statement, or pass --skip-invalid to skip it and record it in the report"


@dataclass(frozen=True)
class Piece:
    start: int
    text: str
    node: ast.Node | None
    error: parser.ParseError | None = None
    # Offset of the text the parser saw: node `location`s are relative to it.
    base: int = 0


class Lines:
    """Offset → 1-based line/column, for messages users can jump to."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def column(self, offset: int) -> int:
        return offset - self.starts[self.line(offset) - 1] + 1


def pieces(sql: str) -> list[Piece]:
    """Parse the whole text at once; only if that fails fall back to the scanner's statement
    boundaries so the invalid statements can be told apart from the valid ones."""
    try:
        raw = parser.parse_sql(sql)
    except parser.ParseError:
        return _pieces_one_by_one(sql)
    return [_from_raw(sql, 0, stmt) for stmt in raw]


def _from_raw(text: str, base: int, raw: ast.RawStmt) -> Piece:
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(text)
    return Piece(base + start, text[start:end], raw.stmt, base=base)


def _pieces_one_by_one(sql: str) -> list[Piece]:
    slices = parser.split(sql, with_parser=False, only_slices=True)
    found: list[Piece] = []
    i = 0
    while i < len(slices):
        first_error: parser.ParseError | None = None
        for j in range(i, min(i + MERGE_WINDOW, len(slices))):
            base = slices[i].start
            text = sql[base:slices[j].stop]
            try:
                raw = parser.parse_sql(text)
            except parser.ParseError as exc:
                first_error = first_error or exc
                continue
            found.extend(_from_raw(text, base, stmt) for stmt in raw)
            i = j + 1
            break
        else:
            found.append(_invalid_piece(sql[slices[i]], slices[i].start, first_error))
            i += 1
    return found


def _invalid_piece(text: str, start: int, error: parser.ParseError | None) -> Piece:
    """Anchor an unparsable piece at its first token (the scanner's piece starts at the
    comments before it) and give "at end of input" errors the piece's end as position."""
    tokens = [t for t in _scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    skip = tokens[0].start if tokens else 0
    message = error.args[0] if error else "syntax error"
    index = error.args[1] if error and len(error.args) > 1 and error.args[1] is not None else len(text.rstrip())
    return Piece(start + skip, text[skip:], None, parser.ParseError(message, index - skip))


def _scan(text: str) -> list[parser.Token]:
    try:
        return parser.scan(text)
    except parser.ParseError:
        return []


def parse_error(piece: Piece, file: str, lines: Lines) -> MigrationError:
    """`file:line:col: <parser message>` at the spot the parser stopped."""
    assert piece.error is not None
    at = piece.start + (piece.error.args[1] if len(piece.error.args) > 1 else 0)
    return MigrationError(f"{file}:{lines.line(at)}:{lines.column(at)}: {piece.error.args[0]}", INVALID_FIX)


def statement_kind(node: ast.Node) -> str:
    """`CreatePolicyStmt` → `CREATE POLICY`, with the object type for DROP/COMMENT/GRANT."""
    if isinstance(node, ast.GrantStmt):
        return "GRANT" if node.is_grant else "REVOKE"
    if isinstance(node, ast.TransactionStmt):
        return enums.TransactionStmtKind(node.kind).name.removeprefix("TRANS_STMT_").replace("_", " ")
    if isinstance(node, ast.DropStmt):
        return "DROP " + object_type(node.removeType)
    if isinstance(node, ast.CommentStmt):
        return "COMMENT ON " + object_type(node.objtype)
    if isinstance(node, ast.AlterTableStmt):
        return "ALTER " + object_type(node.objtype)
    if type(node) in _KIND_NAMES:
        return _KIND_NAMES[type(node)]
    if isinstance(node, ast.CreateFunctionStmt):
        return "CREATE PROCEDURE" if node.is_procedure else "CREATE FUNCTION"
    name = type(node).__name__.removesuffix("Stmt")
    words: list[str] = []
    for ch in name:
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.upper())
    return "".join(words)


_KIND_NAMES: dict[type, str] = {
    ast.CreateStmt: "CREATE TABLE", ast.CreateTrigStmt: "CREATE TRIGGER", ast.ViewStmt: "CREATE VIEW",
    ast.IndexStmt: "CREATE INDEX", ast.CreateSeqStmt: "CREATE SEQUENCE", ast.AlterSeqStmt: "ALTER SEQUENCE",
    ast.CreateEnumStmt: "CREATE TYPE", ast.CompositeTypeStmt: "CREATE TYPE", ast.AlterEnumStmt: "ALTER TYPE",
    ast.DefineStmt: "CREATE", ast.CreateTableAsStmt: "CREATE TABLE AS", ast.CreateEventTrigStmt: "CREATE EVENT TRIGGER",
    ast.VariableSetStmt: "SET", ast.SelectStmt: "SELECT", ast.InsertStmt: "INSERT", ast.UpdateStmt: "UPDATE",
    ast.DeleteStmt: "DELETE", ast.CreateDomainStmt: "CREATE DOMAIN", ast.RuleStmt: "CREATE RULE",
    ast.RenameStmt: "RENAME", ast.DoStmt: "DO", ast.CreateSchemaStmt: "CREATE SCHEMA",
}
