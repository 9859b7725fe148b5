"""The cleaner's rules by statement family, in the order they run.

Order matters: transaction bookkeeping first (it drops nothing), policies before the
managed-reference rule (a policy on a public table that calls auth.uid() is an RLS matter,
not a reference to auth), FK stripping before grants and ownership, and the auth-call scan
last so it only sees what survived.
"""

from __future__ import annotations

from loaders.schema.clean.context import Rule
from loaders.schema.clean.rules import platform, policies, privileges, references, transactions

RULES: tuple[Rule, ...] = (
    transactions.transaction_control,
    policies.policy,
    references.managed_reference,
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
