"""The router's calls and replies as JSON, for delivery to a salon's owner on another node.

A :data:`Call` is what the router does to a salon's actor (ask it a command, withdraw it, restart
it, ask whether it runs); a :data:`Reply` is the owner's answer: the value (:class:`Answer`), the
session's unavailability (:class:`Failed`, a ``SessionUnavailable`` there), or :class:`Moved` when
that node no longer owns the salon. Both round-trip exactly through ``json`` and the decoders take
nothing on trust: a message from Redis is checked field by field — exact key sets, exact types, known
tags, documented states — and anything else raises :class:`WireError` (docs/cluster.md#routing).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Final, Literal, TypeVar, final

import attrs

from actor_admin.json_types import JSON
from actor_admin.session import (
    Accepted,
    Command,
    ConnectedFrame,
    ErrorFrame,
    Frame,
    Freeze,
    Logout,
    Outcome,
    PairingCode,
    PairingCodeFrame,
    PongFrame,
    QrFrame,
    Refused,
    RequestPairingCode,
    RequestQr,
    Send,
    Start,
    StateFrame,
    Status,
    Stop,
    Uninstall,
)

from ._company import GetSnapshot

SALON_ID_MAX: Final = 2**63 - 1
#: The longest wait a call may ask for (an ask's timeout, a withdrawal's grace).
MAX_WAIT_S: Final = 300.0


#: The flat records the codec carries: commands, the snapshot request, outcomes.
Record = Command | GetSnapshot | Outcome
R = TypeVar("R", bound=Record)


class WireError(ValueError):
    """A message that is not exactly a call or reply of this version."""


# -- calls -----------------------------------------------------------------------------------------


@final
@attrs.frozen
class Ask:
    """Deliver ``command`` to the salon's actor (starting it if needed); answer its reply."""

    salon_id: int
    command: Command | GetSnapshot
    timeout_s: float


@final
@attrs.frozen
class Withdraw:
    """Tell the running actor ``command`` and stop it; never start one. Answers whether one ran."""

    salon_id: int
    command: Freeze | Uninstall
    grace_s: float


@final
@attrs.frozen
class Restart:
    """Restart the salon's actor, clearing a ``failed`` one's crash history. Answers None."""

    salon_id: int


@final
@attrs.frozen
class IsRunning:
    """Does the salon's actor run at its owner? Answers a bool."""

    salon_id: int


Call = Ask | Withdraw | Restart | IsRunning

# -- replies ---------------------------------------------------------------------------------------

AnswerValue = Outcome | list[Frame] | bool | None


@final
@attrs.frozen
class Answer:
    """What the call returned: an outcome, the snapshot's frames, a flag, or None."""

    value: AnswerValue


@final
@attrs.frozen
class Failed:
    """The salon's session could not answer (``SessionUnavailable`` with this code and message)."""

    code: str
    message: str


@final
@attrs.frozen
class Moved:
    """The node asked no longer owns the salon: the caller locates it again."""


Reply = Answer | Failed | Moved

# -- the flat records, by tag ------------------------------------------------------------------------

_COMMANDS: Final[Mapping[str, type[Command | GetSnapshot]]] = {
    "start": Start,
    "request_qr": RequestQr,
    "request_pairing_code": RequestPairingCode,
    "stop": Stop,
    "logout": Logout,
    "freeze": Freeze,
    "uninstall": Uninstall,
    "send": Send,
    "get_snapshot": GetSnapshot,
}
_OUTCOMES: Final[Mapping[str, type[Outcome]]] = {
    "accepted": Accepted,
    "status": Status,
    "pairing_code": PairingCode,
    "refused": Refused,
}
_FRAMES: Final[Mapping[str, object]] = {
    "state": StateFrame,
    "qr": QrFrame,
    "pairing_code": PairingCodeFrame,
    "connected": ConnectedFrame,
    "error": ErrorFrame,
    "pong": PongFrame,
}
_TAG_OF: Final[Mapping[type[Record], str]] = {
    cls: tag for table in (_COMMANDS, _OUTCOMES) for tag, cls in table.items()
}
_WITHDRAWALS: Final[Mapping[str, type[Freeze | Uninstall]]] = {"freeze": Freeze, "uninstall": Uninstall}


def _fields(cls: type[Record]) -> dict[str, object]:
    """A record's field names and their resolved types."""
    return {field.name: field.type for field in attrs.fields(attrs.resolve_types(cls))}


# Keyed by plain ``type`` so a table's ``type[R]`` indexes it.
_RECORD_FIELDS: Final[Mapping[type, dict[str, object]]] = {cls: _fields(cls) for cls in _TAG_OF}
_FRAME_HINTS: Final = {tag: typing.get_type_hints(frame) for tag, frame in _FRAMES.items()}
# ``__required_keys__`` cannot see ``NotRequired`` inside the string annotations of
# ``from __future__ import annotations``; the resolved hints with extras can.
_FRAME_REQUIRED: Final = {
    tag: frozenset(
        key
        for key, hint in typing.get_type_hints(frame, include_extras=True).items()
        if typing.get_origin(hint) is not typing.NotRequired
    )
    for tag, frame in _FRAMES.items()
}


def _fits(kind: object, value: object) -> bool:
    """Is ``value`` (decoded JSON) exactly of the scalar type ``kind``?"""
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    origin = typing.get_origin(kind)
    if origin is Literal:
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(kind))
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(option, value) for option in typing.get_args(kind))
    raise TypeError(f"the wire format has no rule for {kind!r}")  # a new field type: teach _fits


