"""Statements that decide how a file must be run, not whether it is kept."""

from __future__ import annotations

from pglast import ast, enums

from loaders.schema.clean.context import RuleContext

TRANSACTION_CONTROL = {
    enums.TransactionStmtKind.TRANS_STMT_BEGIN, enums.TransactionStmtKind.TRANS_STMT_START,
    enums.TransactionStmtKind.TRANS_STMT_COMMIT, enums.TransactionStmtKind.TRANS_STMT_ROLLBACK,
    enums.TransactionStmtKind.TRANS_STMT_PREPARE,
}


def _outside_transaction(node: ast.Node) -> bool:
    if isinstance(node, ast.IndexStmt):
        return bool(node.concurrent)
    if isinstance(node, ast.ReindexStmt):
        return any(p.defname == "concurrently" for p in node.params or ())
    return isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd


def transaction_control(node: ast.Node, ctx: RuleContext) -> ast.Node:
    """A file with its own BEGIN/COMMIT or a CONCURRENTLY statement must not be wrapped."""
    if isinstance(node, ast.TransactionStmt) and node.kind in TRANSACTION_CONTROL:
        ctx.result.manages_transactions = True
    if isinstance(node, (ast.IndexStmt, ast.ReindexStmt, ast.VacuumStmt)) and _outside_transaction(node):
        ctx.result.manages_transactions = True
    return node
