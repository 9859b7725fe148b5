"""`audit-code`: find every supabase-js call in a backend, translate database chains to
parameterised SQL, and check them against the target — in pipeline order:
`scan.py` (tree-sitter) → `postgrest.py` (PostgREST grammar) → `translate.py` (chain → SQL)
→ `catalog.py` (target catalog) → `check.py` (catalog + PREPARE) → `report.py`.
"""
