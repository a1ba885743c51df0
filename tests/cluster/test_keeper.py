"""The ownership keeper (actor_admin.cluster.Keeper): several keepers in one trio run on MockClock.

The keepers drive the in-memory model of the store (tests/cluster/_ownership_model.py, held to
PostgreSQL's answers by tests/store/test_ownership_conformance.py) through an async adapter with a
little latency, and a fake WhatsApp that counts replaced connections (440s) and live connections
per device, as the simulator does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import trio
from trio.testing import MockClock

from actor_admin.cluster import Keeper, OwnershipTimings, place
from actor_admin.cluster._keeper import NUDGE_GAP_SHARE, QUIET_ROUNDS
from actor_admin.store import Claim, Member, NodeRef

from ._ownership_model import OwnershipModel

TIMINGS = OwnershipTimings(forget_after_s=30.0, handovers_per_round=5)
SALONS = list(range(1, 31))


@attrs.define
class WhatsApp:
    """One device per salon: a new connection replaces the live one (a 440 for the old holder)."""

    live: dict[int, str] = attrs.field(factory=dict)
    replaced_total: int = 0
    max_live_per_device: int = 0
    changed: trio.Event = attrs.field(factory=trio.Event)  # set and renewed at every connect/disconnect
    #: salon → when its device lost its last connection; gaps: how long each salon was without one.
    down_since: dict[int, float] = attrs.field(factory=dict)
    gaps: list[float] = attrs.field(factory=list)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def connect(self, node_id: str, salon_id: int) -> None:
        if salon_id in self.live and self.live[salon_id] != node_id:
            self.replaced_total += 1
        if salon_id in self.down_since:
            self.gaps.append(trio.current_time() - self.down_since.pop(salon_id))
        self.live[salon_id] = node_id
        self.max_live_per_device = max(self.max_live_per_device, 1)
        self._notify()

    def disconnect(self, node_id: str, salon_id: int) -> None:
        if self.live.get(salon_id) == node_id:
            del self.live[salon_id]
            self.down_since[salon_id] = trio.current_time()
        self._notify()


@attrs.define
class ModelStore:
    """``Ownership`` over the model, one node's view: every call takes a round trip."""

    model: OwnershipModel
    beats_held: bool = False
    _resume: trio.Event = attrs.field(factory=trio.Event)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await trio.sleep(0.002)
        return fn(*args, **kwargs)

    def hold_beats(self) -> None:
        self.beats_held, self._resume = True, trio.Event()

    def release_beats(self) -> None:
        self.beats_held = False
        self._resume.set()

    async def join(self, me: Member, *, replacing: NodeRef | None = None) -> Any:
        return await self._call(self.model.join, me, replacing=replacing)

    async def heartbeat(self, me: Member, *, include_owned: bool = False) -> Any:
        if self.beats_held:  # a paused process: its heartbeat is not sent until it resumes
            await self._resume.wait()
        return await self._call(self.model.heartbeat, me, include_owned=include_owned)

    async def set_draining(self, me: Member, draining: bool = True) -> None:
        await self._call(self.model.set_draining, me, draining)

    async def leave(self, me: Member) -> list[int]:
        result: list[int] = await self._call(self.model.leave, me)
        return result

    async def forget(self, dead: NodeRef) -> bool:
        return bool(await self._call(self.model.forget, dead))

    async def nodes(self) -> Any:
        return await self._call(self.model.nodes_list)

    async def claim(self, me: Member, claims: Iterable[Claim]) -> dict[int, int]:
        result: dict[int, int] = await self._call(self.model.claim, me, list(claims))
        return result

    async def release(
        self, me: Member, fences: Mapping[int, int], *, cause: Literal["handed_over", "released"] = "handed_over"
    ) -> set[int]:
        result: set[int] = await self._call(self.model.release, me, fences, cause=cause)
        return result

    async def owners(self) -> Any:
        return await self._call(self.model.owners_now)

    async def owned(self, node_id: str) -> dict[int, int]:
        result: dict[int, int] = await self._call(self.model.owned, node_id)
        return result

    async def fence_is_current(self, salon_id: int, fence: int) -> bool:
        return bool(await self._call(self.model.fence_is_current, salon_id, fence))


