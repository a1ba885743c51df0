"""Who is alive, judged on this node's own clock; and how long this node may act on what it was told.

Both are pure (sans-IO): time comes in as an argument (trio's clock in production, anything in tests).

The rule a node lives by (docs/cluster.md): node X is **dead** only once its ``heartbeat_seq`` has
stayed unchanged for the TTL, timed on the observer's own clock across observations made while the
observer's own heartbeats kept succeeding. It needs no agreement between machine clocks, only that
each measures elapsed time about right (``clock_margin`` covers the rest). A PostgreSQL outage stops
every node's heartbeats, so every observation window restarts afterwards: survivors never steal from
each other because nobody could renew.

A node's own side of the same rule is :class:`NodeLease`: what a heartbeat confirmed stays true for
``ttl_s * (1 - clock_margin)`` after the heartbeat was *sent*. Any takeover of its salons happens at
least ``ttl_s`` after its last renewal committed — so by then its lease has lapsed, and it must not
open a new WhatsApp connection (or reconnect) for any salon until a heartbeat renews it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import final

import attrs

from ..store import NodeRecord, NodeRef


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0")


@final
@attrs.frozen
class OwnershipTimings:
    """The ownership protocol's numbers (docs/cluster.md has the failover budget they give).

    Attributes:
        ttl_s: how long a node's ``heartbeat_seq`` must stay unchanged, seen by another node, before
            that node may take its salons over.
        heartbeat_interval_s: how often each node renews its row (and observes the others').
        clock_margin: the share of ``ttl_s`` a node gives up early on its own lease, for clock-rate
            differences and for the time a heartbeat spends before PostgreSQL commits it.
        forget_after_s: how long a dead node that owns nothing stays listed before its row is deleted.
        handovers_per_round: how many running salons a node hands over per planning round (pacing).
    """

    ttl_s: float = attrs.field(default=10.0, validator=_positive)
    # ttl/10 rather than ttl/5: a death is noticed up to two intervals after the TTL, and a failover
    # must fit in TTL + 5 s with the restores; each heartbeat is still O(nodes), not O(salons).
    heartbeat_interval_s: float = attrs.field(default=1.0, validator=_positive)
    clock_margin: float = 0.1
    forget_after_s: float = attrs.field(default=60.0, validator=_positive)
    handovers_per_round: int = 10

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.clock_margin < 0.5:
            raise ValueError("clock_margin must be in [0, 0.5)")
        if self.heartbeat_interval_s > self.ttl_s * (1 - self.clock_margin) / 3:
            raise ValueError("heartbeat_interval_s must leave at least three renewals per lease")
        if self.forget_after_s < self.ttl_s:
            raise ValueError("forget_after_s must be at least ttl_s")
        if self.handovers_per_round < 1:
            raise ValueError("handovers_per_round must be >= 1")

    @property
    def lease_s(self) -> float:
        """How long a node may act on a renewal, from the moment it sent it."""
        return self.ttl_s * (1 - self.clock_margin)


@final
@attrs.define
class NodeLease:
    """This node's own lease: valid for ``timings.lease_s`` after the last successful heartbeat was sent.

    While it is valid, no other node can have taken over any salon this node was last told it owns,
    so it may connect to WhatsApp for them. Once it lapses, running connections may stay (a
    PostgreSQL outage must not darken every salon) but no new connection may be opened.
    """

    timings: OwnershipTimings
    _renewed_at: float | None = attrs.field(default=None, init=False)

    def renewed(self, sent_at: float, received_at: float, *, owned_read: bool) -> bool:
        """A heartbeat sent at ``sent_at`` succeeded; its answer arrived at ``received_at``.

        The lease is renewed (from ``sent_at``) when the renewal is continuous — the answer came
        before the previous renewal lapsed, so nobody can have taken a salon over in between — or
        when the heartbeat also read everything this node owns (``owned_read``), which tells it
        what was taken during the gap. After a gap without that read nothing is renewed: the next
        heartbeat must ask for what it owns (``include_owned``), and the caller must stop every
        actor whose salon that answer does not list before it trusts the lease again.

        Returns whether the lease was renewed.
        """
        continuous = self._renewed_at is not None and received_at < self._renewed_at + self.timings.lease_s
        if not (continuous or owned_read):
            return False
        if self._renewed_at is None or sent_at > self._renewed_at:
            self._renewed_at = sent_at
        return True

    def lost(self) -> None:
        """Forget every renewal (this node was superseded or left)."""
        self._renewed_at = None

    def valid_until(self) -> float | None:
        """When the lease lapses (this node's clock), None if it was never renewed."""
        return None if self._renewed_at is None else self._renewed_at + self.timings.lease_s

    def valid(self, now: float) -> bool:
        """Whether this node may still act on its last renewal (open connections, claim, start)."""
        until = self.valid_until()
        return until is not None and now < until


@final
@attrs.frozen
class Membership:
    """One observation's verdict.

    Attributes:
        live: node id → draining, for every node not judged dead (this node always among them).
        dead: node id → the heartbeat it has been stuck at for at least the TTL.
        forgettable: dead nodes silent for ``forget_after_s``: their rows may go once they own nothing.
    """

    live: Mapping[str, bool]
    dead: Mapping[str, NodeRef]
    forgettable: frozenset[str] = frozenset()

    @property
    def placeable(self) -> frozenset[str]:
        """Live nodes that are not draining: the ones placement spreads salons over."""
        return frozenset(node_id for node_id, draining in self.live.items() if not draining)


@final
@attrs.frozen
class _Sighting:
    ref: NodeRef
    since: float


@final
@attrs.define
class Observer:
    """Judges which nodes are dead from the node rows each successful heartbeat returns.

    Feed it :meth:`observe` after every successful heartbeat and :meth:`heartbeat_failed` after every
    failed one; it keeps one sighting per node: the ``(incarnation, heartbeat_seq)`` last seen and
    when this node first saw it.
    """

    me: str
    timings: OwnershipTimings
    _sightings: dict[str, _Sighting] = attrs.field(factory=dict, init=False)

    def heartbeat_failed(self) -> None:
        """This node could not renew: nothing it saw before counts any more (PostgreSQL outage or a
        partition — nobody may be judged by silence this node cannot tell from its own)."""
        self._sightings.clear()

    def observe(self, now: float, nodes: Iterable[NodeRecord]) -> Membership:
        """The verdict from ``nodes`` (every ``cluster_nodes`` row, read after this node's own renewal)."""
        live: dict[str, bool] = {}
        dead: dict[str, NodeRef] = {}
        forgettable: set[str] = set()
        seen: dict[str, _Sighting] = {}
        for node in nodes:
            previous = self._sightings.get(node.node_id)
            sighting = previous if previous is not None and previous.ref == node.ref else _Sighting(node.ref, now)
            seen[node.node_id] = sighting
            silent_for = now - sighting.since
            if node.node_id != self.me and silent_for >= self.timings.ttl_s:
                dead[node.node_id] = node.ref
                if silent_for >= self.timings.forget_after_s:
                    forgettable.add(node.node_id)
            else:
                live[node.node_id] = node.draining
        self._sightings = seen
        live.setdefault(self.me, False)
        return Membership(live=live, dead=dead, forgettable=frozenset(forgettable))
