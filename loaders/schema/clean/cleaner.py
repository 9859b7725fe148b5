"""Run the rules over every statement of one file and keep the statement byte for byte
unless a rule changed its AST, in which case it is re-printed with `RawStream`."""

from __future__ import annotations

from pglast.stream import RawStream

from loaders.errors import MigrationError
from loaders.schema.clean.context import CleanRun, RuleContext
from loaders.schema.clean.model import RLS_MODES, CleanResult, CleanStatement
from loaders.schema.clean.parse import Lines, Piece, parse_error, pieces, statement_kind
from loaders.schema.clean.rules import RULES


def _feed(run: CleanRun, piece: Piece, lines: Lines, skip_invalid: bool) -> None:
    line = lines.line(piece.start)
    if piece.node is None:
        _invalid(run, piece, lines, line, skip_invalid)
        return
    ctx = RuleContext(run, line, statement_kind(piece.node))
    node = piece.node
    for rule in RULES:
        node = rule(node, ctx)
        if node is None:
            return
    sql = RawStream()(node) if ctx.modified else piece.text
    run.result.statements.append(CleanStatement(sql, run.file, line, ctx.kind))


def _invalid(run: CleanRun, piece: Piece, lines: Lines, line: int, skip_invalid: bool) -> None:
    error = parse_error(piece, run.file, lines)
    if not skip_invalid:
        raise error
    first_line = piece.text.strip().splitlines()[0][:80] if piece.text.strip() else ""
    RuleContext(run, line, "INVALID").record(first_line, f"does not parse ({error.cause})", "skipped")


def clean_sql(sql: str, *, source_name: str, rls: str = "strip", skip_invalid: bool = False) -> CleanResult:
    """Split, parse and clean one SQL file (or one pg_dump section); raise MigrationError on
    the first statement that doesn't parse unless `skip_invalid`, which records it instead."""
    if rls not in RLS_MODES:
        raise MigrationError(f"unknown --rls mode {rls!r}", f"use one of: {', '.join(RLS_MODES)}")
    run = CleanRun(source_name, rls, CleanResult([], []))
    lines = Lines(sql)
    for piece in pieces(sql):
        _feed(run, piece, lines, skip_invalid)
    return run.result


def split_statements(sql: str, *, source_name: str, skip_invalid: bool = False) -> list[CleanStatement]:
    """Statements as written, no rules applied (our own setup SQL, reference runs in tests)."""
    lines = Lines(sql)
    statements = []
    for piece in pieces(sql):
        if piece.node is None and skip_invalid:
            continue
        if piece.node is None:
            raise parse_error(piece, source_name, lines)
        statements.append(CleanStatement(piece.text, source_name, lines.line(piece.start), statement_kind(piece.node)))
    return statements
