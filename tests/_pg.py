"""PostgreSQL fixtures: a throwaway database per test, on the test environment's server or an embedded one.

``DATABASE_URL``, when set, is treated as an *admin* DSN: databases are created on that server and
dropped afterwards, never written to directly. Without it one embedded server (pgserver binaries, fsync
off) is started for the session in a temp directory. Each run's databases carry a random prefix, so two
concurrent runs against one server never meet. A migrated template is built once per session; each
test's database is ``CREATE DATABASE … TEMPLATE`` of it (tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from actor_admin.store import EmbeddedPostgres, Keyring, Store, open_store
from actor_admin.store._migrations import migrate_aio

TEST_CREDENTIALS_KEY = bytes(range(32))
"""The credentials key of the ``store`` fixture (tests may build other keyrings)."""

_RUN = f"aa_t{os.getpid()}_{secrets.token_hex(3)}"
_counter = itertools.count(1)


def dsn_for_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database (works for TCP and unix-socket DSNs)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _admin(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def make_database(admin_dsn: str, *, template: str = "template0") -> str:
    """Create a fresh database for this run and return its DSN (drop it with :func:`drop_database`)."""
    name = f"{_RUN}_{next(_counter)}"
    _admin(admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return dsn_for_database(admin_dsn, name)


def drop_database(admin_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a server on which the tests may create and drop databases."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="aa-test-pg-"))  # 0700, as a private clone would be
    server = EmbeddedPostgres(root / "pg", fast_unsafe=True)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _reset(dsn: str, *statements: str) -> None:
    """Disconnect every other session of the database (a leftover pool would hold locks), then reset."""
    _admin(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        *statements,
    )


# DELETE rather than TRUNCATE: on a server with fsync TRUNCATE costs ~0.2 s (new files, synced), DELETE
# of a test's handful of rows a few ms. Replica mode skips the append-only trigger of company_events.
_EMPTY_ALL_TABLES = """
DO $$ DECLARE t text; BEGIN
    SET LOCAL session_replication_role = replica;
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
    LOOP EXECUTE format('DELETE FROM %I', t); END LOOP;
END $$
"""


@pytest.fixture(scope="session")
def _pg_run_migrated(pg_admin_dsn: str) -> Iterator[str]:
    dsn = make_database(pg_admin_dsn)
    asyncio.run(migrate_aio(dsn))
    try:
        yield dsn
    finally:
        drop_database(pg_admin_dsn, dsn)


@pytest.fixture(scope="session")
def _pg_run_empty(pg_admin_dsn: str) -> Iterator[str]:
    dsn = make_database(pg_admin_dsn)
    try:
        yield dsn
    finally:
        drop_database(pg_admin_dsn, dsn)


@pytest.fixture
def pg_empty_dsn(_pg_run_empty: str) -> str:
    """An empty (unmigrated) database of this run, wiped before the test (``public`` schema recreated)."""
    _reset(_pg_run_empty, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    return _pg_run_empty


@pytest.fixture
def pg_dsn(_pg_run_migrated: str) -> str:
    """A database of this run with every migration applied and every table emptied before the test.

    Reused across tests (emptying is milliseconds; ``DROP DATABASE`` costs a checkpoint, ~1 s on a
    server with fsync), so a test must not change its schema — use ``pg_empty_dsn`` or
    :func:`make_database` for that.
    """
    _reset(_pg_run_migrated, _EMPTY_ALL_TABLES)
    return _pg_run_migrated


@pytest.fixture
def credentials_keyring() -> Keyring:
    return Keyring(TEST_CREDENTIALS_KEY)


@pytest.fixture
async def store(aio_loop: object, pg_dsn: str, credentials_keyring: Keyring) -> AsyncIterator[Store]:
    """An open :class:`Store` on a fresh migrated database (inside trio-asyncio's loop)."""
    async with open_store(pg_dsn, pool_size=4, credentials_keys=credentials_keyring) as opened:
        yield opened
