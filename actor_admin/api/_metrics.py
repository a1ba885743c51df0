"""``GET /metrics``: Prometheus text exposition, collected at scrape time.

Each app gets its own :class:`prometheus_client.CollectorRegistry` (no process-global default
registry: two apps in one test process must not share counters). Almost everything is read from the
in-memory statistics the other parts already keep — the session registry, the supervisor, the bus,
the YClients client, the websocket counters — when Prometheus scrapes, so nothing here has to be
told about events as they happen. The exceptions are the few figures only an event source knows:
the QR issue → viewer latency (:meth:`Metrics.observe_qr_latency`, called by the websocket handler)
and the websocket refusals. Ownership changes by cause are counted by the ownership keeper in
``services.ownership_changes`` and read here like the rest (docs/cluster.md). Figures that need
I/O (outbox backlog, dependency round trips) are fetched by the handler before rendering, bounded
in time, so a scrape never hangs on a dead database.

Zero is exported, absence is meaningful. Every session state, supervisor state and websocket
refusal reason has a sample even at 0, so a dashboard shows "0 connected salons", not "No data".
The outbox gauges are the exception on purpose: when PostgreSQL does not answer a scrape they are
left out of it (Prometheus marks the series stale at once) instead of repeating the last figure,
and ``actor_admin_dependency_up{dependency="postgres"}`` is 0 — so a backlog that builds up during
an outage is never hidden behind a frozen, reassuring number (see ops/RUNBOOK.md, "Alerts").
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, final

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from actor_admin import __version__
from actor_admin.actors import ROUTED_LATENCY_BUCKETS
from actor_admin.cluster import OwnershipTimings
from actor_admin.runtime import ActorState
from actor_admin.session import STATES
from actor_admin.store import PRUNED_TABLES, RUN_OUTCOMES

if TYPE_CHECKING:
    from ._services import Services

K = TypeVar("K", bound=str)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Mailbox depths are small integers; the capacity default is 64.
MAILBOX_BUCKETS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# A QR is valid 20 s (60 s the first); a viewer should see it well within a second.
QR_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Why a websocket was turned away: the handshake's error code, or ``unauthorized`` (close 4401).
WEBSOCKET_REFUSALS = ("forbidden_origin", "rate_limited", "shutting_down", "unauthorized")
#: Session states that wait for a person; their sessions are also counted by the reason they entered.
STUCK_STATES = ("failed", "conflict", "logged_out")


@final
@attrs.define
class Probes:
    """The I/O-bound figures of the last scrape (None: not known — the dependency did not answer)."""

    postgres_up: bool | None = None
    redis_up: bool | None = None
    outbox_pending: int | None = None
    outbox_oldest_pending_s: float | None = None
    outbox_failed: int | None = None
    cluster_nodes_silent: int | None = None
    cluster_salons_without_owner: int | None = None


@final
class Metrics:
    """The node's metrics: a per-app registry plus the event hooks other handlers call.

    Owned by the app (built by the ops blueprint, kept on ``services.metrics``).
    """

    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.probes = Probes()
        self._qr_latency = Histogram(
            "actor_admin_qr_latency_seconds",
            "Time from WhatsApp issuing a QR to a viewer's websocket receiving it.",
            buckets=QR_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._websocket_refusals = Counter(
            "actor_admin_websocket_refusals",
            "Onboarding websockets turned away, by reason: forbidden_origin (403, Origin not in "
            "ALLOWED_ORIGINS), rate_limited (429), shutting_down (503), unauthorized (close 4401).",
            ["reason"],
            registry=self.registry,
        )
        for reason in WEBSOCKET_REFUSALS:
            self._websocket_refusals.labels(reason=reason)
        self.registry.register(_StatsCollector(services, self.probes))
        # process_resident_memory_bytes, CPU seconds, open fds — read from /proc at scrape time.
        ProcessCollector(namespace="actor_admin", registry=self.registry)

    def observe_qr_latency(self, seconds: float) -> None:
        """Record how long a QR took from being issued to reaching one viewer (trio seconds)."""
        self._qr_latency.observe(max(0.0, seconds))

    def count_websocket_refusal(self, reason: str) -> None:
        """Count a websocket turned away (one of :data:`WEBSOCKET_REFUSALS`)."""
        self._websocket_refusals.labels(reason=reason).inc()

    def render(self) -> bytes:
        """The exposition text (call after :func:`refresh_probes`)."""
        return generate_latest(self.registry)


async def refresh_probes(services: Services, probes: Probes, *, timeout_s: float = 1.0) -> None:
    """Fetch the figures that need I/O, each bounded by ``timeout_s``, concurrently."""

    async def outbox() -> None:
        # Forget the last figures first: a scrape PostgreSQL does not answer must not repeat them.
        probes.postgres_up = False
        probes.outbox_pending = probes.outbox_oldest_pending_s = probes.outbox_failed = None
        with trio.move_on_after(timeout_s):
            try:
                stats = await services.store.outbox.stats()
            except Exception:
                return
            probes.postgres_up = True
            probes.outbox_pending = stats.pending
            probes.outbox_oldest_pending_s = stats.oldest_pending_s or 0.0
            probes.outbox_failed = stats.failed

    async def redis() -> None:
        if services.redis is None:
            probes.redis_up = None
            return
        probes.redis_up = False
        with trio.move_on_after(timeout_s):
            try:
                await services.redis.ping(timeout_s=timeout_s)
            except Exception:
                return
            probes.redis_up = True

    async def cluster() -> None:
        probes.cluster_nodes_silent = probes.cluster_salons_without_owner = None
        with trio.move_on_after(timeout_s):
            try:
                health = await services.store.ownership.health(OwnershipTimings().ttl_s)
            except Exception:
                return
            probes.cluster_nodes_silent = health.silent_nodes
            probes.cluster_salons_without_owner = health.salons_without_owner

    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox)
        nursery.start_soon(redis)
        nursery.start_soon(cluster)


@final
class _StatsCollector(Collector):
    """Turns the live statistics of the node's parts into metric families at each scrape."""

    def __init__(self, services: Services, probes: Probes) -> None:
        self._services = services
        self._probes = probes

    def describe(self) -> list[Metric]:
        # An empty description: the registry then never calls collect() at registration time
        # (collect() needs trio's clock, and registration may happen outside trio).
        return []

    def collect(self) -> Iterator[Metric]:
        s = self._services
        settings = s.settings
        info = GaugeMetricFamily(
            "actor_admin_info",
            "This node: version, mode and id (the value is always 1).",
            labels=["version", "mode", "node"],
        )
        info.add_metric([__version__, settings.mode, settings.node_id], 1.0)
        yield info
        yield GaugeMetricFamily(
            "actor_admin_uptime_seconds",
            "Seconds since the node started serving.",
            value=trio.current_time() - s.started_at,
        )
        yield from self._sessions()
        yield from self._routed_calls()
        yield from self._messages()
        yield from self._actors()
        yield from self._websockets()
        yield from self._upstream()
        yield from self._ownership()
        yield from self._cluster()
        yield from self._outbox()
        yield from self._retention()
        yield from self._refusals()
        yield from self._dependencies()
        yield from self._yclients()
        yield from self._bus()
        yield from self._store_pool()
        yield from self._simulator()

    def _messages(self) -> Iterator[Metric]:
        counts = self._services.registry.messages
        family = CounterMetricFamily(
            "actor_admin_messages",
            "WhatsApp messages handled by this node's sessions, by direction and outcome.",
            labels=["direction", "outcome"],
        )
        family.add_metric(["in", "stored"], float(counts.inbound_stored))
        family.add_metric(["in", "duplicate"], float(counts.inbound_duplicates))
        family.add_metric(["out", "sent"], float(counts.outbound_sent))
        family.add_metric(["out", "failed"], float(counts.outbound_failed))
        yield family
        yield CounterMetricFamily(
            "actor_admin_inbound_unresolved_lid",
            "Inbound messages stored with the sender's LID only: WhatsApp gave no phone number to reply to.",
            value=float(counts.inbound_unresolved_lid),
        )
        # Re-announcing (docs/data.md#reannouncing): both 0 on a node without Redis.
        reannouncer = self._services.reannouncer
        yield CounterMetricFamily(
            "actor_admin_inbound_reannounced",
            "Stored inbound messages this node put on the inbound stream late (Redis was down, or a crash).",
            value=float(reannouncer.reannounced_total if reannouncer is not None else 0),
        )
        yield GaugeMetricFamily(
            "actor_admin_inbound_unpublished",
            "Inbound messages of this node's salons stored but not on the inbound stream yet, at the last check.",
            value=float(reannouncer.backlog if reannouncer is not None else 0),
        )

    def _sessions(self) -> Iterator[Metric]:
        registry = self._services.registry
        stats = self._services.router.supervisor.statistics()
        counts = session_counts(self._services, stats.by_state, stats.actors)
        by_state = GaugeMetricFamily(
            "actor_admin_sessions",
            "Salons on this node by session state, as /status counts them (every state, 0 included).",
            labels=["state"],
        )
        for name in STATES:
            by_state.add_metric([name], float(counts.get(name, 0)))
        yield by_state
        stuck = GaugeMetricFamily(
            "actor_admin_sessions_stuck",
            "Sessions waiting for a person (failed, conflict, logged_out) by the reason they entered the state.",
            labels=["state", "reason"],
        )
        reasons = collections.Counter(
            (view.state, view.reason or "unknown") for _, view in registry.items() if view.state in STUCK_STATES
        )
        for (state, reason), count in sorted(reasons.items()):
            stuck.add_metric([state, reason], float(count))
        yield stuck

    def _routed_calls(self) -> Iterator[Metric]:
        """Calls this node delivered to salons' owners on other nodes (docs/cluster.md#routing)."""
        stats = self._services.router.statistics()
        calls = CounterMetricFamily(
            "actor_admin_routed_calls",
            "Router calls delivered to the salon's owner on another node, by outcome: ok, moved "
            "(answered after locating the salon again), session_unavailable, owner_unreachable.",
            labels=["outcome"],
        )
        for outcome, count in stats.calls.items():
            calls.add_metric([outcome], float(count))
        yield calls
        latency = HistogramMetricFamily(
            "actor_admin_routed_call_seconds", "Latency of router calls delivered to another node."
        )
        buckets = [(_le(b), float(c)) for b, c in zip(ROUTED_LATENCY_BUCKETS, stats.latency_buckets, strict=True)]
        buckets.append(("+Inf", float(stats.latency_count)))
        latency.add_metric([], buckets, sum_value=stats.latency_sum_s)
        yield latency

    def _actors(self) -> Iterator[Metric]:
        supervisor = self._services.router.supervisor
        stats = supervisor.statistics()
        actors = GaugeMetricFamily(
            "actor_admin_actors",
            "Company actors by supervisor state (starting, running, backing_off, failed, stopping).",
            labels=["state"],
        )
        for state in ("starting", "running", "backing_off", "failed", "stopping"):
            actors.add_metric([state], float(stats.by_state.get(state, 0)))
        yield actors
        yield GaugeMetricFamily(
            "actor_admin_actors_failed",
            "Company actors that crashed too often and wait for POST /admin/companies/{salon_id}/restart.",
            value=float(stats.by_state.get("failed", 0)),
        )
        yield CounterMetricFamily(
            "actor_admin_actor_restarts", "Actor restarts since the node started.", value=stats.restarts_total
        )
        yield GaugeMetricFamily(
            "actor_admin_mailbox_depth_max",
            "The deepest company mailbox right now.",
            value=float(stats.mailbox_max_depth),
        )
        # A histogram of the current depths (not of events): how many mailboxes hold ≤ N messages.
        counts = [0] * len(MAILBOX_BUCKETS)
        total = 0
        for actor in supervisor.actor_statistics():
            depth = actor.mailbox.depth
            total += depth
            for i, bound in enumerate(MAILBOX_BUCKETS):
                if depth <= bound:
                    counts[i] += 1
        buckets = [(_le(b), float(c)) for b, c in zip(MAILBOX_BUCKETS, counts, strict=True)]
        buckets.append(("+Inf", float(stats.actors)))
        histogram = HistogramMetricFamily("actor_admin_mailbox_depth", "Current mailbox depths of all company actors.")
        histogram.add_metric([], buckets, sum_value=float(total))
        yield histogram

    def _websockets(self) -> Iterator[Metric]:
        counters = self._services.counters
        yield GaugeMetricFamily(
            "actor_admin_websockets_open",
            "Onboarding websocket viewers connected now.",
            value=float(counters.websockets_open),
        )
        yield CounterMetricFamily(
            "actor_admin_websockets",
            "Onboarding websocket connections accepted since start.",
            value=float(counters.websockets_total),
        )

    def _upstream(self) -> Iterator[Metric]:
        upstream = self._services.upstream
        if upstream is None:
            return
        view = upstream.view()
        yield GaugeMetricFamily(
            "actor_admin_whatsapp_outage",
            "1 while this node is in a WhatsApp outage (docs/whatsapp.md#upstream-outage), else 0.",
            value=1.0 if view.upstream == "outage" else 0.0,
        )
        yield GaugeMetricFamily(
            "actor_admin_whatsapp_held_back",
            "Salons whose reconnect waits behind the outage probe.",
            value=float(view.held_back),
        )

    def _ownership(self) -> Iterator[Metric]:
        yield _counter_by(
            "actor_admin_ownership_changes",
            "Salons whose owner changed on this node's side, by cause: claimed (a released salon), "
            "handed_over (to its new owner), taken_after_expiry (from a dead node), fenced (lost while "
            "running: taken over or replaced).",
            "cause",
            self._services.ownership_changes.statistics(),
        )

    def _cluster(self) -> Iterator[Metric]:
        # Like the outbox gauges: left out of a scrape PostgreSQL did not answer, never repeated.
        p = self._probes
        if p.cluster_nodes_silent is not None:
            yield GaugeMetricFamily(
                "actor_admin_cluster_nodes_silent",
                "Nodes in cluster_nodes without a heartbeat for longer than the lease TTL (PostgreSQL's clock).",
                value=float(p.cluster_nodes_silent),
            )
        if p.cluster_salons_without_owner is not None:
            yield GaugeMetricFamily(
                "actor_admin_cluster_salons_without_owner",
                "Salons that should run (credentials, not frozen or uninstalled) without a live owner for "
                "longer than the lease TTL; 0 while no node is registered.",
                value=float(p.cluster_salons_without_owner),
            )

    def _outbox(self) -> Iterator[Metric]:
        p = self._probes
        if p.outbox_pending is None:
            return
        yield GaugeMetricFamily(
            "actor_admin_outbox_pending", "YClients calls waiting in the outbox.", value=float(p.outbox_pending)
        )
        yield GaugeMetricFamily(
            "actor_admin_outbox_oldest_pending_seconds",
            "Age of the oldest waiting YClients call (0: none).",
            value=float(p.outbox_oldest_pending_s or 0.0),
        )
        yield GaugeMetricFamily(
            "actor_admin_outbox_failed",
            "YClients calls given up on (activation_failed salons).",
            value=float(p.outbox_failed or 0),
        )

    def _refusals(self) -> Iterator[Metric]:
        """Requests turned away by cause, and the rate limiter running blind (docs/http-api.md#metrics)."""
        yield _counter_by(
            "actor_admin_refusals",
            "Requests refused, by cause: origin, rate_limit, bad_token (onboarding), bad_admin_token, "
            "bad_partner_token (webhook), bad_signature (marketplace redirect); every cause from 0.",
            "cause",
            self._services.refusals.statistics(),
        )
        limiter = self._services.limiter
        if limiter is None:
            return
        degraded = limiter.degraded_since is not None or self._probes.redis_up is False
        yield GaugeMetricFamily(
            "actor_admin_rate_limiting_degraded",
            "1 while the rate limiter lets every hit through because Redis does not answer (fail open).",
            value=1.0 if degraded else 0.0,
        )
        yield CounterMetricFamily(
            "actor_admin_rate_limiter_failed_open",
            "Hits the rate limiter let through uncounted because Redis did not answer.",
            value=float(limiter.failed_open_total),
        )

    def _retention(self) -> Iterator[Metric]:
        """What this node's retention job deleted (docs/data.md#retention); every table from 0."""
        pruner = self._services.pruner
        nothing: dict[str, int] = dict.fromkeys(PRUNED_TABLES, 0)
        yield _counter_by(
            "actor_admin_retention_pruned_rows",
            "Rows deleted by this node's retention job, by table (messages, company_events, outbox).",
            "table",
            pruner.pruned_total if pruner is not None else nothing,
        )
        yield _counter_by(
            "actor_admin_retention_runs",
            "Retention runs of this node by outcome: done, yielded (another node was pruning), failed.",
            "outcome",
            pruner.runs_total if pruner is not None else dict.fromkeys(RUN_OUTCOMES, 0),
        )

    def _dependencies(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "actor_admin_dependency_up",
            "1 when the dependency answered during this scrape.",
            labels=["dependency"],
        )
        for name, value in (("postgres", self._probes.postgres_up), ("redis", self._probes.redis_up)):
            if value is not None:
                up.add_metric([name], 1.0 if value else 0.0)
        yield up

    def _yclients(self) -> Iterator[Metric]:
        client = self._services.yclients
        calls = CounterMetricFamily(
            "actor_admin_yclients_calls",
            "YClients API calls by endpoint and outcome (HTTP status, timeout, connection_error, not_json).",
            labels=["endpoint", "status"],
        )
        if client is not None:
            for (endpoint, status), count in sorted(client.statistics().outcomes.items()):
                calls.add_metric([endpoint, status], float(count))
        yield calls

    def _bus(self) -> Iterator[Metric]:
        bus = self._services.bus
        if bus is None:
            return
        stats = bus.statistics()
        for name, help_text, value in (
            ("topics", "Companies with at least one local subscriber.", stats.topics),
            ("subscribers", "Local bus subscribers (websocket viewers).", stats.subscribers),
            ("connected", "1 while the Redis pub/sub connection is up.", 1 if stats.connected else 0),
        ):
            yield GaugeMetricFamily(f"actor_admin_bus_{name}", help_text, value=float(value))
        for name, help_text, value in (
            ("published", "Frames published by this node.", stats.published_total),
            ("delivered", "Frames delivered to local subscribers.", stats.delivered_total),
            ("subscribers_dropped", "Slow subscribers cut off.", stats.subscribers_dropped_total),
            ("outbox_dropped", "Frames dropped because the publish queue was full.", stats.outbox_dropped_total),
            ("publish_failures", "Frames Redis refused or timed out on.", stats.publish_failures_total),
        ):
            yield CounterMetricFamily(f"actor_admin_bus_{name}", help_text, value=float(value))

    def _store_pool(self) -> Iterator[Metric]:
        try:
            stats: dict[str, Any] = self._services.store.statistics()
        except Exception:  # a pool that is closing has no figures
            return
        for key in ("size", "idle", "max_size"):
            if key in stats:
                yield GaugeMetricFamily(
                    f"actor_admin_pg_pool_{key}", f"PostgreSQL connection pool: {key}.", value=float(stats[key])
                )

    def _simulator(self) -> Iterator[Metric]:
        # Dev only: the in-process WhatsApp simulator counts messages both ways (docs/doubles.md#whatsapp-simulator).
        core = self._services.simulator
        if core is None:
            return
        stats = core.stats()
        for key in ("live_sessions", "linked_devices", "max_live_per_device"):
            yield GaugeMetricFamily(
                f"actor_admin_simulator_{key}", f"Dev WhatsApp simulator: {key}.", value=float(stats[key])
            )
        for key in ("replaced_total", "qr_issued_total", "messages_in_total", "messages_out_total"):
            yield CounterMetricFamily(
                f"actor_admin_simulator_{key.removesuffix('_total')}",
                f"Dev WhatsApp simulator: {key}.",
                value=float(stats[key]),
            )


def _counter_by(name: str, help_text: str, label: str, counts: Mapping[K, int]) -> CounterMetricFamily:
    """A counter family with one sample per key of ``counts`` (label ``label``)."""
    family = CounterMetricFamily(name, help_text, labels=[label])
    for key, count in counts.items():
        family.add_metric([key], float(count))
    return family


def _le(bound: float) -> str:
    """A bucket bound as Prometheus' own clients write it (``1.0``, ``+Inf``)."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def session_counts(services: Services, supervisor_by_state: Mapping[str, int], actors: int) -> dict[str, int]:
    """Companies by session state, without visiting each company (cheap at any scale).

    Running sessions publish their view to the registry; an actor that crashed and backs off, has
    failed, or has not published yet has no view, and is counted under the state its record shows.
    """
    by_state = services.registry.by_state()
    failed = supervisor_by_state.get(ActorState.FAILED.value, 0)
    backing_off = supervisor_by_state.get(ActorState.BACKING_OFF.value, 0)
    viewless = actors - sum(by_state.values()) - failed - backing_off
    for state, count in (("failed", failed), ("reconnecting", backing_off), ("starting", viewless)):
        if count > 0:
            by_state[state] = by_state.get(state, 0) + count
    return by_state
