"""An upstream WhatsApp outage heals by itself (docs/whatsapp.md#upstream-outage): the in-process
simulator's outage, thirty virtual minutes of it under MockClock, a node of salons held behind one
probe, then restored."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import attrs
import pytest
import trio
from trio.testing import MockClock

from actor_admin.actors import Registry, Router, SessionDeps, UpstreamWatch, company_actor_factory
from actor_admin.actors._upstream import PROBE_BACKOFF
from actor_admin.cluster import LocalBus
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.runtime import open_supervisor
from actor_admin.session import RequestQr, SessionPolicy, Status
from actor_admin.whatsapp import Link, LinkSpec, TransportKind

from .memory_store import MemoryInbound, MemoryStore

SALONS = range(500, 520)
OUTAGE_S = 30 * 60.0


def phone_of(salon_id: int) -> str:
    return f"7900{salon_id:07d}"


@attrs.define
class CountingTransport:
    """The in-process simulator, noting when each salon dials: the attempts WhatsApp sees."""

    inner: SimulatorTransport
    dials: list[tuple[float, int]] = attrs.field(factory=list)

    @property
    def kind(self) -> TransportKind:
        return self.inner.kind

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> Link:
        self.dials.append((trio.current_time(), spec.salon_id))
        return await self.inner.open(nursery, spec)


@attrs.define
class Node:
    core: SimulatorCore
    transport: CountingTransport
    registry: Registry
    router: Router
    upstream: UpstreamWatch
    store: MemoryStore

    def states(self) -> dict[int, str]:
        return {salon: view.state for salon, view in self.registry.items()}

    async def link(self, salon_id: int) -> None:
        status = await self.router.ask(salon_id, RequestQr())
        assert isinstance(status, Status)
        self.core.scan(await self.core.wait_qr(salon_id), phone_of(salon_id))
        with trio.fail_after(60):
            await self.registry.wait_state(salon_id, "connected")

    async def all_connected(self, salons: range, *, within: float) -> None:
        with trio.fail_after(within):
            for salon in salons:
                await self.registry.wait_state(salon, "connected")


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    core = SimulatorCore()
    transport = CountingTransport(SimulatorTransport(core))
    store = MemoryStore()
    registry = Registry()
    upstream = UpstreamWatch(registry)
    deps = SessionDeps(
        transport=transport,
        store=store,
        bus=LocalBus(),
        registry=registry,
        inbound=MemoryInbound(),
        policy=SessionPolicy(),
        upstream=upstream,
    )
    async with open_supervisor(company_actor_factory(deps)) as supervisor, trio.open_nursery() as nursery:
        router = Router(supervisor)
        nursery.start_soon(upstream.run, router)
        yield Node(core, transport, registry, router, upstream, store)
        nursery.cancel_scope.cancel()


@contextmanager
def watch_for_failed(node: Node, nursery: trio.Nursery) -> Iterator[list[tuple[float, int, str]]]:
    """Record every session that shows ``failed`` or ``logged_out`` (checked every virtual second)."""
    seen: list[tuple[float, int, str]] = []

    async def watch() -> None:
        while True:
            for salon, state in node.states().items():
                if state in ("failed", "logged_out", "idle"):
                    seen.append((trio.current_time(), salon, state))
            await trio.sleep(1)

    nursery.start_soon(watch)
    yield seen


async def test_thirty_minute_outage_is_held_behind_one_probe_and_heals_by_itself(
    node: Node, autojump_clock: MockClock
) -> None:
    for salon in SALONS:
        await node.link(salon)
    qr_before = node.core.stats()["qr_issued_total"]
    async with trio.open_nursery() as nursery:
        with watch_for_failed(node, nursery) as bad:
            began = trio.current_time()
            dials_before = len(node.transport.dials)
            connections_before = node.core.stats()["connections_total"]
            assert node.core.outage(OUTAGE_S) == len(SALONS)
            await trio.sleep(30)
            view = node.upstream.view()
            assert view.upstream == "outage" and view.since == began
            assert view.held_back == len(SALONS)
            # The page is told the truth: reconnecting, WhatsApp unreachable — not "back in a few seconds".
            for salon in SALONS:
                seen = node.registry.get(salon)
                assert seen is not None and (seen.state, seen.reason) in {
                    ("reconnecting", "whatsapp_unreachable"),
                    ("connecting", "whatsapp_unreachable"),
                }
            await trio.sleep_until(began + OUTAGE_S)
            during = node.transport.dials[dials_before:]
            # Only the probe dials: one attempt per cadence, never two at once, never faster than 45 s.
            assert node.core.stats()["connections_total"] - connections_before == len(during)
            times = [at for at, _ in during]
            assert 5 <= len(during) <= 30 * 60 / PROBE_BACKOFF.bounds(0)[0]
            assert times[0] - began >= PROBE_BACKOFF.bounds(0)[0]
            assert all(b - a >= PROBE_BACKOFF.bounds(0)[0] for a, b in itertools.pairwise(times))
            assert node.upstream.view().upstream == "outage"
            assert node.upstream.view().probes == len(during)
            assert node.core.stats()["live_sessions"] == 0
            # WhatsApp is back: the next probe connects and every held salon follows, paced.
            await node.all_connected(SALONS, within=PROBE_BACKOFF.max_s * 1.25 + 60)
            nursery.cancel_scope.cancel()
    assert bad == []  # no session ended failed (or logged out, or idle) at any second of it
    after = [(at, salon) for at, salon in node.transport.dials if at >= began + OUTAGE_S]
    assert sorted(salon for _, salon in after) == list(SALONS)  # one dial each: probe, then the rest
    restore_times = [at for at, _ in after[1:]]
    assert all(b - a >= 1 / 20 - 1e-9 for a, b in itertools.pairwise(restore_times))  # 20/s
    assert restore_times[-1] - after[0][0] <= len(SALONS) / 20 + 1
    assert node.upstream.view().upstream == "ok" and node.upstream.view().held_back == 0
    assert node.upstream.restored_total == len(SALONS) - 1
    stats = node.core.stats()
    assert stats["qr_issued_total"] == qr_before  # no rescan
    assert stats["live_sessions"] == len(SALONS) and stats["max_live_per_device"] == 1
    assert stats["replaced_total"] == 0


async def test_without_outage_detection_a_long_outage_still_never_ends_failed(autojump_clock: MockClock) -> None:
    """The session's own policy, with no node-level watch: transient causes retry slowly, forever."""
    core = SimulatorCore()
    registry = Registry()
    deps = SessionDeps(
        transport=SimulatorTransport(core), store=MemoryStore(), bus=LocalBus(), registry=registry
    )
    async with open_supervisor(company_actor_factory(deps)) as supervisor:
        router = Router(supervisor)
        await router.ask(600, RequestQr())
        core.scan(await core.wait_qr(600), phone_of(600))
        with trio.fail_after(60):
            await registry.wait_state(600, "connected")
        core.outage(OUTAGE_S)
        states = set()
        for _ in range(int(OUTAGE_S)):
            await trio.sleep(1)
            view = registry.get(600)
            assert view is not None
            states.add((view.state, view.reason))
        assert all(state in {"reconnecting", "connecting"} for state, _ in states)
        assert ("reconnecting", "whatsapp_unreachable") in states
        with trio.fail_after(5 * 60 + 1):
            await registry.wait_state(600, "connected")