def _encode_record(record: Record) -> JSON:
    tag = _TAG_OF.get(type(record))
    if tag is None:
        raise WireError(f"{type(record).__name__} has no wire form")
    return {"t": tag, **attrs.asdict(record, recurse=False)}


def _decode_record(data: object, table: Mapping[str, type[R]], what: str) -> R:
    if not isinstance(data, dict):
        raise WireError(f"{what} must be an object")
    tag = data.get("t")
    cls = table.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise WireError(f"unknown {what} {data.get('t')!r}")
    fields = _RECORD_FIELDS[cls]
    if set(data) != {"t", *fields}:
        raise WireError(f"{what} {data['t']!r} needs exactly the fields {sorted(fields)}")
    values: JSON = {}
    for name, kind in fields.items():
        if not _fits(kind, data[name]):
            raise WireError(f"{what} {data['t']!r}: bad {name}")
        values[name] = float(data[name]) if kind is float else data[name]
    return cls(**values)


def _decode_frame(data: object) -> Frame:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or data["type"] not in _FRAMES:
        raise WireError("a frame must be an object with a known type")
    hints = _FRAME_HINTS[data["type"]]
    if not _FRAME_REQUIRED[data["type"]] <= set(data) <= set(hints):
        raise WireError(f"frame {data['type']!r} has missing or unknown keys")
    if not all(_fits(hints[key], value) for key, value in data.items()):
        raise WireError(f"frame {data['type']!r} has a value of the wrong type")
    frame: Frame = data  # type: ignore[assignment]  # checked key by key above
    return frame


def _salon_id(data: JSON) -> int:
    value = data.get("salon_id")
    if not _fits(int, value) or not 0 < value <= SALON_ID_MAX:  # type: ignore[operator]
        raise WireError("salon_id must be a positive 64-bit integer")
    return int(value)  # type: ignore[arg-type]


def _wait_s(data: JSON, name: str) -> float:
    value = data.get(name)
    if not _fits(float, value) or not 0 < value <= MAX_WAIT_S:  # type: ignore[operator]
        raise WireError(f"{name} must be a number of seconds in (0, {MAX_WAIT_S:g}]")
    return float(value)  # type: ignore[arg-type]


def _exact(data: object, keys: set[str]) -> JSON:
    if not isinstance(data, dict) or set(data) != keys:
        raise WireError(f"expected an object with exactly {sorted(keys)}")
    return data


# -- the public codec --------------------------------------------------------------------------------


def encode_call(call: Call) -> JSON:
    """``call`` as a JSON-ready object."""
    match call:
        case Ask(salon_id, command, timeout_s):
            return {"t": "ask", "salon_id": salon_id, "command": _encode_record(command), "timeout_s": timeout_s}
        case Withdraw(salon_id, command, grace_s):
            return {"t": "withdraw", "salon_id": salon_id, "command": _encode_record(command), "grace_s": grace_s}
        case Restart(salon_id):
            return {"t": "restart", "salon_id": salon_id}
        case IsRunning(salon_id):
            return {"t": "is_running", "salon_id": salon_id}


def decode_call(data: object) -> Call:
    """The call ``data`` encodes.

    Raises:
        WireError: ``data`` is not exactly an encoded call.
    """
    tag = data.get("t") if isinstance(data, dict) else None
    if tag == "ask":
        data = _exact(data, {"t", "salon_id", "command", "timeout_s"})
        command = _decode_record(data["command"], _COMMANDS, "command")
        return Ask(_salon_id(data), command, _wait_s(data, "timeout_s"))
    if tag == "withdraw":
        data = _exact(data, {"t", "salon_id", "command", "grace_s"})
        return Withdraw(
            _salon_id(data), _decode_record(data["command"], _WITHDRAWALS, "withdrawal"), _wait_s(data, "grace_s")
        )
    if tag == "restart":
        return Restart(_salon_id(_exact(data, {"t", "salon_id"})))
    if tag == "is_running":
        return IsRunning(_salon_id(_exact(data, {"t", "salon_id"})))
    raise WireError(f"unknown call {tag!r}")


def encode_reply(reply: Reply) -> JSON:
    """``reply`` as a JSON-ready object.

    Raises:
        WireError: the answer is not one the codec knows (an actor's reply of an unexpected type).
    """
    match reply:
        case Answer(value):
            encoded: object = value
            if isinstance(value, list):
                encoded = [dict(frame) for frame in value]
            elif value is not None and not isinstance(value, bool):
                encoded = _encode_record(value)
            return {"t": "answer", "value": encoded}
        case Failed(code, message):
            return {"t": "failed", "code": code, "message": message}
        case Moved():
            return {"t": "moved"}


def decode_reply(data: object) -> Reply:
    """The reply ``data`` encodes.

    Raises:
        WireError: ``data`` is not exactly an encoded reply.
    """
    tag = data.get("t") if isinstance(data, dict) else None
    if tag == "answer":
        value = _exact(data, {"t", "value"})["value"]
        if value is None or isinstance(value, bool):
            return Answer(value)
        if isinstance(value, list):
            return Answer([_decode_frame(frame) for frame in value])
        return Answer(_decode_record(value, _OUTCOMES, "outcome"))
    if tag == "failed":
        data = _exact(data, {"t", "code", "message"})
        if not isinstance(data["code"], str) or not isinstance(data["message"], str):
            raise WireError("failed needs a string code and message")
        return Failed(data["code"], data["message"])
    if tag == "moved":
        _exact(data, {"t"})
        return Moved()
    raise WireError(f"unknown reply {tag!r}")
