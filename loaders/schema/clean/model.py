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
    # Unquoted identities of the objects this change removed (`public.docs_view`,
    # `public.docs trigger on_insert`), so the schema diff can tell "removed on purpose"
    # from "missing on target".
    removes: tuple[str, ...] = ()

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
    # Functions kept bodies call (schema or None, name): extensions used only inside bodies.
    body_calls: set[tuple[str | None, str]] = field(default_factory=set)


@dataclass
class CleanState:
    """What one statement's cleaning tells the next, across files and pg_dump sections: a
    function removed in pre-data takes its triggers in post-data with it."""

    # `--skip NAME|FILE:LINE` entries, and the ones that matched a statement.
    skip: tuple[str, ...] = ()
    skips_used: set[str] = field(default_factory=set)
    # Functions only Supabase Auth calls (granted to supabase_auth_admin), found by a pre-scan.
    auth_hooks: set[tuple[str, str]] = field(default_factory=set)
    # (schema, name) of removed functions -> why, for their triggers, grants and callers.
    removed_functions: dict[tuple[str, str], str] = field(default_factory=dict)
    # (table identity, trigger name) of removed triggers, for their ENABLE/DISABLE and comments.
    removed_triggers: set[tuple[str, str]] = field(default_factory=set)
    # Procedural languages kept functions are written in (plv8, plperl …).
    languages: dict[str, list[str]] = field(default_factory=dict)
