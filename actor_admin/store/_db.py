"""The bridge between trio and asyncpg: one pool, queries run as asyncio coroutines via trio-asyncio.

Each repository call crosses into asyncio exactly once (``aio_as_trio``) and runs its whole unit of work
there — one statement or one transaction — because the crossing, not the query, is what costs under
trio-asyncio. The caller must already be inside ``trio_asyncio.open_loop()`` (the composition root opens
it around the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar, final

import asyncpg
import trio_asyncio

from ._errors import StoreUnavailable

T = TypeVar("T")

Conn: TypeAlias = asyncpg.Connection
"""An asyncpg connection, only ever touched on the asyncio side (inside a unit of work)."""

# Errors that mean "the server is not there right now", as opposed to a bug or a constraint violation.
# QueryCanceledError shares SQLSTATE class 57 with the shutdown errors but means a timeout: not listed.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, socket file missing
    TimeoutError,  # connect timeout
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.exceptions.AdminShutdownError,  # 57P01: terminated by pg_terminate_backend or shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (an asyncpg/OS error) means the server is unreachable rather than a real error."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    # asyncpg reports use of a connection that the server closed as a bare InterfaceError; a connection
    # whose operation was cut by the server's termination can also surface as an InternalClientError
    # ("another operation is in progress"). Both mean "this connection is gone", not a query bug.
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}")


async def _init_connection(conn: Conn) -> None:
    # JSON columns come and go as Python objects.
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_aio(dsn: str) -> Conn:
    """A single connection (asyncio side), for migrations and administration."""
    try:
        conn: Conn = await asyncpg.connect(dsn)
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise
    await _init_connection(conn)
    return conn


@final
class Database:
    """The process's one asyncpg pool, used from trio.

    ``run(work)`` executes ``work(conn)`` on a pooled connection in asyncio and returns its result to
    trio; with ``transaction=True`` inside one transaction. Connection-level failures become
    :class:`StoreUnavailable`; with ``retry=True`` (for idempotent work only) the unit is retried on
    another connection first (up to once per pooled connection), which hides pooled connections the
    server dropped.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int) -> Database:
        db: Database = await trio_asyncio.aio_as_trio(cls._open_aio)(dsn, pool_size)
        return db

    @classmethod
    async def _open_aio(cls, dsn: str, pool_size: int) -> Database:
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min(1, pool_size), max_size=pool_size, init=_init_connection,
                # Pooled connections are dropped after a quiet period so a restarted server or a
                # failed-over address is picked up without waiting for a failed query.
                max_inactive_connection_lifetime=60.0,
            )
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc) from exc
            raise
        return cls(pool)

    async def aclose(self) -> None:
        await trio_asyncio.aio_as_trio(self._close_aio)()

    async def _close_aio(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), timeout=5.0)
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or is_unavailable(exc)):
                raise
            self._pool.terminate()

    async def run(
        self, work: Callable[[Conn], Awaitable[T]], *, transaction: bool = False, retry: bool = False
    ) -> T:
        result: T = await trio_asyncio.aio_as_trio(self._run_aio)(work, transaction, retry)
        return result

    async def _run_aio(self, work: Callable[[Conn], Awaitable[T]], transaction: bool, retry: bool) -> T:
        # A server restart kills every pooled connection at once and the pool does not test them on
        # acquire, so a retried call may meet several dead ones in a row: allow one per pooled
        # connection. Against a server that is really down each attempt fails fast (refused).
        attempts = self._pool.get_max_size() + 1 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                async with self._pool.acquire() as conn:
                    try:
                        if transaction:
                            async with conn.transaction():
                                return await work(conn)
                        return await work(conn)
                    except Exception as exc:
                        if is_unavailable(exc):
                            with contextlib.suppress(Exception):  # already detached: nothing to close
                                conn.terminate()  # never hand a broken connection to the next caller
                        raise
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                if attempt == attempts:
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")

    def statistics(self) -> dict[str, int]:
        return {"size": self._pool.get_size(), "idle": self._pool.get_idle_size(),
                "max_size": self._pool.get_max_size()}
