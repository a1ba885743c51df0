"""Commands: linking by QR and by code, sends, and the lifecycle (stop, logout, freeze, uninstall)."""

from __future__ import annotations

import pytest

from actor_admin.session import (
    CONNECTION_LOST,
    NETWORK_ERROR,
    TIMER_CONNECT_DEADLINE,
    TIMER_PAIRING_EXPIRY,
    TIMER_PAIRING_REQUEST,
    Accepted,
    AskPairingCode,
    CancelTimer,
    Connect,
    Connected,
    CredsUpdated,
    DeleteCredentials,
    Disconnect,
    Disconnected,
    Freeze,
    Logout,
    LogoutDevice,
    MessageReceived,
    MessageSent,
    PairingCode,
    PairingCodeFailed,
    PairingCodeIssued,
    PairSuccess,
    PersistUnlinked,
    Publish,
    QrIssued,
    RecordSendOutcome,
    Reply,
    RequestPairingCode,
    RequestQr,
    Send,
    SendMessage,
    Start,
    Status,
    Stop,
    StoreMessage,
    Timer,
    Uninstall,
    snapshot_frames,
)

from ._session_driver import JID, PHONE, Driver, connected, frames, linked_and_idle, of_type, refusals, showing_qr

# --- QR ------------------------------------------------------------------------------------------


def test_first_viewer_starts_a_qr_batch() -> None:
    d = Driver()
    effects = d(RequestQr(request_id=9))
    assert of_type(effects, Connect) == [Connect(with_credentials=False)]
    assert of_type(effects, Reply) == [Reply(9, Status("starting"))]


def test_the_viewer_is_answered_before_the_link_is_opened() -> None:
    # The page waits for no dial; with a thousand salons at once on one loop, the askers' wake-ups
    # stay out of the first QR's path (docs/architecture.md#qr-latency).
    effects = Driver()(RequestQr(request_id=9))
    kinds = [type(effect) for effect in effects]
    assert kinds.index(Reply) < kinds.index(Connect)


def test_qr_is_published_and_answered_to_pollers() -> None:
    d = Driver()
    d(RequestQr())
    effects = d(QrIssued("qr-raw", 60.0, 1), after=1)
    assert {"type": "qr", "qr": "qr-raw", "expires_in": 60, "seq": 1} in frames(effects)
    effects = d(RequestQr(request_id=2), after=15)
    assert of_type(effects, Reply) == [Reply(2, Status("qr", qr="qr-raw", qr_seq=1, expires_in=45))]
    assert not of_type(effects, Connect)


def test_qr_batch_end_goes_idle_with_qr_expired() -> None:
    d = showing_qr()
    effects = d(Disconnected(CONNECTION_LOST), after=160)
    assert (d.name, d.state.reason) == ("idle", "qr_expired")
    assert [f["code"] for f in frames(effects) if f["type"] == "error"] == ["qr_expired"]
    assert not of_type(effects, Connect)


def test_no_new_qr_batch_until_a_viewer_asks() -> None:
    d = showing_qr()
    d(Disconnected(CONNECTION_LOST), after=160)
    assert d.state.timers == {}
    effects = d(RequestQr(), after=600)
    assert of_type(effects, Connect) == [Connect(with_credentials=False)]


def test_qr_link_that_never_ends_is_closed_by_the_guard() -> None:
    d = showing_qr()
    effects = d.fire(TIMER_CONNECT_DEADLINE)
    assert isinstance(effects[0], Disconnect)
    assert (d.name, d.state.reason) == ("idle", "qr_expired")


def test_late_joiner_gets_the_state_and_the_current_qr() -> None:
    d = showing_qr()
    assert snapshot_frames(d.state, d.now + 20) == [
        {"type": "state", "state": "qr"},
        {"type": "qr", "qr": "qr-1", "expires_in": 40, "seq": 1},
    ]


def test_late_joiner_after_qr_expiry_is_told_why() -> None:
    d = showing_qr()
    d(Disconnected(CONNECTION_LOST), after=160)
    (state, error) = snapshot_frames(d.state, d.now)
    assert state == {"type": "state", "state": "idle"}
    assert error["type"] == "error" and error["code"] == "qr_expired"


def test_late_joiner_of_a_connected_session_sees_the_phone() -> None:
    assert snapshot_frames(connected().state, 0.0) == [{"type": "state", "state": "connected", "phone": PHONE}]


def test_start_with_credentials_reconnects_without_a_qr() -> None:
    d = linked_and_idle()
    effects = d(Start(request_id=1))
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]
    assert d.name == "connecting"


def test_start_without_credentials_waits_for_a_viewer() -> None:
    d = Driver()
    effects = d(Start(request_id=1))
    assert not of_type(effects, Connect)
    assert of_type(effects, Reply) == [Reply(1, Accepted("idle"))]


