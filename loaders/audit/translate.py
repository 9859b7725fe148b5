"""Step 4: a supabase-js chain → the parameterised SQL PostgREST would run for it.

Semantics follow PostgREST's documentation: a many-to-one embed is a JSON object, a one-to-many
embed a JSON array (`[]` when empty), `!inner` keeps only parent rows that have a match, filters
on `embed.column` filter the embedded rows, `count` adds the total of matching rows. Every value
from the code becomes a `$n` parameter whose source expression is kept (`$1 ← userId`). What
cannot be known statically (a dynamic table, a spread payload) raises `Untranslatable` with the
reason — it is reported, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS, COL_NAME_KEYWORDS

from loaders.audit.catalog import Catalog, RelationshipError, resolve
from loaders.audit.model import ArrayValue, Call, ColumnRef, Expr, FoundCall, Method, ObjectValue, Template, Value
from loaders.audit.postgrest import (BINARY_OPS, METHOD_OPS, TEXT_SEARCH, TEXT_SEARCH_TYPES, ColumnPath, Condition,
                                     Count, Embed, Field, Group, Item, PostgrestSyntaxError, Star, parse_column,
                                     parse_filter_call, parse_logic, parse_select)

IGNORED = {"throwOnError", "abortSignal", "returns", "overrideTypes", "then", "catch", "finally", "setHeader",
           "csv", "geojson", "explain", "rollback"}
WRITE_METHODS = {"insert", "update", "upsert", "delete"}
SIMPLE_NAME_START = set("abcdefghijklmnopqrstuvwxyz_")
SIMPLE_NAME_REST = SIMPLE_NAME_START | set("0123456789$")
KEYWORDS = set(RESERVED_KEYWORDS) | set(TYPE_FUNC_NAME_KEYWORDS) | set(COL_NAME_KEYWORDS)


class Untranslatable(Exception):
    """The chain cannot be turned into SQL statically; the message says why (reported as manual)."""


class CatalogProblem(Exception):
    """Translation needs something the target lacks (e.g. an embedded table): `check` says which."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


def ident(name: str) -> str:
    """Quote an identifier only when PostgreSQL needs it, so the suggested SQL stays readable."""
    if name and name[0] in SIMPLE_NAME_START and set(name) <= SIMPLE_NAME_REST and name not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return ident(table) if schema == "public" else f"{ident(schema)}.{ident(table)}"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def shown(value: object) -> str:
    """A value as the code wrote it, for messages."""
    if isinstance(value, ObjectValue):
        return "{ " + ", ".join([f"{k}: {shown(v)}" for k, v in value.items] + list(value.spread)) + " }"
    return js(value)


def js(value: object) -> str:
    """A value as the JavaScript expression to pass in `pool.query`'s parameter array."""
    if isinstance(value, (Expr, Template)):
        return value.source
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(js(v) for v in value) + "]"
    if isinstance(value, ArrayValue):
        return js(value.items)
    if isinstance(value, ObjectValue):
        parts = [f"{k}: {js(v)}" for k, v in value.items] + [s if s.startswith("...") else f"[{s}]" for s in value.spread]
        return "JSON.stringify({ " + ", ".join(parts) + " })"
    return str(value)


@dataclass
class Params:
    sources: list[str] = field(default_factory=list)

    def add(self, value: object) -> str:
        self.sources.append(js(value))
        return f"${len(self.sources)}"


@dataclass
class Level:
    """Filters, order and limits addressed to one level of the select tree (`()` = the main table)."""

    where: list[Condition | Group] = field(default_factory=list)
    order: list[tuple[str, bool, bool | None]] = field(default_factory=list)
    limit: Value = None
    offset: Value = None


@dataclass
class Query:
    schema: str
    table: str
    operation: str = "select"
    items: list[Item] | None = None
    payload: Value = None
    options: ObjectValue | None = None
    levels: dict[tuple[str, ...], Level] = field(default_factory=dict)
    returns: str = "many"
    count: str | None = None
    head: bool = False
    notes: list[str] = field(default_factory=list)

    def level(self, path: tuple[str, ...] = ()) -> Level:
        return self.levels.setdefault(path, Level())


@dataclass
class Context:
    catalog: Catalog | None
    params: Params = field(default_factory=Params)
    refs: list[ColumnRef] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)

    def alias_for(self, table: str) -> str:
        alias, n = table, 1
        while alias in self.aliases:
            alias, n = f"{table}_{n}", n + 1
        self.aliases.add(alias)
        return alias

    def ref(self, schema: str, table: str, column: str | None = None) -> None:
        reference = ColumnRef(schema, table, column)
        if reference not in self.refs:
            self.refs.append(reference)


