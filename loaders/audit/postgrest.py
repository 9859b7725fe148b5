"""Step 2: PostgREST's own little languages — the `select` column list and the filter strings of
`or()`, `not()` and `filter()` — parsed into small trees, with PostgREST's rules.

The grammar follows PostgREST's documentation: `alias:column->json->>key::cast`, `*`,
`alias:table!hint!inner(columns)` for embedded resources, `...table(columns)` spreads,
`count` in an embed; filters `column.[not.]op[(modifier)].value` joined by commas, grouped with
`and(…)`/`or(…)`. supabase-js strips whitespace outside double quotes from a select string before
sending it, so it is stripped here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loaders.audit.model import Expr, Template, Value

# PostgREST operator → SQL operator (filters whose right side is one value).
BINARY_OPS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE", "ilike": "ILIKE",
    "match": "~", "imatch": "~*", "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxr": "&<",
    "nxl": "&>", "adj": "-|-", "isdistinct": "IS DISTINCT FROM",
}
TEXT_SEARCH = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery",
               "wfts": "websearch_to_tsquery"}
OPERATORS = set(BINARY_OPS) | set(TEXT_SEARCH) | {"in", "is"}
# supabase-js method name → PostgREST operator.
METHOD_OPS = {"eq": "eq", "neq": "neq", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte", "like": "like",
              "ilike": "ilike", "in": "in", "is": "is", "contains": "cs", "containedBy": "cd", "overlaps": "ov",
              "rangeGt": "sr", "rangeGte": "nxl", "rangeLt": "sl", "rangeLte": "nxr", "rangeAdjacent": "adj",
              "likeAnyOf": "like(any)", "ilikeAnyOf": "ilike(any)", "match_regex": "match"}
TEXT_SEARCH_TYPES = {None: "fts", "plain": "plfts", "phrase": "phfts", "websearch": "wfts"}


class PostgrestSyntaxError(ValueError):
    """A select or filter string PostgREST itself would reject (or one this parser cannot read)."""


@dataclass(frozen=True)
class ColumnPath:
    """`data->meta->>name`: a column and JSON steps; `arrow` of each step is `->` or `->>`."""

    name: str
    steps: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """The JSON key PostgREST gives the selected value: the last step's name, else the column."""
        return self.steps[-1][1] if self.steps else self.name


@dataclass(frozen=True)
class Field:
    path: ColumnPath
    alias: str | None = None
    cast: str | None = None

    @property
    def key(self) -> str:
        return self.alias or self.path.key


@dataclass(frozen=True)
class Star:
    pass


@dataclass(frozen=True)
class Count:
    """`count` / `count()` alone in an embed or a select: the number of (embedded) rows."""

    alias: str | None = None


@dataclass
class Embed:
    name: str                      # table (or view) name as written
    items: list["Item"]
    alias: str | None = None
    hint: str | None = None        # foreign key name or column (`table!fk`)
    inner: bool = False            # `!inner`
    spread: bool = False           # `...table(cols)`

    @property
    def key(self) -> str:
        return self.alias or self.name


Item = Field | Star | Count | Embed


