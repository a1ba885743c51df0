"""``actor-admin backup`` / ``restore`` (pg_dump -Fc / pg_restore --clean --if-exists) on real databases:
a populated database survives a round trip into a fresh one, credentials still decrypt with the same key."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from actor_admin.store import Keyring, Store, migrate, open_store
from actor_admin.yclients import activation_payload
from tests._pg import TEST_CREDENTIALS_KEY, drop_database, make_database
from tests.api.conftest import node_settings

SALONS = (701, 702, 703)


def credential_blob(salon_id: int) -> bytes:
    return f"device-credentials-of-{salon_id}".encode() * 20


@pytest.fixture
async def fresh_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    dsn = await trio.to_thread.run_sync(make_database, pg_admin_dsn)
    try:
        yield dsn
    finally:
        await trio.to_thread.run_sync(drop_database, pg_admin_dsn, dsn)


async def actor_admin(*args: str, database_url: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "DATABASE_URL": database_url}
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "actor_admin", *args], env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return done.returncode, done.stderr.decode()


async def populate(store: Store) -> None:
    payload = activation_payload(node_settings(8000))
    for salon_id in SALONS:
        await store.companies.upsert_registration(salon_id, title=f"Салон {salon_id}")
        await store.companies.record_connection(
            salon_id, f"7900000{salon_id}:3", activation_payload=lambda key, s=salon_id: payload(s, key)
        )
        await store.credentials.save(salon_id, credential_blob(salon_id))
        await store.events.append(salon_id, "registration_started", {"source": "test"})
        await store.messages.insert_inbound(salon_id, f"wa-{salon_id}", "79001112233", f"привет {salon_id}")


async def test_a_populated_database_comes_back_whole_in_a_fresh_database(
    aio_loop: object, pg_dsn: str, fresh_dsn: str, tmp_path: Path
) -> None:
    keyring = Keyring(TEST_CREDENTIALS_KEY)
    async with open_store(pg_dsn, pool_size=2, credentials_keys=keyring) as source:
        await populate(source)
        before = {s: await source.companies.get(s) for s in SALONS}
        version = await source.schema_version()
    dump = tmp_path / "actor-admin.dump"

    code, err = await actor_admin("backup", str(dump), database_url=pg_dsn)
    assert code == 0, err
    assert dump.stat().st_size > 0 and dump.stat().st_mode & 0o077 == 0
    code, err = await actor_admin("restore", str(dump), database_url=fresh_dsn)
    assert code == 0, err

    async with open_store(fresh_dsn, pool_size=2, credentials_keys=keyring) as restored:
        assert await restored.schema_version() == version
        for salon_id in SALONS:
            assert await restored.companies.get(salon_id) == before[salon_id]
            assert await restored.credentials.load(salon_id) == credential_blob(salon_id)
            assert "registration_started" in [e.type for e in await restored.events.list(salon_id)]
            (message,) = await restored.messages.latest(salon_id)
            assert message.wa_id == f"wa-{salon_id}" and message.text == f"привет {salon_id}"
        assert (await restored.outbox.stats()).pending == len(SALONS)
        # The database keeps working after a restore: sequences continue, constraints hold.
        assert await restored.messages.insert_inbound(SALONS[0], f"wa-{SALONS[0]}", "79001112233", "again") is False
        await restored.events.append(SALONS[0], "after_restore")


async def test_restore_over_a_live_database_replaces_what_changed_since_the_backup(
    aio_loop: object, fresh_dsn: str, tmp_path: Path
) -> None:
    await migrate(fresh_dsn)
    dump = tmp_path / "before.dump"
    async with open_store(fresh_dsn, pool_size=2, credentials_keys=Keyring(TEST_CREDENTIALS_KEY)) as store:
        await populate(store)
        code, err = await actor_admin("backup", str(dump), database_url=fresh_dsn)
        assert code == 0, err
        await store.companies.upsert_registration(799, title="после бэкапа")
        await store.credentials.delete(SALONS[0])
    code, err = await actor_admin("restore", str(dump), database_url=fresh_dsn)
    assert code == 0, err
    async with open_store(fresh_dsn, pool_size=2, credentials_keys=Keyring(TEST_CREDENTIALS_KEY)) as store:
        assert await store.companies.get(799) is None
        assert await store.credentials.load(SALONS[0]) == credential_blob(SALONS[0])


async def test_restore_of_a_missing_file_fails_with_a_clear_message(pg_dsn: str, tmp_path: Path) -> None:
    code, err = await actor_admin("restore", str(tmp_path / "nope.dump"), database_url=pg_dsn)
    assert code == 1
    assert "nope.dump does not exist" in err
