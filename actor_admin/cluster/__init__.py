"""Cluster coordination through Redis: leases, the Bus, the rate limiter, the inbound stream.

Everything here is trio-native for its callers; redis-py's asyncio client runs underneath through
trio-asyncio (the caller runs inside ``trio_asyncio.open_loop()``). Redis holds only what may be
lost or rebuilt (docs/data.md#redis), and every Redis failure surfaces as :class:`RedisUnavailable`.
"""

from ._bus import (
    Bus,
    BusStatistics,
    LocalBus,
    RedisBus,
    SubscriberTooSlow,
    Subscription,
    open_redis_bus,
)
from ._changes import OWNERSHIP_CHANGE_CAUSES, OwnershipChangeCause, OwnershipChanges
from ._client import RedisClient
from ._embedded import EmbeddedRedis, EmbeddedRedisError
from ._errors import RedisUnavailable
from ._inbound import DEFAULT_INBOUND_MAXLEN, InboundAnnouncer, InboundStream, PublishedLog, inbound_fields
from ._keeper import Actors, Keeper, OwnershipStore
from ._limiter import Decision, RateLimiter
from ._location import Here, Location, Locator, SoleNode, There, Unavailable
from ._membership import Membership, NodeLease, Observer, OwnershipTimings
from ._placement import Placement, place, placement_weight
from ._planner import ClusterView, HandOver, Plan, Release, Start, Stop, placement_for, plan
from ._reannounce import ReannounceOptions, Reannouncer, UnpublishedLog
from ._rpc import NodeRpc, OwnerUnreachable, RpcStatistics, open_node_rpc

__all__ = [
    "DEFAULT_INBOUND_MAXLEN",
    "OWNERSHIP_CHANGE_CAUSES",
    "Actors",
    "Bus",
    "BusStatistics",
    "ClusterView",
    "Decision",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "HandOver",
    "Here",
    "InboundAnnouncer",
    "InboundStream",
    "Keeper",
    "LocalBus",
    "Location",
    "Locator",
    "Membership",
    "NodeLease",
    "NodeRpc",
    "Observer",
    "OwnerUnreachable",
    "OwnershipChangeCause",
    "OwnershipChanges",
    "OwnershipStore",
    "OwnershipTimings",
    "Placement",
    "Plan",
    "PublishedLog",
    "RateLimiter",
    "ReannounceOptions",
    "Reannouncer",
    "RedisBus",
    "RedisClient",
    "RedisUnavailable",
    "Release",
    "RpcStatistics",
    "SoleNode",
    "Start",
    "Stop",
    "SubscriberTooSlow",
    "Subscription",
    "There",
    "Unavailable",
    "UnpublishedLog",
    "inbound_fields",
    "open_node_rpc",
    "open_redis_bus",
    "place",
    "placement_for",
    "placement_weight",
    "plan",
]