def strip_whitespace(select: str) -> str:
    """What supabase-js sends: whitespace removed except inside double quotes."""
    out, quoted = [], False
    for ch in select:
        if ch == '"':
            quoted = not quoted
        if ch.isspace() and not quoted:
            continue
        out.append(ch)
    return "".join(out)


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside parentheses, braces and double quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth < 0:
                raise PostgrestSyntaxError(f"unbalanced ')' in {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0 or quoted:
        raise PostgrestSyntaxError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


def unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def parse_column(text: str) -> ColumnPath:
    """`data->a->>b` → ColumnPath('data', (('->', 'a'), ('->>', 'b')))."""
    if not text:
        raise PostgrestSyntaxError("empty column name")
    steps: list[tuple[str, str]] = []
    i = text.find("->")
    name = text if i < 0 else text[:i]
    rest = "" if i < 0 else text[i:]
    while rest:
        arrow = "->>" if rest.startswith("->>") else "->"
        rest = rest[len(arrow):]
        nxt = rest.find("->")
        key, rest = (rest, "") if nxt < 0 else (rest[:nxt], rest[nxt:])
        if not key:
            raise PostgrestSyntaxError(f"empty JSON key in {text!r}")
        steps.append((arrow, unquote(key)))
    return ColumnPath(unquote(name), tuple(steps))


def parse_select(select: str) -> list[Item]:
    cleaned = strip_whitespace(select)
    if not cleaned:
        return [Star()]
    return [parse_item(part) for part in split_top(cleaned)]


def parse_item(text: str) -> Item:
    if not text:
        raise PostgrestSyntaxError("empty item in select (a stray comma?)")
    spread = text.startswith("...")
    if spread:
        text = text[3:]
    alias = None
    head = text.split("(", 1)[0]
    if ":" in head.replace("::", "\0\0") and not head.startswith('"'):
        colon = head.replace("::", "\0\0").index(":")
        alias, text = unquote(text[:colon]), text[colon + 1:]
    if text.endswith(")") and "(" in text:
        name_part, inner = text.split("(", 1)
        inner = inner[:-1]
        if name_part in ("count", "") and not inner:
            return Count(alias)
        names = name_part.split("!")
        hint, inner_join = None, False
        for flag in names[1:]:
            if flag == "inner":
                inner_join = True
            elif flag == "left":
                inner_join = False
            else:
                hint = flag
        items = parse_select(inner)
        return Embed(unquote(names[0]), items, alias=alias, hint=hint, inner=inner_join, spread=spread)
    if spread:
        raise PostgrestSyntaxError(f"'...' applies to embedded resources only: {text!r}")
    if text == "*":
        return Star()
    if text == "count":
        return Count(alias)
    cast = None
    if "::" in text:
        text, cast = text.split("::", 1)
    return Field(parse_column(text), alias=alias, cast=cast)


# ---- filters -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """`column op value`; `value` is a literal, an `Expr`/`Template` from the code, or a tuple (for `in`)."""

    column: str
    op: str
    value: object
    negate: bool = False
    modifier: str | None = None   # fts config, or `any`/`all` for like(any)


@dataclass
class Group:
    kind: str                     # "and" | "or"
    items: list["Condition | Group"] = field(default_factory=list)
    negate: bool = False


SENTINEL = "\x00"


def with_sentinels(value: Value) -> tuple[str, list[Expr]]:
    """A template's text with each `${expr}` replaced by a marker the filter parser keeps intact."""
    if isinstance(value, str):
        return value, []
    if isinstance(value, Template):
        text, exprs = [], []
        for part in value.parts:
            if isinstance(part, str):
                text.append(part)
            else:
                text.append(f"{SENTINEL}{len(exprs)}{SENTINEL}")
                exprs.append(part)
        return "".join(text), exprs
    raise PostgrestSyntaxError("filter string is not a literal")


def restore(text: str, exprs: list[Expr]) -> object:
    """A parsed value back as a literal, the code's expression, or a template of both."""
    if SENTINEL not in text:
        return text
    pieces = text.split(SENTINEL)
    parts: list[str | Expr] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            parts.append(exprs[int(piece)])
        elif piece:
            parts.append(piece)
    if len(parts) == 1 and isinstance(parts[0], Expr):
        return parts[0]
    return Template(tuple(parts))


def parse_logic(value: Value, kind: str = "or") -> Group:
    """The argument of `.or('a.eq.1,b.gt.2')` (and nested `and(…)`) as a tree."""
    text, exprs = with_sentinels(value)
    return Group(kind, [parse_logic_item(part, exprs) for part in split_top(text)])


def parse_logic_item(text: str, exprs: list[Expr]) -> Condition | Group:
    negate = text.startswith("not.")
    body = text[4:] if negate else text
    for kind in ("and", "or"):
        if body.startswith(kind + "(") and body.endswith(")"):
            group = Group(kind, [parse_logic_item(p, exprs) for p in split_top(body[len(kind) + 1:-1])], negate)
            return group
    column, rest = split_column(text)
    op_text, _, raw = rest.partition(".")
    if not _ and op_text != "not":
        raise PostgrestSyntaxError(f"filter {text!r} has no value (expected column.operator.value)")
    condition = operator_condition(column, op_text if op_text != "not" else raw.partition(".")[0],
                                   raw if op_text != "not" else raw.partition(".")[2], exprs,
                                   negate=op_text == "not")
    return condition


def split_column(text: str) -> tuple[str, str]:
    """The column part of `col->>'k'.eq.x` ends at the first dot that is followed by an operator."""
    i = 0
    while True:
        dot = text.find(".", i)
        if dot < 0:
            parts = text.split(".")
            if len(parts) >= 3:
                raise PostgrestSyntaxError(f"unknown operator {parts[1]!r} in {text!r}")
            raise PostgrestSyntaxError(f"filter {text!r} has no operator (expected column.operator.value)")
        following = text[dot + 1:].split(".", 1)[0].split("(", 1)[0]
        if following in OPERATORS or following == "not":
            return text[:dot], text[dot + 1:]
        i = dot + 1


def operator_condition(column: str, op_text: str, raw: str, exprs: list[Expr], *, negate: bool) -> Condition:
    op, modifier = op_text, None
    if "(" in op_text and op_text.endswith(")"):
        op, modifier = op_text[:-1].split("(", 1)
    if op not in OPERATORS:
        raise PostgrestSyntaxError(f"unknown operator {op!r} (PostgREST knows {', '.join(sorted(OPERATORS))})")
    return Condition(column, op, parse_value(op, raw, exprs), negate=negate, modifier=modifier)


def parse_value(op: str, raw: str, exprs: list[Expr]) -> object:
    """`in.(a,b)` is a list; `is` takes null/true/false/unknown; the rest is one value."""
    if op == "in":
        if not (raw.startswith("(") and raw.endswith(")")):
            raise PostgrestSyntaxError(f"in filter value must be a list in parentheses, got {raw!r}")
        inner = raw[1:-1]
        return tuple(restore(unquote(v), exprs) for v in split_top(inner)) if inner else ()
    if op == "is":
        lowered = raw.lower()
        if lowered not in ("null", "true", "false", "unknown"):
            raise PostgrestSyntaxError(f"is filter takes null, true, false or unknown, got {raw!r}")
        return lowered
    return restore(unquote(raw), exprs)


def parse_filter_call(column: Value, operator: Value, raw: Value) -> Condition:
    """`.filter(col, 'not.in', '(1,2)')` / `.not(col, 'eq', v)`: operator text and a PostgREST-form value."""
    if not isinstance(column, str) or not isinstance(operator, str):
        raise PostgrestSyntaxError("column or operator is not a literal")
    negate = operator.startswith("not.")
    op_text = operator[4:] if negate else operator
    op = op_text.split("(", 1)[0]
    if isinstance(raw, (Expr,)) and op not in ("in",):
        return Condition(column, op, raw, negate=negate)
    text, exprs = with_sentinels(raw) if isinstance(raw, (str, Template)) else (None, [])
    if text is None:
        return Condition(column, op, raw, negate=negate)
    condition = operator_condition(column, op_text, text, exprs, negate=negate)
    return condition