# ---- entry point ---------------------------------------------------------------------------

def translate(found: FoundCall, catalog: Catalog | None) -> Call:
    name = found.name if isinstance(found.name, str) else (found.name.source if isinstance(found.name, (Expr, Template)) else None)
    call = Call(file=found.file, line=found.line, kind=found.kind, name=name, operation="", source=found.source)
    if found.kind in REPLACEMENTS:
        call.operation = operation_of(found)
        call.status = "replace"
        call.returns = "none"
        call.message = REPLACEMENTS[found.kind](call.operation)
        return call
    call.operation = operation_of(found)
    if not isinstance(found.name, str):
        call.status = "manual"
        what = "table" if found.kind == "table" else "function"
        call.message = f"dynamic {what} name ({call.name}): not translated — write one query per {what}"
        return call
    ctx = Context(catalog)
    try:
        sql, returns, notes = (translate_table if found.kind == "table" else translate_rpc)(found, ctx)
        call.sql, call.returns, call.params = sql, returns, ctx.params.sources
        call.message = "; ".join(notes)
    except Untranslatable as exc:
        call.status, call.message = "manual", str(exc)
    except PostgrestSyntaxError as exc:
        call.status, call.check, call.message = "manual", "error", f"PostgREST syntax: {exc}"
    except CatalogProblem as exc:
        call.status, call.check, call.message = "manual", exc.check, str(exc)
    call.refs = ctx.refs
    if found.kind == "rpc" and call.status != "manual":
        call.functions = [(found.schema, found.name, rpc_arg_names(found))]
    if found.stored_in and call.status != "manual":
        call.message = "; ".join(filter(None, [call.message, f"the builder is kept in `{found.stored_in}`: methods "
                                               "added to it in later statements are not included — check by hand"]))
    return call


def operation_of(found: FoundCall) -> str:
    names = [m.name for m in found.chain]
    if found.kind == "table":
        writes = [n for n in names if n in WRITE_METHODS]
        return writes[0] if writes else ("select" if "select" in names else "builder")
    if found.kind in ("rpc", "functions"):
        return "call"
    return ".".join(names[:1]) if found.kind != "storage" else (names[0] if names else "bucket")


# ---- Storage, Auth, Realtime, Functions: what replaces them --------------------------------

STORAGE = {
    "upload": "S3 PutObject (@aws-sdk/client-s3), or a presigned PUT URL",
    "update": "S3 PutObject over the same key",
    "download": "S3 GetObject",
    "remove": "S3 DeleteObjects",
    "list": "S3 ListObjectsV2 with Prefix",
    "move": "S3 CopyObject + DeleteObject",
    "copy": "S3 CopyObject",
    "createSignedUrl": "getSignedUrl(GetObjectCommand) from @aws-sdk/s3-request-presigner (or CloudFront signed URLs)",
    "createSignedUrls": "getSignedUrl(GetObjectCommand) per key",
    "createSignedUploadUrl": "getSignedUrl(PutObjectCommand) or createPresignedPost",
    "getPublicUrl": "the object's CloudFront (or public S3) URL",
}


def storage_replacement(operation: str) -> str:
    return ("needs a replacement: " + STORAGE.get(operation, "an S3 call") +
            "; the bucket becomes an S3 bucket or prefix, and its policies IAM/bucket policies")


def auth_replacement(operation: str) -> str:
    if operation in ("getUser", "getSession", "getClaims"):
        how = "verify the request's JWT yourself (e.g. `jose` jwtVerify against Supabase Auth's or Cognito's JWKS)"
    elif operation.startswith("admin."):
        how = "the identity provider's admin API (Cognito AdminCreateUser/AdminDeleteUser/ListUsers, or keep Supabase Auth)"
    else:
        how = "your identity provider's SDK (Amazon Cognito, or keep Supabase Auth in a later phase)"
    return f"needs a replacement: {how}"


def realtime_replacement(operation: str) -> str:
    return ("needs a replacement: PostgreSQL LISTEN/NOTIFY from a trigger (pg `client.on('notification')`) "
            "behind your own WebSocket, or AWS AppSync / API Gateway WebSockets")


def functions_replacement(operation: str) -> str:
    return "needs a replacement: an AWS Lambda function (InvokeCommand from @aws-sdk/client-lambda) or an HTTP endpoint"


