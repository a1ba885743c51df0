"""What the HTTP front end reaches: one record built by the composition root (``node.py``).

Handlers get it through their blueprint factory (``blueprint(services)``), never through a global.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actor_admin.actors import Registry, Router
from actor_admin.cluster import OwnershipChanges
from actor_admin.config import Settings


@attrs.define
class Counters:
    """Small live figures the front end keeps itself (for /status and /metrics)."""

    websockets_open: int = 0
    websockets_total: int = 0


@attrs.define
class Services:
    settings: Settings
    store: Any  # actor_admin.store.Store
    router: Router
    registry: Registry
    bus: Any  # actor_admin.cluster.Bus
    redis: Any = None  # actor_admin.cluster.RedisClient, None when not configured
    limiter: Any = None  # actor_admin.cluster.RateLimiter
    nodes: Any = None  # actor_admin.cluster.NodeRegistry
    yclients: Any = None  # actor_admin.yclients.YClientsClient
    simulator: Any = None  # actor_admin.doubles.whatsapp.SimulatorCore (dev only)
    fake_yclients: Any = None  # actor_admin.doubles.yclients.FakeYClients (dev only)
    metrics: Any = None  # actor_admin.api._metrics.Metrics, set by create_app
    outbox_worker: Any = None  # actor_admin.yclients.OutboxWorker, set by node._start_workers
    counters: Counters = attrs.field(factory=Counters)
    #: Ownership changes by cause: the ownership keeper counts, /metrics exports.
    ownership_changes: OwnershipChanges = attrs.field(factory=OwnershipChanges)
    #: Wall-clock seconds, for JWT times and anything shown as a date; injectable in tests.
    wall_clock: Callable[[], float] = time.time
    started_at: float = attrs.field(factory=trio.current_time)
    #: Set when the node begins its graceful shutdown; websockets close with "going away".
    shutting_down: trio.Event = attrs.field(factory=trio.Event)
