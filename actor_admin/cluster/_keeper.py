"""The ownership keeper: the loop that makes this node one member of the cluster (docs/cluster.md).

It joins, renews this node's row every ``heartbeat_interval_s`` on trio's clock, judges the others
with an :class:`Observer`, and from each view runs the pure :func:`plan` and performs its actions:
claims through the store's compare-and-set operations, starts and stops through the node's company
actors. It is also the node's :class:`Locator`: the actors ask it for their fence, the router asks
it where a salon lives.

Why here and not beside the supervisor in ``actors/``: the keeper decides *ownership*, which is a
cluster question answered from PostgreSQL; the actors are only its hands, reached through the small
:class:`Actors` protocol, so ``cluster`` never imports ``actors`` (the router imports this package).

Connections are opened (starts, paced restores, reconnects, the retry after a 440) only while this
node's :class:`NodeLease` is valid; a lapsed lease keeps running connections but opens none.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Set
from typing import Literal, Protocol, final

import trio

from ..store import (
    Claim,
    Heartbeat,
    Member,
    NodeIdOccupied,
    NodeRecord,
    NodeRef,
    NodeSuperseded,
    Owner,
    StoreError,
    Takeover,
)
from ._location import Here, Location, There, Unavailable
from ._membership import Membership, NodeLease, Observer, OwnershipTimings
from ._placement import Placement
from ._planner import ClusterView, Plan, placement_for, plan

log = logging.getLogger("actor_admin.cluster")

#: How many heartbeat intervals may pass without a planning round when nothing changed.
QUIET_ROUNDS = 5
#: The shortest time between two rounds, as a share of the heartbeat interval: nudges (which anyone
#: on Redis can send) make rounds come sooner, never more often than this.
NUDGE_GAP_SHARE = 0.05


class OwnershipStore(Protocol):
    """What the keeper needs of :class:`actor_admin.store.Ownership` (a model stands in for tests)."""

    async def join(self, me: Member, *, replacing: NodeRef | None = None) -> NodeRecord: ...
    async def heartbeat(self, me: Member, *, include_owned: bool = False) -> Heartbeat: ...
    async def set_draining(self, me: Member, draining: bool = True) -> None: ...
    async def leave(self, me: Member) -> list[int]: ...
    async def forget(self, dead: NodeRef) -> bool: ...
    async def nodes(self) -> list[NodeRecord]: ...
    async def claim(self, me: Member, claims: Iterable[Claim]) -> dict[int, int]: ...
    async def release(
        self, me: Member, fences: Mapping[int, int], *, cause: Literal["handed_over", "released"] = "handed_over"
    ) -> set[int]: ...
    async def owners(self) -> dict[int, Owner]: ...
    async def owned(self, node_id: str) -> dict[int, int]: ...
    async def fence_is_current(self, salon_id: int, fence: int) -> bool: ...


class Actors(Protocol):
    """The node's company actors, as the keeper drives them (the router in production)."""

    async def start(self, salon_id: int) -> bool:
        """Start the salon's actor and have it connect from stored credentials; False if it could not."""
        ...

    async def stop(self, salon_id: int, *, grace: float | None = None) -> bool:
        """Stop the salon's actor (its connection closes, the device stays linked)."""
        ...


