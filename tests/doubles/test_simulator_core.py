"""The in-process simulator under virtual time: WhatsApp's behaviour the session policy relies on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from actor_admin.doubles.whatsapp import (
    PAIRING_CODE_ALPHABET,
    PAIRING_CODE_TTL_S,
    SimulatorCore,
    SimulatorInputError,
    SimulatorLookupError,
    SimulatorTransport,
)
from actor_admin.session import (
    CLIENT_OUTDATED,
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    LOGGED_OUT,
    NETWORK_ERROR,
    RESTART_REQUIRED,
    TEMPORARILY_BANNED,
    Connected,
    CredsUpdated,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
    PairingCodeIssued,
    PairSuccess,
    QrIssued,
    TransportEvent,
)
from actor_admin.whatsapp import Link, LinkSpec, TransportError

PHONE = "79001234567"
PEER = "79007654321"
SALON = 101


class Recorder:
    """A ``deliver`` callback that keeps what a link delivered, with the trio time of each."""

    def __init__(self) -> None:
        self.events: list[TransportEvent] = []
        self.times: list[float] = []

    def __call__(self, event: TransportEvent) -> None:
        self.events.append(event)
        self.times.append(trio.current_time())

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def last(self) -> TransportEvent:
        return self.events[-1]


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


@pytest.fixture
def core() -> SimulatorCore:
    return SimulatorCore()


async def open_link(
    core: SimulatorCore, nursery: trio.Nursery, credentials: bytes | None = None, salon_id: int = SALON
) -> tuple[Link, Recorder]:
    """Open a link and wait for its first event (a new device's first QR comes after ``open``)."""
    recorder = Recorder()
    link = await SimulatorTransport(core).open(
        nursery, LinkSpec(salon_id=salon_id, credentials=credentials, deliver=recorder)
    )
    await core.wait_for(lambda: recorder.events)
    return link, recorder


async def paired_credentials(core: SimulatorCore, nursery: trio.Nursery, phone: str = PHONE) -> bytes:
    """Pair a fresh device for ``phone`` by QR and return its credentials."""
    _, recorder = await open_link(core, nursery)
    core.scan(core.qr_for(SALON) or "", phone)
    creds: CredsUpdated = recorder.of(CredsUpdated)[0]
    return creds.credentials


async def connected_link(core: SimulatorCore, nursery: trio.Nursery, phone: str = PHONE) -> tuple[Link, Recorder]:
    credentials = await paired_credentials(core, nursery, phone)
    link, recorder = await open_link(core, nursery, credentials)
    assert isinstance(recorder.last, Connected)
    return link, recorder


# -- QR batch ------------------------------------------------------------------------------------


async def test_qr_batch_is_six_codes_60s_then_20s_each_then_408(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    _, recorder = await open_link(core, nursery)
    await trio.sleep(1000)
    qrs = recorder.of(QrIssued)
    assert [q.seq for q in qrs] == [1, 2, 3, 4, 5, 6]
    assert [q.ttl_s for q in qrs] == [60, 20, 20, 20, 20, 20]
    offsets = [t - start for t, e in zip(recorder.times, recorder.events, strict=True)]
    assert offsets == [0, 60, 80, 100, 120, 140, 160]
    assert recorder.last == Disconnected(CONNECTION_LOST, "QR refs attempts ended")
    assert len(recorder.of(Disconnected)) == 1


async def test_the_first_qr_comes_after_open_from_the_connections_task(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # WhatsApp sends QR refs after the handshake, not as its answer: the client's connect returns
    # first (on one trio loop, its caller's work stays out of the QR's path).
    recorder = Recorder()
    start = trio.current_time()
    await SimulatorTransport(core).open(nursery, LinkSpec(salon_id=SALON, credentials=None, deliver=recorder))
    assert recorder.events == []
    assert core.qr_for(SALON) is None
    qr = await core.wait_qr(SALON)
    assert trio.current_time() == start
    assert recorder.events == [QrIssued(qr, 60, 1)]


async def test_a_pairing_code_asked_for_before_the_first_qr_is_not_replaced_by_it(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    link = await SimulatorTransport(core).open(
        nursery, LinkSpec(salon_id=SALON, credentials=None, deliver=recorder)
    )
    # The server's side, synchronously: the link's own call checkpoints first, and the connection's
    # task may send the QR in that round.
    link.connection.request_pairing_code(PHONE)  # type: ignore[attr-defined]
    await trio.testing.wait_all_tasks_blocked()
    assert [type(e) for e in recorder.events] == [PairingCodeIssued]
    assert core.qr_for(SALON) is None
    assert core.pairing_code_for(SALON) == recorder.events[0].code  # type: ignore[union-attr]


async def test_qr_payloads_are_unique_and_shaped_like_whatsapps(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await open_link(core, nursery)
    await trio.sleep(1000)
    codes = [q.code for q in recorder.of(QrIssued)]
    assert len(set(codes)) == 6
    for code in codes:
        ref, *keys = code.split(",")
        assert ref.startswith("2@") and len(keys) == 3
        assert all(len(key) == 44 for key in keys)  # base64 of 32 bytes
        assert 200 <= len(code) <= 260


async def test_qr_batch_counts_in_stats_and_the_link_leaves_after_408(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    await open_link(core, nursery)
    assert core.stats()["live_sessions"] == 1
    await trio.sleep(1000)
    assert core.stats()["qr_issued_total"] == 6
    assert core.stats()["live_sessions"] == 0


async def test_qr_for_follows_the_rotation(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await open_link(core, nursery)
    assert core.qr_for(SALON) == recorder.of(QrIssued)[0].code
    await trio.sleep(61)
    assert core.qr_for(SALON) == recorder.of(QrIssued)[1].code
    assert core.qr_for(SALON + 1) is None


# -- scan and reconnect ------------------------------------------------------------------------


async def test_scan_pairs_then_ends_with_515(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await open_link(core, nursery)
    jid = core.scan(core.qr_for(SALON) or "", PHONE)
    pair, creds, end = recorder.events[-3:]
    assert pair == PairSuccess(jid)
    assert jid.startswith(f"{PHONE}:") and jid.endswith("@s.whatsapp.net")
    assert isinstance(creds, CredsUpdated)
    assert json.loads(creds.credentials)["device"] == jid.split("@")[0]
    assert end == Disconnected(RESTART_REQUIRED, "restart required")
    assert core.stats()["linked_devices"] == 1
    assert core.stats()["live_sessions"] == 0


async def test_reconnect_with_new_credentials_connects_with_device_suffix(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    _, recorder = await open_link(core, nursery, credentials)
    assert len(recorder.events) == 1
    jid = recorder.events[0].jid  # type: ignore[union-attr]
    user, device = jid.removesuffix("@s.whatsapp.net").split(":")
    assert user == PHONE and device.isdigit()
    await trio.sleep(3600)  # a logged-in connection has no QR timer: it stays up
    assert len(recorder.events) == 1
    assert core.stats()["live_sessions"] == 1


async def test_scan_of_a_superseded_qr_is_refused(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    await open_link(core, nursery)
    first = core.qr_for(SALON) or ""
    await trio.sleep(61)
    with pytest.raises(SimulatorLookupError):
        core.scan(first, PHONE)


async def test_scan_after_the_batch_ended_is_refused(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await open_link(core, nursery)
    await trio.sleep(1000)
    with pytest.raises(SimulatorLookupError):
        core.scan(recorder.of(QrIssued)[-1].code, PHONE)


async def test_scan_of_an_unknown_qr_is_refused(core: SimulatorCore) -> None:
    with pytest.raises(SimulatorLookupError):
        core.scan("2@nothing,a,b,c", PHONE)


async def test_scan_with_a_malformed_phone_is_refused(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    await open_link(core, nursery)
    with pytest.raises(SimulatorInputError):
        core.scan(core.qr_for(SALON) or "", "12ab")


async def test_scan_accepts_a_formatted_phone(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    await open_link(core, nursery)
    assert core.scan(core.qr_for(SALON) or "", "+7 900 123-45-67").startswith(PHONE + ":")


async def test_scan_reads_a_phone_as_the_product_does(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The product turns a Russian trunk "8 …" into "7 …" (session.normalise_phone); the simulated
    # phone must end up with the same number, or a pairing code asked for it would match nothing.
    await open_link(core, nursery)
    assert core.scan(core.qr_for(SALON) or "", "8 (900) 123-45-67").startswith(PHONE + ":")


async def test_unknown_credentials_get_401_at_once(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await open_link(core, nursery, b'{"device": "79001234567:9", "secret": "x"}')
    assert [type(e) for e in recorder.events] == [Disconnected]
    assert recorder.last.reason == LOGGED_OUT  # type: ignore[union-attr]


async def test_wait_qr_returns_once_a_salon_shows_one(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def open_later() -> None:
        await trio.sleep(5)
        await open_link(core, nursery)

    nursery.start_soon(open_later)
    qr = await core.wait_qr(SALON)
    assert trio.current_time() == pytest.approx(5)
    assert qr == core.qr_for(SALON)


# -- pairing code --------------------------------------------------------------------------------


async def test_pairing_code_is_eight_characters_from_whatsapps_alphabet(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, recorder = await open_link(core, nursery)
    await link.request_pairing_code(PHONE)
    issued = recorder.last
    assert isinstance(issued, PairingCodeIssued)
    assert issued.ttl_s == PAIRING_CODE_TTL_S
    first, dash, second = issued.code.partition("-")
    assert dash and len(first) == len(second) == 4
    assert set(first + second) <= set(PAIRING_CODE_ALPHABET)
    assert core.pairing_code_for(SALON) == issued.code


async def test_typing_the_pairing_code_pairs_that_phone(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, recorder = await open_link(core, nursery)
    await link.request_pairing_code(PHONE)
    jid = core.pair(recorder.last.code.lower())  # type: ignore[union-attr]
    assert jid.startswith(PHONE + ":")
    assert recorder.of(PairSuccess) == [PairSuccess(jid)]
    assert recorder.last.reason == RESTART_REQUIRED  # type: ignore[union-attr]


async def test_a_pairing_code_works_once(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, recorder = await open_link(core, nursery)
    await link.request_pairing_code(PHONE)
    code = recorder.last.code  # type: ignore[union-attr]
    core.pair(code)
    with pytest.raises(SimulatorLookupError):
        core.pair(code)


async def test_an_unused_pairing_code_expires_and_ends_the_attempt_with_408(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, recorder = await open_link(core, nursery)
    await trio.sleep(10)
    await link.request_pairing_code(PHONE)
    code = recorder.last.code  # type: ignore[union-attr]
    await trio.sleep(PAIRING_CODE_TTL_S + 1)  # past the deadline: the timer and the test wake in either order
    assert recorder.last == Disconnected(CONNECTION_LOST, "pairing code expired")
    assert recorder.times[-1] == pytest.approx(10 + PAIRING_CODE_TTL_S)
    assert len(recorder.of(QrIssued)) == 1  # QR rotation stops while a code is pending
    with pytest.raises(SimulatorLookupError):
        core.pair(code)


async def test_pairing_code_is_refused_on_a_logged_in_link(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, _ = await connected_link(core, nursery)
    with pytest.raises(TransportError):
        await link.request_pairing_code(PHONE)


async def test_pairing_code_for_a_malformed_phone_is_refused(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, _ = await open_link(core, nursery)
    with pytest.raises(TransportError):
        await link.request_pairing_code("123")


# -- 440: a second connection with the same credentials ----------------------------------------


async def test_second_connection_kicks_the_older_with_440(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    _, older = await open_link(core, nursery, credentials)
    _, newer = await open_link(core, nursery, credentials)
    assert older.last == Disconnected(CONNECTION_REPLACED, "connection replaced")
    assert isinstance(newer.last, Connected)
    stats = core.stats()
    assert (stats["replaced_total"], stats["max_live_per_device"], stats["live_sessions"]) == (1, 2, 1)


async def test_reconnecting_after_a_close_is_not_a_replacement(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    link, _ = await open_link(core, nursery, credentials)
    await link.aclose()
    await open_link(core, nursery, credentials)
    assert (core.stats()["replaced_total"], core.stats()["max_live_per_device"]) == (0, 1)


async def test_a_closed_link_delivers_nothing_more(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, recorder = await open_link(core, nursery)
    await link.aclose()
    await trio.sleep(1000)
    assert len(recorder.events) == 1
    assert core.stats()["live_sessions"] == 0


async def test_cancelling_the_links_nursery_drops_the_connection(
    core: SimulatorCore, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as own:
        await SimulatorTransport(core).open(own, LinkSpec(salon_id=SALON, deliver=Recorder()))
        assert core.stats()["live_sessions"] == 1
        own.cancel_scope.cancel()
    assert core.stats()["live_sessions"] == 0


# -- logout ---------------------------------------------------------------------------------------


async def test_phone_logout_ends_the_link_with_401_and_voids_credentials(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    _, recorder = await open_link(core, nursery, credentials)
    assert core.logout(PHONE) == 1
    assert recorder.last.reason == LOGGED_OUT  # type: ignore[union-attr]
    assert core.stats()["linked_devices"] == 0
    _, again = await open_link(core, nursery, credentials)
    assert [e.reason for e in again.of(Disconnected)] == [LOGGED_OUT]
    assert again.of(Connected) == []


async def test_phone_logout_without_a_linked_device_is_unknown(core: SimulatorCore) -> None:
    with pytest.raises(SimulatorLookupError):
        core.logout(PHONE)


async def test_server_logout_unlinks_without_delivering(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    link, recorder = await open_link(core, nursery, credentials)
    await link.logout()
    assert isinstance(recorder.last, Connected)
    assert core.stats()["linked_devices"] == 0
    assert core.stats()["live_sessions"] == 0
    _, again = await open_link(core, nursery, credentials)
    assert again.last.reason == LOGGED_OUT  # type: ignore[union-attr]


async def test_graceful_close_leaves_the_device_linked(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, _ = await connected_link(core, nursery)
    await link.aclose()
    assert core.stats()["linked_devices"] == 1


# -- drop, stall, ban, outdated ------------------------------------------------------------------


async def test_drop_ends_the_link_with_a_network_error(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await connected_link(core, nursery)
    assert core.drop(PHONE) == 1
    assert recorder.last.reason == NETWORK_ERROR  # type: ignore[union-attr]
    assert core.stats()["linked_devices"] == 1


async def test_drop_without_a_live_session_is_unknown(core: SimulatorCore) -> None:
    with pytest.raises(SimulatorLookupError):
        core.drop(PHONE)


async def test_stall_reports_keepalive_timeout_and_holds_messages_until_resumed(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, recorder = await connected_link(core, nursery)
    core.stall(PHONE)
    core.inbound(PHONE, PEER, "hello")
    assert isinstance(recorder.last, KeepaliveTimeout)
    with pytest.raises(TransportError):
        await link.send_message(PEER, "are you there?")
    core.stall(PHONE, stalled=False)
    assert [type(e) for e in recorder.events[-2:]] == [KeepaliveRestored, MessageReceived]


async def test_ban_ends_the_link_with_402_and_refuses_until_it_expires(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    _, recorder = await open_link(core, nursery, credentials)
    expires_at = core.ban(PHONE, 300)
    assert recorder.last == Disconnected(TEMPORARILY_BANNED, "temporarily banned", ban_expires_at=expires_at)
    _, during = await open_link(core, nursery, credentials)
    assert during.last.reason == TEMPORARILY_BANNED  # type: ignore[union-attr]
    await trio.sleep(300)
    _, after = await open_link(core, nursery, credentials)
    assert isinstance(after.last, Connected)


async def test_outdated_client_is_refused_with_405(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    core.outdate()
    _, recorder = await open_link(core, nursery)
    assert [e.reason for e in recorder.of(Disconnected)] == [CLIENT_OUTDATED]
    assert recorder.of(QrIssued) == []


# -- outage ---------------------------------------------------------------------------------------


async def test_outage_drops_every_live_connection_and_fails_every_new_one_until_it_ends(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    _, linked = await open_link(core, nursery, credentials)
    _, linking = await open_link(core, nursery)  # a QR link is cut too
    before = core.stats()["connections_total"]
    assert core.outage(1800) == 2
    assert linked.last == Disconnected(NETWORK_ERROR, "WhatsApp is unreachable (outage)")
    assert linking.last.reason == NETWORK_ERROR  # type: ignore[union-attr]
    assert core.stats()["live_sessions"] == 0 and core.stats()["linked_devices"] == 1  # devices stay linked
    await trio.sleep(1799)
    assert core.unreachable and core.outage_remaining() == pytest.approx(1.0)
    _, during = await open_link(core, nursery, credentials)
    assert [e.reason for e in during.of(Disconnected)] == [NETWORK_ERROR] and not during.of(Connected)
    assert core.stats()["connections_total"] == before + 1  # a refused dial still counts as an attempt
    await trio.sleep(1)
    assert not core.unreachable and core.outage_remaining() == 0.0
    _, after = await open_link(core, nursery, credentials)
    assert isinstance(after.last, Connected)


async def test_outage_of_zero_seconds_ends_it_early(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    core.outage(600)
    assert core.outage(0) == 0 and not core.unreachable
    _, recorder = await open_link(core, nursery, credentials)
    assert isinstance(recorder.last, Connected)


@pytest.mark.parametrize("seconds", [-1, 1e10, float("nan"), float("inf"), True, "60", None])
def test_outage_refuses_a_bad_duration(core: SimulatorCore, seconds: Any) -> None:
    with pytest.raises(SimulatorInputError) as refused:
        core.outage(seconds)
    assert refused.value.code == "invalid_seconds"
    assert not core.unreachable


# -- messages -------------------------------------------------------------------------------------


async def test_inbound_reaches_the_live_link(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await connected_link(core, nursery)
    await trio.sleep(7)
    wa_id = core.inbound(PHONE, PEER, "hello", "ABC1")
    assert wa_id == "ABC1"
    assert recorder.last == MessageReceived("ABC1", PEER, "hello", trio.current_time())


async def test_acknowledging_an_inbound_message_costs_no_task_switch(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The actor acknowledges every inbound message; with nothing to send that is no scheduler pass
    # (docs/capacity.md#inbound-messages).
    link, _ = await connected_link(core, nursery)
    wa_id = core.inbound(PHONE, PEER, "hello")
    others_ran = False

    async def other() -> None:
        nonlocal others_ran
        others_ran = True

    nursery.start_soon(other)
    await link.received(wa_id)
    assert not others_ran


async def test_inbound_while_offline_is_delivered_after_connected(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    first = core.inbound(PHONE, PEER, "one")
    second = core.inbound(PHONE, PEER, "two")
    _, recorder = await open_link(core, nursery, credentials)
    assert [type(e) for e in recorder.events] == [Connected, MessageReceived, MessageReceived]
    assert [e.wa_id for e in recorder.of(MessageReceived)] == [first, second]


async def test_queued_messages_are_delivered_once(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    credentials = await paired_credentials(core, nursery)
    core.inbound(PHONE, PEER, "one")
    link, _ = await open_link(core, nursery, credentials)
    await link.aclose()
    _, recorder = await open_link(core, nursery, credentials)
    assert recorder.of(MessageReceived) == []


async def test_the_same_id_again_is_redelivered_and_counted(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, recorder = await connected_link(core, nursery)
    core.inbound(PHONE, PEER, "hello", "DUP1")
    core.inbound(PHONE, PEER, "hello", "DUP1")
    assert [e.wa_id for e in recorder.of(MessageReceived)] == ["DUP1", "DUP1"]
    assert core.stats()["messages_in_total"] == 2


async def test_inbound_to_a_phone_without_linked_device_is_unknown(core: SimulatorCore) -> None:
    with pytest.raises(SimulatorLookupError):
        core.inbound(PHONE, PEER, "hello")


async def test_send_message_returns_an_id_logs_and_counts(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, _ = await connected_link(core, nursery)
    first = await link.send_message(PEER, "hi")
    second = await link.send_message(PEER, "there")
    assert first != second
    assert [(m.wa_id, m.to, m.text, m.salon_id) for m in core.sent_messages(PHONE)] == [
        (first, PEER, "hi", SALON),
        (second, PEER, "there", SALON),
    ]
    assert core.sent_messages(PEER) == []
    assert core.stats()["messages_out_total"] == 2


async def test_send_message_on_a_link_showing_qrs_fails(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link, _ = await open_link(core, nursery)
    with pytest.raises(TransportError):
        await link.send_message(PEER, "hi")
    assert core.stats()["messages_out_total"] == 0


# -- stats semantics -----------------------------------------------------------------------------


async def test_live_sessions_counts_qr_and_logged_in_connections(
    core: SimulatorCore, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    await connected_link(core, nursery)
    await open_link(core, nursery, salon_id=SALON + 1)
    assert core.stats()["live_sessions"] == 2


async def test_stats_start_at_zero(core: SimulatorCore) -> None:
    assert core.stats() == dict.fromkeys(
        (
            "live_sessions",
            "linked_devices",
            "replaced_total",
            "max_live_per_device",
            "qr_issued_total",
            "messages_in_total",
            "messages_out_total",
            "connections_total",
        ),
        0,
    )
