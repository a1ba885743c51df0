"""How often this node's salons changed owner, by cause: the ownership keeper counts, ``/metrics`` reads.

The label set is fixed (:data:`OWNERSHIP_CHANGE_CAUSES`) so every cause is exported at 0 from the
start: a dashboard shows "0 takeovers", not "No data" (docs/cluster.md).
"""

from __future__ import annotations

from typing import Final, Literal, final, get_args

OwnershipChangeCause = Literal["claimed", "handed_over", "taken_after_expiry", "fenced"]
"""From this node's side: ``claimed`` a released salon; ``handed_over`` one to its new owner;
``taken_after_expiry`` one from a dead node; ``fenced`` — lost one it still ran (taken over while it
did not answer, or replaced), learnt from a refused write or a heartbeat."""

OWNERSHIP_CHANGE_CAUSES: Final[tuple[OwnershipChangeCause, ...]] = get_args(OwnershipChangeCause)


@final
class OwnershipChanges:
    """Counters of ownership changes by cause; one per node, shared by the keeper and ``/metrics``."""

    def __init__(self) -> None:
        self._counts: dict[OwnershipChangeCause, int] = dict.fromkeys(OWNERSHIP_CHANGE_CAUSES, 0)

    def count(self, cause: OwnershipChangeCause, salons: int = 1) -> None:
        """Add ``salons`` changes for ``cause`` (a batch claim or release counts each salon)."""
        if cause not in self._counts:
            raise ValueError(f"unknown ownership change cause {cause!r}")
        if salons < 0:
            raise ValueError("salons must not be negative")
        self._counts[cause] += salons

    def statistics(self) -> dict[OwnershipChangeCause, int]:
        """Every cause with its count since the node started (0 included)."""
        return dict(self._counts)
