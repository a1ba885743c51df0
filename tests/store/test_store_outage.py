"""Database outages: typed StoreUnavailable while the server is gone, recovery without reopening."""

from __future__ import annotations

import asyncpg
import pytest
import trio
import trio_asyncio

from actor_admin.store import EmbeddedPostgres, Keyring, Store, StoreUnavailable, open_store


async def _admin(dsn: str, query: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()

    return await trio_asyncio.aio_as_trio(run)()


async def _eventually(store: Store) -> int:
    """Append an event, tolerating at most one StoreUnavailable; returns how many attempts it took."""
    for attempt in (1, 2):
        try:
            await store.events.append(1, "probe")
        except StoreUnavailable:
            if attempt == 2:
                raise
        else:
            return attempt
    raise AssertionError("unreachable")


async def test_terminated_pool_connections_are_replaced(store: Store, pg_dsn: str) -> None:
    # Fill the pool with several connections, all of which the server then kills.
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(store.ping)
    killed = await _admin(
        pg_dsn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert isinstance(killed, int) and killed >= 1
    assert await store.companies.get(1) is None  # reads retry once on a fresh connection
    assert await _eventually(store) in (1, 2)  # writes may report one StoreUnavailable
    assert len(await store.events.list(1)) >= 1


async def test_cancelled_query_leaves_the_store_usable(store: Store, pg_dsn: str) -> None:
    await store.companies.upsert_registration(1)
    aio = trio_asyncio.aio_as_trio
    blocker = await aio(asyncpg.connect)(pg_dsn)
    try:
        transaction = blocker.transaction()
        await aio(transaction.start)()
        await aio(blocker.execute)("LOCK TABLE companies IN ACCESS EXCLUSIVE MODE")
        with trio.move_on_after(0.2) as scope:
            await store.companies.get(1)  # blocked by the lock until cancelled
        assert scope.cancelled_caught
        await aio(transaction.rollback)()
    finally:
        await aio(blocker.close)()
    assert await store.companies.get(1) is not None




async def test_server_stop_gives_store_unavailable_and_start_recovers(
    aio_loop: object, own_server: EmbeddedPostgres
) -> None:
    async with open_store(own_server.dsn, pool_size=2, credentials_keys=Keyring(bytes(32))) as store:
        await store.ping()
        await trio.to_thread.run_sync(own_server.stop)
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.schema_version()
        await trio.to_thread.run_sync(own_server.start)
        assert await store.ping() >= 0
        assert await store.schema_version() is None


async def test_open_against_a_stopped_server_is_store_unavailable(
    aio_loop: object, own_server: EmbeddedPostgres
) -> None:
    dsn = own_server.dsn
    await trio.to_thread.run_sync(own_server.stop)
    with pytest.raises(StoreUnavailable):
        await Store.open(dsn, pool_size=1, credentials_keys=Keyring(bytes(32)))
