"""An in-memory model of ``actor_admin.store.Ownership``: the same compare-and-set rules, no database.

The deterministic cluster simulations (tests/concurrency/test_ownership_model.py) run many nodes
against it on virtual time; tests/store/test_ownership_conformance.py runs the same random programs
against it and against PostgreSQL and requires the same answers, so the simulations test the rules
the real store enforces. Every method is atomic (no awaits): the simulation adds latency around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import attrs

from actor_admin.store import (
    Claim,
    Heartbeat,
    Member,
    NodeIdOccupied,
    NodeRecord,
    NodeRef,
    NodeSuperseded,
    Owner,
    OwnershipCause,
)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def record(node_id: str, seq: int, *, incarnation: str = "i", draining: bool = False) -> NodeRecord:
    """A ``cluster_nodes`` row as the store returns it (PostgreSQL's timestamps do not matter here)."""
    return NodeRecord(
        node_id=node_id, incarnation=incarnation, version="1.0", started_at=EPOCH, heartbeat_seq=seq,
        heartbeat_at=EPOCH, heartbeat_age_s=0.0, draining=draining,
    )


@attrs.define
class _Node:
    incarnation: str
    version: str
    seq: int = 1
    draining: bool = False


@attrs.define
class Change:
    """One ownership change, for the simulations' checks."""

    salon_id: int
    previous: Owner | None
    current: Owner
    cause: OwnershipCause
    after_expiry: bool = False  # released because its node's incarnation was replaced after going silent


@attrs.define
class OwnershipModel:
    """``cluster_nodes`` + ``salon_owners`` + the set of companies, as plain dicts."""

    companies: set[int] = attrs.field(factory=set)
    nodes: dict[str, _Node] = attrs.field(factory=dict)
    owners: dict[int, Owner] = attrs.field(factory=dict)
    changes: list[Change] = attrs.field(factory=list)
    on_change: Callable[[Change], None] | None = None
    _last_fence: int = 0

    def _fence(self) -> int:
        self._last_fence += 1
        return self._last_fence

    def _set(self, salon_id: int, node_id: str | None, cause: OwnershipCause, *, after_expiry: bool = False) -> int:
        fence = self._fence()
        change = Change(salon_id, self.owners.get(salon_id), Owner(node_id, fence), cause, after_expiry)
        self.changes.append(change)
        self.owners[salon_id] = change.current
        if self.on_change is not None:
            self.on_change(change)
        return fence

    def _record(self, node_id: str) -> NodeRecord:
        node = self.nodes[node_id]
        return record(node_id, node.seq, incarnation=node.incarnation, draining=node.draining)

    def _is(self, me: Member) -> bool:
        node = self.nodes.get(me.node_id)
        return node is not None and node.incarnation == me.incarnation

    def _release_all(self, node_id: str, *, after_expiry: bool = False) -> list[int]:
        mine = sorted(s for s, o in self.owners.items() if o.node_id == node_id)
        for salon_id in mine:
            self._set(salon_id, None, "released", after_expiry=after_expiry)
        return mine

    # --- the Ownership API, synchronously ---------------------------------------------------------

    def join(self, me: Member, *, replacing: NodeRef | None = None) -> NodeRecord:
        node = self.nodes.get(me.node_id)
        if node is None:
            self.nodes[me.node_id] = _Node(me.incarnation, me.version)
        elif node.incarnation != me.incarnation:
            if replacing != NodeRef(me.node_id, node.incarnation, node.seq):
                raise NodeIdOccupied(self._record(me.node_id))
            self.nodes[me.node_id] = _Node(me.incarnation, me.version, seq=node.seq + 1)
            self._release_all(me.node_id, after_expiry=True)
        return self._record(me.node_id)

    def heartbeat(self, me: Member, *, include_owned: bool = False) -> Heartbeat:
        if not self._is(me):
            raise NodeSuperseded(me.node_id)
        self.nodes[me.node_id].seq += 1
        nodes = tuple(self._record(n) for n in sorted(self.nodes))
        return Heartbeat(self.nodes[me.node_id].seq, nodes, self.owned(me.node_id) if include_owned else None)

    def set_draining(self, me: Member, draining: bool = True) -> None:
        if not self._is(me):
            raise NodeSuperseded(me.node_id)
        self.nodes[me.node_id].draining = draining

    def leave(self, me: Member) -> list[int]:
        if not self._is(me):
            return []
        released = self._release_all(me.node_id)
        del self.nodes[me.node_id]
        return released

    def forget(self, dead: NodeRef) -> bool:
        node = self.nodes.get(dead.node_id)
        if node is None or (node.incarnation, node.seq) != (dead.incarnation, dead.heartbeat_seq):
            return False
        if any(o.node_id == dead.node_id for o in self.owners.values()):
            return False
        del self.nodes[dead.node_id]
        return True

    def nodes_list(self) -> list[NodeRecord]:
        return [self._record(n) for n in sorted(self.nodes)]

    def claim(self, me: Member, claims: Iterable[Claim]) -> dict[int, int]:
        if not self._is(me) or self.nodes[me.node_id].draining:
            return {}
        won: dict[int, int] = {}
        for claim in sorted(claims, key=lambda c: c.salon_id):
            owner = self.owners.get(claim.salon_id)
            if claim.takeover is None:
                if claim.salon_id in self.companies and (owner is None or owner.node_id is None):
                    won[claim.salon_id] = self._set(claim.salon_id, me.node_id, "claimed")
                continue
            dead = claim.takeover.dead
            node = self.nodes.get(dead.node_id)
            alive_since = node is None or (node.incarnation, node.seq) != (dead.incarnation, dead.heartbeat_seq)
            if not alive_since and owner == Owner(dead.node_id, claim.takeover.fence):
                won[claim.salon_id] = self._set(claim.salon_id, me.node_id, "taken_after_expiry")
        return won

    def release(self, me: Member, fences: Mapping[int, int], *, cause: OwnershipCause = "handed_over") -> set[int]:
        released = set()
        for salon_id, fence in sorted(fences.items()):
            if self.owners.get(salon_id) == Owner(me.node_id, fence):
                self._set(salon_id, None, cause)
                released.add(salon_id)
        return released

    def owners_now(self) -> dict[int, Owner]:
        return dict(self.owners)

    def owned(self, node_id: str) -> dict[int, int]:
        return {s: o.fence for s, o in self.owners.items() if o.node_id == node_id}

    def owned_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for owner in self.owners.values():
            if owner.node_id is not None:
                counts[owner.node_id] = counts.get(owner.node_id, 0) + 1
        return counts

    def fence_is_current(self, salon_id: int, fence: int) -> bool:
        """What the fence trigger checks: a write stating ``fence`` for ``salon_id`` would pass."""
        owner = self.owners.get(salon_id)
        return owner is not None and owner.node_id is not None and owner.fence == fence
