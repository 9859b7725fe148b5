"""The data path: catalog → schema → copy → sequences → verify, all async (asyncpg + anyio)."""