REPLACEMENTS: dict[str, Callable[[str], str]] = {"storage": storage_replacement, "auth": auth_replacement,
                                                 "realtime": realtime_replacement, "functions": functions_replacement}


# ---- the builder: one small rule per supabase-js method --------------------------------------

def literal_arg(method: Method, index: int, what: str) -> Value:
    value = method.args[index] if len(method.args) > index else None
    if isinstance(value, (Expr, Template)):
        raise Untranslatable(f"{method.name}() {what} is computed at run time ({value.source}): not translated")
    return value


def option(method: Method, index: int) -> ObjectValue:
    value = method.args[index] if len(method.args) > index else None
    if value is None:
        return ObjectValue(())
    if not isinstance(value, ObjectValue) or value.spread:
        raise Untranslatable(f"{method.name}() options are computed at run time: not translated")
    return value


def opt_literal(options: ObjectValue, key: str, method: str) -> Value:
    value = options.get(key)
    if isinstance(value, (Expr, Template)):
        raise Untranslatable(f"{method}() option {key} is computed at run time ({value.source}): not translated")
    return value


def referenced_path(options: ObjectValue, method: str) -> tuple[str, ...]:
    table = opt_literal(options, "referencedTable", method) or opt_literal(options, "foreignTable", method)
    return tuple(str(table).split(".")) if table else ()


def rule_select(q: Query, m: Method) -> None:
    columns = literal_arg(m, 0, "column list")
    q.items = parse_select(columns if isinstance(columns, str) else "*")
    options = option(m, 1)
    count = opt_literal(options, "count", "select")
    if count:
        q.count = str(count)
    q.head = bool(opt_literal(options, "head", "select"))
    if q.operation == "select" and q.head and not q.count:
        q.returns = "none"


def rule_write(q: Query, m: Method) -> None:
    q.operation = m.name
    q.returns = "none"
    if m.name != "delete":
        q.payload = m.args[0] if m.args else None
    q.options = option(m, 1 if m.name != "delete" else 0)
    count = opt_literal(q.options, "count", m.name)
    if count:
        q.count = str(count)


def rule_filter(q: Query, m: Method) -> None:
    column = literal_arg(m, 0, "column")
    if not isinstance(column, str):
        raise Untranslatable(f"{m.name}() without a column name")
    value = m.args[1] if len(m.args) > 1 else None
    q.level().where.append(Condition(column, METHOD_OPS[m.name], value))


def rule_not(q: Query, m: Method) -> None:
    q.level().where.append(parse_filter_call(m.args[0] if m.args else None, "not." + str(literal_arg(m, 1, "operator")),
                                             m.args[2] if len(m.args) > 2 else None))


def rule_filter_call(q: Query, m: Method) -> None:
    q.level().where.append(parse_filter_call(m.args[0] if m.args else None, literal_arg(m, 1, "operator"),
                                             m.args[2] if len(m.args) > 2 else None))


def rule_or(q: Query, m: Method) -> None:
    text = m.args[0] if m.args else None
    if not isinstance(text, (str, Template)):
        raise Untranslatable(f"or() filter string is computed at run time ({js(text)}): not translated")
    q.level(referenced_path(option(m, 1), "or")).where.append(parse_logic(text, "or"))


def rule_match(q: Query, m: Method) -> None:
    pairs = m.args[0] if m.args else None
    if not isinstance(pairs, ObjectValue) or pairs.spread:
        raise Untranslatable(f"match() object is built at run time ({shown(pairs)}): not translated")
    for key, value in pairs.items:
        q.level().where.append(Condition(key, "eq", value))


def rule_text_search(q: Query, m: Method) -> None:
    column = literal_arg(m, 0, "column")
    options = option(m, 2)
    kind = opt_literal(options, "type", "textSearch")
    config = opt_literal(options, "config", "textSearch")
    q.level().where.append(Condition(str(column), TEXT_SEARCH_TYPES.get(kind, "fts"),
                                     m.args[1] if len(m.args) > 1 else None,
                                     modifier=str(config) if config else None))


def rule_like_any(q: Query, m: Method) -> None:
    column = literal_arg(m, 0, "column")
    op = "like" if m.name == "likeAnyOf" else "ilike"
    q.level().where.append(Condition(str(column), op, m.args[1] if len(m.args) > 1 else None, modifier="any"))


def rule_order(q: Query, m: Method) -> None:
    column = literal_arg(m, 0, "column")
    options = option(m, 1)
    ascending = opt_literal(options, "ascending", "order")
    nulls_first = opt_literal(options, "nullsFirst", "order")
    q.level(referenced_path(options, "order")).order.append(
        (str(column), ascending is None or bool(ascending), None if nulls_first is None else bool(nulls_first)))


