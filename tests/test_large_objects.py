"""Large objects: copied with their OIDs, byte for byte, in the snapshot; verify counts and
checksums them as the target's non-superuser owner; skipping them is never silent."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import anyio
import asyncpg
import pytest
import structlog

from automation.cli import main
from loaders.data.copy import CopyOptions, build_copy_plan, copy_tables
from loaders.data.large_objects import BATCH_COUNT, CHUNK_BYTES
from loaders.data.snapshot import open_snapshot
from loaders.data.checksum import Proof
from loaders.data.verify import verify
from loaders.dsn import parse_url
from loaders.errors import MigrationError
from tests.datakit import copy_all, fetchval, run_sql

SCHEMA = "CREATE TABLE docs (id int PRIMARY KEY, name text, body oid);"


@pytest.fixture(autouse=True)
def _fresh_logging():
    yield
    structlog.reset_defaults()


def payloads() -> dict[str, bytes]:
    rng = random.Random(16)
    return {
        "empty": b"",
        "small": b"hello \x00 world \xff",
        "exact chunk": bytes(rng.getrandbits(8) for _ in range(CHUNK_BYTES)),
        "2.5 chunks": bytes(rng.getrandbits(8) for _ in range(CHUNK_BYTES * 5 // 2)),
    }


async def seed(source: str, target: str, *, many: int = 0) -> dict[int, bytes]:
    """Large objects on the source referenced from a table; same schema on the target."""
    await run_sql(target, SCHEMA)
    conn = await asyncpg.connect(source)
    try:
        await conn.execute(SCHEMA)
        contents: dict[int, bytes] = {}
        for i, (name, data) in enumerate(payloads().items(), 1):
            oid = await conn.fetchval("SELECT lo_from_bytea(0, $1)", data)
            await conn.execute("INSERT INTO docs VALUES ($1, $2, $3)", i, name, oid)
            contents[oid] = data
        # a sparse object: written at an offset, the hole reads back as zeros
        sparse = await conn.fetchval("SELECT lo_create(0)")
        await conn.execute("SELECT lo_put($1, 3000000, '\\xabcd'::bytea)", sparse)
        contents[sparse] = await conn.fetchval("SELECT lo_get($1)", sparse)
        for _ in range(many):
            oid = await conn.fetchval("SELECT lo_from_bytea(0, $1)", f"tiny {len(contents)}".encode())
            contents[oid] = f"tiny {len(contents)}".encode()
        return contents
    finally:
        await conn.close()


async def lo_contents(url: str) -> dict[int, bytes]:
    conn = await asyncpg.connect(url)
    try:
        return {r["oid"]: r["data"] for r in await conn.fetch(
            "SELECT oid::bigint AS oid, lo_get(oid) AS data FROM pg_largeobject_metadata")}
    finally:
        await conn.close()


async def test_large_objects_round_trip_byte_for_byte(source_db: str, target_db: str) -> None:
    contents = await seed(source_db, target_db, many=BATCH_COUNT + 20)  # more than one batch
    report = await copy_all(source_db, target_db, jobs=2)
    assert report.large_objects is not None and report.large_objects.copied == len(contents)
    assert report.warnings == []
    copied = await lo_contents(target_db)
    assert set(copied) == set(contents)  # same OIDs, so the table's oid column still points at them
    for oid, data in contents.items():
        assert hashlib.sha256(copied[oid]).digest() == hashlib.sha256(data).digest(), oid
    assert len(copied[max(contents, key=lambda o: len(contents[o]))]) == 3000002
    # through the table's column, as an app would read them, as the non-superuser owner
    assert await fetchval(target_db, "SELECT lo_get(body) FROM docs WHERE name = 'small'") == b"hello \x00 world \xff"
    assert await fetchval(target_db, "SELECT bool_and(pg_get_userbyid(lomowner) = current_user) "
                                     "FROM pg_largeobject_metadata")
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert result.ok, result.mismatches()
    assert result.large_objects is not None and result.large_objects.source_count == len(contents)
    assert result.large_objects.source_bytes == sum(map(len, contents.values()))


async def test_verify_finds_changed_missing_and_extra_large_objects(source_db: str, target_db: str) -> None:
    contents = await seed(source_db, target_db)
    await copy_all(source_db, target_db, jobs=2)
    changed, missing = sorted(contents)[1], sorted(contents)[2]
    # same size, one byte different, past the first 1 MB slice
    await run_sql(target_db, f"SELECT lo_put({changed}, 0, '\\x00'::bytea)")
    await run_sql(target_db, f"SELECT lo_unlink({missing})")
    extra = await fetchval(target_db, "SELECT lo_from_bytea(0, 'mine'::bytea)::bigint")
    result = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))
    assert not result.ok and "large objects" in result.mismatches()
    check = result.large_objects
    assert check is not None
    assert (check.different, check.missing, check.extra) == ([changed], [missing], [extra])
    counts_only = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), proof=Proof.COUNTS)
    assert counts_only.large_objects is not None and counts_only.large_objects.different == []


async def test_large_objects_are_read_in_the_snapshot(source_db: str, target_db: str) -> None:
    contents = await seed(source_db, target_db)
    oid = sorted(contents)[1]
    src, tgt = parse_url(source_db, "source"), parse_url(target_db, "target")
    options = CopyOptions(jobs=2)
    async with open_snapshot(src, readers=2) as snap:
        plan = await build_copy_plan(snap, tgt, options)
        await run_sql(source_db, f"SELECT lo_put({oid}, 0, '\\x5858'::bytea); SELECT lo_from_bytea(0, 'late')")
        await copy_tables(snap, tgt, plan, options)
        inside = await verify(snap, tgt)
    assert inside.ok, inside.mismatches()
    assert (await lo_contents(target_db)) == contents


async def test_skipping_large_objects_is_never_silent(
    source_db: str, target_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contents = await seed(source_db, target_db)
    report_file = tmp_path / "copy.json"
    code = await anyio.to_thread.run_sync(main, [
        "copy", "--source", source_db, "--target", target_db, "--no-large-objects", "--report", str(report_file)])
    assert code == 0
    assert await fetchval(target_db, "SELECT count(*) FROM pg_largeobject_metadata") == 0
    warning = f"{len(contents)} large object(s) on the source were NOT copied (--no-large-objects)"
    assert any(warning in w for w in json.loads(report_file.read_text())["warnings"])
    assert warning in capsys.readouterr().err
    # verify counts them as missing unless told to skip, and then says so
    assert "large objects" in (await verify(parse_url(source_db, "source"), parse_url(target_db, "target"))).mismatches()
    skipped = await verify(parse_url(source_db, "source"), parse_url(target_db, "target"), large_objects=False)
    assert skipped.ok and any(f"not checked (--no-large-objects): {len(contents)}" in w for w in skipped.warnings())


async def test_existing_large_objects_are_refused_then_replaced_or_resumed(source_db: str, target_db: str) -> None:
    contents = await seed(source_db, target_db)
    clash = sorted(contents)[0]
    await run_sql(target_db, f"SELECT lo_create({clash})")
    with pytest.raises(MigrationError) as info:
        await copy_all(source_db, target_db, jobs=1)
    assert str(clash) in info.value.cause and "--truncate" in (info.value.fix or "")
    assert await fetchval(target_db, "SELECT count(*) FROM docs") == 0
    report = await copy_all(source_db, target_db, jobs=1, truncate=True)
    assert report.large_objects is not None and report.large_objects.copied == len(contents)
    assert await lo_contents(target_db) == contents
    again = await copy_all(source_db, target_db, jobs=1, resume=True)
    assert again.large_objects is not None and (again.large_objects.copied, again.large_objects.already_done) == (
        0, len(contents))


async def test_unreadable_large_objects_are_one_line_and_skippable(pg15, source_db: str, target_db: str) -> None:
    contents = await seed(source_db, target_db)
    database = source_db.rsplit("/", 1)[1]
    role = "lo_reader_" + database[-6:]
    await run_sql(source_db, f"""CREATE ROLE {role} LOGIN PASSWORD 'lo-reader-pw';
        GRANT CONNECT ON DATABASE "{database}" TO {role}; GRANT SELECT ON docs TO {role};""")
    reader_url = pg15.url(database, user=role, password="lo-reader-pw")
    with pytest.raises(MigrationError) as info:
        await copy_all(reader_url, target_db, jobs=1)
    assert "cannot read the large objects" in info.value.cause and "--no-large-objects" in (info.value.fix or "")
    assert await fetchval(target_db, "SELECT count(*) FROM docs") == 0
    report = await copy_all(reader_url, target_db, jobs=1, large_objects=False)
    assert any(f"{len(contents)} large object(s)" in w for w in report.warnings)
