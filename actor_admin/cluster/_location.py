"""Where a salon's actor lives: the one question the router asks before delivering a call.

A :class:`Locator` answers it. The cluster's ownership loop answers from PostgreSQL's ``salon_owners``
(and may claim a salon placed on this node on demand); :class:`SoleNode` is the answer of a node
without a cluster: everything runs here. See docs/cluster.md.
"""

from __future__ import annotations

from typing import Protocol, final

import attrs


@final
@attrs.frozen
class Here:
    """This node owns the salon; the actor's writes carry this fence (0 = no fence: one node)."""

    fence: int


@final
@attrs.frozen
class There:
    """Another live node owns the salon (or placement names it and it will claim on demand)."""

    node_id: str


@final
@attrs.frozen
class Unavailable:
    """No live owner can be found now (e.g. PostgreSQL down, the cluster empty)."""

    reason: str


Location = Here | There | Unavailable


class Locator(Protocol):
    """Tells the router where each salon's actor lives."""

    async def locate(self, salon_id: int) -> Location:
        """Where ``salon_id``'s actor lives now; may claim the salon for this node."""
        ...

    def owner_here(self, salon_id: int) -> int | None:
        """The fence if this node owns ``salon_id``, else None."""
        ...


@final
class SoleNode:
    """The one-node locator: every salon is here, with fence 0 ("no fence", never checked).

    What a node without a cluster, and every test that does not exercise one, uses.
    """

    async def locate(self, salon_id: int) -> Location:
        return Here(fence=0)

    def owner_here(self, salon_id: int) -> int | None:
        return 0