async def test_a_logged_out_salon_is_not_retried_through_an_outage(node: Node, autojump_clock: MockClock) -> None:
    for salon in SALONS:
        await node.link(salon)
    await trio.sleep(60)  # past the grace in which a 401 right after pairing is retried once
    unlinked = SALONS[0]
    node.core.logout(phone_of(unlinked))
    with trio.fail_after(5):
        await node.registry.wait_state(unlinked, "logged_out")
    began = trio.current_time()
    node.core.outage(600)
    await node.all_connected(SALONS[1:], within=600 + PROBE_BACKOFF.max_s * 1.25 + 60)
    assert [salon for at, salon in node.transport.dials if at >= began and salon == unlinked] == []
    view = node.registry.get(unlinked)
    assert view is not None and view.state == "logged_out"
    assert await node.store.credentials.load(unlinked) is None


async def test_a_salon_stopped_before_its_turn_in_the_restore_is_not_started_again(
    node: Node, autojump_clock: MockClock
) -> None:
    for salon in SALONS:
        await node.link(salon)
    node.core.outage(600)
    await trio.sleep(30)
    node.core.outage(0)
    with trio.fail_after(PROBE_BACKOFF.max_s * 1.25 + 60):
        await node.core.wait_for(lambda: node.upstream.view().upstream == "ok")
    # The probe connected; the others wait their turn at 20 a second. The last one is withdrawn now
    # (e.g. frozen by YClients): its actor stops, and the restore must not start a new one.
    withdrawn = max(salon for salon in SALONS if node.states().get(salon) != "connected")
    await node.router.stop(withdrawn)
    others = [salon for salon in SALONS if salon != withdrawn]
    with trio.fail_after(5):
        for salon in others:
            await node.registry.wait_state(salon, "connected")
    await trio.sleep(5)
    assert not node.router.running(withdrawn) and node.registry.get(withdrawn) is None