def rule_limit(q: Query, m: Method) -> None:
    q.level(referenced_path(option(m, 1), "limit")).limit = m.args[0] if m.args else None


def rule_range(q: Query, m: Method) -> None:
    level = q.level(referenced_path(option(m, 2), "range"))
    start, end = (m.args + (None, None))[:2]
    level.offset = start
    if isinstance(start, int) and isinstance(end, int):
        level.limit = end - start + 1
    else:
        level.limit = RangeCount(start, end)


@dataclass(frozen=True)
class RangeCount:
    """`range(from, to)` with run-time bounds: LIMIT to - from + 1."""

    start: Value
    end: Value


def rule_single(q: Query, m: Method) -> None:
    q.returns = "one" if m.name == "single" else "maybe-one"


def rule_ignore(q: Query, m: Method) -> None:
    return None


RULES: dict[str, Callable[[Query, Method], None]] = {
    "select": rule_select, "insert": rule_write, "update": rule_write, "upsert": rule_write, "delete": rule_write,
    "not": rule_not, "filter": rule_filter_call, "or": rule_or, "match": rule_match, "textSearch": rule_text_search,
    "likeAnyOf": rule_like_any, "ilikeAnyOf": rule_like_any, "order": rule_order, "limit": rule_limit,
    "range": rule_range, "single": rule_single, "maybeSingle": rule_single,
    **{name: rule_filter for name in METHOD_OPS if name not in ("likeAnyOf", "ilikeAnyOf", "match_regex")},
    **{name: rule_ignore for name in IGNORED},
}


def build(found: FoundCall, query: Query, chain: list[Method]) -> Query:
    for method in chain:
        rule = RULES.get(method.name)
        if rule is None:
            raise Untranslatable(f"{method.name}() is not a supabase-js query method this audit knows: not translated")
        rule(query, method)
    return query


# ---- SQL -----------------------------------------------------------------------------------

def column_sql(path: ColumnPath, qualifier: str | None) -> str:
    sql = (f"{ident(qualifier)}." if qualifier else "") + ident(path.name)
    for arrow, key in path.steps:
        sql += f"{arrow}{key}" if key.isdigit() else f"{arrow}{literal(key)}"
    return sql


def like_pattern(value: object) -> object:
    """PostgREST reads `*` in a like pattern as `%` (URLs can't carry a bare `%` comfortably)."""
    if isinstance(value, Template):
        return Template(tuple(p.replace("*", "%") if isinstance(p, str) else p for p in value.parts))
    return value.replace("*", "%") if isinstance(value, str) else value


def in_list(value: object) -> object:
    """`in.(${ids.join(',')})` is one run-time string PostgREST splits at commas: pass the array itself."""
    if isinstance(value, ArrayValue):
        return value.items
    if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], Expr):
        source = value[0].source
        for joiner in (".join(',')", '.join(",")', ".join()"):
            if source.endswith(joiner):
                return Expr(source[: -len(joiner)])
        return Expr(f"String({source}).split(',')")
    return value


def condition_sql(cond: Condition, qualifier: str | None, table: tuple[str, str], ctx: Context) -> str:
    path = parse_column(cond.column)
    ctx.ref(table[0], table[1], path.name)
    col = column_sql(path, qualifier)
    if cond.op in ("like", "ilike") and cond.modifier in ("any", "all"):
        sql = f"{col} {BINARY_OPS[cond.op]} {cond.modifier.upper()} ({ctx.params.add(cond.value)})"
    elif cond.op in BINARY_OPS:
        value = like_pattern(cond.value) if cond.op in ("like", "ilike") else cond.value
        if cond.op in ("cs", "cd", "ov") and isinstance(value, ObjectValue):
            sql = f"{col} {BINARY_OPS[cond.op]} {ctx.params.add(value)}::jsonb"
        else:
            sql = f"{col} {BINARY_OPS[cond.op]} {ctx.params.add(value)}"
    elif cond.op == "in":
        value = in_list(cond.value)
        sql = f"{col} = ANY ({ctx.params.add(value)})"
    elif cond.op == "is":
        value = cond.value
        if value is None or value == "null":
            sql = f"{col} IS NULL"
        elif value in (True, "true"):
            sql = f"{col} IS TRUE"
        elif value in (False, "false"):
            sql = f"{col} IS FALSE"
        elif value == "unknown":
            sql = f"{col} IS UNKNOWN"
        else:
            sql = f"{col} IS NOT DISTINCT FROM {ctx.params.add(value)}"
    elif cond.op in TEXT_SEARCH:
        config = f"{literal(cond.modifier)}, " if cond.modifier else ""
        sql = f"{col} @@ {TEXT_SEARCH[cond.op]}({config}{ctx.params.add(cond.value)})"
    else:
        raise Untranslatable(f"operator {cond.op} is not translated")
    return f"NOT ({sql})" if cond.negate else sql


