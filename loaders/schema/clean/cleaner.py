"""Run the rules over every statement of one file and keep the statement byte for byte
unless a rule changed its AST, in which case it is re-printed with `RawStream`."""

from __future__ import annotations

from dataclasses import replace

from pglast import ast
from pglast.stream import RawStream

from loaders.errors import MigrationError
from loaders.schema.clean.context import CleanRun, RuleContext
from loaders.schema.clean.model import RLS_MODES, CleanResult, CleanState, CleanStatement
from loaders.schema.clean.nodes import declared
from loaders.schema.clean.parse import Lines, Piece, parse_error, pieces, statement_kind
from loaders.schema.clean.rules import RULES


def _feed(run: CleanRun, piece: Piece, lines: Lines, skip_invalid: bool) -> None:
    line = lines.line(piece.start)
    if piece.node is None:
        _invalid(run, piece, lines, line, skip_invalid)
        return
    ctx = RuleContext(run, line, statement_kind(piece.node), locate=lambda at: lines.line(piece.base + at))
    node = piece.node
    first_change = len(run.result.changes)
    for rule in RULES:
        node = rule(node, ctx)
        if node is None:
            _mark_removed(run, first_change, declared(piece.node))
            return
    sql = RawStream()(node) if ctx.modified else piece.text
    run.result.statements.append(CleanStatement(sql, run.file, line, ctx.kind))


def _mark_removed(run: CleanRun, first_change: int, removed: tuple[str, ...]) -> None:
    """A dropped statement's changes name what it would have created."""
    changes = run.result.changes
    for i in range(first_change, len(changes)):
        if not changes[i].removes and removed:
            changes[i] = replace(changes[i], removes=removed)


def _invalid(run: CleanRun, piece: Piece, lines: Lines, line: int, skip_invalid: bool) -> None:
    error = parse_error(piece, run.file, lines)
    where = f"{run.file}:{line}"
    if where in run.state.skip:
        run.state.skips_used.add(where)
        RuleContext(run, line, "INVALID").record(where, f"skipped on request (--skip {where})", "skipped")
        return
    if not skip_invalid:
        raise error
    first_line = piece.text.strip().splitlines()[0][:80] if piece.text.strip() else ""
    RuleContext(run, line, "INVALID").record(first_line, f"does not parse ({error.cause})", "skipped")


def clean_sql(
    sql: str, *, source_name: str, rls: str = "strip", skip_invalid: bool = False, state: CleanState | None = None
) -> CleanResult:
    """Split, parse and clean one SQL file (or one pg_dump section); raise MigrationError on
    the first statement that doesn't parse unless `skip_invalid`, which records it instead."""
    if rls not in RLS_MODES:
        raise MigrationError(f"unknown --rls mode {rls!r}", f"use one of: {', '.join(RLS_MODES)}")
    run = CleanRun(source_name, rls, CleanResult([], []), state if state is not None else CleanState())
    lines = Lines(sql)
    for piece in pieces(sql):
        _feed(run, piece, lines, skip_invalid)
    return run.result


def parsed_statements(sql: str) -> list[ast.Node]:
    """The AST of every statement that parses (for pre-scans that look across files)."""
    return [p.node for p in pieces(sql) if p.node is not None]


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
