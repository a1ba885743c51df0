"""Placement: which live node should own a salon — rendezvous (highest-random-weight) hashing.

Every node computes the same answer from the same member list, with no coordination and no table:
each (node, salon) pair gets a pseudo-random weight and the salon goes to the node with the highest.
Adding a node moves only the salons it now wins (about 1/N of them, all to it); removing one moves
only its own. The weight is BLAKE2b of the two ids — never Python's ``hash()``, which differs per
process — so nodes of different versions and restarts agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import final


def placement_weight(node_id: str, salon_id: int) -> int:
    """The weight of ``node_id`` for ``salon_id``: a 64-bit integer, the same in every process."""
    digest = hashlib.blake2b(
        salon_id.to_bytes(8, "big", signed=True) + node_id.encode("utf-8"),
        digest_size=8,
        person=b"aa-placement",
    ).digest()
    return int.from_bytes(digest, "big")


def place(salon_id: int, nodes: Iterable[str]) -> str | None:
    """The node that should own ``salon_id`` among ``nodes`` (live, not draining); None if empty.

    Ties (one in 2**64) go to the greater node id, so the answer never depends on the order given.
    """
    best: tuple[int, str] | None = None
    for node_id in nodes:
        candidate = (placement_weight(node_id, salon_id), node_id)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


@final
class Placement:
    """:func:`place` over one fixed set of nodes, remembered per salon.

    Membership changes rarely and salons are many (10,000 salons × 3 nodes is ~0.1 s of hashing), so
    a node keeps one of these until the set of placeable nodes changes.
    """

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = frozenset(nodes)
        self._ordered = sorted(self.nodes)
        self._memo: dict[int, str | None] = {}

    def __call__(self, salon_id: int) -> str | None:
        try:
            return self._memo[salon_id]
        except KeyError:
            chosen = self._memo[salon_id] = place(salon_id, self._ordered)
            return chosen
