"""A test ``Locator``: a table of which node owns which salon, shared by every node of a test."""

from __future__ import annotations

import attrs
import trio

from actor_admin.cluster import Here, Location, There, Unavailable

TEST_FENCE = 7


@attrs.define
class Owners:
    """Who owns what, as every node's :class:`TableLocator` reads it. A salon missing from
    ``table`` is owned by whichever node asks; ``None`` means no live owner. ``stale`` answers, per
    (node, salon), come first, one per ``locate``: a node acting on an outdated view."""

    table: dict[int, str | None] = attrs.field(factory=dict)
    stale: dict[tuple[str, int], list[str]] = attrs.field(factory=dict)


@attrs.define
class TableLocator:
    me: str
    owners: Owners

    async def locate(self, salon_id: int) -> Location:
        await trio.lowlevel.checkpoint()
        stale = self.owners.stale.get((self.me, salon_id))
        owner = stale.pop(0) if stale else self.owners.table.get(salon_id, self.me)
        if owner is None:
            return Unavailable("no live node")
        return Here(fence=TEST_FENCE) if owner == self.me else There(owner)

    def owner_here(self, salon_id: int) -> int | None:
        return TEST_FENCE if self.owners.table.get(salon_id, self.me) == self.me else None
