"""The bridge between trio and asyncpg: one pool, queries run as asyncio coroutines via trio-asyncio.

Each repository call crosses into asyncio exactly once (``aio_as_trio``) and runs its whole unit of work
there — one statement or one transaction — because the crossing, not the query, is what costs under
trio-asyncio. The caller must already be inside ``trio_asyncio.open_loop()`` (the composition root opens
it around the server).

Every call is bounded (docs/data.md#failover): a connect by :attr:`DbLimits.connect_timeout_s`, each
statement by :attr:`DbLimits.command_timeout_s` on the client and a slightly shorter
``statement_timeout`` on the server, and idle sockets by TCP keepalives on both ends — so a primary
that vanishes without closing its sockets costs one bound, not minutes. A connection that timed out or
met a read-only server (a demoted primary) is terminated and every pooled connection is expired, so
the next call connects afresh and reaches whatever the address points at now; both are reported as
:class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar, final

import asyncpg
import attrs
import trio_asyncio

from ._errors import StoreUnavailable

T = TypeVar("T")

Conn: TypeAlias = asyncpg.Connection
"""An asyncpg connection, only ever touched on the asyncio side (inside a unit of work)."""

@final
@attrs.frozen(kw_only=True)
class DbLimits:
    """How long PostgreSQL may take (``PG_CONNECT_TIMEOUT``, ``PG_COMMAND_TIMEOUT``; docs/data.md#failover).

    ``command_timeout_s`` bounds each statement on the client; the server's ``statement_timeout`` is
    90 % of it, so a slow statement is normally cancelled by the server (a clean error, the connection
    stays usable) and the client's bound only fires when the server does not answer at all. The
    keepalives find a dead peer of an idle connection in ``idle + interval × count`` seconds.
    """

    connect_timeout_s: float = attrs.field(default=5.0, validator=attrs.validators.gt(0.0))
    command_timeout_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0.0))
    keepalive_idle_s: int = 10
    keepalive_interval_s: int = 3
    keepalive_count: int = 3

    @property
    def statement_timeout_ms(self) -> int:
        return max(1, int(self.command_timeout_s * 900))

    def server_settings(self, *, statements: bool = True) -> dict[str, str]:
        """Session settings sent at connect: the server's own keepalives and (``statements``) timeout."""
        settings = {
            "tcp_keepalives_idle": str(self.keepalive_idle_s),
            "tcp_keepalives_interval": str(self.keepalive_interval_s),
            "tcp_keepalives_count": str(self.keepalive_count),
        }
        if statements:
            settings["statement_timeout"] = str(self.statement_timeout_ms)
        return settings

    def set_keepalive(self, conn: Conn) -> None:
        """Client-side keepalives and a TCP user timeout on ``conn``'s socket (TCP only; best effort)."""
        sock = conn._transport.get_extra_info("socket")  # asyncpg offers no public way to reach it
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        options = [
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), self.keepalive_idle_s),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), self.keepalive_interval_s),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), self.keepalive_count),
            # Sent data unacknowledged this long drops the connection (a black-holed peer).
            (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(self.dead_peer_s * 1000)),
        ]
        for level, option, value in options:
            if option is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(level, option, value)

    @property
    def dead_peer_s(self) -> float:
        return float(self.keepalive_idle_s + self.keepalive_interval_s * self.keepalive_count)


# Errors that mean "the server is not there right now", as opposed to a bug or a constraint violation.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, socket file missing
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.exceptions.AdminShutdownError,  # 57P01: terminated by pg_terminate_backend or shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
)
#: No answer in time: the client's bound (TimeoutError: connect, command, pool) or the server's
#: statement_timeout (57014, which a pg_cancel_backend shares: both mean "not served in time").
TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, asyncpg.exceptions.QueryCanceledError)
#: 25006: the server only reads — a demoted primary, a standby, or default_transaction_read_only.
READ_ONLY_ERRORS: tuple[type[BaseException], ...] = (asyncpg.exceptions.ReadOnlySQLTransactionError,)


class Failure(enum.Enum):
    """Why a call could not be served; ``None`` from :func:`failure` means a real error."""

    GONE = "gone"  # the connection or server is gone: another connection may work at once
    READ_ONLY = "read_only"  # this server does not take writes now: reconnect (the address may move)
    TIMEOUT = "timeout"  # no answer within the bound: do not spend another bound retrying


