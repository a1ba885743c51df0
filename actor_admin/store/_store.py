"""The :class:`Store`: the process's PostgreSQL pool plus one repository per table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import final

import trio

from ._crypto import Keyring
from ._db import Conn, Database, DbLimits
from ._ownership import Ownership
from ._repos import Companies, Credentials, Events, Messages, Outbox
from ._retention import Retention


@final
class Store:
    """PostgreSQL, as the rest of actor-admin sees it: trio-native repositories.

    Open one per process with :meth:`open` (or :func:`open_store`) inside ``trio_asyncio.open_loop()``;
    close it with :meth:`aclose`. Every method raises :class:`StoreUnavailable` while the server cannot
    be reached and works again, without reopening, once it is back.
    """

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self.companies = Companies(db)
        self.credentials = Credentials(db, keyring)
        self.events = Events(db)
        self.outbox = Outbox(db)
        self.messages = Messages(db)
        self.ownership = Ownership(db)
        self.retention = Retention(db)

    @classmethod
    async def open(
        cls, dsn: str, *, pool_size: int = 10, credentials_keys: Keyring, limits: DbLimits | None = None
    ) -> Store:
        """Create the pool (one connection at once, up to ``pool_size``) and the repositories; every
        database call is bounded by ``limits`` (defaults: :class:`DbLimits`).

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        return cls(await Database.open(dsn, pool_size=pool_size, limits=limits), credentials_keys)

    async def aclose(self) -> None:
        """Close the pool (waits briefly for connections in use, then terminates them)."""
        await self._db.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()

    async def ping(self) -> float:
        """One round trip to the server; returns its duration in seconds (trio's clock)."""
        started = trio.current_time()

        async def work(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._db.run(work, retry=True)
        return trio.current_time() - started

    async def schema_version(self) -> str | None:
        """The name of the latest applied migration (``"001_initial"``), None on an unmigrated database."""

        async def work(conn: Conn) -> str | None:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return None
            name: str | None = await conn.fetchval(
                "SELECT name FROM schema_migrations ORDER BY version DESC LIMIT 1"
            )
            return name

        return await self._db.run(work, retry=True)

    def statistics(self) -> dict[str, int]:
        """Pool size, idle connections and maximum (for /status and metrics)."""
        return self._db.statistics()


@asynccontextmanager
async def open_store(
    dsn: str, *, pool_size: int = 10, credentials_keys: Keyring, limits: DbLimits | None = None
) -> AsyncIterator[Store]:
    """``async with open_store(dsn, credentials_keys=...) as store:`` — :meth:`Store.open` + close."""
    store = await Store.open(dsn, pool_size=pool_size, credentials_keys=credentials_keys, limits=limits)
    async with store:
        yield store
