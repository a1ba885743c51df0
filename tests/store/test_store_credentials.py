"""The credentials repository: encrypted at rest, absent rows are None, rotation re-encrypts everything."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest
import trio_asyncio

from actor_admin.store import CredentialsError, Keyring, Store, credentials_by_transport, migrate, open_store, sql_dir
from actor_admin.store._crypto import key_id

NEW_KEY = bytes(range(100, 132))


async def _raw(store_dsn: str, salon_id: int) -> tuple[bytes, str]:
    async def run() -> tuple[bytes, str]:
        conn = await asyncpg.connect(store_dsn)
        try:
            row = await conn.fetchrow("SELECT blob, key_id FROM whatsapp_credentials WHERE salon_id = $1", salon_id)
            return bytes(row["blob"]), row["key_id"]
        finally:
            await conn.close()

    result: tuple[bytes, str] = await trio_asyncio.aio_as_trio(run)()
    return result


async def _exec(dsn: str, query: str, *args: object) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()

    await trio_asyncio.aio_as_trio(run)()


async def test_save_then_load_round_trips_and_stores_ciphertext(
    store: Store, pg_dsn: str, credentials_keyring: Keyring
) -> None:
    await store.companies.upsert_registration(1)
    assert await store.credentials.save(1, b"secret device keys")
    assert await store.credentials.load(1) == b"secret device keys"
    blob, kid = await _raw(pg_dsn, 1)
    assert b"secret device keys" not in blob
    assert kid == credentials_keyring.current_id


async def test_save_replaces_the_previous_blob(store: Store) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"v1")
    await store.credentials.save(1, b"v2")
    assert await store.credentials.load(1) == b"v2"


async def test_absent_credentials_load_as_none(store: Store) -> None:
    assert await store.credentials.load(404) is None


async def test_save_for_an_unknown_company_is_refused_with_false(store: Store) -> None:
    assert await store.credentials.save(404, b"x") is False


async def test_delete_reports_whether_something_was_deleted(store: Store) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"x")
    assert await store.credentials.delete(1) is True
    assert await store.credentials.load(1) is None
    assert await store.credentials.delete(1) is False


async def test_tampered_blob_raises_credentials_error(store: Store, pg_dsn: str) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"x")
    await _exec(pg_dsn, "UPDATE whatsapp_credentials SET blob = set_byte(blob, 20, get_byte(blob, 20) # 1)")
    with pytest.raises(CredentialsError):
        await store.credentials.load(1)


async def test_blob_moved_to_another_salon_raises_credentials_error(store: Store, pg_dsn: str) -> None:
    for salon_id in (1, 2):
        await store.companies.upsert_registration(salon_id)
    await store.credentials.save(1, b"salon one")
    await _exec(pg_dsn, "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) "
                        "SELECT 2, blob, key_id FROM whatsapp_credentials WHERE salon_id = 1")
    with pytest.raises(CredentialsError):
        await store.credentials.load(2)


async def test_store_with_another_key_cannot_read_old_blobs(store: Store, pg_dsn: str) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"x")
    async with open_store(pg_dsn, pool_size=1, credentials_keys=Keyring(NEW_KEY)) as other:
        with pytest.raises(CredentialsError):
            await other.credentials.load(1)


async def test_rotate_re_encrypts_every_blob_under_the_new_key(
    store: Store, pg_dsn: str, credentials_keyring: Keyring
) -> None:
    for salon_id in (1, 2, 3):
        await store.companies.upsert_registration(salon_id)
        await store.credentials.save(salon_id, f"creds {salon_id}".encode())
    old_id = credentials_keyring.current_id
    ring = Keyring(NEW_KEY, previous=[bytes(range(32))])
    assert old_id in ring.key_ids
    async with open_store(pg_dsn, pool_size=1, credentials_keys=ring) as rotated:
        assert await rotated.credentials.rotate() == 3
        assert await rotated.credentials.rotate() == 0  # nothing left under the old key
    async with open_store(pg_dsn, pool_size=1, credentials_keys=Keyring(NEW_KEY)) as only_new:
        for salon_id in (1, 2, 3):
            assert await only_new.credentials.load(salon_id) == f"creds {salon_id}".encode()
            assert (await _raw(pg_dsn, salon_id))[1] == key_id(NEW_KEY)


async def test_rotate_without_the_old_key_changes_nothing(store: Store, pg_dsn: str) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"x")
    async with open_store(pg_dsn, pool_size=1, credentials_keys=Keyring(NEW_KEY)) as wrong:
        with pytest.raises(CredentialsError):
            await wrong.credentials.rotate()
    assert await store.credentials.load(1) == b"x"


async def test_credentials_remember_the_transport_and_account_that_made_them(store: Store) -> None:
    await store.companies.upsert_registration(1)
    assert await store.credentials.origin(1) is None
    await store.credentials.save(1, b"keys", transport="neonize", account="79001234567:12@s.whatsapp.net")
    origin = await store.credentials.origin(1)
    assert origin is not None
    assert (origin.transport, origin.account) == ("neonize", "79001234567")  # digits, never the device suffix


async def test_credentials_saved_without_an_origin_have_an_unknown_one(store: Store) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"keys")
    origin = await store.credentials.origin(1)
    assert origin is not None and (origin.transport, origin.account) == (None, None)


async def test_confirm_records_the_transport_that_connected_with_credentials_of_unknown_origin(store: Store) -> None:
    await store.companies.upsert_registration(1)
    await store.credentials.save(1, b"keys")
    assert await store.credentials.confirm(1, "simulator", "79001234567")
    assert not await store.credentials.confirm(1, "simulator", None)  # nothing new: no write
    origin = await store.credentials.origin(1)
    assert origin is not None and (origin.transport, origin.account) == ("simulator", "79001234567")
    assert not await store.credentials.confirm(2, "simulator", "79001234567")  # none stored


async def test_credentials_are_counted_by_the_transport_that_made_them(store: Store, pg_dsn: str) -> None:
    for salon_id, transport in [(1, "neonize"), (2, "neonize"), (3, "simulator"), (4, None)]:
        await store.companies.upsert_registration(salon_id)
        await store.credentials.save(salon_id, b"keys", transport=transport)
    assert await credentials_by_transport(pg_dsn) == {"neonize": 2, "simulator": 1, None: 1}


async def test_credentials_stored_before_origins_were_recorded_count_as_unknown(
    aio_loop: object, pg_empty_dsn: str, tmp_path: Path
) -> None:
    assert await credentials_by_transport(pg_empty_dsn) == {}  # not even the table: nothing to refuse
    older = tmp_path / "sql"
    older.mkdir()
    for name in ("001_initial.sql", "002_cluster.sql"):
        shutil.copy(sql_dir() / name, older / name)
    await migrate(pg_empty_dsn, directory=older)
    await _exec(pg_empty_dsn, "INSERT INTO companies (salon_id) VALUES (1)")
    await _exec(pg_empty_dsn, "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) VALUES (1, 'x', 'k')")
    assert await credentials_by_transport(pg_empty_dsn) == {None: 1}
    await migrate(pg_empty_dsn)  # 003 adds the origin; the old row's stays unknown
    assert await credentials_by_transport(pg_empty_dsn) == {None: 1}