def failure(exc: BaseException) -> Failure | None:
    if isinstance(exc, TIMEOUT_ERRORS):
        return Failure.TIMEOUT
    if isinstance(exc, READ_ONLY_ERRORS):
        return Failure.READ_ONLY
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return Failure.GONE
    # asyncpg reports use of a connection that the server closed as a bare InterfaceError; a connection
    # whose operation was cut by the server's termination can also surface as an InternalClientError
    # ("another operation is in progress"). Both mean "this connection is gone", not a query bug.
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError):
        return Failure.GONE
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        return Failure.GONE
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (an asyncpg/OS error) means the server cannot serve now rather than a real error."""
    return failure(exc) is not None


def unavailable(exc: BaseException) -> StoreUnavailable:
    kind = failure(exc)
    if kind is Failure.TIMEOUT:
        return StoreUnavailable(f"PostgreSQL did not answer in time: {type(exc).__name__}: {exc}".rstrip(": "))
    if kind is Failure.READ_ONLY:
        return StoreUnavailable(f"PostgreSQL is read-only (a standby or a demoted primary?): {exc}")
    return StoreUnavailable(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}")


async def _init_connection(conn: Conn) -> None:
    # JSON columns come and go as Python objects.
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_aio(dsn: str, limits: DbLimits | None = None) -> Conn:
    """A single connection (asyncio side), for migrations and administration.

    Connecting is bounded and the socket kept alive, but statements are not: a migration may
    legitimately run for minutes.
    """
    limits = limits or DbLimits()
    try:
        conn: Conn = await asyncpg.connect(
            dsn, timeout=limits.connect_timeout_s, server_settings=limits.server_settings(statements=False)
        )
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise
    limits.set_keepalive(conn)
    await _init_connection(conn)
    return conn


@final
class Database:
    """The process's one asyncpg pool, used from trio.

    ``run(work)`` executes ``work(conn)`` on a pooled connection in asyncio and returns its result to
    trio; with ``transaction=True`` inside one transaction. Connection-level failures, timeouts and a
    read-only server become :class:`StoreUnavailable`; with ``retry=True`` (for idempotent work only)
    a unit that met a dead or read-only connection is retried on another one first (up to once per
    pooled connection), which hides pooled connections the server dropped. A timeout is never
    retried: the caller has already waited one bound.
    """

    def __init__(self, pool: asyncpg.Pool, limits: DbLimits | None = None) -> None:
        self._pool = pool
        self.limits = limits or DbLimits()

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int, limits: DbLimits | None = None) -> Database:
        db: Database = await trio_asyncio.aio_as_trio(cls._open_aio)(dsn, pool_size, limits or DbLimits())
        return db

    @classmethod
    async def _open_aio(cls, dsn: str, pool_size: int, limits: DbLimits) -> Database:
        async def init(conn: Conn) -> None:
            limits.set_keepalive(conn)
            await _init_connection(conn)

        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min(1, pool_size), max_size=pool_size, init=init,
                # Pooled connections are dropped after a quiet period so a restarted server or a
                # failed-over address is picked up without waiting for a failed query.
                max_inactive_connection_lifetime=60.0,
                timeout=limits.connect_timeout_s,
                command_timeout=limits.command_timeout_s,
                server_settings=limits.server_settings(),
            )
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(exc) from exc
            raise
        return cls(pool, limits)

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
        # A dead connection is retried only for idempotent work (``retry``); a read-only answer always,
        # since the server refused before changing anything (25006 aborts the whole transaction).
        attempts = self._pool.get_max_size() + 1
        # Waiting for a free connection is bounded too: all of them may be stuck on a dead server.
        acquire_s = self.limits.connect_timeout_s + self.limits.command_timeout_s
        for attempt in range(1, attempts + 1):
            try:
                async with self._pool.acquire(timeout=acquire_s) as conn:
                    try:
                        if transaction:
                            async with conn.transaction():
                                return await work(conn)
                        return await work(conn)
                    except Exception as exc:
                        await self._recycle(conn, failure(exc))
                        raise
            except Exception as exc:
                kind = failure(exc)
                if kind is None:
                    raise
                again = kind is Failure.READ_ONLY or (retry and kind is Failure.GONE)
                if not again or attempt == attempts:
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")

    async def _recycle(self, conn: Conn, kind: Failure | None) -> None:
        """Never hand a broken connection to the next caller; after a timeout or a read-only answer
        none of the pooled ones is trusted either (they reach the same, old server)."""
        if kind is None:
            return
        with contextlib.suppress(Exception):  # already detached: nothing to close
            conn.terminate()
        if kind is not Failure.GONE:
            # Connections in use are closed when released; idle ones are terminated now, since asyncpg
            # would close each politely in a background task on its next acquire, which on a dead
            # server times out and is logged as an unretrieved error.
            await self._pool.expire_connections()
            for holder in self._pool._holders:
                if holder.is_idle():
                    holder.terminate()

    def statistics(self) -> dict[str, int]:
        return {"size": self._pool.get_size(), "idle": self._pool.get_idle_size(),
                "max_size": self._pool.get_max_size()}
