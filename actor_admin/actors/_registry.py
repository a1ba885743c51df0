"""What this node's sessions are doing, for ``/status``, ``/metrics`` and the admin API.

Each actor writes its own entry after every step; readers take a consistent copy. Owned by the
composition root and passed down — not a module global.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import final

import attrs
import trio

from actor_admin.session import StateName


@final
@attrs.frozen
class SessionView:
    state: StateName
    phone: str | None
    reason: str | None
    since: float


@final
@attrs.define
class MessageCounts:
    """Messages this node's sessions handled since start, for /metrics."""

    inbound_stored: int = 0
    inbound_duplicates: int = 0  # redeliveries recognised by (salon_id, wa_id) and not passed on again
    inbound_unresolved_lid: int = 0  # stored with a LID and no phone number (no number to reply to)
    outbound_sent: int = 0
    outbound_failed: int = 0


@final
class Registry:
    def __init__(self) -> None:
        self._views: dict[int, SessionView] = {}
        self._counts: Counter[str] = Counter()  # sessions by state, kept as views change
        # Waiters are woken by the change they wait for: one salon's waiters by that salon's changes,
        # ``wait_for``'s by any. A single event for all would wake every waiter on every change —
        # 500 pages waiting for their QR at once are 500 wake-ups per change of any salon.
        # Events are made only when someone waits: an update nobody waits for costs no allocation.
        self._changed: trio.Event | None = None
        self._salon_changed: dict[int, trio.Event] = {}
        self.messages = MessageCounts()

    def update(self, salon_id: int, state: StateName, phone: str | None, reason: str | None) -> None:
        old = self._views.get(salon_id)
        if old is not None and (old.state, old.phone, old.reason) == (state, phone, reason):
            return
        since = old.since if old is not None and old.state == state else trio.current_time()
        self._views[salon_id] = SessionView(state=state, phone=phone, reason=reason, since=since)
        if old is not None:
            self._counts[old.state] -= 1
        self._counts[state] += 1
        self._notify(salon_id)

    def forget(self, salon_id: int) -> None:
        old = self._views.pop(salon_id, None)
        if old is not None:
            self._counts[old.state] -= 1
            self._notify(salon_id)

    def count(self, state: StateName) -> int:
        """How many sessions are in ``state`` now (O(1))."""
        return self._counts[state]

    async def wait_state(self, salon_id: int, state: str) -> SessionView:
        """Wait until ``salon_id``'s session is in ``state`` (returns at once if it already is)."""
        return await self.wait_until(salon_id, lambda view: view.state == state)

    async def wait_until(self, salon_id: int, accept: Callable[[SessionView], bool]) -> SessionView:
        """Wait until ``salon_id``'s session has a view that ``accept`` takes; return that view."""
        while True:
            view = self._views.get(salon_id)
            if view is not None and accept(view):
                return view
            changed = self._salon_changed.get(salon_id)
            if changed is None:
                changed = self._salon_changed[salon_id] = trio.Event()
            await changed.wait()

    async def wait_for(self, probe: Callable[[], bool]) -> None:
        """Wait until ``probe()`` (re-checked after every change of any view) is true."""
        while not probe():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    def _notify(self, salon_id: int) -> None:
        changed = self._salon_changed.pop(salon_id, None)
        if changed is not None:
            changed.set()
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def get(self, salon_id: int) -> SessionView | None:
        return self._views.get(salon_id)

    def items(self) -> list[tuple[int, SessionView]]:
        return sorted(self._views.items())

    def by_state(self) -> dict[str, int]:
        return {state: count for state, count in self._counts.items() if count}
