"""The websocket frames viewers of a salon receive, as one typed ``Frame``, and their builders.

Frames are plain JSON objects on the wire; each kind is a ``TypedDict`` so the type checker knows
the fields of each, and ``Frame`` is their union. Builders write the keys in the documented order,
which keeps the encoded text byte-identical wherever a frame is made. A ``qr`` frame carries the raw
payload only: the page draws the code (docs/architecture.md#qr-rendering).
"""

from __future__ import annotations

import math
from typing import Final, Literal, NotRequired, TypedDict

from ._state import INACTIVE_STATES, CurrentQr, SessionState, StateName
from ._texts import ERROR_MESSAGES, ban_ends_in


class StateFrame(TypedDict):
    type: Literal["state"]
    state: StateName
    phone: NotRequired[str]  # once known: digits only
    reason: NotRequired[str]  # only while reconnecting: what made the connection drop


class QrFrame(TypedDict):
    type: Literal["qr"]
    qr: str  # the raw payload; the page draws it
    expires_in: int
    seq: int


class PairingCodeFrame(TypedDict):
    type: Literal["pairing_code"]
    code: str  # ABCD-EFGH
    expires_in: int


class ConnectedFrame(TypedDict):
    type: Literal["connected"]
    phone: str  # digits only, no device suffix


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: str
    message: str


class PongFrame(TypedDict):
    type: Literal["pong"]


Frame = StateFrame | QrFrame | PairingCodeFrame | ConnectedFrame | ErrorFrame | PongFrame


def remaining_s(at: float, now: float) -> int:
    """Whole seconds from ``now`` until ``at`` (rounded up, never negative): ``expires_in``."""
    return max(0, math.ceil(at - now))


def state_frame(name: StateName, phone: str | None = None, reason: str | None = None) -> StateFrame:
    """``{"type": "state", "state": S, "phone": …, "reason": …}`` — ``phone`` only once known; ``reason``
    only while reconnecting, so a page can say at once that WhatsApp reported the device unlinked while
    the session double-checks it (docs/websocket.md#server-frames)."""
    frame: StateFrame = {"type": "state", "state": name}
    if phone:
        frame["phone"] = phone
    if name == "reconnecting" and reason:
        frame["reason"] = reason
    return frame


def qr_frame(qr: CurrentQr, now: float) -> QrFrame:
    """The ``qr`` frame: the raw payload, its remaining lifetime and its place in the batch."""
    return {"type": "qr", "qr": qr.code, "expires_in": remaining_s(qr.expires_at, now), "seq": qr.seq}


def pairing_code_frame(code: str, expires_in: int) -> PairingCodeFrame:
    return {"type": "pairing_code", "code": code, "expires_in": expires_in}


def connected_frame(phone: str) -> ConnectedFrame:
    return {"type": "connected", "phone": phone}


def error_frame(code: str, message: str) -> ErrorFrame:
    return {"type": "error", "code": code, "message": message}


def pong_frame() -> PongFrame:
    return {"type": "pong"}


# States a session stays in until something (a viewer, an operator, a timer) moves it; viewers
# get an error frame explaining why, also when they join later.
_STUCK_STATES: Final = frozenset({"idle", "logged_out", "conflict", "failed"}) | INACTIVE_STATES


def reason_error_frame(state: SessionState, now: float) -> ErrorFrame | None:
    """Why ``state`` stays where it is, for a session stuck there with a known reason."""
    reason = state.reason
    if state.name not in _STUCK_STATES or reason is None or reason not in ERROR_MESSAGES:
        return None
    message = ERROR_MESSAGES[reason]
    if reason == "temporarily_banned" and state.ban_expires_at is not None:
        message += ban_ends_in(math.ceil(max(0.0, state.ban_expires_at - now) / 60))
    return error_frame(reason, message)


def snapshot_frames(state: SessionState, now: float) -> list[Frame]:
    """The frames a viewer who joins now must receive, in order.

    The current state; the QR when in ``qr``; the pairing code when in ``pairing_code``; and, in a
    state the session will not leave by itself soon (``idle``, ``failed``, ``conflict`` …), the
    error frame saying why.
    """
    frames: list[Frame] = [state_frame(state.name, state.phone, state.reason)]
    if state.name == "qr" and state.qr is not None:
        frames.append(qr_frame(state.qr, now))
    pairing = state.pairing
    if state.name == "pairing_code" and pairing and pairing.code and pairing.expires_at is not None:
        frames.append(pairing_code_frame(pairing.code, remaining_s(pairing.expires_at, now)))
    reason_frame = reason_error_frame(state, now)
    if reason_frame is not None:
        frames.append(reason_frame)
    return frames
