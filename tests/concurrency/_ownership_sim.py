"""A cluster of simulated nodes on virtual time: the ownership protocol end to end, minus the database.

Each :class:`SimNode` runs what a real node's ownership loop will run (docs/cluster.md, "The
driver"): heartbeat → :class:`Observer` → :class:`NodeLease` → read owners → :func:`plan` → perform
the actions through the store's compare-and-set operations; a paced starter that connects only under
a valid lease; actors that learn they are fenced from a refused write; the session policy's single
retry after a 440. The store is :class:`OwnershipModel` (held to PostgreSQL's answers by
tests/store/test_ownership_conformance.py), reached through a network with random latency,
PostgreSQL outages and per-node partitions. Nodes can be killed, paused (SIGSTOP — mid-request too),
restarted with the same ``NODE_ID``, started and drained (SIGTERM).

WhatsApp is one table: a salon's live connection and its holder. Connecting while another node holds
the salon replaces that connection (a 440 for it). Every connect and every ownership change is checked
as it happens; breaches are collected in :attr:`Cluster.violations`:

- nobody connects with a fence that is not the salon's current one;
- a connection is replaced only if its owner was taken over after going silent, once per takeover;
- a takeover (or a replacement of a silent incarnation) happens only when the old owner has not
  renewed for the TTL and its own lease has lapsed;
- a salon is released (handed over, or on leaving) only after its connection was closed.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import trio

from actor_admin.cluster import (
    ClusterView,
    NodeLease,
    Observer,
    OwnershipTimings,
    Placement,
    place,
    placement_for,
    plan,
)
from actor_admin.store import Member, NodeIdOccupied, NodeSuperseded, Owner, StoreError
from tests.cluster._ownership_model import Change, OwnershipModel

T = TypeVar("T")

TIMINGS = OwnershipTimings(forget_after_s=30.0, handovers_per_round=5)  # the defaults, faster forgetting
RESTORE_INTERVAL_S = 0.05  # 20 connects a second per node, as restores are paced today
CONFLICT_RETRY_S = 60.0  # the session policy: one retry a minute after a 440, only if still the owner
WRITE_INTERVAL_S = 3.0  # how often each node's actors write (and so learn they are fenced)
DRAIN_DEADLINE_S = 30.0


class Unavailable(Exception):
    """PostgreSQL did not answer (down, or this node is cut off); the request may have committed."""


@attrs.define(eq=False)
class Connection:
    holder: SimNode
    fence: int


@attrs.define(eq=False)
class Cluster:
    """The shared world: the store, the network's faults, WhatsApp, and the checks."""

    rng: random.Random
    salons: list[int]
    timings: OwnershipTimings = TIMINGS
    model: OwnershipModel = attrs.field(factory=OwnershipModel)
    nodes: list[SimNode] = attrs.field(factory=list)
    wanted: set[int] = attrs.field(factory=set)
    pg_down: bool = False
    connections: dict[int, Connection] = attrs.field(factory=dict)
    replaced_total: int = 0
    takeovers_of_connected: int = 0
    violations: list[str] = attrs.field(factory=list)
    last_beat: dict[str, float] = attrs.field(factory=dict)
    down_since: dict[int, float] = attrs.field(factory=dict)
    gaps: list[tuple[int, float]] = attrs.field(factory=list)
    disconnected: set[int] = attrs.field(factory=set)  # salons that ever lost their connection
    _used_takeovers: set[int] = attrs.field(factory=set)
    _names: itertools.count[int] = attrs.field(factory=itertools.count)
    nursery: trio.Nursery | None = None

    def __attrs_post_init__(self) -> None:
        self.model.companies.update(self.salons)
        self.wanted.update(self.salons)
        self.model.on_change = self._check_change

    # --- nodes ----------------------------------------------------------------------------------

    def start_node(self, node_id: str | None = None) -> SimNode:
        assert self.nursery is not None
        node_id = node_id or f"node-{next(self._names)}"
        node = SimNode(self, Member.new(node_id, "1.0"))
        self.nodes.append(node)
        self.nursery.start_soon(node.run)
        return node

    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive]

    def serving(self) -> list[SimNode]:
        """Processes that run and are not shutting down."""
        return [n for n in self.nodes if n.alive and not n.draining]

    # --- the network ----------------------------------------------------------------------------

    def _latency(self) -> float:
        if self.rng.random() < 0.02:
            return self.rng.uniform(0.5, 3.0)  # a slow round trip now and then
        return self.rng.uniform(0.001, 0.05)

    def _unreachable(self, node: SimNode) -> bool:
        return self.pg_down or node.partitioned

    async def call(self, node: SimNode, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One round trip from ``node``: latency both ways, pauses and outages anywhere in it."""
        await node.checkpoint()
        await trio.sleep(self._latency())
        await node.checkpoint()  # paused with the request in flight: it arrives late
        if self._unreachable(node):
            raise Unavailable
        error: StoreError | None = None
        try:
            result = fn(*args, **kwargs)
        except StoreError as exc:
            error = exc
        await trio.sleep(self._latency())
        await node.checkpoint()
        if self._unreachable(node):
            raise Unavailable  # the answer is lost; what it did stays done
        if error is not None:
            raise error
        return result

    # --- WhatsApp -------------------------------------------------------------------------------

    def connect(self, node: SimNode, salon_id: int, fence: int) -> None:
        now = trio.current_time()
        if self.model.owners.get(salon_id) != Owner(node.member.node_id, fence):
            self.violations.append(f"{now:.2f}: {node.key} connected salon {salon_id} with stale fence {fence}")
        old = self.connections.get(salon_id)
        if old is not None and old.holder is not node:
            self.replaced_total += 1
            self._use_takeover(salon_id, old, now)
            old.holder.on_replaced(salon_id)
        self.connections[salon_id] = Connection(node, fence)
        if salon_id in self.down_since:
            self.gaps.append((salon_id, now - self.down_since.pop(salon_id)))

    def _use_takeover(self, salon_id: int, old: Connection, now: float) -> None:
        previous = Owner(old.holder.member.node_id, old.fence)
        for index, change in enumerate(self.model.changes):
            if (
                index not in self._used_takeovers
                and change.salon_id == salon_id
                and change.previous == previous
                and (change.cause == "taken_after_expiry" or change.after_expiry)
            ):
                self._used_takeovers.add(index)
                return
        self.violations.append(
            f"{now:.2f}: salon {salon_id}'s connection of {old.holder.key} (fence {old.fence}) was replaced "
            "without a takeover to pay for it"
        )

    def nudge(self, node_id: str) -> None:
        """Tell ``node_id`` a salon was handed over to it (over the bus, in a real cluster): it plans at
        once instead of at its next heartbeat. Only a hint — without it the next round finds the salon."""
        for node in self.alive():
            if node.member.node_id == node_id:
                node.nudge()

    def disconnect(self, node: SimNode, salon_id: int) -> None:
        connection = self.connections.get(salon_id)
        if connection is not None and connection.holder is node:
            del self.connections[salon_id]
            self.down_since[salon_id] = trio.current_time()
            self.disconnected.add(salon_id)

    # --- checks of every ownership change -------------------------------------------------------

    def _check_change(self, change: Change) -> None:
        now = trio.current_time()
        previous = change.previous
        if previous is None or previous.node_id is None:
            return
        if change.cause == "taken_after_expiry" or change.after_expiry:
            connection = self.connections.get(change.salon_id)
            if connection is not None and connection.fence == previous.fence:
                self.takeovers_of_connected += 1
            for old in self.nodes:
                if old.member.node_id != previous.node_id or not old.alive or not old.joined:  # not the replacer
                    continue
                beat = self.last_beat.get(old.key, float("-inf"))
                if now - beat < self.timings.ttl_s:
                    self.violations.append(f"{now:.2f}: {old.key} taken over {now - beat:.2f} s after it renewed")
                if old.lease.valid(now):
                    self.violations.append(f"{now:.2f}: {old.key} taken over while its own lease was valid")
        else:
            connection = self.connections.get(change.salon_id)
            if connection is not None and connection.fence == previous.fence:
                self.violations.append(
                    f"{now:.2f}: salon {change.salon_id} {change.cause} by {previous.node_id} while still connected"
                )

    def converged(self) -> list[str]:
        """What is still off the placement: empty once every wanted salon runs where it belongs."""
        problems: list[str] = []
        serving = {n.member.node_id: n for n in self.serving()}
        placement = Placement(serving)
        for salon_id in sorted(self.wanted):
            target = placement(salon_id)
            owner = self.model.owners.get(salon_id)
            connection = self.connections.get(salon_id)
            if target is None or owner is None or owner.node_id != target:
                problems.append(f"salon {salon_id} owned by {owner} instead of {target}")
            elif serving[target].local.get(salon_id) != owner.fence:
                problems.append(f"salon {salon_id} not running on its owner {target}")
            elif connection is None or connection.holder is not serving[target] or connection.fence != owner.fence:
                problems.append(f"salon {salon_id} not connected by its owner {target}")
        for node in self.alive():
            for salon_id, fence in node.local.items():
                if self.model.owners.get(salon_id) != Owner(node.member.node_id, fence):
                    problems.append(f"{node.key} runs salon {salon_id} without owning it")
        if set(self.model.nodes) != {n.member.node_id for n in self.alive()}:
            problems.append(f"node rows {sorted(self.model.nodes)} are not the live nodes")
        return problems

    async def wait_converged(self, *, within_s: float) -> list[str]:
        """Advance until :meth:`converged` holds (or ``within_s`` passes); the last problems seen."""
        problems = self.converged()
        with trio.move_on_after(within_s):
            while problems:
                await trio.sleep(1.0)
                problems = self.converged()
        return problems

    async def wait_for(self, predicate: Callable[[], bool], *, within_s: float) -> None:
        """Advance virtual time until ``predicate()`` holds; fail after ``within_s``."""
        with trio.fail_after(within_s):
            # Polling on purpose: the condition spans every node's state, changed in many places.
            while not predicate():  # noqa: ASYNC110
                await trio.sleep(0.1)


@attrs.define(eq=False)
class SimNode:
    """One node process: heartbeat and planning loop, paced starter, writing actors."""

    cluster: Cluster
    member: Member
    observer: Observer = attrs.field(init=False)
    lease: NodeLease = attrs.field(init=False)
    local: dict[int, int] = attrs.field(factory=dict)
    placement: Placement | None = None
    alive: bool = True
    joined: bool = False
    draining: bool = False
    leaving: bool = False
    partitioned: bool = False
    paused: bool = False
    _resumed: trio.Event = attrs.field(factory=trio.Event)
    _pending: deque[tuple[int, int]] = attrs.field(factory=deque)
    _wake: trio.Event = attrs.field(factory=trio.Event)
    _nudged: trio.Event = attrs.field(factory=trio.Event)
    _beats: int = 0
    _conflicted: set[int] = attrs.field(factory=set)
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    _planning: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    _nursery: trio.Nursery | None = None

    def __attrs_post_init__(self) -> None:
        self.observer = Observer(self.member.node_id, self.cluster.timings)
        self.lease = NodeLease(self.cluster.timings)

    @property
    def key(self) -> str:
        return f"{self.member.node_id}/{self.member.incarnation[:4]}"


    # --- process control (the chaos driver's handles) -------------------------------------------

    async def checkpoint(self) -> None:
        while self.paused:
            await self._resumed.wait()

    def pause(self) -> None:
        self.paused = True
        self._resumed = trio.Event()

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    def nudge(self) -> None:
        self._nudged.set()

    @property
    def ready(self) -> bool:
        """Joined and planning (what a deploy waits for before stopping the old node)."""
        return self._beats >= 2

    def kill(self) -> None:
        """kill -9: the process and its connections are gone; its rows stay."""
        self.alive = False
        self._scope.cancel()
        for salon_id in list(self.cluster.connections):
            self.cluster.disconnect(self, salon_id)
        self.local.clear()

    def drain(self) -> None:
        """SIGTERM: hand everything over, leave, exit."""
        if self._nursery is not None and not self.draining:
            self.draining = True
            self._nursery.start_soon(self._drain)

    # --- the loops ------------------------------------------------------------------------------

    async def run(self) -> None:
        with self._scope:
            await self._join()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._heartbeat_loop)
                nursery.start_soon(self._starter_loop)
                nursery.start_soon(self._writer_loop)

    async def _join(self) -> None:
        # Another incarnation of this NODE_ID may still be registered: replace it only once it has
        # been seen silent for the TTL, judged as any dead node is (an observer that is not it).
        watcher = Observer("", self.cluster.timings)
        replacing = None
        while True:
            try:
                await self.cluster.call(self, self.cluster.model.join, self.member, replacing=replacing)
                self.joined = True
                return
            except NodeIdOccupied as exc:
                replacing = None
                watcher.observe(trio.current_time(), [exc.occupant])
            except Unavailable:
                watcher.heartbeat_failed()
            await trio.sleep(self.cluster.timings.heartbeat_interval_s)
            try:
                rows = await self.cluster.call(self, self.cluster.model.nodes_list)
            except Unavailable:
                watcher.heartbeat_failed()
                continue
            dead = watcher.observe(trio.current_time(), rows).dead
            replacing = dead.get(self.member.node_id)

    def _beat(self, include_owned: bool) -> Any:
        beat = self.cluster.model.heartbeat(self.member, include_owned=include_owned)
        self.cluster.last_beat[self.key] = trio.current_time()
        return beat

    async def _heartbeat_loop(self) -> None:
        with self._planning:
            while True:
                await self._beat_and_plan()
                with trio.move_on_after(self.cluster.timings.heartbeat_interval_s):
                    await self._nudged.wait()  # a salon was handed over to this node: claim it now
                self._nudged = trio.Event()
                await self.checkpoint()

    async def _beat_and_plan(self) -> None:
        sent = trio.current_time()
        try:
            beat = await self.cluster.call(self, self._beat, not self.lease.valid(sent))
        except Unavailable:
            self.observer.heartbeat_failed()
            return
        except NodeSuperseded:
            self._exit()
            return
        received = trio.current_time()
        if beat.owned is not None:
            for salon_id, fence in list(self.local.items()):
                if beat.owned.get(salon_id) != fence:
                    self._stop(salon_id)
        membership = self.observer.observe(received, beat.nodes)
        if not self.lease.renewed(sent, received, owned_read=beat.owned is not None):
            return  # a gap: the next heartbeat reads what this node owns before anything else
        self._beats += 1
        if self._beats < 2:
            return  # nodes started together see each other before the first claims them all
        try:
            owners = await self.cluster.call(self, self.cluster.model.owners_now)
        except Unavailable:
            return
        view = ClusterView(self.member.node_id, membership, owners, frozenset(self.cluster.wanted))
        self.placement = placement_for(membership, self.placement)
        actions = plan(view, self.local, max_handovers=self.cluster.timings.handovers_per_round,
                       placement=self.placement)
        await self._perform(actions)

    async def _perform(self, actions: Any) -> None:
        model, call = self.cluster.model, self.cluster.call
        for stop in actions.stops:
            self._stop(stop.salon_id)
        try:
            if actions.handovers:
                for handover in actions.handovers:
                    self._stop(handover.salon_id)  # the connection closes before the salon is released
                await call(self, model.release, self.member, {h.salon_id: h.fence for h in actions.handovers},
                           cause="handed_over")
                for to in {h.to for h in actions.handovers}:
                    self.cluster.nudge(to)
            for cause in ("handed_over", "released"):
                fences = {r.salon_id: r.fence for r in actions.releases if r.cause == cause}
                if fences:
                    await call(self, model.release, self.member, fences, cause=cause)
            if actions.claims:
                won = await call(self, model.claim, self.member, list(actions.claims))
                for salon_id, fence in sorted(won.items()):
                    self._start(salon_id, fence)
            for start in actions.starts:
                self._start(start.salon_id, start.fence)
            for dead in actions.forgets:
                await call(self, model.forget, dead)
        except Unavailable:
            return

    def _start(self, salon_id: int, fence: int) -> None:
        if self.leaving or self.local.get(salon_id) == fence:
            return
        self.local[salon_id] = fence
        self._pending.append((salon_id, fence))
        self._wake.set()

    def _stop(self, salon_id: int) -> None:
        self.local.pop(salon_id, None)
        self._conflicted.discard(salon_id)
        self.cluster.disconnect(self, salon_id)

    async def _starter_loop(self) -> None:
        while True:
            while not self._pending:
                await self._wake.wait()
                self._wake = trio.Event()
            salon_id, fence = self._pending.popleft()
            await trio.sleep(RESTORE_INTERVAL_S)
            await self.checkpoint()
            if self.local.get(salon_id) != fence:
                continue
            if not self.lease.valid(trio.current_time()):
                self._pending.append((salon_id, fence))  # connect only while nothing can have moved
                await trio.sleep(self.cluster.timings.heartbeat_interval_s)
                continue
            self.cluster.connect(self, salon_id, fence)

    async def _writer_loop(self) -> None:
        # Every actor writes now and then (events, messages); a refused write is how it learns it
        # was fenced, even before the next heartbeat says so.
        while True:
            await trio.sleep(WRITE_INTERVAL_S)
            await self.checkpoint()
            running = dict(self.local)
            if not running:
                continue
            try:
                fenced = await self.cluster.call(self, self._refused_writes, running)
            except Unavailable:
                continue
            for salon_id in fenced:
                if self.local.get(salon_id) == running[salon_id]:
                    self._stop(salon_id)

    def _refused_writes(self, running: dict[int, int]) -> list[int]:
        model = self.cluster.model
        return [salon_id for salon_id, fence in running.items() if not model.fence_is_current(salon_id, fence)]

    def on_replaced(self, salon_id: int) -> None:
        """WhatsApp said 440 to this node's connection: conflict, and one guarded retry later."""
        fence = self.local.get(salon_id)
        if fence is None or self._nursery is None:
            return
        self._conflicted.add(salon_id)
        self._nursery.start_soon(self._retry_after_conflict, salon_id, fence)

    async def _retry_after_conflict(self, salon_id: int, fence: int) -> None:
        await trio.sleep(CONFLICT_RETRY_S)
        await self.checkpoint()
        if self.local.get(salon_id) != fence or salon_id not in self._conflicted:
            return
        model = self.cluster.model
        try:
            still_ours = await self.cluster.call(self, model.fence_is_current, salon_id, fence)
        except Unavailable:
            return  # cannot prove it is still the owner: stay in conflict
        if still_ours and self.local.get(salon_id) == fence and self.lease.valid(trio.current_time()):
            self._conflicted.discard(salon_id)
            self.cluster.connect(self, salon_id, fence)

    async def _drain(self) -> None:
        call, model = self.cluster.call, self.cluster.model
        deadline = trio.current_time() + DRAIN_DEADLINE_S
        interval = self.cluster.timings.heartbeat_interval_s
        while trio.current_time() < deadline:
            try:
                await call(self, model.set_draining, self.member)
                break
            except Unavailable:
                await trio.sleep(interval)
            except NodeSuperseded:
                break
        while trio.current_time() < deadline:  # the planning loop hands everything over meanwhile
            await trio.sleep(interval)
            if self.local:
                continue
            try:
                if not await call(self, model.owned, self.member.node_id):
                    break
            except Unavailable:
                continue
        # No planning round may start an actor between the last stop and leaving (a claim in flight
        # would otherwise come back and connect a salon that leave() then releases).
        self.leaving = True
        self._planning.cancel()
        for salon_id in list(self.local):
            self._stop(salon_id)
        for _ in range(10):
            try:
                await call(self, model.leave, self.member)
                break
            except Unavailable:
                await trio.sleep(interval)
        self._exit()

    def _exit(self) -> None:
        for salon_id in list(self.local):
            self._stop(salon_id)
        self.alive = False
        self._scope.cancel()


async def run_chaos(cluster: Cluster, *, duration_s: float, kinds: tuple[str, ...]) -> dict[str, int]:
    """Random faults of the given kinds every few seconds for ``duration_s``; returns how many of each."""
    rng, ttl = cluster.rng, cluster.timings.ttl_s
    done = dict.fromkeys(kinds, 0)
    assert cluster.nursery is not None
    nursery = cluster.nursery
    end = trio.current_time() + duration_s

    async def later(delay: float, action: Callable[[], object]) -> None:
        await trio.sleep(delay)
        action()

    def set_pg(down: bool) -> None:
        cluster.pg_down = down

    def set_partitioned(node: SimNode, cut: bool) -> None:
        node.partitioned = cut

    while trio.current_time() < end:
        await trio.sleep(rng.uniform(2.0, 8.0))
        kind = rng.choice(kinds)
        serving = [n for n in cluster.serving() if not n.paused and not n.partitioned]
        victim = rng.choice(serving) if len(serving) > 1 else None
        if kind == "kill" and victim is not None:
            victim.kill()
            if rng.random() < 0.7:  # systemd restarts it under the same NODE_ID
                nursery.start_soon(later, rng.uniform(1.0, 20.0),
                                   lambda n=victim.member.node_id: cluster.start_node(n))
        elif kind == "pause" and victim is not None:
            victim.pause()
            nursery.start_soon(later, rng.uniform(1.0, 3 * ttl), victim.resume)
        elif kind == "partition" and victim is not None:
            set_partitioned(victim, True)
            nursery.start_soon(later, rng.uniform(1.0, 3 * ttl), lambda n=victim: set_partitioned(n, False))
        elif kind == "pg_outage" and not cluster.pg_down:
            set_pg(True)
            nursery.start_soon(later, rng.uniform(1.0, 3 * ttl), lambda: set_pg(False))
        elif kind == "join" and len(cluster.alive()) < 6:
            cluster.start_node()
        elif kind == "drain" and victim is not None:
            victim.drain()
            cluster.start_node()  # a rolling deploy: the replacement comes up as the old one leaves
        elif kind == "new_salon":
            salon_id = max(cluster.model.companies) + 1
            cluster.model.companies.add(salon_id)
            cluster.wanted.add(salon_id)
        else:
            continue
        done[kind] += 1
    return done


def heal(cluster: Cluster) -> None:
    """Every fault ends: paused nodes resume, partitions close, PostgreSQL is back."""
    cluster.pg_down = False
    for node in cluster.nodes:
        node.partitioned = False
        if node.paused:
            node.resume()
    if not cluster.serving():
        cluster.start_node()


def placed_on(cluster: Cluster, node_id: str) -> set[int]:
    serving = [n.member.node_id for n in cluster.serving()]
    return {s for s in cluster.wanted if place(s, serving) == node_id}
