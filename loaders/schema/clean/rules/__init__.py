"""The cleaner's rules by statement family, in the order they run.

Order matters: transaction bookkeeping first (it drops nothing), policies before the
managed-reference rule (a policy on a public table that calls auth.uid() is an RLS matter,
not a reference to auth), FK stripping before grants and ownership, and the auth-call scan
last so it only sees what survived. `--skip` comes first (the user's word is final); a
removed function's triggers and grants are dropped before the privilege rules would only
trim their grantees; function bodies are read after the managed-reference rule has dropped
functions whose signature already names auth or storage.
"""

from __future__ import annotations

from loaders.schema.clean.context import Rule
from loaders.schema.clean.rules import functions, platform, policies, privileges, references, transactions

RULES: tuple[Rule, ...] = (
    functions.skip,
    transactions.transaction_control,
    functions.function_dependents,
    policies.policy,
    references.managed_reference,
    functions.function_body,
    references.alter_table,
    references.create_table,
    privileges.grant,
    privileges.owner,
    privileges.roles,
    platform.publication,
    platform.extension,
    platform.event_trigger,
    platform.extensions_schema,
    platform.auth_calls,
)
