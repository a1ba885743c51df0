"""An unlinking answer deletes credentials only when it comes from the transport that made them
(docs/data.md#credential-origin): a simulator answers 401 to real credentials, and a node started
with the wrong transport must not unlink every salon."""

from __future__ import annotations

import pytest

from actor_admin.session import (
    FORBIDDEN,
    LOGGED_OUT,
    Alert,
    ConfirmCredentials,
    Connect,
    Connected,
    CredsUpdated,
    DeleteCredentials,
    Disconnected,
    LogEvent,
    PairSuccess,
    PersistUnlinked,
    RequestQr,
    SetTimer,
    Start,
)

from ._session_driver import JID, PHONE, frames, linked_and_idle, linked_elsewhere_and_idle, of_type, showing_qr


@pytest.mark.parametrize("reason", [LOGGED_OUT, FORBIDDEN])
def test_an_unlinking_answer_about_credentials_another_transport_made_deletes_nothing(reason: int) -> None:
    d = linked_elsewhere_and_idle()
    d(Start())
    effects = d(Disconnected(reason, "credentials unknown"), after=1)
    assert not of_type(effects, DeleteCredentials)
    assert not of_type(effects, PersistUnlinked)
    assert d.name == "failed" and d.state.reason == "transport_mismatch"


def test_kept_credentials_stop_the_session_without_a_reconnect_loop() -> None:
    d = linked_elsewhere_and_idle()
    d(Start())
    effects = d(Disconnected(LOGGED_OUT), after=1)
    assert not of_type(effects, Connect) and not of_type(effects, SetTimer)
    assert d.state.timers == {}


def test_kept_credentials_are_explained_to_viewers_the_event_log_and_operators() -> None:
    d = linked_elsewhere_and_idle()
    d(Start())
    effects = d(Disconnected(LOGGED_OUT, "credentials unknown"), after=1)
    errors = [f for f in frames(effects) if f["type"] == "error"]
    assert [e["code"] for e in errors] == ["transport_mismatch"]
    assert "kept" in errors[0]["message"]
    events = of_type(effects, LogEvent)
    assert [e.type for e in events] == ["credentials_kept"]
    assert events[0].data["reason"] == "logged_out"
    assert [a.code for a in of_type(effects, Alert)] == ["transport_mismatch"]


def test_after_kept_credentials_a_person_may_still_link_anew() -> None:
    d = linked_elsewhere_and_idle()
    d(Start())
    d(Disconnected(LOGGED_OUT), after=1)
    effects = d(RequestQr(), after=5)
    assert of_type(effects, Connect) == [Connect(with_credentials=False)]
    assert d.name == "starting"


def test_credentials_of_unknown_origin_that_connect_are_confirmed_and_then_believed() -> None:
    d = linked_elsewhere_and_idle()
    d(Start())
    effects = d(Connected(JID), after=1)
    assert of_type(effects, ConfirmCredentials) == [ConfirmCredentials(PHONE)]
    effects = d(Disconnected(LOGGED_OUT), after=600)
    assert of_type(effects, DeleteCredentials) == [DeleteCredentials()]
    assert d.name == "logged_out"


def test_credentials_this_transport_made_are_not_confirmed_again() -> None:
    d = linked_and_idle()
    d(Start())
    effects = d(Connected(JID), after=1)
    assert not of_type(effects, ConfirmCredentials)


def test_credentials_from_a_scan_are_this_transports() -> None:
    d = showing_qr()
    d(PairSuccess(JID), after=10)
    d(CredsUpdated(b"device-keys"))
    assert d.state.credentials_confirmed