@final
class Keeper:
    """This node's side of the ownership protocol; also its :class:`Locator`.

    Args:
        ownership: the store's ownership operations.
        member: this process (``NODE_ID`` + a fresh incarnation).
        timings: the protocol's numbers.
        actors: starts and stops company actors (the router); it may be bound after construction,
            because the actors are built with the keeper as their :class:`Locator`, before :meth:`run`.
        wanted: the salons that should run (stored credentials, not frozen or uninstalled).
        restore_per_second: how many actors this node starts a second (restores are paced).
        nudge: tells another node to plan now (a hint: ``NodeRpc.nudge``, a Redis publish); None: it
            plans at its next heartbeat or quiet round. May be bound after construction
            (``keeper.nudge_other``), because the node's RPC listener opens after the keeper.
        settled: told how many actors this node started since it was last told, after every planning
            round and whenever the actors a round claimed have all been started (a restore round
            included): the node's collector policy freezes the heap then
            (``actor_admin.node.CollectorPolicy``, docs/capacity.md#garbage-collection). It must not
            block or raise.
    """

    def __init__(
        self,
        ownership: OwnershipStore,
        member: Member,
        timings: OwnershipTimings,
        actors: Actors | None,
        wanted: Callable[[], Awaitable[Set[int]]],
        *,
        restore_per_second: float = 20.0,
        nudge: Callable[[str], Awaitable[object]] | None = None,
        settled: Callable[[int], object] | None = None,
    ) -> None:
        self.ownership = ownership
        self.member = member
        self.timings = timings
        self.actors: Actors | None = actors
        self.wanted = wanted
        self.restore_interval_s = 1.0 / restore_per_second
        self.nudge_other = nudge
        self.settled = settled
        self._started_unsettled = 0  # actors started since ``settled`` was last told
        self.observer = Observer(member.node_id, timings)
        self.lease = NodeLease(timings)
        #: salon → fence of every actor this node runs or is about to start.
        self.local: dict[int, int] = {}
        self.membership: Membership | None = None
        self.placement: Placement | None = None
        self.owners: dict[int, Owner] = {}
        self.started_total = 0
        self.fenced_total = 0
        self.nudged_total = 0  # rounds run early because of a nudge
        self.draining = False
        self.leaving = False
        self.planned = trio.Event()  # the first planning round is done
        self._pending: deque[tuple[int, int]] = deque()
        #: Claimed on demand by :meth:`locate`: owned here, but nothing told the actor to connect yet.
        self._unstarted: set[int] = set()
        self._wake = trio.Event()
        self._nudged = trio.Event()
        self._idle = trio.Event()  # nothing pending to start
        self._idle.set()
        self._beats = 0
        self._last_plan = -float("inf")
        self._last_live: frozenset[tuple[str, bool]] = frozenset()
        self._planning = trio.CancelScope()
        self._nursery: trio.Nursery | None = None

    @property
    def node_id(self) -> str:
        return self.member.node_id

    # --- the Locator --------------------------------------------------------------------------

    def owner_here(self, salon_id: int) -> int | None:
        """The fence this node runs ``salon_id`` with, None if it does not own it."""
        return self.local.get(salon_id)

    async def locate(self, salon_id: int) -> Location:
        """Where ``salon_id``'s actor lives; claims it when placement names this node and nobody owns it."""
        fence = self.local.get(salon_id)
        if fence is not None:
            return Here(fence)
        membership = self.membership
        if self.leaving:
            return Unavailable("this node is leaving the cluster")
        if membership is None:
            return Unavailable("this node has not joined the cluster yet")
        owner = self.owners.get(salon_id)
        if owner is not None and owner.node_id is not None and owner.node_id != self.node_id:
            if owner.node_id in membership.live:
                return There(owner.node_id)
        self.placement = placement_for(membership, self.placement)
        target = self.placement(salon_id)
        if target is None:
            return Unavailable("no live node to own the salon")
        if target != self.node_id:
            return There(target)
        if owner is not None and owner.node_id == self.node_id:
            self.local[salon_id] = owner.fence
            return Here(owner.fence)
        takeover = None
        if owner is not None and owner.node_id is not None and owner.node_id in membership.dead:
            takeover = Takeover(membership.dead[owner.node_id], owner.fence)
        try:
            won = await self.ownership.claim(self.member, [Claim(salon_id, takeover)])
        except StoreError as exc:
            return Unavailable(f"cannot claim the salon: {exc}")
        if salon_id not in won:
            return Unavailable("another node is taking the salon; try again")
        self.owners[salon_id] = Owner(self.node_id, won[salon_id])
        self.local.setdefault(salon_id, won[salon_id])
        self._unstarted.add(salon_id)  # the caller runs the actor; the next round starts it if it should run
        return Here(self.local[salon_id])

    # --- what actors ask ----------------------------------------------------------------------

    def may_connect(self, salon_id: int, fence: int) -> bool:
        """Whether an actor running ``salon_id`` with ``fence`` may open a connection now."""
        if fence == 0:
            return True
        return self.local.get(salon_id) == fence and self.lease.valid(trio.current_time())

    async def owns(self, salon_id: int, fence: int) -> bool:
        """Whether this node still owns ``salon_id`` with ``fence``, asked of PostgreSQL (the 440 retry)."""
        if fence == 0:
            return True
        if not self.may_connect(salon_id, fence):
            return False
        try:
            return await self.ownership.fence_is_current(salon_id, fence)
        except StoreError:
            return False  # cannot prove it: stay in conflict

    def fenced(self, salon_id: int, fence: int) -> None:
        """An actor's write was refused (:class:`Fenced`): this node lost the salon; stop the actor."""
        if fence == 0 or self.local.get(salon_id) not in (fence, None):
            return
        self.fenced_total += 1
        log.warning("salon %s was taken by another node; stopping its actor", salon_id,
                    extra={"salon_id": salon_id, "fence": fence})
        self.local.pop(salon_id, None)
        if self._nursery is not None and self.actors is not None:
            self._nursery.start_soon(self.actors.stop, salon_id)

    def nudge(self) -> None:
        """Plan now (another node handed a salon to this one): heartbeat and run a planning round
        without waiting for the interval — at most one round per ``NUDGE_GAP_SHARE`` of it."""
        self._nudged.set()

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join, then keep renewing and planning until cancelled or :meth:`drain` finishes.

        Cancelling it leaves the node's row and salons as they are (as a killed process would):
        :meth:`drain` is the graceful way out.
        """
        assert self.actors is not None, "bind the actors before running the keeper"
        await self._join()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._starter_loop)
            task_status.started()
            with self._planning:
                nudged = False
                while True:
                    # A nudge that arrives during this round is kept for the next one: this round
                    # may have read the owners before the release it announces.
                    self._nudged = trio.Event()
                    await self._beat_and_plan(nudged=nudged)
                    next_beat = trio.current_time() + self.timings.heartbeat_interval_s
                    await trio.sleep(self.timings.heartbeat_interval_s * NUDGE_GAP_SHARE)
                    with trio.move_on_at(next_beat):
                        await self._nudged.wait()
                    nudged = self._nudged.is_set()
            nursery.cancel_scope.cancel()

    async def restore(self) -> int:
        """Wait for the first planning round and for the actors it started; returns how many started."""
        await self.planned.wait()
        await self._idle.wait()
        return self.started_total

    async def drain(self, *, deadline_s: float) -> None:
        """SIGTERM: mark this node draining, let the planning loop hand every salon over, then leave.

        Whatever was not handed over by ``deadline_s`` is stopped and released by ``leave``.
        """
        interval = self.timings.heartbeat_interval_s
        with trio.move_on_after(deadline_s):
            self.draining = True
            while True:
                try:
                    await self.ownership.set_draining(self.member)
                    break
                except NodeSuperseded:
                    break
                except StoreError:
                    await trio.sleep(interval)
            self.nudge()
            while True:
                await trio.sleep(interval)
                membership = self.membership
                if membership is not None and not membership.placeable - {self.node_id}:
                    break  # nobody to hand over to: leave() releases everything at once
                if self.local:
                    continue
                try:
                    if not await self.ownership.owned(self.node_id):
                        break
                except StoreError:
                    continue
        # No planning round may start an actor between the last stop and leaving.
        self.leaving = True
        self._planning.cancel()
        for salon_id in list(self.local):
            await self._stop(salon_id)
        with trio.move_on_after(max(interval, 1.0) * 3):
            try:
                released = await self.ownership.leave(self.member)
            except StoreError as exc:
                log.warning("could not leave the cluster: %s", exc)
            else:
                if released:
                    log.info("left the cluster; released %d salon(s) not handed over", len(released))
                    # Whoever placement now names claims them at once rather than at its next round.
                    membership = self.membership
                    for node_id in sorted(membership.placeable - {self.node_id} if membership else ()):
                        await self._nudge(node_id)

    async def _join(self) -> None:
        """Register; with the ``NODE_ID`` occupied, replace the occupant only once it is seen dead."""
        watcher = Observer("", self.timings)
        replacing: NodeRef | None = None
        warned = False
        while True:
            try:
                await self.ownership.join(self.member, replacing=replacing)
                return
            except NodeIdOccupied as exc:
                replacing = None
                watcher.observe(trio.current_time(), [exc.occupant])
                if not warned:
                    warned = True
                    log.warning("%s; waiting until it stops renewing (is NODE_ID unique?)", exc)
            except StoreError as exc:
                watcher.heartbeat_failed()
                log.warning("cannot join the cluster: %s", exc)
            await trio.sleep(self.timings.heartbeat_interval_s)
            try:
                rows = await self.ownership.nodes()
            except StoreError:
                watcher.heartbeat_failed()
                continue
            replacing = watcher.observe(trio.current_time(), rows).dead.get(self.node_id)

    async def _beat_and_plan(self, *, nudged: bool = False) -> None:
        sent = trio.current_time()
        try:
            beat = await self.ownership.heartbeat(self.member, include_owned=not self.lease.valid(sent))
        except NodeSuperseded as exc:
            log.error("%s; stopping every actor", exc)
            self.lease.lost()
            for salon_id in list(self.local):
                await self._stop(salon_id)
            raise
        except StoreError as exc:
            log.warning("heartbeat failed: %s", exc)
            self.observer.heartbeat_failed()
            return
        received = trio.current_time()
        if beat.owned is not None:
            for salon_id, fence in list(self.local.items()):
                if beat.owned.get(salon_id) != fence:
                    await self._stop(salon_id)
        membership = self.observer.observe(received, beat.nodes)
        self.membership = membership
        if not self.lease.renewed(sent, received, owned_read=beat.owned is not None):
            return  # a gap: the next heartbeat reads what this node owns before anything else
        self._beats += 1
        if self._beats < 2:
            return  # nodes started together see each other before the first claims them all
        live = frozenset(membership.live.items())
        due = received - self._last_plan >= QUIET_ROUNDS * self.timings.heartbeat_interval_s
        if not (due or live != self._last_live or nudged or self.draining or membership.dead
                or not self.planned.is_set()):
            return
        if nudged:
            self.nudged_total += 1
        try:
            self.owners = await self.ownership.owners()
            wanted = await self.wanted()
        except StoreError as exc:
            log.warning("cannot read the cluster's owners: %s", exc)
            return
        self._last_plan, self._last_live = received, live
        view = ClusterView(self.node_id, membership, self.owners, frozenset(wanted))
        self.placement = placement_for(membership, self.placement)
        # A salon claimed on demand that should run gets its Start from this round.
        local = {s: f for s, f in self.local.items() if not (s in self._unstarted and s in wanted)}
        actions = plan(view, local, max_handovers=self.timings.handovers_per_round, placement=self.placement)
        try:
            await self._perform(actions)
        except StoreError as exc:
            log.warning("ownership round interrupted: %s", exc)
        self.planned.set()
        self._settle()

    def _settle(self) -> None:
        if self.settled is not None:
            started, self._started_unsettled = self._started_unsettled, 0
            self.settled(started)

    async def _perform(self, actions: Plan) -> None:
        member = self.member
        for stop in actions.stops:
            await self._stop(stop.salon_id)
        if actions.handovers:
            # Each connection closes before its salon is released. Stopped together, not one after
            # the other: a salon's gap runs from its own stop to the release of the whole round.
            async with trio.open_nursery() as stopping:
                for handover in actions.handovers:
                    stopping.start_soon(self._stop, handover.salon_id)
            await self.ownership.release(member, {h.salon_id: h.fence for h in actions.handovers}, cause="handed_over")
            for to in sorted({h.to for h in actions.handovers}):
                await self._nudge(to)
        for cause in ("handed_over", "released"):
            fences = {r.salon_id: r.fence for r in actions.releases if r.cause == cause}
            if fences:
                await self.ownership.release(member, fences, cause=cause)
        if actions.claims:
            won = await self.ownership.claim(member, list(actions.claims))
            for salon_id, fence in sorted(won.items()):
                self._start(salon_id, fence)
        for start in actions.starts:
            self._start(start.salon_id, start.fence)
        for dead in actions.forgets:
            await self.ownership.forget(dead)

    async def _nudge(self, node_id: str) -> None:
        if self.nudge_other is None:
            return
        try:
            await self.nudge_other(node_id)
        except Exception as exc:  # a hint only: the next heartbeat finds the salons anyway
            log.info("could not nudge node %s: %s", node_id, exc)

    def _start(self, salon_id: int, fence: int) -> None:
        if self.leaving or (self.local.get(salon_id) == fence and salon_id not in self._unstarted):
            return
        self._unstarted.discard(salon_id)
        self.local[salon_id] = fence
        self._pending.append((salon_id, fence))
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._wake.set()

    async def _stop(self, salon_id: int) -> None:
        self.local.pop(salon_id, None)
        self._unstarted.discard(salon_id)
        assert self.actors is not None
        await self.actors.stop(salon_id)

    async def _starter_loop(self) -> None:
        next_at = trio.current_time()
        while True:
            while not self._pending:
                if self._started_unsettled:
                    self._settle()  # a round's actors are all started: the heap they made has settled
                self._idle.set()
                await self._wake.wait()
                self._wake = trio.Event()
            salon_id, fence = self._pending[0]
            await trio.sleep_until(next_at)
            if self.local.get(salon_id) != fence:
                self._pending.popleft()
                continue
            if not self.lease.valid(trio.current_time()):
                await trio.sleep(self.timings.heartbeat_interval_s)  # connect only while nothing can have moved
                continue
            self._pending.popleft()
            next_at = max(next_at + self.restore_interval_s, trio.current_time())
            assert self.actors is not None
            if await self.actors.start(salon_id):
                self.started_total += 1
                self._started_unsettled += 1

