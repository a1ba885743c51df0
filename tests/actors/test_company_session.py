"""The CompanySession actor against the in-process WhatsApp simulator, on virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actor_admin.actors import Registry, Router, SessionDeps, company_actor_factory
from actor_admin.cluster import LocalBus
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.doubles.whatsapp import _core as simulator_core
from actor_admin.runtime import open_supervisor
from actor_admin.session import Accepted, Logout, MessageReceived, RequestQr, Send, SessionPolicy, Start, Status
from actor_admin.session._policy import jitter_fraction
from actor_admin.whatsapp import LinkSpec

from .memory_store import MemoryInbound, MemoryStore

PHONE = "79001234567"
# Every test takes `autojump_clock` itself: pytest-trio picks the clock from the test's arguments.


class Harness:
    def __init__(self, core: SimulatorCore, store: MemoryStore, deps: SessionDeps, router: Router) -> None:
        self.core = core
        self.store = store
        self.deps = deps
        self.router = router
        self.bus: LocalBus = deps.bus
        self.registry = deps.registry
        self.inbound: MemoryInbound = deps.inbound

    def state(self, salon_id: int) -> str | None:
        view = self.registry.get(salon_id)
        return None if view is None else view.state

    async def wait_state(self, salon_id: int, state: str, *, within: float = 600) -> None:
        with trio.fail_after(within):
            await self.registry.wait_state(salon_id, state)

    async def connect(self, salon_id: int, phone: str = PHONE) -> None:
        status = await self.router.ask(salon_id, RequestQr())
        assert isinstance(status, Status)
        qr = await self.core.wait_qr(salon_id)
        self.core.scan(qr, phone)
        await self.wait_state(salon_id, "connected")


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    core = SimulatorCore()
    store = MemoryStore()
    deps = SessionDeps(
        transport=SimulatorTransport(core),
        store=store,
        bus=LocalBus(),
        registry=Registry(),
        inbound=MemoryInbound(),
        policy=SessionPolicy(),
        activation_payload=lambda salon_id, api_key: {"salon_id": salon_id, "api_key": api_key},
    )
    async with open_supervisor(company_actor_factory(deps)) as supervisor:
        yield Harness(core, store, deps, Router(supervisor))


async def test_scan_then_515_then_connected_stores_digits_and_enqueues_one_activation(
    harness: Harness, autojump_clock: MockClock
) -> None:
    harness.store.companies.add(101)
    await harness.connect(101)
    row = harness.store.companies.rows[101]
    assert row.whatsapp_connected and row.whatsapp_phone == PHONE
    assert row.integration_status == "activating"
    assert harness.store.outbox == [{"salon_id": 101, "api_key": "k" * 64}]
    assert await harness.store.credentials.load(101) is not None
    stats = harness.core.stats()
    assert stats["live_sessions"] == 1 and stats["linked_devices"] == 1


async def test_viewer_receives_state_qr_as_the_raw_payload_and_connected_frames(
    harness: Harness, autojump_clock: MockClock
) -> None:
    frames: list[dict[str, Any]] = []
    async with harness.bus.subscribe(102) as subscription, trio.open_nursery() as nursery:

        async def collect() -> None:
            async for frame in subscription:
                frames.append(frame)

        nursery.start_soon(collect)
        await harness.connect(102)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    kinds = [f["type"] for f in frames]
    assert "qr" in kinds and kinds[-1] in {"connected", "state"}
    qr = next(f for f in frames if f["type"] == "qr")
    # Exactly the payload WhatsApp issued, nothing drawn: the page renders it (docs/websocket.md#server-frames).
    assert sorted(qr) == ["expires_in", "qr", "seq", "type"] and qr["seq"] == 1 and qr["expires_in"] == 60
    connected = next(f for f in frames if f["type"] == "connected")
    assert connected["phone"] == PHONE


async def test_the_registry_is_never_older_than_an_answer(harness: Harness, autojump_clock: MockClock) -> None:
    # request_qr is answered before the link opens; whoever asked must not then find the old state
    # in the registry (the asker and the actor run in either order in the next round: several salons).
    for salon_id in range(201, 209):
        answer = await harness.router.ask(salon_id, RequestQr())
        assert answer == Status("starting")
        assert harness.state(salon_id) == "starting"


async def test_whole_qr_batch_ends_idle_with_qr_expired_and_no_new_qr_until_asked(
    harness: Harness, autojump_clock: MockClock
) -> None:
    start = trio.current_time()
    await harness.router.ask(103, RequestQr())
    await harness.wait_state(103, "idle", within=1000)
    elapsed = trio.current_time() - start
    assert 159 <= elapsed <= 162  # 60 s + 5 × 20 s, then WhatsApp ends the attempt (408)
    assert harness.registry.get(103).reason == "qr_expired"  # type: ignore[union-attr]
    issued = harness.core.stats()["qr_issued_total"]
    await trio.sleep(600)
    assert harness.core.stats()["qr_issued_total"] == issued
    await harness.router.ask(103, RequestQr())
    await harness.wait_state(103, "qr")
    assert harness.core.stats()["qr_issued_total"] == issued + 1


async def test_restart_of_the_actor_resumes_from_stored_credentials_without_a_rescan(
    harness: Harness, autojump_clock: MockClock
) -> None:
    await harness.connect(104)
    issued = harness.core.stats()["qr_issued_total"]
    await harness.router.restart(104)
    await harness.router.ask(104, Start())
    await harness.wait_state(104, "connected")
    stats = harness.core.stats()
    assert stats["qr_issued_total"] == issued
    assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1


async def test_phone_unlinking_the_device_logs_out_and_deletes_credentials(
    harness: Harness, autojump_clock: MockClock
) -> None:
    await harness.connect(105)
    harness.core.logout(PHONE)
    await harness.wait_state(105, "logged_out")
    assert await harness.store.credentials.load(105) is None
    assert harness.store.companies.rows.get(105) is None or not harness.store.companies.rows[105].whatsapp_connected


async def test_a_rogue_second_connection_gets_one_retry_then_no_fight(
    harness: Harness, autojump_clock: MockClock
) -> None:
    await harness.connect(106)
    credentials = await harness.store.credentials.load(106)
    async with trio.open_nursery() as nursery:
        # The rogue (another process holding the same device) connects: WhatsApp kicks us (440).
        await SimulatorTransport(harness.core).open(
            nursery, LinkSpec(salon_id=106, credentials=credentials, deliver=lambda event: None)
        )
        await harness.wait_state(106, "conflict")
        # We own the salon (ownership re-checked), so we retry exactly once, kicking the rogue...
        await harness.wait_state(106, "connected")
        assert harness.core.stats()["replaced_total"] == 2
        # ...and when the rogue comes back, we stay stopped: no 440 ping-pong.
        await SimulatorTransport(harness.core).open(
            nursery, LinkSpec(salon_id=106, credentials=credentials, deliver=lambda event: None)
        )
        await harness.wait_state(106, "conflict")
        await trio.sleep(3600)
        assert harness.core.stats()["replaced_total"] == 3
        assert harness.state(106) == "conflict"
        nursery.cancel_scope.cancel()


async def test_inbound_redelivery_is_stored_and_passed_on_once(harness: Harness, autojump_clock: MockClock) -> None:
    await harness.connect(108)
    harness.core.inbound(PHONE, "79990001122", "Здравствуйте!", "wamid-1")
    harness.core.inbound(PHONE, "79990001122", "Здравствуйте!", "wamid-1")
    harness.core.inbound(PHONE, "79990001122", "Ещё вопрос", "wamid-2")
    await trio.testing.wait_all_tasks_blocked()  # the actor has handled all three
    assert len(harness.store.messages.inbound) == 2
    assert [fields["wa_id"] for _, fields in harness.inbound.entries] == ["wamid-1", "wamid-2"]
    assert harness.core.stats()["messages_in_total"] == 3
    counts = harness.registry.messages
    assert (counts.inbound_stored, counts.inbound_duplicates) == (2, 1)


async def test_a_message_known_only_by_lid_is_stored_once_counted_and_passed_on_with_its_lid(
    harness: Harness, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lid_only(wa_id: str, peer: str, text: str, at: float) -> MessageReceived:
        # What the neonize link delivers for a chat WhatsApp addresses only by LID.
        return MessageReceived(wa_id, "", text, at, peer_lid="1234567890123@lid")

    monkeypatch.setattr(simulator_core, "MessageReceived", lid_only)
    await harness.connect(110)
    harness.core.inbound(PHONE, "79990001122", "Здравствуйте!", "wamid-lid")
    harness.core.inbound(PHONE, "79990001122", "Здравствуйте!", "wamid-lid")  # a redelivery
    await trio.testing.wait_all_tasks_blocked()
    assert harness.store.messages.inbound == {(110, "wamid-lid"): ("", "Здравствуйте!")}
    assert harness.store.messages.inbound_lids == {(110, "wamid-lid"): "1234567890123@lid"}
    assert [fields.get("peer_lid") for _, fields in harness.inbound.entries] == ["1234567890123@lid"]
    counts = harness.registry.messages
    assert (counts.inbound_stored, counts.inbound_duplicates, counts.inbound_unresolved_lid) == (1, 1, 1)


async def test_outbound_sends_are_paced_per_company(harness: Harness, autojump_clock: MockClock) -> None:
    await harness.connect(109)
    start = trio.current_time()
    for n in range(3):
        outcome = await harness.router.ask(109, Send("79990001122", f"msg {n}", f"key-{n}"))
        assert isinstance(outcome, Accepted)
    with trio.fail_after(60):
        await harness.core.wait_for(lambda: len(harness.core.sent_messages()) == 3)
    await trio.testing.wait_all_tasks_blocked()
    assert len(harness.store.messages.outcomes) == 3
    sent = harness.core.sent_messages()
    assert [m.text for m in sent] == ["msg 0", "msg 1", "msg 2"]
    assert 5.9 <= trio.current_time() - start <= 6.1  # 20 a minute: one every 3 s
    assert all(error is None for _, error in harness.store.messages.outcomes.values())
    assert (harness.registry.messages.outbound_sent, harness.registry.messages.outbound_failed) == (3, 0)


def _task_names() -> list[str]:
    root = trio.lowlevel.current_root_task()
    names: list[str] = []
    pending = [] if root is None else [root]
    while pending:
        task = pending.pop()
        names.append(task.name)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return names


async def test_an_idle_salon_runs_no_send_pacer_until_its_first_send(
    harness: Harness, autojump_clock: MockClock
) -> None:
    # Memory per idle salon (docs/capacity.md#what-a-salon-holds): the pacer and its queue come with the first send.
    await harness.connect(112)
    await trio.testing.wait_all_tasks_blocked()
    assert not [name for name in _task_names() if name.endswith("_pace_sends")]
    outcome = await harness.router.ask(112, Send("79990001122", "hi", "key-112"))
    assert isinstance(outcome, Accepted)
    with trio.fail_after(10):
        await harness.core.wait_for(lambda: len(harness.core.sent_messages()) == 1)
    assert len([name for name in _task_names() if name.endswith("_pace_sends")]) == 1


async def test_send_without_a_connection_is_refused(harness: Harness, autojump_clock: MockClock) -> None:
    outcome = await harness.router.ask(110, Send("79990001122", "hi", "k"))
    assert getattr(outcome, "code", None) == "not_connected"


async def test_logout_command_unlinks_the_device(harness: Harness, autojump_clock: MockClock) -> None:
    await harness.connect(111)
    await harness.router.ask(111, Logout())
    await harness.wait_state(111, "logged_out")
    assert harness.core.stats()["linked_devices"] == 0
    assert await harness.store.credentials.load(111) is None


async def test_restore_brings_back_stored_salons_at_the_pacing_rate(
    harness: Harness, autojump_clock: MockClock
) -> None:
    for salon_id in range(200, 260):
        await harness.connect(salon_id, phone=f"7900{salon_id:07d}")
        await harness.router.stop(salon_id)
    assert harness.core.stats()["live_sessions"] == 0
    start = trio.current_time()
    restored = await harness.router.restore(range(200, 260), per_second=20)
    for salon_id in range(200, 260):
        await harness.wait_state(salon_id, "connected")
    elapsed = trio.current_time() - start
    assert restored == 60
    assert 2.9 <= elapsed <= 3.2  # 60 salons at 20 a second
    assert harness.core.stats()["live_sessions"] == 60
    assert harness.core.stats()["max_live_per_device"] == 1


async def test_twenty_salons_connecting_at_once_each_get_their_own_connection(
    harness: Harness, autojump_clock: MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        for salon_id in range(300, 320):
            nursery.start_soon(harness.connect, salon_id, f"7911{salon_id:07d}")
    stats = harness.core.stats()
    assert stats["live_sessions"] == 20 and stats["linked_devices"] == 20
    assert stats["max_live_per_device"] == 1 and stats["replaced_total"] == 0


async def test_every_state_transition_is_logged_with_salon_id_and_cause(
    harness: Harness, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="actor_admin.actors")
    await harness.connect(112)
    harness.core.drop(PHONE)
    await harness.wait_state(112, "reconnecting")
    transitions = [r for r in caplog.records if r.getMessage().startswith("session ")]
    assert all(getattr(r, "salon_id", None) == 112 for r in transitions)
    assert [r.getMessage() for r in transitions][:2] == ["session idle -> starting", "session starting -> qr"]
    assert transitions[-1].getMessage() == "session connected -> reconnecting"
    assert transitions[-1].cause == "Disconnected(0)"  # type: ignore[attr-defined]


async def test_restart_of_the_actor_mid_qr_closes_the_old_link_and_a_viewer_gets_a_fresh_batch(
    harness: Harness, autojump_clock: MockClock
) -> None:
    await harness.router.ask(113, RequestQr())
    await harness.wait_state(113, "qr")
    first_qr = harness.core.qr_for(113)
    await harness.router.restart(113)
    await harness.core.wait_for(lambda: harness.core.stats()["live_sessions"] == 0)
    await harness.router.ask(113, RequestQr())
    await harness.wait_state(113, "qr")
    assert harness.core.qr_for(113) not in (None, first_qr)
    assert harness.core.stats()["live_sessions"] == 1


async def test_drop_reconnects_after_the_exact_jittered_delay_which_resets_once_reconnected(
    harness: Harness, autojump_clock: MockClock
) -> None:
    await harness.connect(114)
    policy = SessionPolicy()
    expected = policy.backoff.delay(0, jitter_fraction(114, 1))  # the salon id seeds its jitter

    async def drop_and_time() -> float:
        dropped = trio.current_time()
        harness.core.drop(PHONE)
        await harness.wait_state(114, "reconnecting")
        await harness.wait_state(114, "connected")
        return trio.current_time() - dropped

    assert await drop_and_time() == pytest.approx(expected, abs=1e-6)
    # Reconnected: the failure count is back to zero, so the next drop waits the first delay again.
    assert await drop_and_time() == pytest.approx(expected, abs=1e-6)
    low, high = policy.backoff.bounds(0)
    assert low <= expected <= high


class _CountingTransport:
    """The in-process simulator, counting the links the actor opens."""

    def __init__(self, inner: SimulatorTransport) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.opened = 0

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> Any:
        self.opened += 1
        return await self.inner.open(nursery, spec)


@pytest.mark.parametrize("made_by", ["neonize", None])
async def test_a_401_from_a_transport_that_did_not_make_the_credentials_deletes_nothing(
    harness: Harness, autojump_clock: MockClock, made_by: str | None
) -> None:
    # Real WhatsApp credentials (or ones stored before origins were recorded) meet the simulator,
    # which answers 401 to every device it does not know: e.g. `serve` with the simulator by mistake.
    counting = _CountingTransport(harness.deps.transport)  # type: ignore[arg-type]
    deps = attrs.evolve(harness.deps, transport=counting)
    harness.store.companies.add(120)
    await harness.store.credentials.save(120, b"real device keys", transport=made_by, account=PHONE)
    async with open_supervisor(company_actor_factory(deps)) as supervisor:
        router = Router(supervisor)
        await router.ask(120, Start())
        await harness.wait_state(120, "failed")
        await trio.sleep(3600)  # an hour later: still one attempt, no reconnect loop
        assert counting.opened == 1
        view = harness.registry.get(120)
        assert view is not None and view.state == "failed" and view.reason == "transport_mismatch"
    assert await harness.store.credentials.load(120) == b"real device keys"
    assert [e[1] for e in harness.store.events.rows if e[0] == 120][-1:] == ["credentials_kept"]


async def test_credentials_a_scan_made_record_the_transport_and_account(
    harness: Harness, autojump_clock: MockClock
) -> None:
    await harness.connect(121)
    origin = await harness.store.credentials.origin(121)
    assert origin is not None and (origin.transport, origin.account) == ("simulator", PHONE)
