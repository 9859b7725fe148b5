"""Sample SQL shipped with the package: a Supabase-shaped source database for tests and demos."""

from importlib import resources


def supabase_source_sql() -> str:
    """SQL that turns a fresh database into a small Supabase-like project (run as a superuser)."""
    return resources.files(__name__).joinpath("supabase_source.sql").read_text(encoding="utf-8")
