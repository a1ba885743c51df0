"""Client-side pacing of YClients calls.

YClients allows 5 requests per second per IP (docs/yclients.md#conventions-and-limits) and documents neither
its 429 format nor ``Retry-After``, so we stay under the limit ourselves instead of learning it from
errors. :class:`Throttle` is the small interface the client needs; :class:`TokenBucket` paces one process.
:class:`SharedThrottle` adds a Redis window that several nodes behind one IP share.
"""

from __future__ import annotations

from typing import Protocol, final, runtime_checkable

import attrs
import trio


@runtime_checkable
class Throttle(Protocol):
    """Something that decides when the next YClients request may go out."""

    async def acquire(self) -> None:
        """Wait until one more request is allowed, and take that permission. Always a checkpoint."""
        ...


@final
@attrs.frozen
class TokenBucketStatistics:
    tokens: float
    rate: float
    burst: int
    tasks_waiting: int


@final
@attrs.define
class TokenBucket:
    """A token bucket on trio's clock: ``rate`` tokens per second, holding at most ``burst``.

    The default ``burst=1`` spaces requests ``1/rate`` apart, so no one-second window ever sees more than
    ``rate`` requests — a bigger burst would let ``burst + rate`` through in the first second.
    Waiters are served in arrival order (``trio.Lock`` is fair), so a flood cannot starve anyone.

    Kept as the equivalent "theoretical arrival time" (GCRA) rather than a float token count, so a
    waiter sleeps until an exact instant instead of creeping up on a token through rounding errors.
    """

    rate: float = 5.0
    burst: int = 1
    # When the bucket would next be full minus one token; None until first used.
    _tat: float | None = attrs.field(init=False, default=None)
    _lock: trio.Lock = attrs.field(init=False, factory=trio.Lock)
    _waiting: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")

    @property
    def _interval(self) -> float:
        return 1.0 / self.rate

    def _next_slot(self, now: float) -> tuple[float, float]:
        """``(tat, allowed_at)``: the arrival time to book from, and when a request may go out."""
        tat = now if self._tat is None else max(self._tat, now)
        return tat, tat - (self.burst - 1) * self._interval

    def acquire_nowait(self) -> None:
        """Take a token now, or raise :class:`trio.WouldBlock` (also while others queue for one)."""
        if self._lock.locked():
            raise trio.WouldBlock
        now = trio.current_time()
        tat, allowed_at = self._next_slot(now)
        if allowed_at > now:
            raise trio.WouldBlock
        self._tat = tat + self._interval

    async def acquire(self) -> None:
        """Wait for a token (in arrival order) and take it."""
        self._waiting += 1
        try:
            async with self._lock:
                tat, allowed_at = self._next_slot(trio.current_time())
                if allowed_at > trio.current_time():
                    await trio.sleep_until(allowed_at)
                self._tat = tat + self._interval
        finally:
            self._waiting -= 1

    def statistics(self) -> TokenBucketStatistics:
        """Tokens available now (only readable inside ``trio.run``) and tasks queued for one."""
        if self._tat is None:
            tokens = float(self.burst)
        else:
            backlog = max(0.0, self._tat - trio.current_time()) / self._interval
            tokens = max(0.0, self.burst - backlog)
        return TokenBucketStatistics(tokens=tokens, rate=self.rate, burst=self.burst, tasks_waiting=self._waiting)


@final
class NoThrottle:
    """No pacing at all: for tests, and for a fake marketplace that has no limit."""

    async def acquire(self) -> None:
        await trio.lowlevel.checkpoint()


class _Verdict(Protocol):
    """A shared limiter's answer (:class:`actor_admin.cluster.Decision`): go now, or wait this long."""

    @property
    def allowed(self) -> bool: ...

    @property
    def retry_after(self) -> float: ...


class _Limiter(Protocol):
    """What the throttle needs of the cluster's :class:`~actor_admin.cluster.RateLimiter`."""

    async def hit(self, key: str, limit: int, window_s: float) -> _Verdict: ...


@final
@attrs.define
class SharedThrottle:
    """The whole cluster's pacing: a local :class:`TokenBucket` (no burst within a process) plus a
    sliding window in Redis that all nodes behind one IP share, so together they stay under
    YClients' 5 requests per second. When Redis cannot be asked the limiter fails open and the
    local bucket alone still paces this node.
    """

    limiter: _Limiter
    rate: float = 5.0
    key: str = "yclients:calls"
    local: TokenBucket = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.local = TokenBucket(rate=self.rate)

    async def acquire(self) -> None:
        await self.local.acquire()
        while True:
            decision = await self.limiter.hit(self.key, max(1, int(self.rate)), 1.0)
            if decision.allowed:
                return
            await trio.sleep(max(decision.retry_after, 0.01))
