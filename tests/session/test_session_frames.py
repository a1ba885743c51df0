"""The websocket frames as they go on the wire: the builders' key order is the encoded text's."""

from __future__ import annotations

import json
import typing

from actor_admin.session import (
    CurrentQr,
    Frame,
    SessionState,
    error_frame,
    pairing_code_frame,
    pong_frame,
    snapshot_frames,
    state_frame,
)
from actor_admin.session._frames import QrFrame, connected_frame, qr_frame


def wire(frame: Frame) -> str:
    """As the websocket sends it (``FrameEncoder``)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def test_state_frame_names_the_phone_only_once_known() -> None:
    assert wire(state_frame("qr")) == '{"type":"state","state":"qr"}'
    assert wire(state_frame("connected", "79001234567")) == (
        '{"type":"state","state":"connected","phone":"79001234567"}'
    )


def test_qr_frame_counts_whole_seconds_up_and_carries_no_svg() -> None:
    frame = qr_frame(CurrentQr("2@abc", 3, expires_at=120.2), now=100.0)
    assert wire(frame) == '{"type":"qr","qr":"2@abc","expires_in":21,"seq":3}'


def test_a_qr_frame_has_no_room_for_a_drawing() -> None:
    # The page draws the code from the raw payload (docs/architecture.md#qr-rendering); a frame that
    # carried a rendering again would be refused between nodes (actors/_wire.py checks these keys).
    assert list(typing.get_type_hints(QrFrame)) == ["type", "qr", "expires_in", "seq"]


def test_the_other_server_frames() -> None:
    assert wire(pairing_code_frame("ABCD-EFGH", 59)) == '{"type":"pairing_code","code":"ABCD-EFGH","expires_in":59}'
    assert wire(connected_frame("79001234567")) == '{"type":"connected","phone":"79001234567"}'
    assert wire(error_frame("busy", "later")) == '{"type":"error","code":"busy","message":"later"}'
    assert wire(pong_frame()) == '{"type":"pong"}'


def test_a_withdrawn_salon_is_shown_its_state_and_why() -> None:
    state = SessionState(name="frozen", reason="frozen")
    assert [wire(f) for f in snapshot_frames(state, 0.0)] == [
        '{"type":"state","state":"frozen"}',
        '{"type":"error","code":"frozen","message":"The integration is paused in YClients."}',
    ]
