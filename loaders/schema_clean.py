"""Clean Supabase schema SQL for plain Postgres/RDS, statement by statement, with the real parser.

Line filters (`grep -v "CREATE POLICY"`) leave the tail of a multi-line policy behind and
cannot tell `REFERENCES auth.users` inside a column definition from a string. Here every
statement is parsed by pglast (libpg_query, the server's own grammar); a statement is kept
byte for byte unless a rule changes its AST, in which case it is re-printed with
`RawStream`. Dollar-quoted bodies, DO blocks and multi-line strings therefore survive
untouched, and every removal is recorded with file and line so the report can name it.

`clean_sql` is pure: no connection, no I/O, so `--dry-run` and the tests see exactly what
would be applied.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from pglast import ast, enums, parser
from pglast.stream import RawStream

from loaders.errors import MigrationError
from loaders.supabase import (
    API_ROLES,
    AUTH_SCHEMA,
    AUTH_SHIM_FUNCTIONS,
    EXTENSIONS_SCHEMA,
    PLATFORM_ROLES,
    RDS_EXTENSIONS,
    REALTIME_PUBLICATION,
    is_managed_schema,
)

RLS_MODES = ("strip", "shim")
# How many scanner pieces may be re-joined when one fails to parse on its own: a
# `BEGIN ATOMIC … END` body contains semicolons the scanner splits on.
MERGE_WINDOW = 64
OT = enums.ObjectType
AT = enums.AlterTableType
RLS_COMMANDS = {
    AT.AT_EnableRowSecurity, AT.AT_DisableRowSecurity, AT.AT_ForceRowSecurity, AT.AT_NoForceRowSecurity,
}
TRANSACTION_CONTROL = {
    enums.TransactionStmtKind.TRANS_STMT_BEGIN, enums.TransactionStmtKind.TRANS_STMT_START,
    enums.TransactionStmtKind.TRANS_STMT_COMMIT, enums.TransactionStmtKind.TRANS_STMT_ROLLBACK,
    enums.TransactionStmtKind.TRANS_STMT_PREPARE,
}
INVALID_FIX = "correct the statement, or pass --skip-invalid to skip it and record it in the report"


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


@dataclass(frozen=True)
class _Piece:
    start: int
    text: str
    node: ast.Node | None
    error: parser.ParseError | None = None


class _Lines:
    """Offset → 1-based line/column, for messages users can jump to."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def column(self, offset: int) -> int:
        return offset - self.starts[self.line(offset) - 1] + 1


def _pieces(sql: str) -> list[_Piece]:
    """Parse the whole text at once; only if that fails fall back to the scanner's statement
    boundaries so the invalid statements can be told apart from the valid ones."""
    try:
        raw = parser.parse_sql(sql)
    except parser.ParseError:
        return _pieces_one_by_one(sql)
    return [_from_raw(sql, 0, stmt) for stmt in raw]


def _from_raw(text: str, base: int, raw: ast.RawStmt) -> _Piece:
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(text)
    return _Piece(base + start, text[start:end], raw.stmt)


def _pieces_one_by_one(sql: str) -> list[_Piece]:
    slices = parser.split(sql, with_parser=False, only_slices=True)
    pieces: list[_Piece] = []
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
            pieces.extend(_from_raw(text, base, stmt) for stmt in raw)
            i = j + 1
            break
        else:
            pieces.append(_invalid_piece(sql[slices[i]], slices[i].start, first_error))
            i += 1
    return pieces


