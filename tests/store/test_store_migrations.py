"""Migrations: ordered, transactional, checksummed, refused when history disagrees, applied once."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest
import trio_asyncio

from actor_admin.store import (
    Keyring,
    MigrationChecksumMismatch,
    MigrationError,
    SchemaTooNew,
    Store,
    load_migrations,
    migrate,
    pending,
    sql_dir,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A private copy of sql/ that a test may edit."""
    target = tmp_path / "sql"
    shutil.copytree(sql_dir(), target)
    return target


def _append_to_first(directory: Path, text: str) -> str:
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + text)
    return first.stem


def _to_crlf(directory: Path) -> None:
    for path in directory.glob("*.sql"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    rows: list[asyncpg.Record] = await trio_asyncio.aio_as_trio(run)()
    return rows


def test_sql_dir_is_the_repository_sql_folder_in_a_checkout() -> None:
    assert sql_dir() == REPO / "sql"
    assert load_migrations()[0].name == "001_initial"


async def test_migrate_applies_every_file_in_order_on_an_empty_database(aio_loop: object, pg_empty_dsn: str) -> None:
    expected = [m.name for m in load_migrations()]
    applied = await migrate(pg_empty_dsn)
    assert applied == expected
    rows = await _fetch(pg_empty_dsn, "SELECT name, checksum FROM schema_migrations ORDER BY version")
    assert [(r["name"], r["checksum"]) for r in rows] == [(m.name, m.checksum) for m in load_migrations()]
    tables = {r["tablename"] for r in await _fetch(pg_empty_dsn, "SELECT tablename FROM pg_tables")}
    assert {"companies", "whatsapp_credentials", "company_events", "outbox", "messages"} <= tables


async def test_migrate_again_is_a_no_op(aio_loop: object, pg_empty_dsn: str) -> None:
    await migrate(pg_empty_dsn)
    assert await migrate(pg_empty_dsn) == []
    assert await pending(pg_empty_dsn) == []


async def test_dry_run_lists_pending_and_applies_nothing(aio_loop: object, pg_empty_dsn: str) -> None:
    names = await migrate(pg_empty_dsn, dry_run=True)
    assert names == [m.name for m in load_migrations()]
    assert await pending(pg_empty_dsn) == names
    assert await _fetch(pg_empty_dsn, "SELECT to_regclass('companies') AS t") == [(None,)]


async def test_progress_is_called_before_each_file(aio_loop: object, pg_empty_dsn: str) -> None:
    seen: list[str] = []
    applied = await migrate(pg_empty_dsn, progress=seen.append)
    assert seen == applied


async def test_changed_applied_file_is_refused(
    aio_loop: object, pg_empty_dsn: str, migrations_copy: Path
) -> None:
    await migrate(pg_empty_dsn, directory=migrations_copy)
    edited = _append_to_first(migrations_copy, "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationChecksumMismatch, match=edited):
        await migrate(pg_empty_dsn, directory=migrations_copy)
    with pytest.raises(MigrationChecksumMismatch):
        await pending(pg_empty_dsn, directory=migrations_copy)


async def test_crlf_checkout_is_not_mistaken_for_a_change(
    aio_loop: object, pg_empty_dsn: str, migrations_copy: Path
) -> None:
    await migrate(pg_empty_dsn, directory=migrations_copy)
    _to_crlf(migrations_copy)
    assert await migrate(pg_empty_dsn, directory=migrations_copy) == []


async def test_schema_newer_than_the_code_is_refused(
    aio_loop: object, pg_empty_dsn: str, migrations_copy: Path
) -> None:
    (migrations_copy / "999_from_the_future.sql").write_text("CREATE TABLE future_thing (id int);\n")
    await migrate(pg_empty_dsn, directory=migrations_copy)
    with pytest.raises(SchemaTooNew, match="999_from_the_future"):
        await migrate(pg_empty_dsn)  # the release's own sql/, which lacks 999
    with pytest.raises(SchemaTooNew):
        await pending(pg_empty_dsn)


async def test_failing_file_is_rolled_back_and_not_recorded(
    aio_loop: object, pg_empty_dsn: str, migrations_copy: Path
) -> None:
    (migrations_copy / "900_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT no_such_column;\n")
    with pytest.raises(MigrationError, match="900_broken"):
        await migrate(pg_empty_dsn, directory=migrations_copy)
    assert await _fetch(pg_empty_dsn, "SELECT to_regclass('half_done') AS t") == [(None,)]
    assert await pending(pg_empty_dsn, directory=migrations_copy) == ["900_broken"]


def test_badly_named_file_is_refused(migrations_copy: Path) -> None:
    (migrations_copy / "2_Oops.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=r"2_Oops\.sql"):
        load_migrations(migrations_copy)


async def test_schema_version_names_the_latest_migration(aio_loop: object, pg_empty_dsn: str) -> None:
    store = await Store.open(pg_empty_dsn, pool_size=1, credentials_keys=Keyring(b"k" * 32))
    try:
        assert await store.schema_version() is None
        await migrate(pg_empty_dsn)
        assert await store.schema_version() == load_migrations()[-1].name
    finally:
        await store.aclose()


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import trio, trio_asyncio
    from actor_admin.store import migrate

    def slow(name):
        # Hold the migration lock a while so the other process surely arrives while it is taken.
        time.sleep(0.3)

    async def main():
        async with trio_asyncio.open_loop():
            print(json.dumps(await migrate(sys.argv[1], progress=slow)))

    trio.run(main)
    """
)


def test_two_processes_migrating_at_once_apply_each_file_once(pg_empty_dsn: str) -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, pg_empty_dsn], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    applied = [json.loads(out) for out, _ in outputs]
    assert sorted(applied, key=len) == [[], [m.name for m in load_migrations()]]

    async def count() -> int:
        conn = await asyncpg.connect(pg_empty_dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == len(load_migrations())
