"""The simulator's link protocol: JSON text frames over a websocket at ``<base>/link``.

Shared by both ends — :class:`~actor_admin.whatsapp.NetworkSimulatorTransport` (the client, in this
package) and the simulator's server in :mod:`actor_admin.doubles.whatsapp` — and importing neither, so
each side imports it without a cycle. It is a public module because the double must not reach into
this package's private ones.

Documented for people in ``docs/simulator-protocol.md``. WhatsApp's reason codes travel in a
``disconnected`` frame, never as websocket close codes (those below 1000 do not exist). Times travel
as durations (``ttl_s``, ``age_s``, ``ban_expires_in_s``) because the two ends' trio clocks differ.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final

from actor_admin.json_types import JSON, JsonRejected, loads_untrusted
from actor_admin.session import (
    Connected,
    CredsUpdated,
    Disconnected,
    MessageReceived,
    PairingCodeIssued,
    PairSuccess,
    QrIssued,
    TransportEvent,
)

LINK_PATH: Final = "/link"
MAX_FRAME_BYTES: Final = 64 * 1024


class FrameError(ValueError):
    """A frame that is not a JSON object with the fields its ``type`` needs."""


def encode_credentials(credentials: bytes) -> str:
    return base64.b64encode(credentials).decode()


def decode_credentials(text: object) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise FrameError("credentials must be base64 text or null")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("credentials must be base64 text or null") from None


def parse_frame(raw: str | bytes) -> JSON:
    """Decode one frame; it must be a JSON object with a string ``type``."""
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameError("frame too large")
    try:
        frame = loads_untrusted(raw)
    except JsonRejected as exc:
        raise FrameError(f"frame is not acceptable JSON: {exc.message}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("frame must be a JSON object with a string 'type'")
    return frame


def dump(frame: JSON) -> str:
    return json.dumps(frame, separators=(",", ":"))


def event_frame(event: TransportEvent, now: float, *, tag: int | None = None) -> JSON:
    """The server → client frame for one event (``now`` turns absolute times into durations)."""
    match event:
        case QrIssued(code=code, ttl_s=ttl_s, seq=seq):
            return {"type": "qr", "code": code, "ttl_s": ttl_s, "seq": seq}
        case PairingCodeIssued(code=code, ttl_s=ttl_s):
            return {"type": "pairing_code", "code": code, "ttl_s": ttl_s}
        case PairSuccess(jid=jid):
            return {"type": "pair_success", "jid": jid}
        case CredsUpdated(credentials=credentials):
            return {"type": "creds", "credentials": encode_credentials(credentials)}
        case Connected(jid=jid):
            return {"type": "connected", "jid": jid}
        case MessageReceived(wa_id=wa_id, peer=peer, text=text, at=at):
            return {
                "type": "message",
                "tag": tag,
                "wa_id": wa_id,
                "peer": peer,
                "text": text,
                "age_s": max(0.0, now - at),
            }
        case Disconnected(reason=reason, detail=detail, ban_expires_at=ban_expires_at):
            frame: JSON = {"type": "disconnected", "reason": reason, "detail": detail}
            if ban_expires_at is not None:
                frame["ban_expires_in_s"] = max(0.0, ban_expires_at - now)
            return frame
    raise TypeError(f"no frame for {event!r}")


def frame_event(frame: JSON, now: float) -> TransportEvent:
    """The event a server → client frame carries, on the receiver's clock ``now``.

    Raises:
        FrameError: unknown type or missing/mistyped fields.
    """
    try:
        match frame["type"]:
            case "qr":
                return QrIssued(_str(frame["code"]), _num(frame["ttl_s"]), _int(frame["seq"]))
            case "pairing_code":
                return PairingCodeIssued(_str(frame["code"]), _num(frame["ttl_s"]))
            case "pair_success":
                return PairSuccess(_str(frame["jid"]))
            case "creds":
                credentials = decode_credentials(frame["credentials"])
                if credentials is None:
                    raise FrameError("creds frame without credentials")
                return CredsUpdated(credentials)
            case "connected":
                return Connected(_str(frame["jid"]))
            case "message":
                return MessageReceived(
                    _str(frame["wa_id"]), _str(frame["peer"]), _str(frame["text"]), now - _num(frame["age_s"])
                )
            case "disconnected":
                ban_in = frame.get("ban_expires_in_s")
                return Disconnected(
                    _int(frame["reason"]),
                    _str(frame.get("detail", "")),
                    ban_expires_at=None if ban_in is None else now + _num(ban_in),
                )
    except KeyError as exc:
        raise FrameError(f"{frame['type']} frame lacks {exc.args[0]!r}") from None
    raise FrameError(f"unknown frame type {frame['type']!r}")


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise FrameError("expected a string")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError("expected an integer")
    return value


def _num(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrameError("expected a number")
    return float(value)
