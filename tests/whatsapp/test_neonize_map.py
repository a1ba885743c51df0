"""neonize's own protobuf events, built directly, mapped to our transport events."""

from __future__ import annotations

from typing import Any

import pytest

from actor_admin.session import (
    BANNED,
    CLIENT_OUTDATED,
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    FORBIDDEN,
    LOGGED_OUT,
    NETWORK_ERROR,
    TEMPORARILY_BANNED,
    UNAVAILABLE_SERVICE,
    Connected,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
    PairSuccess,
    QrIssued,
)
from actor_admin.whatsapp._neonize_map import (
    format_pairing_code,
    is_terminal,
    map_event,
    map_login_status,
    needs_lid_lookup,
    qr_issued,
)

ev = pytest.importorskip("neonize.events", reason="neonize (the optional 'whatsapp' extra) is not installed")
pb = pytest.importorskip("neonize.proto.Neonize_pb2")
e2e = pytest.importorskip("neonize.proto.waE2E.WAWebProtobufsE2E_pb2")

NOW = 1000.0


def jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> Any:
    return pb.JID(User=user, Server=server, Device=device)


def inbound(
    text: str = "hello",
    *,
    chat: object | None = None,
    sender_alt: object | None = None,
    from_me: bool = False,
    group: bool = False,
    msg_id: str = "3EB0C0FFEE",
) -> Any:
    source = pb.MessageSource(
        Chat=chat if chat is not None else jid("79001112233"),
        Sender=chat if chat is not None else jid("79001112233"),
        IsFromMe=from_me,
        IsGroup=group,
    )
    if sender_alt is not None:
        source.SenderAlt.CopyFrom(sender_alt)
    return ev.MessageEv(
        Info=pb.MessageInfo(ID=msg_id, MessageSource=source, Timestamp=1_700_000_000),
        Message=e2e.Message(conversation=text),
    )


def test_pair_success_carries_the_new_device_jid() -> None:
    event = ev.PairStatusEv(ID=jid("79001234567", device=12), Status=pb.PairStatus.SUCCESS)
    assert map_event(event, NOW) == PairSuccess(jid="79001234567:12@s.whatsapp.net")


def test_pair_error_is_not_a_connection_event() -> None:
    assert map_event(ev.PairStatusEv(Status=pb.PairStatus.ERROR, Error="bad"), NOW) is None


def test_connected_reports_the_jid_the_link_read_from_the_client() -> None:
    mapped = map_event(ev.ConnectedEv(status=True), NOW, own_jid="79001234567:12@s.whatsapp.net")
    assert mapped == Connected(jid="79001234567:12@s.whatsapp.net")


def test_keepalive_timeout_and_restore() -> None:
    assert map_event(ev.KeepAliveTimeoutEv(ErrorCount=2, LastSuccess=5), NOW) == KeepaliveTimeout()
    assert map_event(ev.KeepAliveRestoredEv(), NOW) == KeepaliveRestored()


def test_logged_out_without_a_reason_is_401() -> None:
    mapped = map_event(ev.LoggedOutEv(OnConnect=False), NOW)
    assert isinstance(mapped, Disconnected) and mapped.reason == LOGGED_OUT


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (pb.LOGGED_OUT, LOGGED_OUT),
        (pb.MAIN_DEVICE_GONE, FORBIDDEN),
        (pb.UNKNOWN_LOGOUT, BANNED),
    ],
)
def test_logged_out_carries_the_reason_in_the_event(reason: int, code: int) -> None:
    mapped = map_event(ev.LoggedOutEv(OnConnect=True, Reason=reason), NOW)
    assert isinstance(mapped, Disconnected) and mapped.reason == code


def test_stream_replaced_is_440() -> None:
    mapped = map_event(ev.StreamReplacedEv(), NOW)
    assert isinstance(mapped, Disconnected) and mapped.reason == CONNECTION_REPLACED


def test_temporary_ban_is_402_with_its_expiry_on_the_callers_clock() -> None:
    event = ev.TemporaryBanEv(Code=pb.TemporaryBan.BLOCKED_BY_USERS, Expire=3600)
    mapped = map_event(event, NOW)
    assert isinstance(mapped, Disconnected)
    assert (mapped.reason, mapped.ban_expires_at) == (TEMPORARILY_BANNED, NOW + 3600)


def test_client_outdated_is_405() -> None:
    mapped = map_event(ev.ClientOutdatedEv(), NOW)
    assert isinstance(mapped, Disconnected) and mapped.reason == CLIENT_OUTDATED


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (pb.GENERIC, 400),
        (pb.LOGGED_OUT, LOGGED_OUT),
        (pb.TEMP_BANNED, TEMPORARILY_BANNED),
        (pb.CLIENT_OUTDATED, CLIENT_OUTDATED),
        (pb.BAD_USER_AGENT, 409),
        (pb.SERVICE_UNAVAILABLE, UNAVAILABLE_SERVICE),
    ],
)
def test_connect_failure_maps_neonizes_enum_back_to_whatsapps_code(reason: int, code: int) -> None:
    mapped = map_event(ev.ConnectFailureEv(Reason=reason, Message="nope"), NOW)
    assert isinstance(mapped, Disconnected)
    assert (mapped.reason, mapped.detail) == (code, "nope")