def logic_sql(item: Condition | Group, qualifier: str | None, table: tuple[str, str], ctx: Context) -> str:
    if isinstance(item, Condition):
        return condition_sql(item, qualifier, table, ctx)
    joined = f" {item.kind.upper()} ".join(logic_sql(i, qualifier, table, ctx) for i in item.items)
    sql = f"({joined})" if len(item.items) > 1 else joined
    return f"NOT {sql}" if item.negate else sql


def route(query: Query, path: tuple[str, ...], embeds: dict[str, Embed]) -> tuple[Level, dict[str, list[Condition]]]:
    """This level's own filters, and the `embed.column` filters to hand to each embed."""
    level = query.levels.get(path, Level())
    own = Level(order=level.order, limit=level.limit, offset=level.offset)
    passed: dict[str, list[Condition]] = {}
    for item in level.where:
        if isinstance(item, Condition) and "." in item.column.split("->")[0]:
            head, rest = item.column.split(".", 1)
            if head not in embeds:
                raise CatalogProblem("error", f"filter on {item.column!r}: {head!r} is not an embedded resource "
                                              "of this select")
            passed.setdefault(head, []).append(Condition(rest, item.op, item.value, item.negate, item.modifier))
        else:
            own.where.append(item)
    return own, passed


def order_sql(orders: list[tuple[str, bool, bool | None]], qualifier: str | None, table: tuple[str, str],
              ctx: Context) -> str:
    parts = []
    for column, ascending, nulls_first in orders:
        path = parse_column(column)
        ctx.ref(table[0], table[1], path.name)
        text = column_sql(path, qualifier) + ("" if ascending else " DESC")
        if nulls_first is not None:
            text += " NULLS FIRST" if nulls_first else " NULLS LAST"
        parts.append(text)
    return ", ".join(parts)


def limit_sql(level: Level, ctx: Context) -> str:
    sql = ""
    if isinstance(level.limit, RangeCount):
        start, end = ctx.params.add(level.limit.start), ctx.params.add(level.limit.end)
        return f" LIMIT {end}::bigint - {start}::bigint + 1 OFFSET {start}::bigint"
    if level.limit is not None:
        sql += f" LIMIT {ctx.params.add(level.limit)}"
    if level.offset is not None:
        sql += f" OFFSET {ctx.params.add(level.offset)}"
    return sql


@dataclass
class Relation:
    """One table in the select tree: where it is, what alias the SQL gives it."""

    schema: str
    table: str
    qualifier: str | None
    path: tuple[str, ...]


def field_sql(item: Field, rel: Relation, ctx: Context) -> str:
    ctx.ref(rel.schema, rel.table, item.path.name)
    sql = column_sql(item.path, rel.qualifier)
    return f"{sql}::{item.cast}" if item.cast else sql


