"""Extensions as data (`loaders/extensions.yaml`): what RDS offers, what Supabase preinstalls,
and how a function body shows that it needs an extension RDS lacks.

Kept in a data file, not code, because the list follows AWS's release notes: updating it
should not mean reading Python. The target server is still asked before anything is applied
(`missing_on_target`): the file says what RDS can have, the server what this one has.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from loaders.supabase import EXTENSIONS_SCHEMA


@dataclass(frozen=True)
class Unavailable:
    """An extension (or Supabase schema) RDS does not offer, and how to replace it."""

    name: str
    schemas: frozenset[str]
    functions: frozenset[str]
    types: frozenset[str]
    qualified_only: bool
    instead: str


@dataclass(frozen=True)
class ExtensionCatalog:
    rds: frozenset[str]
    preinstalled: dict[str, str]  # function name -> extension
    unavailable: tuple[Unavailable, ...]

    def by_schema(self, schema: str) -> Unavailable | None:
        return next((u for u in self.unavailable if schema in u.schemas), None)

    def by_name(self, schema: str | None, name: str, *, type_name: bool = False) -> Unavailable | None:
        """The unavailable extension a call or type belongs to: in its own schema, or in
        `extensions`/unqualified with a name the extension defines."""
        if schema is not None and schema != EXTENSIONS_SCHEMA:
            return self.by_schema(schema)
        for u in self.unavailable:
            if u.qualified_only and schema is None:
                continue
            if name in (u.types if type_name else u.functions):
                return u
        return None

    def preinstalled_extension(self, schema: str | None, name: str) -> str | None:
        return self.preinstalled.get(name) if schema in (None, EXTENSIONS_SCHEMA) else None


@cache
def extension_catalog() -> ExtensionCatalog:
    data = yaml.safe_load(resources.files("loaders").joinpath("extensions.yaml").read_text())
    preinstalled = {f: ext for ext, functions in data["preinstalled"].items() for f in functions}
    unavailable = tuple(
        Unavailable(name, frozenset(spec.get("schemas", ())), frozenset(spec.get("functions", ())),
                    frozenset(spec.get("types", ())), bool(spec.get("qualified_only")), spec["instead"])
        for name, spec in data["unavailable"].items()
    )
    return ExtensionCatalog(frozenset(data["rds"]), preinstalled, unavailable)


def rds_offers(extension: str) -> bool:
    return extension in extension_catalog().rds
