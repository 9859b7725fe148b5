"""Schema stage: export or read migrations → clean (pglast) → adapt to the target → apply → diff."""
