"""What a rule sees: the statement's position and kind, the run's options, and the result
it records changes into. Rules are plain functions `rule(node, ctx) -> node | None`
(None drops the statement), so each family lives in its own module and is tested alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pglast import ast

from loaders.schema.clean.model import Change, CleanResult, CleanState


@dataclass
class CleanRun:
    """One file's cleaning: where it comes from, the RLS mode, and what was decided so far."""

    file: str
    rls: str
    result: CleanResult
    state: CleanState = field(default_factory=CleanState)


@dataclass
class RuleContext:
    run: CleanRun
    line: int
    kind: str
    # Set when a rule changed the AST: the statement is then re-printed instead of kept verbatim.
    modified: bool = False
    # Line of a node's `location` (a clause inside the statement, e.g. an inline constraint).
    locate: Callable[[int], int] | None = None

    @property
    def rls(self) -> str:
        return self.run.rls

    @property
    def result(self) -> CleanResult:
        return self.run.result

    @property
    def state(self) -> CleanState:
        return self.run.state

    @property
    def where(self) -> str:
        return f"{self.run.file}:{self.line}"

    def record(self, obj: str, reason: str, action: str, removes: tuple[str, ...] = (), *, at: int | None = None) -> None:
        """`at`: the node's location, so a clause is reported at its own line, not the statement's."""
        line = self.locate(at) if self.locate is not None and at is not None and at >= 0 else self.line
        self.result.changes.append(Change(self.run.file, line, self.kind, obj, reason, action, removes))


Rule = Callable[[ast.Node, RuleContext], "ast.Node | None"]
