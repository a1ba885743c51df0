"""A throwaway, migrated PostgreSQL database for the cluster benchmarks, and a statement counter.

``DATABASE_URL`` is an admin DSN (as for the tests): a database is created on that server for the
benchmark and dropped afterwards. :class:`CountingStore` opens a :class:`Store` whose pooled
connections report every statement they send (asyncpg's query logger), so a benchmark counts what a
loop really costs PostgreSQL rather than what it believes it calls.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import trio_asyncio

from actor_admin.store import Keyring, Store, migrate
from actor_admin.store._db import Database, _init_connection
from tests._pg import TEST_CREDENTIALS_KEY, drop_database, make_database


@contextmanager
def bench_database() -> Iterator[str | None]:
    """A fresh database's DSN for the block (None without ``DATABASE_URL``: the caller skips)."""
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        yield None
        return
    dsn = make_database(admin)
    try:
        yield dsn
    finally:
        drop_database(admin, dsn)


class StatementCounter:
    """Counts the statements every counted connection sends (BEGIN and COMMIT included)."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, record: Any) -> None:
        self.total += 1


@asynccontextmanager
async def counting_store(dsn: str, counter: StatementCounter, *, pool_size: int = 10) -> AsyncIterator[Store]:
    """A migrated :class:`Store` on ``dsn`` whose every statement ``counter`` sees."""
    await migrate(dsn)

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        conn.add_query_logger(counter)

    async def open_pool() -> asyncpg.Pool:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, init=init)

    pool = await trio_asyncio.aio_as_trio(open_pool)()
    store = Store(Database(pool), Keyring(TEST_CREDENTIALS_KEY))
    try:
        yield store
    finally:
        await store.aclose()


async def add_salons(store: Store, first: int, count: int) -> None:
    """``count`` registered companies from ``first`` on, in one statement."""

    async def work(conn: Any) -> None:
        await conn.execute(
            "INSERT INTO companies (salon_id, title) "
            "SELECT g, 'Salon ' || g FROM generate_series($1::bigint, $2::bigint) g",
            first,
            first + count - 1,
        )

    await store._db.run(work)