def _invalid_piece(text: str, start: int, error: parser.ParseError | None) -> _Piece:
    """Anchor an unparsable piece at its first token (the scanner's piece starts at the
    comments before it) and give "at end of input" errors the piece's end as position."""
    tokens = [t for t in _scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    skip = tokens[0].start if tokens else 0
    message = error.args[0] if error else "syntax error"
    index = error.args[1] if error and len(error.args) > 1 and error.args[1] is not None else len(text.rstrip())
    return _Piece(start + skip, text[skip:], None, parser.ParseError(message, index - skip))


def _scan(text: str) -> list[parser.Token]:
    try:
        return parser.scan(text)
    except parser.ParseError:
        return []


def statement_kind(node: ast.Node) -> str:
    """`CreatePolicyStmt` → `CREATE POLICY`, with the object type for DROP/COMMENT/GRANT."""
    if isinstance(node, ast.GrantStmt):
        return "GRANT" if node.is_grant else "REVOKE"
    if isinstance(node, ast.TransactionStmt):
        return enums.TransactionStmtKind(node.kind).name.removeprefix("TRANS_STMT_").replace("_", " ")
    if isinstance(node, ast.DropStmt):
        return "DROP " + _object_type(node.removeType)
    if isinstance(node, ast.CommentStmt):
        return "COMMENT ON " + _object_type(node.objtype)
    if isinstance(node, ast.AlterTableStmt):
        return "ALTER " + _object_type(node.objtype)
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


def _object_type(value: int) -> str:
    return OT(value).name.removeprefix("OBJECT_").replace("_", " ")


def _qual(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def _names(items: object) -> str:
    if isinstance(items, ast.String):
        return items.sval
    if isinstance(items, ast.ObjectWithArgs):
        return _names(items.objname) + "()"
    if isinstance(items, ast.TypeName):
        return _names(items.names)
    if isinstance(items, (tuple, list)):
        return ".".join(_names(i) for i in items)
    if isinstance(items, ast.RangeVar):
        return _qual(items)
    return str(items)


def _string_list(items: object) -> list[str] | None:
    if isinstance(items, (tuple, list)) and items and all(isinstance(i, ast.String) for i in items):
        return [i.sval for i in items]
    return None


def _role(spec: object) -> str | None:
    if isinstance(spec, ast.RoleSpec) and spec.roletype == enums.RoleSpecType.ROLESPEC_CSTRING:
        return spec.rolename
    return None


def _children(node: ast.Node) -> Iterator[object]:
    for name in type(node).__slots__:
        yield getattr(node, name, None)


def walk_nodes(value: object) -> Iterator[ast.Node]:
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from walk_nodes(item)
    elif isinstance(value, ast.Node):
        yield value
        for child in _children(value):
            yield from walk_nodes(child)


def _is_dropped_fk(node: ast.Node) -> bool:
    return (
        isinstance(node, ast.Constraint) and node.contype == enums.ConstrType.CONSTR_FOREIGN
        and node.pktable is not None and _managed(node.pktable.schemaname)
    )


def _managed(schema: str | None) -> bool:
    return is_managed_schema(schema) and schema != EXTENSIONS_SCHEMA


def _outside_transaction(node: ast.Node) -> bool:
    if isinstance(node, ast.IndexStmt):
        return bool(node.concurrent)
    if isinstance(node, ast.ReindexStmt):
        return any(p.defname == "concurrently" for p in node.params or ())
    return isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd


def _parse_error(piece: _Piece, file: str, lines: _Lines) -> MigrationError:
    """`file:line:col: <parser message>` at the spot the parser stopped."""
    assert piece.error is not None
    at = piece.start + (piece.error.args[1] if len(piece.error.args) > 1 else 0)
    return MigrationError(f"{file}:{lines.line(at)}:{lines.column(at)}: {piece.error.args[0]}", INVALID_FIX)


class _Cleaner:
    def __init__(self, source_name: str, rls: str, lines: _Lines) -> None:
        self.file = source_name
        self.rls = rls
        self.lines = lines
        self.result = CleanResult([], [])

    # -- bookkeeping -------------------------------------------------------------------
    def record(self, line: int, kind: str, obj: str, reason: str, action: str) -> None:
        self.result.changes.append(Change(self.file, line, kind, obj, reason, action))

    def feed(self, piece: _Piece, skip_invalid: bool) -> None:
        line = self.lines.line(piece.start)
        if piece.node is None:
            self.invalid(piece, line, skip_invalid)
            return
        kind = statement_kind(piece.node)
        ctx = _Ctx(line, kind)
        node = self.apply_rules(piece.node, ctx)
        if node is None:
            return
        sql = RawStream()(node) if ctx.modified else piece.text
        self.result.statements.append(CleanStatement(sql, self.file, line, kind))

    def invalid(self, piece: _Piece, line: int, skip_invalid: bool) -> None:
        error = _parse_error(piece, self.file, self.lines)
        if not skip_invalid:
            raise error
        first_line = piece.text.strip().splitlines()[0][:80] if piece.text.strip() else ""
        self.record(line, "INVALID", first_line, f"does not parse ({error.cause})", "skipped")

    # -- rules --------------------------------------------------------------------------
    def apply_rules(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        rules = (
            self.transaction, self.policy, self.managed_reference, self.alter_table,
            self.create_table, self.grant, self.owner, self.roles, self.publication,
            self.extension, self.event_trigger, self.schema, self.auth_calls,
        )
        for rule in rules:
            result = rule(node, ctx)
            if result is None:
                return None
            node = result
        return node

    def transaction(self, node: ast.Node, ctx: "_Ctx") -> ast.Node:
        if isinstance(node, ast.TransactionStmt) and node.kind in TRANSACTION_CONTROL:
            self.result.manages_transactions = True
        if isinstance(node, (ast.IndexStmt, ast.ReindexStmt, ast.VacuumStmt)) and _outside_transaction(node):
            self.result.manages_transactions = True
        return node

    def policy(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if isinstance(node, (ast.CreatePolicyStmt, ast.AlterPolicyStmt)):
            obj = f"policy {node.policy_name!r} on {_qual(node.table)}"
            roles = {r for r in map(_role, node.roles or ()) if r}
        elif isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_POLICY:
            obj = "policy " + ", ".join(_names(o) for o in node.objects)
            roles = set()
        elif isinstance(node, ast.RenameStmt) and node.renameType == OT.OBJECT_POLICY:
            obj = f"policy {node.subname!r} on {_qual(node.relation)}"
            roles = set()
        elif isinstance(node, ast.CommentStmt) and node.objtype == OT.OBJECT_POLICY:
            obj = "policy " + _names(node.object)
            roles = set()
        else:
            return node
        if self.rls == "strip":
            self.record(ctx.line, ctx.kind, obj, "row level security policies are stripped (--rls strip)", "dropped")
            return None
        foreign = sorted((roles & PLATFORM_ROLES) - API_ROLES)
        if foreign:
            self.record(ctx.line, ctx.kind, obj, f"names Supabase role(s) {', '.join(foreign)}, absent on the target", "dropped")
            return None
        self.result.roles_needed |= roles & API_ROLES
        return node

    def managed_reference(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        """Anything that creates, alters or reads an object in a Supabase-managed schema
        (auth.users, storage.objects, cron.schedule …) cannot run where those schemas don't exist."""
        found = _first_managed(node)
        if found is None:
            return node
        reason = f"touches {found}, which belongs to a Supabase-managed schema that stays on Supabase"
        self.record(ctx.line, ctx.kind, _statement_object(node) or found, reason, "dropped")
        return None

    def alter_table(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if not isinstance(node, ast.AlterTableStmt):
            return node
        table = _qual(node.relation)
        kept, removed = [], []
        for cmd in node.cmds or ():
            reason = self.alter_command_reason(cmd)
            if reason:
                removed.append(reason)
                continue
            if cmd.subtype == AT.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
                removed_fks = self.strip_column_fks(cmd.def_, table, ctx)
                ctx.modified |= removed_fks
            kept.append(cmd)
        if not removed:
            return node
        action = "modified" if kept else "dropped"
        for obj, why in removed:
            self.record(ctx.line, ctx.kind, f"{table}{obj}", why, action)
        if not kept:
            return None
        node.cmds = tuple(kept)
        ctx.modified = True
        return node

    def alter_command_reason(self, cmd: ast.AlterTableCmd) -> tuple[str, str] | None:
        if cmd.subtype in RLS_COMMANDS and self.rls == "strip":
            toggle = AT(cmd.subtype).name.removeprefix("AT_")
            return f" ({toggle})", "row level security toggles are stripped (--rls strip)"
        if cmd.subtype == AT.AT_ChangeOwner and _role(cmd.newowner) in PLATFORM_ROLES:
            return f" owner {_role(cmd.newowner)}", "owner is a Supabase role; objects belong to the user applying the schema"
        if cmd.subtype == AT.AT_AddConstraint and _is_dropped_fk(cmd.def_):
            return (
                f" constraint {cmd.def_.conname or ''} → {_qual(cmd.def_.pktable)}".replace("  ", " "),
                "foreign key to a Supabase-managed table (auth stays on Supabase); column kept",
            )
        return None

    def strip_column_fks(self, col: ast.ColumnDef, table: str, ctx: "_Ctx") -> bool:
        constraints = col.constraints or ()
        dropped = [c for c in constraints if _is_dropped_fk(c)]
        for c in dropped:
            self.record(
                ctx.line, ctx.kind, f"{table}.{col.colname} → {_qual(c.pktable)}",
                "inline foreign key to a Supabase-managed table (auth stays on Supabase); column kept",
                "modified",
            )
        if dropped:
            col.constraints = tuple(c for c in constraints if not _is_dropped_fk(c)) or None
        return bool(dropped)

    def create_table(self, node: ast.Node, ctx: "_Ctx") -> ast.Node:
        if not isinstance(node, ast.CreateStmt):
            return node
        table = _qual(node.relation)
        elements = []
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                ctx.modified |= self.strip_column_fks(element, table, ctx)
            elif _is_dropped_fk(element):
                cols = ", ".join(_names(k) for k in element.fk_attrs or ())
                self.record(
                    ctx.line, ctx.kind, f"{table} constraint {element.conname or '(' + cols + ')'} → {_qual(element.pktable)}",
                    "foreign key to a Supabase-managed table (auth stays on Supabase); columns kept", "modified",
                )
                ctx.modified = True
                continue
            elements.append(element)
        node.tableElts = tuple(elements)
        return node

    def grant(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if isinstance(node, ast.AlterDefaultPrivilegesStmt):
            for option in node.options or ():
                owners = {_role(r) for r in option.arg or ()} if option.defname == "roles" else set()
                if owners & PLATFORM_ROLES:
                    self.record(ctx.line, ctx.kind, "default privileges for " + ", ".join(sorted(owners & PLATFORM_ROLES)),
                                "default privileges of a Supabase role", "dropped")
                    return None
            inner = self.grant(node.action, ctx)
            if inner is None:
                return None
            node.action = inner
            return node
        if isinstance(node, ast.GrantRoleStmt):
            names = {p.priv_name for p in node.granted_roles or ()} | {_role(r) for r in node.grantee_roles or ()}
            platform = sorted(n for n in names if n in PLATFORM_ROLES)
            if platform:
                self.record(ctx.line, ctx.kind, "role membership " + ", ".join(platform), "names Supabase roles", "dropped")
                return None
            return node
        if not isinstance(node, ast.GrantStmt):
            return node
        keep_roles = API_ROLES if self.rls == "shim" else frozenset()
        grantees = node.grantees or ()
        kept = [g for g in grantees if _role(g) not in PLATFORM_ROLES or _role(g) in keep_roles]
        if len(kept) == len(grantees):
            self.result.roles_needed |= {_role(g) for g in grantees} & API_ROLES
            return node
        removed = sorted(_role(g) for g in grantees if g not in kept)
        action = "modified" if kept else "dropped"
        what = " ".join(filter(None, [_object_type(node.objtype).lower(), _names(node.objects or ())]))
        if node.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
            what = f"all {_object_type(node.objtype).lower()}s in schema {_names(node.objects or ())}"
        preposition = "to" if node.is_grant else "from"
        self.record(ctx.line, ctx.kind, f"{what} {preposition} {', '.join(removed)}",
                    "privileges for Supabase roles; the application role gets its own grants", action)
        if not kept:
            return None
        self.result.roles_needed |= {_role(g) for g in kept} & API_ROLES
        node.grantees = tuple(kept)
        ctx.modified = True
        return node

    def owner(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if isinstance(node, ast.AlterOwnerStmt) and _role(node.newowner) in PLATFORM_ROLES:
            self.record(ctx.line, ctx.kind, f"{_names(node.object)} owner {_role(node.newowner)}",
                        "owner is a Supabase role; objects belong to the user applying the schema", "dropped")
            return None
        if isinstance(node, ast.CreateSchemaStmt) and _role(node.authrole) in PLATFORM_ROLES:
            self.record(ctx.line, ctx.kind, f"schema {node.schemaname} authorization {_role(node.authrole)}",
                        "owner is a Supabase role; objects belong to the user applying the schema", "modified")
            node.authrole = None
            ctx.modified = True
        return node

    def roles(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if isinstance(node, (ast.CreateRoleStmt, ast.DropRoleStmt, ast.AlterRoleStmt, ast.AlterRoleSetStmt)):
            names = {node.role} if isinstance(node, ast.CreateRoleStmt) else (
                {_role(r) for r in node.roles} if isinstance(node, ast.DropRoleStmt) else {_role(node.role)})
            platform = sorted(n for n in names if n in PLATFORM_ROLES)
            if platform:
                self.record(ctx.line, ctx.kind, "role " + ", ".join(platform),
                            "Supabase platform role; --rls shim creates the API roles on the target", "dropped")
                return None
        return node

    def publication(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if isinstance(node, (ast.CreatePublicationStmt, ast.AlterPublicationStmt)):
            names = {node.pubname}
        elif isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_PUBLICATION:
            names = {_names(o) for o in node.objects}
        else:
            return node
        if REALTIME_PUBLICATION in names:
            self.record(ctx.line, ctx.kind, f"publication {REALTIME_PUBLICATION}",
                        "Supabase Realtime's publication; Realtime stays on Supabase", "dropped")
            return None
        return node

    def extension(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        if isinstance(node, ast.CommentStmt) and node.objtype == OT.OBJECT_EXTENSION:
            self.record(ctx.line, ctx.kind, f"extension {_names(node.object)}",
                        "an extension's comment comes with the extension and only its owner may change it", "dropped")
            return None
        if isinstance(node, (ast.AlterExtensionStmt, ast.AlterExtensionContentsStmt)):
            names = [node.extname]
        elif isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_EXTENSION:
            names = [_names(o) for o in node.objects]
        elif isinstance(node, ast.CreateExtensionStmt):
            names = [node.extname]
        else:
            return node
        missing = [n for n in names if n not in RDS_EXTENSIONS]
        if missing:
            self.record(ctx.line, ctx.kind, "extension " + ", ".join(missing),
                        "extension not offered by Amazon RDS (Supabase platform extension)", "dropped")
            return None
        if isinstance(node, ast.CreateExtensionStmt):
            return self.place_extension(node, ctx)
        return node

    def place_extension(self, node: ast.CreateExtensionStmt, ctx: "_Ctx") -> ast.Node:
        """Keep the extension; without an explicit schema put it in `extensions` as Supabase
        does, so `extensions.uuid_generate_v4()` resolves on the target too."""
        options = list(node.options or ())
        has_schema = any(o.defname == "schema" for o in options)
        if has_schema and node.if_not_exists:
            return node
        if not has_schema and node.extname != "plpgsql":
            options.append(ast.DefElem(defname="schema", arg=ast.String(sval=EXTENSIONS_SCHEMA)))
            self.record(ctx.line, ctx.kind, f"extension {node.extname}",
                        f"created in schema {EXTENSIONS_SCHEMA} like on Supabase, so qualified references resolve", "rewritten")
        node.options = tuple(options) or None
        node.if_not_exists = True
        ctx.modified = True
        return node

    def event_trigger(self, node: ast.Node, ctx: "_Ctx") -> ast.Node | None:
        is_event = isinstance(node, (ast.CreateEventTrigStmt, ast.AlterEventTrigStmt)) or (
            isinstance(node, (ast.DropStmt, ast.CommentStmt))
            and (node.removeType if isinstance(node, ast.DropStmt) else node.objtype) == OT.OBJECT_EVENT_TRIGGER
        )
        if not is_event:
            return node
        name = node.trigname if hasattr(node, "trigname") else _names(getattr(node, "objects", None) or node.object)
        self.record(ctx.line, ctx.kind, f"event trigger {name}", "event triggers need a superuser (Supabase platform hooks)", "dropped")
        return None

    def schema(self, node: ast.Node, ctx: "_Ctx") -> ast.Node:
        if isinstance(node, ast.CreateSchemaStmt) and node.schemaname == EXTENSIONS_SCHEMA and not node.if_not_exists:
            node.if_not_exists = True
            ctx.modified = True
            self.record(ctx.line, ctx.kind, f"schema {EXTENSIONS_SCHEMA}",
                        "the tool creates schema extensions on the target first", "rewritten")
        return node

    def auth_calls(self, node: ast.Node, ctx: "_Ctx") -> ast.Node:
        for sub in walk_nodes(node):
            if isinstance(sub, ast.FuncCall):
                names = _string_list(sub.funcname)
                if names and len(names) == 2 and names[0] == AUTH_SCHEMA:
                    self.result.auth_functions.add(names[1])
        return node


@dataclass
class _Ctx:
    line: int
    kind: str
    modified: bool = False


def _first_managed(node: ast.Node) -> str | None:
    """The first object in a Supabase-managed schema the statement names, if any.

    FKs to auth/storage are exempt (the FK rule drops the constraint, not the table), and so
    are calls to the auth functions the shim provides (auth.uid() in a column default)."""
    for name in _schema_names(node):
        if _managed(name):
            return f"schema {name}"
    for sub in _walk_skipping_dropped_fks(node):
        found = _managed_name(sub)
        if found:
            return found
    return None


def _schema_names(node: ast.Node) -> list[str]:
    """Bare schema names a statement acts on (GRANT … ON SCHEMA auth, CREATE SCHEMA storage …)."""
    if isinstance(node, ast.CreateSchemaStmt):
        return [node.schemaname]
    if isinstance(node, ast.GrantStmt) and node.objtype == OT.OBJECT_SCHEMA:
        return [_names(o) for o in node.objects or ()]
    if isinstance(node, ast.DropStmt) and node.removeType == OT.OBJECT_SCHEMA:
        return [_names(o) for o in node.objects or ()]
    if isinstance(node, (ast.CommentStmt, ast.AlterOwnerStmt)) and node.objtype == OT.OBJECT_SCHEMA:
        return [_names(node.object)]
    if isinstance(node, ast.AlterDefaultPrivilegesStmt):
        return [_names(s) for o in node.options or () if o.defname == "schemas" for s in o.arg]
    return []


def _walk_skipping_dropped_fks(value: object) -> Iterator[ast.Node]:
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _walk_skipping_dropped_fks(item)
    elif isinstance(value, ast.Node) and not _is_dropped_fk(value):
        yield value
        for child in _children(value):
            yield from _walk_skipping_dropped_fks(child)


# Fields holding a qualified name as a list of String nodes: (schema, name[, member]).
_NAME_FIELDS = ("funcname", "defnames", "domainname", "objname", "typeName", "names", "object", "objects")


def _managed_name(node: ast.Node) -> str | None:
    if isinstance(node, ast.RangeVar):
        return _qual(node) if _managed(node.schemaname) else None
    if isinstance(node, ast.ColumnRef):
        return None
    if isinstance(node, ast.FuncCall):
        names = _string_list(node.funcname) or []
        if len(names) == 2 and names[0] == AUTH_SCHEMA and names[1] in AUTH_SHIM_FUNCTIONS:
            return None
        return ".".join(names) if len(names) >= 2 and _managed(names[0]) else None
    for name in _NAME_FIELDS:
        value = getattr(node, name, None) if name in type(node).__slots__ else None
        for candidate in ([value] if _string_list(value) else value if isinstance(value, (tuple, list)) else []):
            names = _string_list(candidate)
            if names and len(names) >= 2 and _managed(names[0]):
                return ".".join(names)
    return None


def _statement_object(node: ast.Node) -> str | None:
    if isinstance(node, (ast.CreatePolicyStmt, ast.AlterPolicyStmt)):
        return f"policy {node.policy_name!r} on {_qual(node.table)}"
    for name in ("relation", "table", "view", "sequence"):
        value = getattr(node, name, None) if name in type(node).__slots__ else None
        if isinstance(value, ast.RangeVar):
            label = "trigger " + node.trigname + " on " if isinstance(node, ast.CreateTrigStmt) else ""
            return label + _qual(value)
    if isinstance(node, ast.CreateFunctionStmt):
        return "function " + _names(node.funcname)
    return None


def clean_sql(sql: str, *, source_name: str, rls: str = "strip", skip_invalid: bool = False) -> CleanResult:
    """Split, parse and clean one SQL file (or one pg_dump section); raise MigrationError on
    the first statement that doesn't parse unless `skip_invalid`, which records it instead."""
    if rls not in RLS_MODES:
        raise MigrationError(f"unknown --rls mode {rls!r}", f"use one of: {', '.join(RLS_MODES)}")
    cleaner = _Cleaner(source_name, rls, _Lines(sql))
    for piece in _pieces(sql):
        cleaner.feed(piece, skip_invalid)
    return cleaner.result


def split_statements(sql: str, *, source_name: str, skip_invalid: bool = False) -> list[CleanStatement]:
    """Statements as written, no rules applied (our own setup SQL, reference runs in tests)."""
    lines = _Lines(sql)
    statements = []
    for piece in _pieces(sql):
        if piece.node is None and skip_invalid:
            continue
        if piece.node is None:
            raise _parse_error(piece, source_name, lines)
        statements.append(CleanStatement(piece.text, source_name, lines.line(piece.start), statement_kind(piece.node)))
    return statements