# --- pairing codes ----------------------------------------------------------------------------


def test_pairing_code_request_is_answered_when_the_code_arrives() -> None:
    d = Driver()
    effects = d(RequestPairingCode("8 (900) 123-45-67", request_id=5))
    assert of_type(effects, Connect) == [Connect(with_credentials=False)]
    assert of_type(effects, AskPairingCode) == [AskPairingCode(PHONE)]
    assert not of_type(effects, Reply)
    effects = d(PairingCodeIssued("ABCD-EFGH", 60.0), after=2)
    assert of_type(effects, Reply) == [Reply(5, PairingCode("ABCD-EFGH", 60))]
    assert {"type": "pairing_code", "code": "ABCD-EFGH", "expires_in": 60} in frames(effects)
    assert d.name == "pairing_code"


def test_pairing_on_an_open_qr_link_reuses_it() -> None:
    d = showing_qr()
    effects = d(RequestPairingCode(PHONE, request_id=1))
    assert not of_type(effects, Connect)
    assert of_type(effects, AskPairingCode) == [AskPairingCode(PHONE)]


def test_second_request_for_the_same_phone_joins_the_first() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    assert d(RequestPairingCode("+" + PHONE, request_id=2)) == []
    effects = d(PairingCodeIssued("ABCD-EFGH", 60.0))
    assert [r.request_id for r in of_type(effects, Reply)] == [1, 2]


def test_pairing_for_another_phone_is_refused_while_one_runs() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    assert refusals(d(RequestPairingCode("79990001122", request_id=2))) == ["pairing_in_progress"]


def test_displayed_code_is_given_to_a_repeat_request() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    d(PairingCodeIssued("ABCD-EFGH", 60.0))
    effects = d(RequestPairingCode(PHONE, request_id=3), after=10)
    assert of_type(effects, Reply) == [Reply(3, PairingCode("ABCD-EFGH", 50))]
    assert not of_type(effects, AskPairingCode)


@pytest.mark.parametrize("phone", ["12345", "+1 23", "", "1234567890123456"])
def test_invalid_phone_is_refused(phone: str) -> None:
    assert refusals(Driver()(RequestPairingCode(phone, request_id=1))) == ["invalid_phone"]


def test_pairing_failure_refuses_the_waiters_and_tells_viewers() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    effects = d(PairingCodeFailed("rate limited"))
    assert refusals(effects) == ["pairing_failed"]
    assert [f["code"] for f in frames(effects) if f["type"] == "error"] == ["pairing_failed"]
    assert d.state.pairing is None and d.name == "qr"


def test_pairing_code_that_never_comes_times_out() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    assert refusals(d.fire(TIMER_PAIRING_REQUEST)) == ["pairing_failed"]


def test_expired_pairing_code_falls_back_to_the_current_qr() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    d(PairingCodeIssued("ABCD-EFGH", 20.0))
    d(QrIssued("qr-2", 60.0, 2), after=5)
    effects = d.fire(TIMER_PAIRING_EXPIRY)
    assert d.name == "qr"
    assert {"type": "qr", "qr": "qr-2", "expires_in": 45, "seq": 2} in frames(effects)


def test_qrs_arriving_while_a_code_is_shown_are_not_published() -> None:
    d = showing_qr()
    d(RequestPairingCode(PHONE, request_id=1))
    d(PairingCodeIssued("ABCD-EFGH", 60.0))
    assert d(QrIssued("qr-2", 20.0, 2), after=5) == []
    assert d.name == "pairing_code"


def test_linked_device_refuses_pairing() -> None:
    assert refusals(connected()(RequestPairingCode(PHONE, request_id=1))) == ["already_linked"]


# --- sending -------------------------------------------------------------------------------------


def test_send_when_connected_hands_the_message_to_the_link() -> None:
    d = connected()
    effects = d(Send("+7 900 765-43-21", "hello", "key-1", request_id=4))
    assert of_type(effects, SendMessage) == [SendMessage("79007654321", "hello", "key-1")]
    assert of_type(effects, Reply) == [Reply(4, Accepted("connected"))]


@pytest.mark.parametrize("make", [Driver, showing_qr, linked_and_idle])
def test_send_without_a_connection_is_refused(make: type[Driver]) -> None:
    assert refusals(make()(Send(PHONE, "hello", "key-1", request_id=4))) == ["not_connected"]


def test_send_outcome_is_recorded() -> None:
    effects = connected()(MessageSent("key-1", "wa-9"))
    assert effects == [RecordSendOutcome(MessageSent("key-1", "wa-9"))]