@attrs.define
class NodeActors:
    """A node's company actors: start connects (from stored credentials), stop disconnects."""

    node_id: str
    whatsapp: WhatsApp
    running: set[int] = attrs.field(factory=set)
    stop_s: float = 0.0  # how long closing a connection takes

    async def start(self, salon_id: int) -> bool:
        await trio.lowlevel.checkpoint()
        self.running.add(salon_id)
        self.whatsapp.connect(self.node_id, salon_id)
        return True

    async def stop(self, salon_id: int, *, grace: float | None = None) -> bool:
        await trio.sleep(self.stop_s)
        had = salon_id in self.running
        self.running.discard(salon_id)
        self.whatsapp.disconnect(self.node_id, salon_id)
        return had


@attrs.define
class Node:
    keeper: Keeper
    store: ModelStore
    actors: NodeActors
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)


@attrs.define
class Cluster:
    nursery: trio.Nursery
    model: OwnershipModel = attrs.field(factory=OwnershipModel)
    whatsapp: WhatsApp = attrs.field(factory=WhatsApp)
    nodes: dict[str, Node] = attrs.field(factory=dict)
    #: Whether a keeper's nudge reaches the node it names (False: every nudge is lost, as with Redis down).
    deliver_nudges: bool = True
    timings: OwnershipTimings = TIMINGS
    nudges_sent: int = 0
    #: node → what its keeper told ``settled`` (how many actors it started since the last time).
    told: dict[str, list[int]] = attrs.field(factory=dict)

    async def nudge(self, node_id: str) -> None:
        """A Redis publish on ``node_id``'s channel, as ``NodeRpc.nudge`` does: one hop, maybe lost."""
        await trio.sleep(0.001)
        self.nudges_sent += 1
        if self.deliver_nudges and node_id in self.nodes:
            self.nodes[node_id].keeper.nudge()

    def start(self, node_id: str) -> Node:
        store = ModelStore(self.model)
        actors = NodeActors(node_id, self.whatsapp)

        async def wanted() -> set[int]:
            return set(SALONS)

        told = self.told[node_id] = []
        keeper = Keeper(
            store, Member.new(node_id, "1.0"), self.timings, actors, wanted, nudge=self.nudge, settled=told.append
        )
        node = self.nodes[node_id] = Node(keeper, store, actors)

        async def run() -> None:
            with node.scope:
                await keeper.run()

        self.nursery.start_soon(run)
        return node

    def kill(self, node_id: str) -> None:
        """kill -9: the process and its connections go; its rows stay."""
        node = self.nodes.pop(node_id)
        node.scope.cancel()
        for salon_id in list(node.actors.running):
            self.whatsapp.disconnect(node_id, salon_id)

    def settled(self) -> bool:
        """Every salon connected once, by the node placement names among the live ones."""
        live = sorted(self.nodes)
        return all(self.whatsapp.live.get(s) == place(s, live) for s in SALONS)

    async def wait(self, predicate: Callable[[], bool], *, within: float) -> float:
        started = trio.current_time()
        with trio.fail_after(within):
            while not predicate():
                await self.whatsapp.changed.wait()
        return trio.current_time() - started


async def _cluster(nursery: trio.Nursery, *names: str, timings: OwnershipTimings = TIMINGS) -> Cluster:
    cluster = Cluster(nursery, timings=timings)
    for model_salon in SALONS:
        cluster.model.companies.add(model_salon)
    for name in names:
        cluster.start(name)
    await cluster.wait(cluster.settled, within=30)
    return cluster


