"""What the cleaner produces: statements to apply and a record of every change it made."""

from __future__ import annotations

from dataclasses import dataclass, field

RLS_MODES = ("strip", "shim")


@dataclass(frozen=True)
class CleanStatement:
    """One statement to apply: original text unless a rule rewrote it; file:line of its first token."""

    sql: str
    file: str
    line: int
    kind: str


@dataclass(frozen=True)
class Change:
    """One statement (or clause) the cleaner dropped, modified, rewrote or skipped, and why."""

    file: str
    line: int
    kind: str
    object: str
    reason: str
    action: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class CleanResult:
    statements: list[CleanStatement]
    changes: list[Change]
    # The file has its own BEGIN/COMMIT, or a statement that cannot run in a transaction
    # block (CREATE INDEX CONCURRENTLY): the runner must not wrap it in a transaction.
    manages_transactions: bool = False
    # `auth.uid()` & co. called by kept statements: the target needs the auth shim functions.
    auth_functions: set[str] = field(default_factory=set)
    # API roles (anon, authenticated, service_role) that kept policies and grants name.
    roles_needed: set[str] = field(default_factory=set)