def embed_sql(embed: Embed, parent: Relation, query: Query, extra: list[Condition], ctx: Context
              ) -> tuple[str, str | None]:
    """The embed's scalar subquery, and (for `!inner`) the EXISTS its parent must satisfy."""
    if ctx.catalog is None:
        raise Untranslatable(f"embedded resource {embed.name!r} needs --target to resolve it through foreign keys")
    if embed.spread:
        raise Untranslatable(f"spread embed ...{embed.name}(…) is not translated")
    if not ctx.catalog.has_table(parent.schema, embed.name):
        ctx.ref(parent.schema, embed.name)
        raise CatalogProblem("missing-table", f"embedded table {embed.name!r} does not exist on the target")
    try:
        rel = resolve(ctx.catalog, parent.schema, parent.table, embed.name, embed.hint)
    except RelationshipError as exc:
        raise CatalogProblem("error", str(exc)) from None
    ctx.ref(rel.schema, rel.table)
    alias = ctx.alias_for(rel.table)
    child = Relation(rel.schema, rel.table, alias, parent.path + (embed.key,))
    level, passed = route(query, child.path, {e.key: e for e in embed.items if isinstance(e, Embed)})
    level.where = extra + level.where
    join = " AND ".join(f"{ident(alias)}.{ident(c)} = {ident(parent.qualifier or parent.table)}.{ident(p)}"
                        for c, p in rel.pairs)
    source = qualified(rel.schema, rel.table) + ("" if alias == rel.table else f" AS {ident(alias)}")
    if len(embed.items) == 1 and isinstance(embed.items[0], Count):
        where = where_sql(level, child, join, [], ctx)
        value = "jsonb_build_object('count', count(*))"
        sql = f"(SELECT {value if rel.to_one else f'jsonb_build_array({value})'} FROM {source} WHERE {where})"
        return sql, (f"EXISTS (SELECT 1 FROM {source} WHERE {where})" if embed.inner else None)
    inner: list[str] = []
    obj = object_sql(embed.items, child, query, passed, inner, ctx)
    where = where_sql(level, child, join, inner, ctx)
    exists_sql = f"EXISTS (SELECT 1 FROM {source} WHERE {where})" if embed.inner else None
    if rel.to_one:
        return f"(SELECT {obj} FROM {source} WHERE {where})", exists_sql
    order = order_sql(level.order, alias, (rel.schema, rel.table), ctx)
    agg_order = f" ORDER BY {order}" if order else ""
    if level.limit is not None or level.offset is not None:
        source = f"(SELECT * FROM {source} WHERE {where}{agg_order}{limit_sql(level, ctx)}) AS {ident(alias)}"
        return f"(SELECT coalesce(jsonb_agg({obj}{agg_order}), '[]') FROM {source})", exists_sql
    return f"(SELECT coalesce(jsonb_agg({obj}{agg_order}), '[]') FROM {source} WHERE {where})", exists_sql


def where_sql(level: Level, rel: Relation, join: str | None, exists: list[str], ctx: Context) -> str:
    """The WHERE text of one level: its join, its filters, the EXISTS of its `!inner` embeds."""
    table = (rel.schema, rel.table)
    parts = [join] if join else []
    parts += [logic_sql(item, rel.qualifier, table, ctx) for item in level.where]
    return " AND ".join(p for p in parts + exists if p) or "true"


def embedded(item: Embed, rel: Relation, query: Query, passed: dict[str, list[Condition]], inner: list[str],
             ctx: Context) -> str:
    """The embed's subquery; its `!inner` EXISTS goes to `inner`, for the parent's WHERE."""
    sql, exists = embed_sql(item, rel, query, passed.get(item.key, []), ctx)
    if exists:
        inner.append(exists)
    return sql


def object_sql(items: list[Item], rel: Relation, query: Query, passed: dict[str, list[Condition]], inner: list[str],
               ctx: Context) -> str:
    pairs: list[str] = []
    star = False
    for item in items:
        if isinstance(item, Star):
            star = True
        elif isinstance(item, Field):
            pairs.append(f"{literal(item.key)}, {field_sql(item, rel, ctx)}")
        elif isinstance(item, Embed):
            pairs.append(f"{literal(item.key)}, {embedded(item, rel, query, passed, inner, ctx)}")
        elif isinstance(item, Count):
            raise Untranslatable("count next to other columns in an embed is not translated")
    built = f"jsonb_build_object({', '.join(pairs)})" if pairs else ""
    if star:
        whole = f"to_jsonb({ident(rel.qualifier or rel.table)})"
        return f"{whole} || {built}" if built else whole
    return built or "'{}'::jsonb"


def select_list(items: list[Item], rel: Relation, query: Query, passed: dict[str, list[Condition]],
                inner: list[str], ctx: Context) -> str:
    columns: list[str] = []
    for item in items:
        if isinstance(item, Star):
            columns.append(f"{ident(rel.qualifier)}.*" if rel.qualifier else "*")
        elif isinstance(item, Field):
            sql = field_sql(item, rel, ctx)
            plain = not item.cast and not item.path.steps and item.key == item.path.name
            columns.append(sql if plain else f"{sql} AS {ident(item.key)}")
        elif isinstance(item, Count):
            columns.append(f"count(*) AS {ident(item.alias or 'count')}")
        else:
            columns.append(f"{embedded(item, rel, query, passed, inner, ctx)} AS {ident(item.key)}")
    return ", ".join(columns)


def has_embeds(items: list[Item] | None) -> bool:
    return any(isinstance(i, Embed) for i in items or [])


