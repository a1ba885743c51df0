"""A company actor over the networked simulator: a real loopback websocket, real time.

The other actor tests use the in-process front on virtual time; this one proves the same session
works through ``NetworkSimulatorTransport`` — QR, scan, 515 restart, login, inbound delivery, and a
network drop healed by the session's own back-off — as it does in multi-node dev setups.
"""

from __future__ import annotations

from collections.abc import Mapping

import trio

from actor_admin.actors import Registry, Router, SessionDeps, company_actor_factory
from actor_admin.backoff import Backoff
from actor_admin.cluster import LocalBus
from actor_admin.doubles.whatsapp import SimulatorCore, serve_simulator
from actor_admin.runtime import open_supervisor
from actor_admin.session import RequestQr, SessionPolicy, Status
from actor_admin.whatsapp import NetworkSimulatorTransport

from .memory_store import MemoryInbound, MemoryStore

SALON = 301
PHONE = "79001112233"
PEER = "79990001122"
WAIT_S = 5.0  # a bound on every real wait; each step takes milliseconds on loopback


class RecordingInbound(MemoryInbound):
    """The inbound stream stand-in, with a way to wait for a number of entries."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, str], *, fence: int = 0) -> str:
        entry_id = await super().publish_inbound(salon_id, fields, fence=fence)
        self._changed.set()
        self._changed = trio.Event()
        return entry_id

    async def wait_entries(self, count: int) -> None:
        while len(self.entries) < count:
            await self._changed.wait()


async def test_networked_session_pairs_receives_once_and_heals_a_drop_by_itself() -> None:
    core = SimulatorCore()
    store = MemoryStore()
    inbound = RecordingInbound()
    registry = Registry()
    # A short back-off so the drop heals in a fraction of a second (the default starts at 5 s).
    policy = SessionPolicy(backoff=Backoff(initial_s=0.2))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_simulator, "127.0.0.1", 0, core)
        deps = SessionDeps(
            transport=NetworkSimulatorTransport(binds[0]),
            store=store,
            bus=LocalBus(),
            registry=registry,
            inbound=inbound,
            policy=policy,
        )
        async with open_supervisor(company_actor_factory(deps)) as supervisor:
            router = Router(supervisor)

            assert isinstance(await router.ask(SALON, RequestQr()), Status)
            with trio.fail_after(WAIT_S):
                qr = await core.wait_qr(SALON)
            core.scan(qr, PHONE)
            with trio.fail_after(WAIT_S):
                await registry.wait_state(SALON, "connected")
            assert registry.get(SALON).phone == PHONE  # type: ignore[union-attr]
            assert await store.credentials.load(SALON) is not None

            # A redelivered message (same WhatsApp id) is stored and passed on once; the second,
            # distinct message arriving proves the duplicate was already handled (the link is ordered).
            core.inbound(PHONE, PEER, "Здравствуйте!", "wamid-1")
            core.inbound(PHONE, PEER, "Здравствуйте!", "wamid-1")
            core.inbound(PHONE, PEER, "Можно записаться?", "wamid-2")
            with trio.fail_after(WAIT_S):
                await inbound.wait_entries(2)
            assert [fields["wa_id"] for _, fields in inbound.entries] == ["wamid-1", "wamid-2"]
            assert sorted(wa_id for _, wa_id in store.messages.inbound) == ["wamid-1", "wamid-2"]

            issued = core.stats()["qr_issued_total"]
            assert core.drop(PHONE) == 1
            with trio.fail_after(WAIT_S):
                await registry.wait_state(SALON, "reconnecting")
                await registry.wait_state(SALON, "connected")

            stats = core.stats()
            assert stats["qr_issued_total"] == issued  # resumed with the stored credentials, no rescan
            assert stats["linked_devices"] == 1 and stats["live_sessions"] == 1
            assert stats["max_live_per_device"] == 1 and stats["replaced_total"] == 0
            assert len(store.messages.inbound) == 2
        nursery.cancel_scope.cancel()
