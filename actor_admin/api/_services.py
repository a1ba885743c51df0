"""What the HTTP front end reaches: one record built by the composition root (``node.py``).

Handlers get it through their blueprint factory (``blueprint(services)``), never through a global.
It names the real parts the routes use; the doubles ride along in dev (it is part of their wiring,
docs/doubles.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from actor_admin.actors import Registry, Router, UpstreamWatch
from actor_admin.cluster import Bus, OwnershipChanges, RateLimiter, Reannouncer, RedisClient
from actor_admin.config import Settings
from actor_admin.doubles.whatsapp import SimulatorCore
from actor_admin.doubles.yclients import FakeYClients
from actor_admin.store import Pruner, Store
from actor_admin.yclients import OutboxWorker, YClientsClient

from ._refusals import Refusals


class QrLatency(Protocol):
    """What the websocket reports to ``/metrics``: how long a viewer waited for its QR, and refusals."""

    def observe_qr_latency(self, seconds: float) -> None: ...

    def count_websocket_refusal(self, reason: str) -> None: ...


@attrs.define
class Counters:
    """Small live figures the front end keeps itself (for /status and /metrics)."""

    websockets_open: int = 0
    websockets_total: int = 0


@attrs.define
class Services:
    settings: Settings
    store: Store
    router: Router
    registry: Registry
    bus: Bus
    yclients: YClientsClient
    #: Redis and what lives in it; None without Redis (one process, a ``LocalBus``).
    redis: RedisClient | None = None
    limiter: RateLimiter | None = None
    #: The in-process WhatsApp simulator and the fake marketplace (dev only).
    simulator: SimulatorCore | None = None
    fake_yclients: FakeYClients | None = None
    #: The node's view of WhatsApp (outage detection, one probe); None: not watched.
    upstream: UpstreamWatch | None = None
    #: Set by ``create_app`` (the ops blueprint's ``Metrics``).
    metrics: QrLatency | None = None
    #: Set by ``node._start_workers``.
    outbox_worker: OutboxWorker | None = None
    #: The retention job (docs/data.md#retention); set by ``node._start_workers``.
    pruner: Pruner | None = None
    #: Re-announces inbound messages not yet on the stream (docs/data.md#reannouncing); None without Redis.
    reannouncer: Reannouncer | None = None
    counters: Counters = attrs.field(factory=Counters)
    #: Requests turned away by cause (bad tokens, origins, rate limits): counted and logged, rate-limited.
    refusals: Refusals = attrs.field(factory=Refusals)
    #: Ownership changes by cause: the ownership keeper counts, /metrics exports.
    ownership_changes: OwnershipChanges = attrs.field(factory=OwnershipChanges)
    #: Wall-clock seconds, for JWT times and anything shown as a date; injectable in tests.
    wall_clock: Callable[[], float] = time.time
    started_at: float = attrs.field(factory=trio.current_time)
    #: Set when the node begins its graceful shutdown; websockets close with "going away".
    shutting_down: trio.Event = attrs.field(factory=trio.Event)