def translate_table(found: FoundCall, ctx: Context) -> tuple[str, str, list[str]]:
    query = build(found, Query(found.schema, str(found.name)), found.chain)
    if query.operation == "select" and query.items is None and found.stored_in is None:
        raise Untranslatable("no select/insert/update/upsert/delete on this builder")
    ctx.ref(query.schema, query.table)
    if ctx.catalog is not None and not ctx.catalog.has_table(query.schema, query.table) and has_embeds(query.items):
        raise CatalogProblem("missing-table", f"table {qualified(query.schema, query.table)} does not exist on the target")
    notes = list(query.notes)
    if query.operation == "select":
        return select_statement(query, ctx), query.returns if not query.head else "count", notes
    return WRITERS[query.operation](query, ctx, notes), query.returns, notes


def select_statement(query: Query, ctx: Context) -> str:
    items = query.items or [Star()]
    qualifier = query.table if has_embeds(items) else None
    if qualifier:
        ctx.aliases.add(qualifier)
    rel = Relation(query.schema, query.table, qualifier, ())
    level, passed = route(query, (), {e.key: e for e in items if isinstance(e, Embed)})
    source = qualified(query.schema, query.table)
    inner: list[str] = []
    columns = select_list(items, rel, query, passed, inner, ctx)
    where = where_sql(level, rel, None, inner, ctx)
    where_clause = "" if where == "true" else f" WHERE {where}"
    if query.head:
        return f"SELECT count(*) AS count FROM {source}{where_clause}"
    if query.count:
        columns += ", count(*) OVER () AS total_count"
    order = order_sql(level.order, qualifier, (query.schema, query.table), ctx)
    sql = f"SELECT {columns} FROM {source}{where_clause}" + (f" ORDER BY {order}" if order else "")
    sql += limit_sql(level, ctx)
    if query.returns in ("one", "maybe-one") and level.limit is None:
        sql += " LIMIT 2"  # single()/maybeSingle() fail on a second row: fetch two to tell
    return sql


def returning_sql(query: Query, ctx: Context) -> str:
    if query.items is None:
        return ""
    if has_embeds(query.items):
        raise Untranslatable("embedded resources in a write's select() are not translated: query them afterwards")
    rel = Relation(query.schema, query.table, None, ())
    return " RETURNING " + select_list(query.items, rel, query, {}, [], ctx)


def filters_sql(query: Query, ctx: Context) -> str:
    level, passed = route(query, (), {})
    where = where_sql(level, Relation(query.schema, query.table, None, ()), None, [], ctx)
    return "" if where == "true" else f" WHERE {where}"


def object_rows(payload: Value, verb: str) -> list[ObjectValue] | None:
    """The payload's rows when its keys are all written in the code; None when built at run time."""
    rows = list(payload.items) if isinstance(payload, ArrayValue) else [payload]
    if not rows or not all(isinstance(r, ObjectValue) and not r.spread for r in rows):
        return None
    keys = [k for k, _ in rows[0].items]  # type: ignore[union-attr]
    if any([k for k, _ in r.items] != keys for r in rows):  # type: ignore[union-attr]
        raise Untranslatable(f"{verb} rows have different keys: not translated")
    return rows  # type: ignore[return-value]


def insert_columns(query: Query, ctx: Context) -> tuple[list[str], str, list[str]]:
    """Column list, VALUES/SELECT source, and notes for an insert or upsert payload."""
    rows = object_rows(query.payload, query.operation)
    target = qualified(query.schema, query.table)
    if rows is None:
        if ctx.catalog is None:
            raise Untranslatable(f"{query.operation}() payload is built at run time ({shown(query.payload)}): "
                                 "needs --target to list the table's columns")
        columns = [c for c in ctx.catalog.tables[(query.schema, query.table)]
                   if (query.schema, query.table, c) not in ctx.catalog.generated]
        param = ctx.params.add(Expr(f"JSON.stringify([].concat({js(query.payload)}))"))
        cols = ", ".join(ident(c) for c in columns)
        return columns, f"SELECT {cols} FROM jsonb_populate_recordset(NULL::{target}, {param}::jsonb)", [
            "payload built at run time: every column is written, keys missing from it become NULL instead of "
            "their default — list the columns you set"]
    columns = [k for k, _ in rows[0].items]
    for column in columns:
        ctx.ref(query.schema, query.table, column)
    values = ", ".join("(" + ", ".join(ctx.params.add(v) for _, v in row.items) + ")" for row in rows)
    return columns, f"VALUES {values}", []


