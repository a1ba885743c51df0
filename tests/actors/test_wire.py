"""The router's wire codec: every call and reply round-trips exactly through JSON text, and
anything else — unknown tags, missing or extra fields, wrong types, garbage — is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actor_admin.actors import _wire as wire
from actor_admin.actors._company import GetSnapshot
from actor_admin.session import (
    STATES,
    Accepted,
    Freeze,
    Logout,
    PairingCode,
    Refused,
    RequestPairingCode,
    RequestQr,
    Send,
    Start,
    Status,
    Stop,
    Uninstall,
)

text = st.text(max_size=40)
request_ids = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
salon_ids = st.integers(min_value=1, max_value=2**63 - 1)
waits = st.floats(min_value=0.001, max_value=wire.MAX_WAIT_S, allow_nan=False)
states = st.sampled_from(STATES)

commands = st.one_of(
    st.builds(Start, request_id=request_ids),
    st.builds(RequestQr, request_id=request_ids),
    st.builds(RequestPairingCode, text, request_id=request_ids),
    st.builds(Stop, request_id=request_ids),
    st.builds(Logout, request_id=request_ids),
    st.builds(Freeze, request_id=request_ids),
    st.builds(Uninstall, request_id=request_ids),
    st.builds(Send, text, text, text, request_id=request_ids),
    st.just(GetSnapshot()),
)
withdrawals = st.builds(Freeze, request_id=request_ids) | st.builds(Uninstall, request_id=request_ids)
calls = st.one_of(
    st.builds(wire.Ask, salon_ids, commands, waits),
    st.builds(wire.Withdraw, salon_ids, withdrawals, waits),
    st.builds(wire.Restart, salon_ids),
    st.builds(wire.IsRunning, salon_ids),
)
small = st.integers(min_value=0, max_value=10**6)
outcomes = st.one_of(
    st.builds(Accepted, states),
    st.builds(Status, states, st.none() | text, st.none() | text, st.none() | small, st.none() | small),
    st.builds(PairingCode, text, small),
    st.builds(Refused, text, text),
)
frames = st.one_of(
    st.builds(lambda s: {"type": "state", "state": s}, states),
    st.builds(lambda s, p: {"type": "state", "state": s, "phone": p}, states, text),
    st.builds(lambda q, e, n: {"type": "qr", "qr": q, "expires_in": e, "seq": n}, text, small, small),
    st.builds(lambda c, e: {"type": "pairing_code", "code": c, "expires_in": e}, text, small),
    st.builds(lambda p: {"type": "connected", "phone": p}, text),
    st.builds(lambda c, m: {"type": "error", "code": c, "message": m}, text, text),
    st.just({"type": "pong"}),
)
replies = st.one_of(
    st.builds(wire.Answer, outcomes | st.lists(frames, max_size=4) | st.booleans() | st.none()),
    st.builds(wire.Failed, text, text),
    st.just(wire.Moved()),
)


def over_the_wire(encoded: dict[str, Any]) -> Any:
    return json.loads(json.dumps(encoded, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(calls)
def test_every_call_round_trips_exactly(call: Any) -> None:
    assert wire.decode_call(over_the_wire(wire.encode_call(call))) == call


@settings(max_examples=300, deadline=None)
@given(replies)
def test_every_reply_round_trips_exactly(reply: Any) -> None:
    decoded = wire.decode_reply(over_the_wire(wire.encode_reply(reply)))
    assert decoded == reply
    assert type(decoded) is type(reply)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_decoded_or_refused_with_wire_error_only(value: Any) -> None:
    for decode, encode in ((wire.decode_call, wire.encode_call), (wire.decode_reply, wire.encode_reply)):
        try:
            decoded = decode(value)
        except wire.WireError:
            continue
        assert encode(decoded) == value  # only an exact encoding is accepted


def _json_kind(value: Any) -> str:
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def _mutations(encoded: dict[str, Any]) -> list[dict[str, Any]]:
    """Each key dropped, each value replaced by ones of another JSON type, one extra key."""
    out = [{**encoded, "extra": 1}]
    for key, value in encoded.items():
        out.append({k: v for k, v in encoded.items() if k != key})
        for wrong in (None, True, "x", 1.5, [], {}):
            optional = wrong is None and key == "request_id"
            if _json_kind(wrong) != _json_kind(value) and not optional:
                out.append({**encoded, key: wrong})
    return out


@settings(max_examples=150, deadline=None)
@given(calls)
def test_a_garbled_call_is_refused(call: Any) -> None:
    encoded = wire.encode_call(call)
    for garbled in _mutations(encoded) + _mutations_of_nested(encoded, "command"):
        with pytest.raises(wire.WireError):
            wire.decode_call(garbled)


def _mutations_of_nested(encoded: dict[str, Any], key: str) -> list[dict[str, Any]]:
    if not isinstance(encoded.get(key), dict):
        return []
    return [{**encoded, key: nested} for nested in _mutations(encoded[key])]


@pytest.mark.parametrize(
    "reply",
    [
        {"t": "answer", "value": {"t": "accepted", "state": "sleeping"}},  # not a session state
        {"t": "answer", "value": {"t": "accepted", "state": "qr", "extra": 1}},
        {"t": "answer", "value": [{"type": "qr", "qr": "x", "expires_in": 5}]},  # seq missing
        {"t": "answer", "value": [{"type": "state", "state": "qr", "qr": "x"}]},  # another frame's key
        {"t": "answer", "value": [{"type": "qr", "qr": "x", "expires_in": 5, "seq": 1, "svg": "<svg/>"}]},  # gone
        {"t": "answer", "value": [{"type": "shout"}]},
        {"t": "answer", "value": [{"type": "pong"}, "pong"]},
        {"t": "answer", "value": 3},
        {"t": "answer", "value": {"t": "start", "request_id": None}},  # a command is no outcome
        {"t": "failed", "code": 1, "message": "x"},
        {"t": "moved", "why": "x"},
        {"t": ["answer"]},
        [],
        "moved",
    ],
)
def test_a_garbled_reply_is_refused(reply: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_reply(reply)


@pytest.mark.parametrize(
    "call",
    [
        {"t": "ask", "salon_id": 0, "command": {"t": "request_qr", "request_id": None}, "timeout_s": 1.0},
        {"t": "ask", "salon_id": 2**63, "command": {"t": "request_qr", "request_id": None}, "timeout_s": 1.0},
        {"t": "ask", "salon_id": 1, "command": {"t": "request_qr", "request_id": None}, "timeout_s": 0},
        {"t": "ask", "salon_id": 1, "command": {"t": "request_qr", "request_id": None}, "timeout_s": 1e9},
        {"t": "ask", "salon_id": True, "command": {"t": "request_qr", "request_id": None}, "timeout_s": 1.0},
        {"t": "ask", "salon_id": 1, "command": {"t": "timer", "name": "x"}, "timeout_s": 1.0},  # not a command
        {"t": "withdraw", "salon_id": 1, "command": {"t": "logout", "request_id": None}, "grace_s": 1.0},
        {"t": "restart", "salon_id": "1"},
        {"t": "shutdown"},
    ],
)
def test_calls_outside_the_documented_ranges_are_refused(call: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_call(call)