def test_disconnected_is_a_network_error() -> None:
    mapped = map_event(ev.DisconnectedEv(status=True), NOW)
    assert isinstance(mapped, Disconnected) and mapped.reason == NETWORK_ERROR


def test_a_plain_text_message_is_received_from_the_chats_phone_number() -> None:
    mapped = map_event(inbound("Запишите меня на стрижку"), NOW)
    assert mapped == MessageReceived(wa_id="3EB0C0FFEE", peer="79001112233", text="Запишите меня на стрижку", at=NOW)


def test_an_extended_text_message_gives_its_text() -> None:
    message = inbound()
    message.Message.Clear()
    message.Message.extendedTextMessage.text = "see https://example.com"
    mapped = map_event(message, NOW)
    assert isinstance(mapped, MessageReceived) and mapped.text == "see https://example.com"


def test_a_lid_addressed_chat_uses_the_phone_number_in_sender_alt() -> None:
    mapped = map_event(inbound(chat=jid("1234567890123", "lid"), sender_alt=jid("79005556677")), NOW)
    assert isinstance(mapped, MessageReceived) and mapped.peer == "79005556677"
    assert mapped.peer_lid == "1234567890123@lid"


def test_a_lid_only_message_is_kept_with_its_lid_and_no_phone_number() -> None:
    mapped = map_event(inbound("Можно на завтра?", chat=jid("1234567890123", "lid")), NOW)
    assert mapped == MessageReceived(
        wa_id="3EB0C0FFEE", peer="", text="Можно на завтра?", at=NOW, peer_lid="1234567890123@lid"
    )


def test_a_lid_only_message_takes_the_phone_number_the_lid_map_gives() -> None:
    mapped = map_event(inbound(chat=jid("1234567890123", "lid")), NOW, lid_phone="79005556677")
    assert isinstance(mapped, MessageReceived)
    assert (mapped.peer, mapped.peer_lid) == ("79005556677", "1234567890123@lid")


def test_only_a_lid_only_inbound_message_asks_for_a_lid_lookup() -> None:
    lid_chat = jid("1234567890123", "lid")
    assert needs_lid_lookup(inbound(chat=lid_chat)) == "1234567890123@lid"
    assert needs_lid_lookup(inbound(chat=lid_chat, sender_alt=jid("79005556677"))) is None
    assert needs_lid_lookup(inbound(chat=lid_chat, from_me=True)) is None
    assert needs_lid_lookup(inbound()) is None
    assert needs_lid_lookup(ev.ConnectedEv()) is None


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(lambda: inbound(from_me=True), id="own echo"),
        pytest.param(lambda: inbound(group=True, chat=jid("120363000000", "g.us")), id="group"),
        pytest.param(lambda: inbound(chat=jid("status", "broadcast")), id="status broadcast"),
    ],
)
def test_messages_that_are_not_a_clients_one_to_one_text_are_skipped(message: object) -> None:
    assert map_event(message(), NOW) is None  # type: ignore[operator]


def test_events_we_do_not_report_map_to_none() -> None:
    assert map_event(ev.ReceiptEv(), NOW) is None


def test_exactly_the_connection_ending_events_are_terminal() -> None:
    terminal = [ev.LoggedOutEv(), ev.StreamReplacedEv(), ev.TemporaryBanEv(), ev.ConnectFailureEv()]
    terminal += [ev.ClientOutdatedEv(), ev.DisconnectedEv()]
    other = [ev.ConnectedEv(), ev.KeepAliveTimeoutEv(), ev.MessageEv(), ev.PairStatusEv()]
    assert all(is_terminal(e) for e in terminal)
    assert not any(is_terminal(e) for e in other)


def test_qr_codes_live_60_s_first_then_20_s() -> None:
    assert [qr_issued("c", seq).ttl_s for seq in range(1, 7)] == [60.0, 20.0, 20.0, 20.0, 20.0, 20.0]
    assert qr_issued("2@abc", 3) == QrIssued(code="2@abc", ttl_s=20.0, seq=3)


def test_the_qr_batch_running_out_ends_the_link_with_408() -> None:
    end = map_login_status("timeout")
    assert isinstance(end, Disconnected) and end.reason == CONNECTION_LOST


def test_a_successful_scan_does_not_end_the_link() -> None:
    assert map_login_status("success") is None


def test_pairing_codes_are_shown_as_two_groups_of_four() -> None:
    assert format_pairing_code("abcdefgh") == "ABCD-EFGH"
    assert format_pairing_code("ABCD-EFGH") == "ABCD-EFGH"
