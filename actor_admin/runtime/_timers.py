"""One task for every actor's timers: a heap of deadlines behind one cancel scope.

A timer as a task of its own costs a task's creation when it is set and that task's first step in
the next scheduling round; when a thousand salons ask for a QR at once, those are a thousand task
starts in the rounds between each QR and its viewer (docs/architecture.md#qr-latency). Here a timer
is one heap entry: setting it is a push (and, when it is the earliest, moving the wheel's deadline),
cancelling it is a flag, and the wheel's one task wakes at the earliest deadline and calls what is
due, in deadline order (ties in the order they were set), on trio's clock (``MockClock`` included).

Callbacks run inside the wheel's task: they must be quick and synchronous (an actor's is a
``send_nowait`` to its own mailbox); one that raises is logged and the others still run.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from typing import Final, final

import trio

log = logging.getLogger("actor_admin.runtime")

# The heap is rebuilt without cancelled entries once they are this many and half of it.
_COMPACT_AT: Final = 1024


@final
class TimerHandle:
    """A timer set on a :class:`TimerWheel`; ``cancel()`` it before it is due and it never fires."""

    __slots__ = ("at", "callback", "done")

    def __init__(self, at: float, callback: Callable[[], None]) -> None:
        self.at = at
        self.callback = callback
        self.done = False  # fired or cancelled

    def cancel(self) -> bool:
        """Cancel the timer; True if it had neither fired nor been cancelled before."""
        if self.done:
            return False
        self.done = True
        return True


@final
class TimerWheel:
    """Timers for any number of actors, served by one system task per trio run (started on first use)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None
        self._root: trio.lowlevel.Task | None = None

    def __len__(self) -> int:
        """Entries held, cancelled ones not yet dropped included (for tests and statistics)."""
        return len(self._heap)

    def call_at(self, at: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback()`` once trio's clock reaches ``at``, unless the handle is cancelled first."""
        root = trio.lowlevel.current_root_task()
        if root is not self._root:  # the first timer of this run (a wheel may outlive a run in tests)
            self._root = root
            self._heap = []
            self._scope = None
            trio.lowlevel.spawn_system_task(self._run, name="actor_admin.runtime.TimerWheel")
        handle = TimerHandle(at, callback)
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, handle))
        scope = self._scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at
        if len(self._heap) >= _COMPACT_AT and len(self._heap) % _COMPACT_AT == 0:
            self._compact()
        return handle

    def _compact(self) -> None:
        live = [entry for entry in self._heap if not entry[2].done]
        if len(live) <= len(self._heap) // 2:
            heapq.heapify(live)
            self._heap[:] = live

    async def _run(self) -> None:
        heap = self._heap
        while True:
            while heap and heap[0][2].done:
                heapq.heappop(heap)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                handle = heapq.heappop(heap)[2]
                if handle.done:
                    continue
                handle.done = True
                try:
                    handle.callback()
                except Exception:
                    log.exception("a timer's callback failed")