async def test_a_killed_nodes_salons_reconnect_on_the_others_within_ttl_and_budget(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b", "c")
        lost = {s for s, holder in cluster.whatsapp.live.items() if holder == "b"}
        assert lost, "placement gave b no salon: the test would prove nothing"
        cluster.kill("b")
        took = await cluster.wait(cluster.settled, within=60)
        assert took <= TIMINGS.ttl_s + 5
        assert all(cluster.whatsapp.live[s] in {"a", "c"} for s in lost)
        assert cluster.whatsapp.replaced_total == 0
        assert cluster.whatsapp.max_live_per_device == 1
        nursery.cancel_scope.cancel()


async def test_sigterm_hands_every_salon_over_without_a_440_and_leaves(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b", "c")
        leaving = cluster.nodes["b"]
        moved = {s for s, holder in cluster.whatsapp.live.items() if holder == "b"}
        assert moved
        started = trio.current_time()
        await leaving.keeper.drain(deadline_s=20)
        assert trio.current_time() - started < 20
        del cluster.nodes["b"]
        await cluster.wait(cluster.settled, within=10)
        assert cluster.whatsapp.replaced_total == 0
        assert "b" not in {n.node_id for n in cluster.model.nodes_list()}
        assert not leaving.actors.running
        nursery.cancel_scope.cancel()


#: One salon per hand-over round: b's salons go over several rounds, and only the last is followed
#: by b leaving (a membership change every node plans on anyway).
ONE_BY_ONE = attrs.evolve(TIMINGS, handovers_per_round=1)


async def _drain_b(cluster: Cluster) -> Node:
    """SIGTERM of b, which hands its salons over in several rounds; the gaps it leaves."""
    leaving = cluster.nodes["b"]
    assert len(leaving.keeper.local) >= 3, "too few hand-over rounds to tell anything"
    cluster.whatsapp.gaps.clear()
    await leaving.keeper.drain(deadline_s=30)
    del cluster.nodes["b"]
    await cluster.wait(cluster.settled, within=30)
    assert cluster.whatsapp.replaced_total == 0
    assert not leaving.actors.running
    return leaving


async def test_a_nudged_new_owner_takes_each_handed_over_salon_sooner_than_a_heartbeat(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b", "c", timings=ONE_BY_ONE)
        moved = len(cluster.nodes["b"].keeper.local)
        await _drain_b(cluster)
        assert len(cluster.whatsapp.gaps) == moved
        # Stop → release → nudge → the new owner's round → its paced start: well inside one interval,
        # for the later hand-over rounds too (their new owners see no membership change to plan on).
        assert max(cluster.whatsapp.gaps) < TIMINGS.heartbeat_interval_s
        assert cluster.nudges_sent >= moved
        assert sum(n.keeper.nudged_total for n in cluster.nodes.values()) >= 2
        nursery.cancel_scope.cancel()


async def test_a_hand_over_whose_nudges_are_lost_still_completes_at_the_next_rounds(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b", "c", timings=ONE_BY_ONE)
        cluster.deliver_nudges = False
        moved = len(cluster.nodes["b"].keeper.local)
        await _drain_b(cluster)
        assert len(cluster.whatsapp.gaps) == moved
        # Without a nudge a later round's salons wait for the receiver's quiet round.
        assert max(cluster.whatsapp.gaps) <= (QUIET_ROUNDS + 1) * TIMINGS.heartbeat_interval_s
        assert sum(n.keeper.nudged_total for n in cluster.nodes.values()) == 0
        nursery.cancel_scope.cancel()


async def test_a_hand_over_rounds_connections_close_together_not_one_after_another(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b", "c")
        leaving = cluster.nodes["b"]
        assert len(leaving.keeper.local) >= 3
        leaving.actors.stop_s = 0.3  # a WhatsApp connection takes a while to close
        await _drain_b(cluster)
        # Stopped one after another, the first salon of a round of five would wait 4 × 0.3 s more.
        assert max(cluster.whatsapp.gaps) < 2 * leaving.actors.stop_s + 0.3
        nursery.cancel_scope.cancel()


async def test_a_flood_of_nudges_runs_rounds_no_closer_than_the_nudge_gap(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b")
        node = cluster.nodes["a"]
        beats = cluster.model.nodes["a"].seq
        started = trio.current_time()
        while trio.current_time() - started < 1.0:
            node.keeper.nudge()  # anyone on Redis can publish nudges
            await trio.sleep(0.001)
        rounds = cluster.model.nodes["a"].seq - beats
        assert 2 <= rounds <= 1.0 / (TIMINGS.heartbeat_interval_s * NUDGE_GAP_SHARE) + 1
        nursery.cancel_scope.cancel()


async def test_a_paused_keeper_is_taken_over_once_and_its_later_writes_are_fenced(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await _cluster(nursery, "a", "b", "c")
        paused = cluster.nodes["b"]
        held = dict(paused.keeper.local)
        assert held
        paused.store.hold_beats()  # b stops renewing but its connections stay up
        await cluster.wait(lambda: all(cluster.whatsapp.live.get(s) in {"a", "c"} for s in held), within=60)
        # Each takeover replaced b's live connection exactly once: the one allowed 440.
        assert cluster.whatsapp.replaced_total == len(held)
        # b's actors write with their old fences: every write is refused, and b stops them.
        for salon_id, fence in held.items():
            assert not cluster.model.fence_is_current(salon_id, fence)
            paused.keeper.fenced(salon_id, fence)
        await cluster.wait(lambda: not paused.actors.running, within=5)
        assert paused.keeper.owner_here(next(iter(held))) is None
        assert not paused.keeper.may_connect(next(iter(held)), held[next(iter(held))])
        # Resumed, b learns what it lost from its first heartbeat; placement hands its share back
        # cleanly (stop, release, claim), never by replacing a live connection.
        paused.store.release_beats()
        await cluster.wait(cluster.settled, within=30)
        assert cluster.whatsapp.replaced_total == len(held), "a second 440 for a salon"
        assert cluster.whatsapp.max_live_per_device == 1
        nursery.cancel_scope.cancel()


async def test_locate_claims_a_salon_placed_here_on_demand(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery)
        cluster.model.companies.add(500)  # registered, no credentials yet: nobody claims it by itself
        node = cluster.start("solo")
        await node.keeper.planned.wait()
        assert node.keeper.owner_here(500) is None
        where = await node.keeper.locate(500)
        fence = cluster.model.owners_now()[500].fence
        assert (where.fence, node.keeper.owner_here(500)) == (fence, fence)  # type: ignore[union-attr]
        assert await node.keeper.owns(500, fence)
        assert not await node.keeper.owns(500, fence + 1)
        nursery.cancel_scope.cancel()



async def test_the_keeper_says_when_a_restore_or_claim_round_has_started_its_actors(autojump_clock: MockClock) -> None:
    """The node's collector policy freezes the heap on ``settled`` (docs/capacity.md#garbage-collection):
    it must be told once a restore round's actors are all started — before ``restore`` returns — and
    again after the round that takes over a killed node's salons."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery)
        cluster.model.companies.update(SALONS)
        a = cluster.start("a")
        assert await a.keeper.restore() == len(SALONS)
        assert sum(cluster.told["a"]) == len(SALONS) and cluster.told["a"][-1] > 0

        cluster.start("b")
        await cluster.wait(cluster.settled, within=60)
        moved = {s for s, holder in cluster.whatsapp.live.items() if holder == "b"}
        assert moved, "placement gave b no salon: the test would prove nothing"
        told_a = len(cluster.told["a"])
        cluster.kill("b")
        await cluster.wait(cluster.settled, within=60)
        await trio.sleep(TIMINGS.heartbeat_interval_s)  # the starter drains after the last connect
        assert sum(cluster.told["a"][told_a:]) == len(moved)
        assert cluster.told["a"][-1] == 0  # later rounds: nothing new started, still told (the bound's check)
        nursery.cancel_scope.cancel()
