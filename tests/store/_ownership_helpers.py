"""Helpers for the ownership tests: raw SQL on a side connection, and waiting for a blocked backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio
import trio_asyncio

from actor_admin.store import Claim, Member, Store


async def sql(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    """One statement on a connection of its own (outside any store's pool)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    rows: list[asyncpg.Record] = await trio_asyncio.aio_as_trio(run)()
    return rows


async def add_companies(dsn: str, salon_ids: range | list[int]) -> None:
    await sql(dsn, "INSERT INTO companies (salon_id) SELECT unnest($1::bigint[])", list(salon_ids))


async def own(store: Store, dsn: str, node: Member, salons: list[int]) -> dict[int, int]:
    """``salons`` (made first) owned by ``node``; their fences."""
    await add_companies(dsn, salons)
    await store.ownership.join(node)
    return await store.ownership.claim(node, [Claim(s) for s in salons])


@asynccontextmanager
async def open_transaction(dsn: str) -> AsyncIterator[Any]:
    """A raw connection inside an open transaction; ``await tx(query, *args)`` runs a statement in it.

    The transaction commits when the block ends normally and rolls back on an error.
    """
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn)
    transaction = conn.transaction()
    await trio_asyncio.aio_as_trio(transaction.start)()

    async def run(query: str, *args: object) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await trio_asyncio.aio_as_trio(conn.fetch)(query, *args)
        return rows

    try:
        yield run
    except BaseException:
        await trio_asyncio.aio_as_trio(transaction.rollback)()
        raise
    else:
        await trio_asyncio.aio_as_trio(transaction.commit)()
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def wait_for_lock_waiters(dsn: str, count: int = 1, *, timeout_s: float = 10.0) -> None:
    """Until ``count`` backends of this database wait on a lock (a statement queued behind a row lock)."""
    with trio.fail_after(timeout_s):
        # Polling on purpose: the condition is inside PostgreSQL, nothing here can signal it.
        while True:
            rows = await sql(
                dsn,
                "SELECT count(*) AS n FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            if rows[0]["n"] >= count:
                return
            await trio.sleep(0.01)