def insert_statement(query: Query, ctx: Context, notes: list[str]) -> str:
    columns, source, more = insert_columns(query, ctx)
    notes += more
    conflict = ""
    if query.operation == "upsert":
        conflict = conflict_sql(query, columns, ctx)
    cols = ", ".join(ident(c) for c in columns)
    return f"INSERT INTO {qualified(query.schema, query.table)} ({cols}) {source}{conflict}{returning_sql(query, ctx)}"


def conflict_sql(query: Query, columns: list[str], ctx: Context) -> str:
    options = query.options or ObjectValue(())
    on_conflict = opt_literal(options, "onConflict", "upsert")
    if on_conflict:
        keys = [c.strip() for c in str(on_conflict).split(",")]
    elif ctx.catalog is not None and (query.schema, query.table) in ctx.catalog.primary_keys:
        keys = list(ctx.catalog.primary_keys[(query.schema, query.table)])
    else:
        raise Untranslatable("upsert() without onConflict: needs --target to find the primary key")
    for key in keys:
        ctx.ref(query.schema, query.table, key)
    target = ", ".join(ident(k) for k in keys)
    if opt_literal(options, "ignoreDuplicates", "upsert"):
        return f" ON CONFLICT ({target}) DO NOTHING"
    updates = [c for c in columns if c not in keys]
    if not updates:
        return f" ON CONFLICT ({target}) DO NOTHING"
    return f" ON CONFLICT ({target}) DO UPDATE SET " + ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for c in updates)


def update_statement(query: Query, ctx: Context, notes: list[str]) -> str:
    rows = object_rows(query.payload, "update")
    if rows is None or len(rows) != 1:
        raise Untranslatable(f"update() payload is built at run time ({shown(query.payload)}): list the columns by hand")
    sets = []
    for key, value in rows[0].items:
        ctx.ref(query.schema, query.table, key)
        sets.append(f"{ident(key)} = {ctx.params.add(value)}")
    where = filters_sql(query, ctx)
    if not where:
        notes.append("no filter: updates every row")
    return f"UPDATE {qualified(query.schema, query.table)} SET {', '.join(sets)}{where}{returning_sql(query, ctx)}"


def delete_statement(query: Query, ctx: Context, notes: list[str]) -> str:
    where = filters_sql(query, ctx)
    if not where:
        notes.append("no filter: deletes every row")
    return f"DELETE FROM {qualified(query.schema, query.table)}{where}{returning_sql(query, ctx)}"


WRITERS: dict[str, Callable[[Query, Context, list[str]], str]] = {
    "insert": insert_statement, "upsert": insert_statement, "update": update_statement, "delete": delete_statement,
}


def rpc_args(found: FoundCall) -> ObjectValue:
    first = found.chain[0]
    args = first.args[1] if len(first.args) > 1 else None
    if args is None:
        return ObjectValue(())
    if not isinstance(args, ObjectValue) or args.spread:
        raise Untranslatable(f"rpc() arguments are built at run time ({shown(args)}): name them by hand")
    return args


def rpc_arg_names(found: FoundCall) -> tuple[str, ...]:
    try:
        return tuple(k for k, _ in rpc_args(found).items)
    except Untranslatable:
        return ()


def translate_rpc(found: FoundCall, ctx: Context) -> tuple[str, str, list[str]]:
    args = rpc_args(found)
    name = str(found.name)
    call_args = ", ".join(f"{ident(k)} => {ctx.params.add(v)}" for k, v in args.items)
    function = f"{qualified(found.schema, name)}({call_args})"
    options = option(found.chain[0], 2)
    query = build(found, Query(found.schema, name), found.chain[1:])
    rel = Relation(found.schema, name, None, ())
    level, passed = route(query, (), {})
    ctx.aliases.add(name)
    where = where_sql(level, rel, None, [], ctx)
    ctx.refs = [r for r in ctx.refs if (r.schema, r.table) != (found.schema, name)]  # result columns, not a table
    if opt_literal(options, "head", "rpc"):
        return f"SELECT count(*) AS count FROM {function} AS {ident(name)}" + (
            "" if where == "true" else f" WHERE {where}"), "count", []
    columns = select_list(query.items, rel, query, passed, [], ctx) if query.items else "*"
    order = order_sql(level.order, None, (found.schema, name), ctx)
    ctx.refs = [r for r in ctx.refs if (r.schema, r.table) != (found.schema, name)]
    sql = f"SELECT {columns} FROM {function} AS {ident(name)}" + ("" if where == "true" else f" WHERE {where}")
    sql += (f" ORDER BY {order}" if order else "") + limit_sql(level, ctx)
    return sql, query.returns, []
