"""Leases with fencing tokens: the building block for at most one actor per company across nodes.

Not wired yet: nothing in the node takes a lease, so today the supervisor alone keeps one actor per
company, which holds for one node (run one node; see the README). Once wired, a node is to run a
company's actor only while it holds the company's lease.

A lease is the Redis key ``{prefix}lease:{salon_id}`` whose value is ``"<token>:<node_id>"`` and
whose TTL is the lease's life. Acquiring is SET-if-absent with a TTL plus a new **fencing token**
from one cluster-wide counter (INCR), done in one Lua script so no token is spent on a failed
attempt. Tokens only grow:
a node that was paused past its lease (GC, a frozen VM) and wakes up still holding an old token can
be refused by anything that remembers the highest token it has seen — the lease alone cannot
prevent that (Kleppmann, "How to do distributed locking", 2016).

Renewing and releasing check the value first (Lua compare-and-PEXPIRE / compare-and-DEL), so a node
can never extend or delete a lease that expired and was taken by another node meanwhile.

Redis' TTLs run on Redis' wall clock; everything this process times (the renewal loop) runs on
trio's clock.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal, final

import attrs
import trio

from ._client import RedisClient
from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

LeaseLostReason = Literal["taken", "expired"]

# KEYS: lease, fence counter. ARGV: node_id, ttl_ms.
# Free → take it with a new token. Held by this same node (an actor restarted in this process
# before its old lease ran out) → take it over with a new token, which fences the old incarnation.
# Held by another node → refuse.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ':', 1, true)
  if not sep or string.sub(current, sep + 1) ~= ARGV[1] then return false end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# How much earlier than the TTL keep_renewed gives a lease up when Redis cannot confirm it: the
# round trips and clock rates of two machines differ a little, and giving up early is the safe side.
_EXPIRY_MARGIN: Final = 0.1


@final
@attrs.frozen
class Lease:
    """Proof that ``node_id`` held ``salon_id``'s lease with fencing ``token`` for ``ttl_s``."""

    salon_id: int
    node_id: str
    token: int
    ttl_s: float

    @property
    def value(self) -> str:
        """What the lease key holds while this lease is current."""
        return f"{self.token}:{self.node_id}"


@final
@attrs.frozen
class LeaseHolder:
    """Who holds a company's lease right now."""

    node_id: str
    token: int


@final
class LeaseManager:
    """Acquires, renews and releases company leases for one node.

    Every method raises :class:`RedisUnavailable` when Redis cannot answer, which a caller must
    treat as "cannot prove ownership": no actor may start on it.
    """

    def __init__(self, client: RedisClient, node_id: str) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        self._client = client
        self.node_id = node_id
        self._acquire = client.script(_ACQUIRE)
        self._renew = client.script(_RENEW)
        self._release = client.script(_RELEASE)

    def key_for(self, salon_id: int) -> str:
        """The lease key of ``salon_id``."""
        return self._client.key("lease", salon_id)

    @property
    def fence_key(self) -> str:
        """The counter that fencing tokens come from."""
        return self._client.key("lease-fence")

    async def try_acquire(self, salon_id: int, ttl_s: float) -> Lease | None:
        """Take ``salon_id``'s lease for ``ttl_s`` seconds, or ``None`` if another node holds it."""
        ttl_ms = _to_ms(ttl_s)
        token = await self._acquire([self.key_for(salon_id), self.fence_key], [self.node_id, ttl_ms])
        if token is None:
            return None
        return Lease(salon_id=salon_id, node_id=self.node_id, token=int(token), ttl_s=ttl_s)

    async def renew(self, lease: Lease) -> bool:
        """Extend ``lease`` by its TTL; ``False`` if it is no longer ours (expired or taken)."""
        key = self.key_for(lease.salon_id)
        return bool(await self._renew([key], [lease.value, _to_ms(lease.ttl_s)]))

    async def release(self, lease: Lease) -> bool:
        """Give ``lease`` up; ``False`` if it was no longer ours (nothing is deleted then)."""
        return bool(await self._release([self.key_for(lease.salon_id)], [lease.value]))

    async def holder(self, salon_id: int) -> LeaseHolder | None:
        """The current holder of ``salon_id``'s lease, or ``None`` when nobody holds it."""
        value = await self._client.execute("GET", self.key_for(salon_id))
        if value is None:
            return None
        token, _, node_id = str(value).partition(":")
        return LeaseHolder(node_id=node_id, token=int(token))

    async def owner(self, salon_id: int) -> str | None:
        """The node id holding ``salon_id``'s lease, or ``None``."""
        holder = await self.holder(salon_id)
        return None if holder is None else holder.node_id

    async def keep_renewed(
        self,
        lease: Lease,
        on_lost: Callable[[LeaseLostReason], Awaitable[object] | object],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Renew ``lease`` every ``ttl_s / 3`` until cancelled; call ``on_lost`` once if it is lost.

        ``on_lost("taken")``: Redis says the lease is no longer ours. ``on_lost("expired")``: Redis
        could not be reached for long enough that the lease must be assumed gone (another node may
        hold it now). The task returns after calling ``on_lost`` (which may be sync or async); the
        caller stops the actor. Run it in the actor's nursery so cancelling the actor stops it.
        """
        interval = lease.ttl_s / 3
        retry_interval = lease.ttl_s / 10
        # The lease counts as ours until `ttl_s` after the last confirmation, minus a margin, and
        # the TTL is counted from before each request was sent: Redis restarted its TTL no earlier.
        # So the actor is stopped before any other node can have taken the company.
        valid_until = trio.current_time() + lease.ttl_s * (1 - _EXPIRY_MARGIN)
        delay = interval
        task_status.started()
        while True:
            await trio.sleep(max(0.0, min(delay, valid_until - trio.current_time())))
            asked_at = trio.current_time()
            still_ours: bool | None = None
            with trio.move_on_after(max(0.0, valid_until - asked_at)):
                try:
                    still_ours = await self.renew(lease)
                except RedisUnavailable as exc:
                    log.info("lease of salon %s not renewed, Redis unreachable (%s)", lease.salon_id, exc)
            if still_ours is None:
                if trio.current_time() >= valid_until:
                    log.warning("lease of salon %s presumed expired: Redis unreachable", lease.salon_id)
                    await _call(on_lost, "expired")
                    return
                delay = retry_interval
                continue
            if not still_ours:
                log.warning("lease of salon %s was lost (token %s)", lease.salon_id, lease.token)
                await _call(on_lost, "taken")
                return
            valid_until = asked_at + lease.ttl_s * (1 - _EXPIRY_MARGIN)
            delay = interval


async def _call(on_lost: Callable[[LeaseLostReason], Awaitable[object] | object], reason: LeaseLostReason) -> None:
    result = on_lost(reason)
    if inspect.isawaitable(result):
        await result


def _to_ms(ttl_s: float) -> int:
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    return max(1, round(ttl_s * 1000))
