"""Which nodes are alive in the cluster, for ``/status`` (``"cluster": {"nodes": [...]}``).

Each node heartbeats into one sorted set, ``{prefix}nodes`` (``actor-admin:nodes``), scored by
Redis' own clock, so nodes whose machine clocks disagree still agree on who is stale. A node that
has not beaten for ``ttl_s`` is left out and pruned; one that shuts down cleanly removes itself.
"""

from __future__ import annotations

import logging
from typing import Final, final

import trio

from ._client import RedisClient
from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

DEFAULT_NODE_TTL_S: Final = 30.0

# KEYS[1] the set. ARGV: node_id, ttl_ms. The set itself expires when every node is gone.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return now
"""

# KEYS[1] the set. ARGV: ttl_ms. Returns the live node ids, oldest heartbeat first.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


@final
class NodeRegistry:
    """Heartbeats for cluster membership. ``ttl_s``: how long a silent node still counts as alive."""

    def __init__(self, client: RedisClient, *, ttl_s: float = DEFAULT_NODE_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self._client = client
        self.ttl_s = ttl_s
        self.key = client.key("nodes")
        self._beat = client.script(_BEAT)
        self._live = client.script(_LIVE)

    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    async def register_node(self, node_id: str) -> None:
        """Record a heartbeat for ``node_id`` (and prune nodes silent for longer than ``ttl_s``)."""
        await self._beat([self.key], [node_id, self._ttl_ms()])

    async def unregister_node(self, node_id: str) -> None:
        """Remove ``node_id`` at once (graceful shutdown)."""
        await self._client.execute("ZREM", self.key, node_id)

    async def nodes(self) -> list[str]:
        """The ids of nodes that have beaten within ``ttl_s``."""
        return [str(n) for n in await self._live([self.key], [self._ttl_ms()])]

    async def keep_registered(
        self, node_id: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Heartbeat every ``ttl_s / 3`` until cancelled; outages are logged and retried."""
        try:
            await self.register_node(node_id)
        except RedisUnavailable as exc:
            log.warning("node %s not registered yet, Redis unavailable (%s)", node_id, exc)
        task_status.started()
        while True:
            await trio.sleep(self.ttl_s / 3)
            try:
                await self.register_node(node_id)
            except RedisUnavailable as exc:
                log.info("node heartbeat failed, Redis unavailable (%s)", exc)
