"""Re-announcing inbound messages that are stored but never reached the inbound stream
(docs/data.md#reannouncing): stored while Redis was down, or left by a crash between the store and
the XADD.

A node re-announces its own salons' messages only — those ``salon_owners`` gives it — and marks them
with the salon's current fence, so a node that lost a salon meanwhile cannot mark its rows (the new
owner announces them). The work is the :class:`~actor_admin.cluster.InboundAnnouncer`'s *held*
salons: a salon is held when a batch of its messages was refused, at start-up when it has unpublished
rows, and when a check finds rows of it that were already unpublished at the previous check. The
announcer leaves a held salon's new messages stored, so the re-announcer's batches — oldest first,
through the same stream script — keep each salon's order; once a read finds a salon's backlog
announced and nothing new held back since, the salon is released.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Sequence
from typing import Protocol, final

import attrs
import trio

from actor_admin.backoff import Backoff
from actor_admin.store import Fenced, Message, PublishedMark, Unpublished, UnpublishedSalon

from ._inbound import InboundAnnouncer, inbound_fields

log = logging.getLogger("actor_admin.cluster")


class UnpublishedLog(Protocol):
    """What the re-announcer reads and marks (the store's :class:`~actor_admin.store.Messages`)."""

    async def unpublished_salons(
        self, *, node_id: str | None, retention_days: int
    ) -> tuple[list[UnpublishedSalon], int]: ...

    async def unpublished_of(
        self, salons: Collection[int], *, node_id: str | None, retention_days: int, limit: int
    ) -> Unpublished: ...

    async def mark_published_many(self, marks: Sequence[PublishedMark]) -> list[int | Exception]: ...


@final
@attrs.frozen(kw_only=True)
class ReannounceOptions:
    """How the re-announcer paces itself.

    Attributes:
        batch: messages per XADD script call and per mark statement.
        pause_s: the pause between two batches, so a long backlog never hogs Redis or PostgreSQL.
        check_interval_s: how often the node looks for rows of its salons left unpublished (a crash
            of their previous owner); rows newer than the previous check are taken as in flight.
        retry: the delays after a pass that failed (Redis or PostgreSQL down); a batch Redis takes
            from the actors' announcer ends the wait at once.
    """

    batch: int = attrs.field(default=500, validator=attrs.validators.ge(1))
    pause_s: float = 0.1
    check_interval_s: float = 60.0
    retry: Backoff = attrs.field(factory=lambda: Backoff(initial_s=1.0, max_s=30.0))


@final
class Reannouncer:
    """One node's re-announcing job: ``await start_up()`` before the actors start, then
    ``nursery.start_soon(run)``; :meth:`check` and :meth:`drain` run one step now (tests)."""

    def __init__(
        self,
        announcer: InboundAnnouncer,
        messages: UnpublishedLog,
        *,
        node_id: str | None,
        retention_days: int,
        options: ReannounceOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.announcer = announcer
        self._messages = messages
        #: The node whose salons are re-announced; None: every salon, unfenced (one node, tests).
        self.node_id = node_id
        self.retention_days = retention_days
        self.options = options or ReannounceOptions()
        self._rng = rng or random.Random()
        #: Messages put on the stream again since start (``/metrics``).
        self.reannounced_total = 0
        #: Unpublished inbound messages of this node's salons: at the last check, less those
        #: re-announced since (``/metrics``).
        self.backlog = 0
        self._newest_checked: int | None = None  # the table's newest id at the last check
        self._failing = False
        self._wake = trio.Event()
        announcer.on_held = self._held
        announcer.on_answered = self._answered

    def _held(self) -> None:
        if not self._failing:  # while Redis is down, the retry delay paces the attempts
            self._wake.set()

    def _answered(self) -> None:
        if self._failing and self.announcer.held:  # Redis is back: no need to wait out the delay
            self._wake.set()

    async def start_up(self) -> None:
        """Hold every salon with unpublished messages, before the actors start: a salon this node
        comes to own keeps its order behind what a crash left (docs/data.md#reannouncing)."""
        found, newest = await self._messages.unpublished_salons(node_id=None, retention_days=self.retention_days)
        self.announcer.hold(s.salon_id for s in found)
        self._newest_checked = newest
        if found:
            log.info(
                "inbound: %d stored messages of %d salon(s) not on the stream yet; re-announcing as their owners",
                sum(s.count for s in found), len(found),
            )

    async def run(self) -> None:
        """Forever: check every ``check_interval_s``, and drain the held salons whenever there are
        any; after a failure, again after the retry delay."""
        attempt = 0
        # ``start_up`` has just looked: the first check waits its interval (else at once). A node that
        # stops again at once then has no query of ours in flight, and none opening a connection.
        next_check = trio.current_time()
        if self._newest_checked is not None:
            next_check += self.options.check_interval_s
        while True:
            self._wake = trio.Event()
            try:
                if trio.current_time() >= next_check:
                    await self.check()
                    next_check = trio.current_time() + self.options.check_interval_s
                await self.drain()
            except Exception as exc:  # Redis or PostgreSQL down: the rows stay; try again later
                if not self._failing:
                    log.warning("inbound re-announcing paused: %s: %s", type(exc).__name__, exc)
                self._failing = True
                delay = self.options.retry.delay(attempt, self._rng.random())
                attempt += 1
                next_check = min(next_check, trio.current_time() + delay)  # the backlog gauge stays current
                with trio.move_on_after(delay):
                    await self._wake.wait()
                continue
            if self._failing:
                log.info("inbound re-announcing resumed")
            self._failing, attempt = False, 0
            with trio.move_on_at(next_check):
                await self._wake.wait()

    async def check(self) -> None:
        """Count this node's salons' unpublished messages, and hold the salons with one that was
        already unpublished at the previous check (left over, not in flight)."""
        found, newest = await self._messages.unpublished_salons(
            node_id=self.node_id, retention_days=self.retention_days
        )
        self.backlog = sum(s.count for s in found)
        previous = self._newest_checked
        self._newest_checked = newest
        if previous is not None:
            self.announcer.hold(s.salon_id for s in found if s.first_id <= previous)

    async def drain(self) -> int:
        """Announce the held salons' messages this node owns, batch by batch, each salon's oldest
        first, marking each batch with its salons' fences; release each salon found drained. How many
        went out."""
        sent = 0
        salons: Collection[int] = list(self.announcer.held)
        while salons:
            since = self.announcer.tick
            found = await self._messages.unpublished_of(
                salons, node_id=self.node_id, retention_days=self.retention_days, limit=self.options.batch
            )
            marked = await self._announce(found.messages) if found.messages else 0
            sent += len(found.messages)
            self.announcer.release(found.drained, since)
            if found.messages and not marked:  # every mark refused: the salons moved; nothing to repeat
                self.announcer.release(found.owned, since)
                return sent
            salons = found.owned - found.drained
            if salons:
                await trio.sleep(self.options.pause_s)
        return sent

    async def _announce(self, batch: Sequence[tuple[Message, int]]) -> int:
        """XADD ``batch`` in one script call, then mark it; how many rows were marked."""
        entries = [
            (m.salon_id, inbound_fields(m.wa_id, m.peer, m.text, m.peer_lid)) for m, _ in batch if m.wa_id is not None
        ]
        await self.announcer.stream.append_many(entries)
        self.reannounced_total += len(entries)
        self.backlog = max(0, self.backlog - len(entries))
        marks: dict[tuple[int, int], list[str]] = {}
        for m, fence in batch:
            if m.wa_id is not None:
                marks.setdefault((m.salon_id, fence), []).append(m.wa_id)
        results = await self._messages.mark_published_many(
            [PublishedMark(salon_id, tuple(wa_ids), fence) for (salon_id, fence), wa_ids in marks.items()]
        )
        marked = 0
        for (salon_id, _), result in zip(marks, results, strict=True):
            if isinstance(result, Fenced):  # the salon changed owner: its new owner announces it
                log.warning("inbound: re-announced messages not marked: %s", result, extra={"salon_id": salon_id})
            elif isinstance(result, Exception):  # PostgreSQL failed: the salon stays held, the pass is retried
                raise result
            else:
                marked += result
        log.info("inbound: re-announced %d stored message(s)", len(entries))
        return marked
