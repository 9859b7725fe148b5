"""The data the audit passes from step to step; plain dataclasses so the report is their dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

KINDS = ("table", "rpc", "storage", "auth", "realtime", "functions")
CHECKS = ("ok", "missing-table", "missing-column", "missing-function", "error")


@dataclass(frozen=True)
class Expr:
    """A value only known at run time: kept as its source text, which becomes a query parameter."""

    source: str


@dataclass(frozen=True)
class ObjectValue:
    """An object literal; `spread` names what `...x` merged in, which makes its keys unknowable."""

    items: tuple[tuple[str, "Value"], ...]
    spread: tuple[str, ...] = ()

    def get(self, key: str) -> "Value | None":
        for name, value in self.items:
            if name == key:
                return value
        return None


@dataclass(frozen=True)
class Template:
    """A template literal with substitutions: text parts and the `${…}` expressions between them."""

    parts: tuple["str | Expr", ...]

    @property
    def source(self) -> str:
        return "`" + "".join(p if isinstance(p, str) else "${" + p.source + "}" for p in self.parts) + "`"


@dataclass(frozen=True)
class ArrayValue:
    items: tuple["Value", ...]


Value = Union[str, int, float, bool, None, Expr, Template, ObjectValue, ArrayValue]


@dataclass(frozen=True)
class Method:
    """One link of a builder chain: `.eq('a', x)` → Method('eq', ('a', Expr('x')))."""

    name: str
    args: tuple[Value, ...]


@dataclass
class FoundCall:
    """What the scanner saw, before any translation."""

    file: str
    line: int
    kind: str
    name: Value            # table, function, bucket (literal or Expr when dynamic); None for auth/realtime
    chain: list[Method]    # the links after `.from(…)`/`.rpc(…)`/`.storage.from(…)`/`.auth`
    schema: str = "public"
    source: str = ""       # the call's text, one line, for the report
    stored_in: str | None = None  # the builder was kept in a variable and may be extended later


@dataclass(frozen=True)
class ColumnRef:
    """A table/column the translated SQL depends on: checked against the target's catalog."""

    schema: str
    table: str
    column: str | None = None


@dataclass
class Call:
    """One line of the report."""

    file: str
    line: int
    kind: str
    name: str | None
    operation: str
    sql: str | None = None
    params: list[str] = field(default_factory=list)
    check: str | None = None
    message: str = ""
    status: str = "translated"   # translated | manual | replace
    returns: str = "many"        # many | one | maybe-one | none | count
    source: str = ""
    refs: list[ColumnRef] = field(default_factory=list)
    functions: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "kind": self.kind, "name": self.name,
                "operation": self.operation, "status": self.status, "sql": self.sql, "params": self.params,
                "returns": self.returns, "check": self.check, "message": self.message, "source": self.source}
