"""Clean Supabase schema SQL for plain Postgres/RDS, statement by statement, with the real parser.

Line filters (`grep -v "CREATE POLICY"`) leave the tail of a multi-line policy behind and
cannot tell `REFERENCES auth.users` inside a column definition from a string. Here every
statement is parsed by pglast (libpg_query, the server's own grammar); a statement is kept
byte for byte unless a rule changes its AST, in which case it is re-printed with
`RawStream`. Dollar-quoted bodies, DO blocks and multi-line strings therefore survive
untouched, and every removal is recorded with file and line so the report can name it.

Layout: `parse` splits and locates statements, `rules/` holds one module per statement
family (policies, references to managed schemas, privileges, platform pieces), `cleaner`
runs them in order. `clean_sql` is pure: no connection, no I/O, so `--dry-run` and the
tests see exactly what would be applied.
"""

from loaders.schema.clean.cleaner import clean_sql, parsed_statements, split_statements
from loaders.schema.clean.model import RLS_MODES, Change, CleanResult, CleanState, CleanStatement
from loaders.schema.clean.nodes import walk_nodes
from loaders.schema.clean.parse import statement_kind

__all__ = [
    "RLS_MODES", "Change", "CleanResult", "CleanState", "CleanStatement", "clean_sql", "parsed_statements",
    "split_statements",
    "statement_kind", "walk_nodes",
]
