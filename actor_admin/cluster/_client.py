"""redis-py's asyncio client, driven from trio through trio-asyncio.

One :class:`RedisClient` per process holds one connection pool. Its methods are trio-native awaits:
callers never see asyncio, and ``trio_asyncio.aio_as_trio`` stays inside ``cluster/`` (and
``store/``). The caller must run inside ``trio_asyncio.open_loop()`` — the composition root opens
it around the server (docs/architecture.md#start-up-order: the loop is found through a ContextVar).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar, final

import redis.asyncio as aioredis
import redis.exceptions as rexc
import trio
import trio_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

DEFAULT_PREFIX: Final = "actor-admin:"
DEFAULT_TIMEOUT_S: Final = 2.0

T = TypeVar("T")

# Replies that mean "the server is there but cannot serve us right now" rather than "you sent a bad
# command": they are an outage to the caller, like a refused connection.
_OUTAGE_REPLIES: Final = ("LOADING", "READONLY", "MASTERDOWN", "OOM", "BUSY", "NOREPLICAS", "TRYAGAIN")


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError | EOFError):
        return True
    if isinstance(exc, rexc.ResponseError):
        return str(exc).startswith(_OUTAGE_REPLIES)
    return False


@final
class RedisScript:
    """A Lua script registered once and run by its SHA (EVALSHA, falling back to EVAL).

    Scripts are how the cluster primitives stay atomic: check-and-renew a lease, count a hit and set
    its expiry, all in one round trip that no other client can interleave with.
    """

    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self._script = client.raw.register_script(source)

    async def __call__(
        self, keys: Sequence[str] = (), args: Sequence[object] = (), *, timeout_s: float | None = None
    ) -> Any:
        return await self._client.run_aio(self._script, list(keys), list(args), timeout_s=timeout_s)


@final
class RedisClient:
    """The process's Redis connection pool with trio-native methods.

    Args:
        url: a ``redis://`` / ``rediss://`` / ``unix://`` URL.
        prefix: put in front of every key and channel this package makes (default ``actor-admin:``);
            tests give each test its own prefix so they never touch each other's keys.
        timeout_s: the bound on any single operation; past it the call raises
            :class:`RedisUnavailable` instead of stalling a request handler or an actor.

    Opening does not connect: a node starts (and answers ``/readyz`` with Redis marked down) even
    when Redis is not there yet, and connects on first use.
    """

    def __init__(self, raw: aioredis.Redis, *, prefix: str, timeout_s: float) -> None:
        self.raw = raw
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, prefix: str = DEFAULT_PREFIX, timeout_s: float = DEFAULT_TIMEOUT_S) -> RedisClient:
        """Make the client for ``url`` (no network I/O yet; raises ``ValueError`` for a bad URL)."""
        await trio.lowlevel.checkpoint()
        raw = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # redis-py's default is 10 retries with back-off: seconds of stalling during an outage.
            # One immediate retry is enough to replace a pooled connection that died with a server
            # restart; anything longer is the caller's decision.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        return cls(raw, prefix=prefix, timeout_s=timeout_s)

    async def aclose(self) -> None:
        """Close the pool. Idempotent; bounded so a dead server cannot stall shutdown."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(self.timeout_s) as scope:
            scope.shield = True
            try:
                await trio_asyncio.aio_as_trio(self.raw.aclose)()
            except Exception as exc:  # closing a broken pool is best effort
                log.debug("redis client close failed: %r", exc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def key(self, *parts: object) -> str:
        """``prefix`` + parts joined by ``:`` — the only way this package names keys and channels."""
        return self.prefix + ":".join(str(p) for p in parts)

    async def run_aio(
        self, fn: Callable[..., Awaitable[T]], *args: object, timeout_s: float | None = None, **kwargs: object
    ) -> T:
        """Run one redis-py coroutine function in asyncio, bounded, errors mapped to RedisUnavailable.

        For use inside ``cluster/`` only; everything else calls the typed methods.
        """
        if trio_asyncio.current_loop.get() is None:
            raise RuntimeError("Redis calls must run inside `async with trio_asyncio.open_loop():`")
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            # math.inf (no bound) is for the bus' blocking read of pub/sub messages.
            with trio.fail_after(limit):
                result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
                return result
        except trio.TooSlowError as exc:
            raise RedisUnavailable(f"no answer from Redis within {limit:g} s") from exc
        except Exception as exc:
            if _is_outage(exc):
                raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise

    async def execute(self, *args: object, timeout_s: float | None = None) -> Any:
        """Run one Redis command, e.g. ``await client.execute("INCR", key)``.

        The reply is typed ``Any`` on purpose: its shape is the command's (an int for ``INCR``, a
        list for ``XRANGE``), which the caller knows and converts at once.
        """
        return await self.run_aio(self.raw.execute_command, *args, timeout_s=timeout_s)

    async def execute_many(
        self, commands: Sequence[Sequence[object]], *, transaction: bool = False, timeout_s: float | None = None
    ) -> list[Any]:
        """Run several commands in one round trip (a pipeline; MULTI/EXEC when ``transaction``)."""
        if not commands:
            await trio.lowlevel.checkpoint()
            return []

        async def go() -> list[Any]:
            async with self.raw.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

        return await self.run_aio(go, timeout_s=timeout_s)

    def script(self, source: str) -> RedisScript:
        """Register a Lua script; call the result with ``keys`` and ``args``."""
        return RedisScript(self, source)

    async def ping(self, *, timeout_s: float | None = None) -> float:
        """One PING; returns its round trip in milliseconds (for ``/status`` and ``/readyz``)."""
        started = trio.current_time()
        await self.run_aio(self.raw.ping, timeout_s=timeout_s)
        return (trio.current_time() - started) * 1000.0
