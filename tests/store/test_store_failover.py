"""Database failover (docs/data.md#failover): every call is bounded, a black-holed primary costs one bound
and not minutes, a server that turned read-only (a demoted primary) is "unavailable", and in both cases
the pool reconnects by itself — no restart — once the address answers again with a writable server."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg
import pytest
import trio
import trio_asyncio

from actor_admin.node import open_asyncio_loop
from actor_admin.store import DbLimits, Keyring, Store, StoreUnavailable, open_store
from tests._pg import TEST_CREDENTIALS_KEY
from tests._pg import _admin as admin_sql
from tests._pgproxy import PgProxy
from tests.api.conftest import free_port

LIMITS = DbLimits(connect_timeout_s=1.0, command_timeout_s=1.0)
#: What one failed call may cost at most: waiting for a pooled connection is bounded by connect +
#: command, then one statement by command; plus scheduling slack on a shared machine.
BOUND_S = LIMITS.connect_timeout_s + 2 * LIMITS.command_timeout_s + 1.0


@pytest.fixture
async def proxy(aio_loop: object, pg_dsn: str, nursery: trio.Nursery) -> PgProxy:
    served = PgProxy(pg_dsn, free_port())
    await nursery.start(served.serve)
    return served


@pytest.fixture
async def proxied_store(proxy: PgProxy) -> AsyncIterator[Store]:
    async with open_store(proxy.dsn, pool_size=3, credentials_keys=Keyring(TEST_CREDENTIALS_KEY), limits=LIMITS) as s:
        yield s


async def _fails_within_the_bound(call: Callable[[], Awaitable[object]]) -> float:
    started = trio.current_time()
    with pytest.raises(StoreUnavailable), trio.fail_after(BOUND_S * 5):  # today's code hangs: fail, not hang
        await call()
    took = trio.current_time() - started
    assert took < BOUND_S, took
    return took


async def test_a_black_holed_server_fails_each_call_within_the_bound_and_the_store_recovers(
    proxy: PgProxy, proxied_store: Store
) -> None:
    store = proxied_store
    async with trio.open_nursery() as nursery:  # fill the pool: several connections now lead nowhere
        for _ in range(3):
            nursery.start_soon(store.ping)
    await store.events.append(1, "before")

    proxy.black_hole()
    await _fails_within_the_bound(lambda: store.events.append(1, "lost"))  # a write (no retry)
    await _fails_within_the_bound(store.ping)  # a retried read: a timeout is not retried per connection
    await _fails_within_the_bound(lambda: store.companies.get(1))  # new connections time out too

    proxy.resume()
    await store.events.append(1, "after")  # the first call after: dead connections were recycled
    # "lost" may or may not be there: the proxy held its bytes and forwards them now, as a network does.
    assert {"before", "after"} <= {e.type for e in await store.events.list(1)}


async def test_the_limits_reach_the_server(aio_loop: object, pg_dsn: str) -> None:
    # statement_timeout and the server's keepalives are set on each pooled connection.
    async def read(conn: asyncpg.Connection) -> tuple[str, str]:
        return await conn.fetchval("SHOW statement_timeout"), await conn.fetchval("SHOW tcp_keepalives_idle")

    async with open_store(pg_dsn, pool_size=1, credentials_keys=Keyring(TEST_CREDENTIALS_KEY), limits=LIMITS) as s:
        statement, keepalive = await s._db.run(read)

    assert statement == "900ms"
    over_tcp = urlsplit(pg_dsn).hostname is not None
    assert keepalive == ("10" if over_tcp else "0")  # the server reports 0 for a unix socket


async def _admin(dsn: str, *statements: str) -> None:
    await trio.to_thread.run_sync(functools.partial(admin_sql, dsn, *statements))  # its own asyncio loop


async def test_a_server_turned_read_only_is_unavailable_and_writes_resume_after_without_a_restart(
    aio_loop: object, pg_dsn: str, pg_admin_dsn: str
) -> None:
    database = urlsplit(pg_dsn).path.lstrip("/")
    demote = (
        f'ALTER DATABASE "{database}" SET default_transaction_read_only = on',
        # A demotion ends every session; the pool's next connections meet a read-only server.
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'",
    )
    promote = f'ALTER DATABASE "{database}" RESET default_transaction_read_only'
    async with open_store(pg_dsn, pool_size=3, credentials_keys=Keyring(TEST_CREDENTIALS_KEY), limits=LIMITS) as store:
        await store.events.append(1, "before")
        try:
            await _admin(pg_admin_dsn, *demote)  # from another database: this one refuses ALTER now
            messages = []
            for _ in range(4):  # the first may meet a terminated connection; then read-only answers
                with pytest.raises(StoreUnavailable) as caught:
                    await store.events.append(1, "refused")
                messages.append(str(caught.value))
            assert any("read-only" in m for m in messages), messages
            assert await store.companies.get(1) is None  # reads still work on a read-only server
        finally:
            await _admin(pg_admin_dsn, promote)

        await store.events.append(1, "after")  # at once: the read-only connections were recycled
    async with open_store(pg_dsn, pool_size=1, credentials_keys=Keyring(TEST_CREDENTIALS_KEY)) as check:
        assert [e.type for e in await check.events.list(1)] == ["after", "before"]


async def test_an_asyncio_error_nobody_retrieved_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    # asyncpg leaves such errors behind during outages (a connect cancelled by its timeout just as the
    # socket opened); trio-asyncio would raise them into its nursery and end the node.
    async with open_asyncio_loop():

        async def lose() -> None:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("unexpected connection_lost() call"))

        await trio_asyncio.aio_as_trio(lose)()
        gc.collect()  # the future's __del__ reports it
        await trio.sleep(0.05)
        await trio_asyncio.aio_as_trio(asyncio.sleep)(0)  # the loop still runs

    assert "unexpected connection_lost() call" in caplog.text