def test_inbound_messages_are_stored() -> None:
    effects = connected()(MessageReceived("wa-1", "79990001122", "hi", 12.5))
    assert effects == [StoreMessage(MessageReceived("wa-1", "79990001122", "hi", 12.5))]


# --- lifecycle ---------------------------------------------------------------------------------


def test_stop_closes_the_link_without_logging_out() -> None:
    d = connected()
    effects = d(Stop(request_id=1))
    assert of_type(effects, Disconnect) == [Disconnect()]
    assert not of_type(effects, LogoutDevice) and not of_type(effects, DeleteCredentials)
    assert d.state.has_credentials and d.name == "idle"


def test_stop_cancels_every_timer() -> None:
    d = connected()
    d(Disconnected(NETWORK_ERROR))
    effects = d(Stop())
    assert of_type(effects, CancelTimer) and d.state.timers == {}


def test_late_events_of_a_stopped_link_are_ignored() -> None:
    d = connected()
    d(Stop())
    assert d(Disconnected(CONNECTION_LOST)) == []
    assert d(Connected(JID)) == []
    assert d(Timer(TIMER_CONNECT_DEADLINE), after=1000) == []


def test_logout_unlinks_the_device_and_forgets_it() -> None:
    d = connected()
    effects = d(Logout(request_id=1))
    assert of_type(effects, LogoutDevice) == [LogoutDevice()]
    assert of_type(effects, DeleteCredentials) == [DeleteCredentials()]
    assert of_type(effects, PersistUnlinked) == [PersistUnlinked("logout")]
    assert d.name == "logged_out" and not d.state.has_credentials


def test_freeze_disconnects_and_keeps_credentials() -> None:
    d = connected()
    effects = d(Freeze(request_id=1))
    assert of_type(effects, Disconnect) == [Disconnect()]
    assert not of_type(effects, LogoutDevice) and not of_type(effects, DeleteCredentials)
    assert d.name == "frozen" and d.state.has_credentials


def test_uninstall_disconnects_and_deletes_credentials() -> None:
    d = connected()
    effects = d(Uninstall(request_id=1))
    assert of_type(effects, Disconnect) == [Disconnect()]
    assert of_type(effects, DeleteCredentials) == [DeleteCredentials()]
    assert of_type(effects, PersistUnlinked) == [PersistUnlinked("uninstalled")]
    assert d.name == "uninstalled" and not d.state.has_credentials


@pytest.mark.parametrize("lifecycle", [Freeze(), Uninstall()])
@pytest.mark.parametrize(
    "command",
    [RequestQr(request_id=1), RequestPairingCode(PHONE, request_id=1), Send(PHONE, "x", "k", request_id=1)],
)
def test_frozen_and_uninstalled_refuse_work(lifecycle: Freeze | Uninstall, command: object) -> None:
    d = connected()
    d(lifecycle)
    effects = d(command)  # type: ignore[arg-type]
    assert refusals(effects) == [d.name]
    assert not of_type(effects, Connect)


def test_start_after_freeze_reconnects_with_the_kept_credentials() -> None:
    d = connected()
    d(Freeze())
    effects = d(Start(request_id=1), after=3600)
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]


def test_start_after_uninstall_waits_for_a_new_link() -> None:
    d = connected()
    d(Uninstall())
    effects = d(Start(request_id=1))
    assert d.name == "idle" and not of_type(effects, Connect)


def test_repeated_uninstall_is_idempotent() -> None:
    d = connected()
    d(Uninstall())
    assert of_type(d(Uninstall(request_id=2)), Reply) == [Reply(2, Accepted("uninstalled"))]
    assert d.name == "uninstalled"


def test_state_changes_are_published_to_viewers() -> None:
    d = linked_and_idle()
    effects = d(Start())
    assert Publish({"type": "state", "state": "connecting", "phone": PHONE}) in effects


def test_credentials_from_a_closed_link_are_not_stored() -> None:
    d = connected()
    d(Logout())
    assert d(CredsUpdated(b"late")) == []
    assert not d.state.has_credentials


def test_link_lost_before_credentials_arrive_waits_for_a_viewer() -> None:
    d = showing_qr()
    d(PairSuccess(JID), after=5)
    effects = d(Disconnected(NETWORK_ERROR), after=1)
    assert (d.name, d.state.reason) == ("idle", "connection_lost")
    assert not of_type(effects, Connect) and d.state.timers == {}


def test_viewer_asking_for_a_qr_while_a_linked_device_reconnects_gets_the_status() -> None:
    d = connected()
    d(Disconnected(NETWORK_ERROR))
    effects = d(RequestQr(request_id=2), after=1)
    assert of_type(effects, Reply) == [Reply(2, Status("reconnecting", phone=PHONE))]
    assert not of_type(effects, Connect)
