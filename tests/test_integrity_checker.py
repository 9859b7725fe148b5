"""The independent checker: rows compared with this test's own SQL and decoding, not with the
code under test, while the two databases carry DIFFERENT defaults for every setting that
changes how values print (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output).
The checker's sessions keep those defaults and read values in binary (asyncpg), so what is
compared is the value itself, whatever either side would print."""

from __future__ import annotations

import asyncpg
import pytest

from loaders.data.verify import verify
from loaders.dsn import parse_url
from tests.datakit import copy_all, run_sql

SOURCE_SETTINGS = {"DateStyle": "SQL, DMY", "TimeZone": "America/St_Johns", "IntervalStyle": "sql_standard",
                   "extra_float_digits": "-3", "bytea_output": "escape"}
TARGET_SETTINGS = {"DateStyle": "German, MDY", "TimeZone": "Asia/Kathmandu", "IntervalStyle": "iso_8601",
                   "extra_float_digits": "0", "bytea_output": "hex"}

TABLE = """CREATE TABLE v (id int PRIMARY KEY, tstz timestamptz, ts timestamp, d date, t time, ttz timetz,
                           iv interval, f4 real, f8 double precision, n numeric, b bytea, s text, arr float8[])"""
ROWS = r"""
INSERT INTO v VALUES
 (1, '2024-02-29 23:59:59.123456+05:30', '1999-12-31 23:59:59.999999', '2024-02-29', '23:59:59.5', '12:00:00+14',
  '1 year 2 mons -3 days 04:05:06.789', 3.4028235e38, 0.1, 123456789.000100, '\x00ff5c27e2988300', E'tab\t"q"', '{1.5,NaN,-0}'),
 (2, '0044-03-15 12:00:00+00', '0001-01-01 00:00:00', '0001-01-01', '00:00:00', '23:59:59-12',
  '-178000000 years', 1.17549435e-38, 1e-310, -0.0000001, '', '', '{}'),
 (3, 'infinity', '-infinity', 'infinity', '23:59:59.999999', '00:00:00+00', '0', 'NaN', '-Infinity', 'NaN', '\x5c', NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, '3 days 1 hour', -0.0, 2.2250738585072014e-308, 1e100, NULL, 'ünïcødé ☃', '{NULL}');
"""


async def set_database_defaults(url: str, settings: dict[str, str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        db = await conn.fetchval("SELECT current_database()")
        for name, value in settings.items():
            await conn.execute(f"ALTER DATABASE \"{db}\" SET {name} = '{value}'")
    finally:
        await conn.close()


async def own_rows(url: str) -> tuple[dict[str, str], list[str]]:
    """The session's effective settings, and every row as Python values (binary protocol)."""
    conn = await asyncpg.connect(url)
    try:
        shown = {name: await conn.fetchval(f"SHOW {name}") for name in SOURCE_SETTINGS}
        rows = await conn.fetch("SELECT * FROM v")
        return shown, sorted(repr(tuple(r.values())) for r in rows)
    finally:
        await conn.close()


@pytest.mark.parametrize("fmt", ["text", "binary"])
async def test_rows_equal_by_an_independent_check_under_different_settings(
    source_db: str, target_db: str, fmt: str
) -> None:
    await set_database_defaults(source_db, SOURCE_SETTINGS)
    await set_database_defaults(target_db, TARGET_SETTINGS)
    await run_sql(source_db, TABLE + ";" + ROWS)
    await run_sql(target_db, TABLE)

    report = await copy_all(source_db, target_db, jobs=1, format=fmt)
    assert [t.rows for t in report.tables] == [4]

    source_settings, source_rows = await own_rows(source_db)
    target_settings, target_rows = await own_rows(target_db)
    assert all(source_settings[k] != target_settings[k] for k in SOURCE_SETTINGS), (source_settings, target_settings)
    assert len(source_rows) == 4 and source_rows == target_rows
    # and the tool's own proof agrees with the independent one
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.ok, result.mismatches()
