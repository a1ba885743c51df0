"""A cluster-wide rate limiter: a sliding-window log per key in Redis.

A websocket handshake allows 10 new connections per client IP per 60 s *across the whole cluster*
(docs/websocket.md#handshake), and YClients calls are paced cluster-wide
(docs/yclients.md#conventions-and-limits); both need one count shared by every node, so the count lives
in Redis, never in process memory. Each key is a sorted set of the accepted hits' timestamps (Redis
server time), trimmed to the window and expiring by itself one window after the last accepted hit.

A sliding log is exact ("at most N in any window_s"), unlike a fixed window that lets 2·N through
around a boundary; its cost is N small entries per key, which is nothing at these limits.
"""

from __future__ import annotations

import logging
import secrets
from typing import Final, final

import attrs
import trio

from ._client import RedisClient
from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

# Hits the limiter waits for Redis before failing open: a handshake must never stall on Redis.
DEFAULT_LIMITER_TIMEOUT_S: Final = 0.5
# While Redis stays down, repeat the "failing open" warning at most this often.
_WARN_EVERY_S: Final = 60.0

# KEYS[1] the hit log; ARGV: limit, window in ms, a unique member for this hit.
# Returns {allowed (0/1), remaining, retry_after_ms}. Refused hits are not recorded, so a client
# that keeps knocking is let in again as soon as its oldest accepted hit leaves the window.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = window
if oldest[2] then retry = tonumber(oldest[2]) + window - now end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], window) end
return {0, 0, math.max(retry, 1)}
"""


@final
@attrs.frozen
class Decision:
    """The limiter's answer for one hit.

    ``retry_after`` is in seconds (0 when allowed). ``degraded`` is true when Redis could not be
    asked and the hit was let through (fail open).
    """

    allowed: bool
    remaining: int
    retry_after: float
    degraded: bool = False


@final
class RateLimiter:
    """``await limiter.hit("ws-ip:203.0.113.7", limit=10, window_s=60)`` → :class:`Decision`.

    Fails **open**: if Redis is down or slow the hit is allowed and a warning is logged (once per
    outage, then at most once a minute), because an outage of a counter must never take the server
    down with it.
    """

    def __init__(self, client: RedisClient, *, timeout_s: float = DEFAULT_LIMITER_TIMEOUT_S) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._script = client.script(_HIT)
        self._failing_since: float | None = None
        self._last_warning = float("-inf")
        self.failed_open_total = 0

    @property
    def degraded_since(self) -> float | None:
        """Since when (trio's clock) hits fail open because Redis could not be asked; None while the
        last hit was counted. Only a hit finds out: a limiter nobody uses keeps its last verdict."""
        return self._failing_since

    def key_for(self, key: str) -> str:
        """The Redis key that holds the hits for ``key``."""
        return self._client.key("ratelimit", key)

    async def hit(self, key: str, limit: int, window_s: float) -> Decision:
        """Count one hit on ``key`` and say whether it is within ``limit`` per ``window_s``."""
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be ≥ 1 and window_s > 0")
        window_ms = max(1, round(window_s * 1000))
        try:
            allowed, remaining, retry_ms = await self._script(
                [self.key_for(key)],
                [limit, window_ms, secrets.token_hex(8)],
                timeout_s=self._timeout_s,
            )
        except RedisUnavailable as exc:
            self._fail_open(exc)
            return Decision(allowed=True, remaining=limit, retry_after=0.0, degraded=True)
        if self._failing_since is not None:
            log.info("rate limiter: Redis is back, limits enforced again")
            self._failing_since = None
            self._last_warning = float("-inf")
        return Decision(allowed=bool(allowed), remaining=int(remaining), retry_after=int(retry_ms) / 1000)

    def _fail_open(self, exc: RedisUnavailable) -> None:
        self.failed_open_total += 1
        now = trio.current_time()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning("rate limiter failing open, hits are allowed: Redis unavailable (%s)", exc)
