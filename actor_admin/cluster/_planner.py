"""The ownership planner: from what this node sees, what it should do — pure, no I/O, no clock.

Like ``session/``, this is a function of its inputs only, so every decision is testable without a
database: the driver (a node's ownership loop) reads the cluster, calls :func:`plan`, performs the
actions through the store's compare-and-set operations, and runs again. Acting on a stale view is
safe because every store operation is conditional on what it was decided from — a claim on the
fence and heartbeat it saw, a release on its own fence — so the worst a stale plan can do is fail.

Rules (docs/cluster.md):
- A salon belongs where :func:`place` puts it among live, non-draining nodes.
- Claim a salon placed here when it is released (and should run), or when its owner is dead.
- Never claim from a live owner — it hands over: stops its actor, then releases; only then claim.
- Stop any local actor whose salon is no longer this node's with the fence it runs with.
- Start salons this node owns, should run and are placed here; release owned ones it does not run
  that belong elsewhere or need not run.
- Hand over running salons placed elsewhere, a few per round (``max_handovers``).
- Forget dead nodes that own nothing once they have been silent long enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import final

import attrs

from ..store import Claim, NodeRef, Owner, OwnershipCause, Takeover
from ._membership import Membership
from ._placement import Placement


@final
@attrs.frozen
class ClusterView:
    """What the planner decides from.

    Attributes:
        me: this node's id.
        membership: the :class:`Observer`'s latest verdict.
        owners: every ``salon_owners`` row.
        wanted: salons that should run (stored credentials, neither frozen nor uninstalled).
    """

    me: str
    membership: Membership
    owners: Mapping[int, Owner]
    wanted: Set[int]


@final
@attrs.frozen
class Start:
    """Start the actor of a salon this node owns, with its fence (connecting needs a valid lease)."""

    salon_id: int
    fence: int


@final
@attrs.frozen
class Stop:
    """Stop the local actor of a salon that is no longer this node's (fenced): no reconnect, no logout."""

    salon_id: int
    fence: int


@final
@attrs.frozen
class HandOver:
    """Stop the local actor (its connection closes), then release the salon for ``to`` to claim."""

    salon_id: int
    fence: int
    to: str


@final
@attrs.frozen
class Release:
    """Release a salon this node owns but does not run."""

    salon_id: int
    fence: int
    cause: OwnershipCause


@final
@attrs.frozen
class Plan:
    """The actions of one planning round, each list in ``salon_id`` order."""

    claims: tuple[Claim, ...] = ()
    starts: tuple[Start, ...] = ()
    stops: tuple[Stop, ...] = ()
    handovers: tuple[HandOver, ...] = ()
    releases: tuple[Release, ...] = ()
    forgets: tuple[NodeRef, ...] = ()

    @property
    def settled(self) -> bool:
        """Nothing to do: as far as this node can see, ownership has converged."""
        return not (self.claims or self.starts or self.stops or self.handovers or self.releases or self.forgets)


def plan(
    view: ClusterView, local: Mapping[int, int], *, max_handovers: int, placement: Placement | None = None
) -> Plan:
    """The actions that move this node towards the placement.

    Args:
        view: the cluster as last read.
        local: salon → fence of every actor this node runs or is starting.
        max_handovers: at most this many :class:`HandOver` per round (restores on the receiving
            node are paced, and each handover costs its salon a moment without a connection).
        placement: a remembered :class:`Placement`, used if it is over this view's placeable nodes
            (the driver keeps one across rounds; see :func:`placement_for`).
    """
    me, membership, owners = view.me, view.membership, view.owners
    target_of = placement_for(membership, placement)
    claims: list[Claim] = []
    starts: list[Start] = []
    handovers: list[HandOver] = []
    releases: list[Release] = []
    stops = [Stop(s, fence) for s, fence in sorted(local.items()) if owners.get(s) != Owner(me, fence)]

    for salon_id in sorted(view.wanted | owners.keys()):
        owner = owners.get(salon_id)
        target = target_of(salon_id)
        wanted = salon_id in view.wanted
        if owner is not None and owner.node_id == me:
            if salon_id in local:
                if local[salon_id] == owner.fence and target is not None and target != me:
                    handovers.append(HandOver(salon_id, owner.fence, target))
            elif wanted and target == me:
                starts.append(Start(salon_id, owner.fence))
            elif target is not None:  # draining with nobody to hand to: keep it until leaving
                releases.append(Release(salon_id, owner.fence, "handed_over" if wanted else "released"))
        elif target == me:
            if owner is None or owner.node_id is None:
                if wanted:
                    claims.append(Claim(salon_id))
            elif owner.node_id in membership.dead:
                claims.append(Claim(salon_id, Takeover(membership.dead[owner.node_id], owner.fence)))

    owning = {owner.node_id for owner in owners.values()}
    forgets = [membership.dead[n] for n in sorted(membership.forgettable) if n not in owning]
    return Plan(
        claims=tuple(claims),
        starts=tuple(starts),
        stops=tuple(stops),
        handovers=tuple(handovers[:max_handovers]),
        releases=tuple(releases),
        forgets=tuple(forgets),
    )


def placement_for(membership: Membership, previous: Placement | None = None) -> Placement:
    """``previous`` if it places over ``membership``'s placeable nodes, else a new :class:`Placement`."""
    if previous is not None and previous.nodes == membership.placeable:
        return previous
    return Placement(membership.placeable)
