"""Sample SQL shipped with the package: a Supabase-shaped source database for tests and demos."""

from importlib import resources


def sample_sql(name: str) -> str:
    """One of the bundled SQL files (supabase_source.sql, seed.sql)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def supabase_source_sql() -> str:
    """SQL that turns a fresh database into a small Supabase-like project (run as a superuser)."""
    return sample_sql("supabase_source.sql")
