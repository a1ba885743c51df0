"""neonize's events → our transport events, as pure functions.

neonize (whatsmeow inside) reports a connection through three channels: protobuf event objects
(``neonize.events``: ``ConnectedEv``, ``LoggedOutEv``, ``MessageEv``, …), a QR callback that gets
each code as it rotates, and a login-status callback that names how a QR batch ended
(``"timeout"``, ``"success"``, ``"err-…"``). The functions here turn each of them into the
:mod:`actor_admin.session` events every transport speaks, with WhatsApp's own reason codes.

They never import neonize: events are recognised by their protobuf type name
(``ev.DESCRIPTOR.full_name``), so this module loads — and its callers type-check — without the
optional extra installed, and tests feed it neonize's own protobuf objects built directly.
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol, cast

from actor_admin.session import (
    BAD_SESSION,
    BANNED,
    CLIENT_OUTDATED,
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    FORBIDDEN,
    LOGGED_OUT,
    NETWORK_ERROR,
    QR_BATCH_S,
    TEMPORARILY_BANNED,
    UNAVAILABLE_SERVICE,
    Connected,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
    PairSuccess,
    QrIssued,
    TransportEvent,
    qr_ttl_s,
)

# A pairing code belongs to the connection attempt that asked for it: WhatsApp accepts it while
# that attempt's QR batch runs, so it is valid at most one batch long.
PAIRING_CODE_TTL_S: Final = QR_BATCH_S

# neonize re-encodes whatsmeow's ``events.ConnectFailureReason`` (WhatsApp's numeric codes) as its
# own enum ``neonize.ConnectFailureReason`` (goneonize/utils/encoder.go,
# ``EncodeConnectFailureReason``); this undoes it. Codes we have no constant for (400 generic,
# 409 bad user agent, 501 experimental) travel unchanged as numbers.
_FAILURE_REASON_CODES: Final[dict[int, int]] = {
    1: 400,  # GENERIC
    2: LOGGED_OUT,  # LOGGED_OUT (401)
    3: TEMPORARILY_BANNED,  # TEMP_BANNED (402)
    4: FORBIDDEN,  # MAIN_DEVICE_GONE (403)
    5: BANNED,  # UNKNOWN_LOGOUT (406)
    6: CLIENT_OUTDATED,  # CLIENT_OUTDATED (405)
    7: 409,  # BAD_USER_AGENT
    8: BAD_SESSION,  # INTERNAL_SERVER_ERROR (500)
    9: 501,  # EXPERIMENTAL
    10: UNAVAILABLE_SERVICE,  # SERVICE_UNAVAILABLE (503)
}

# The events after which whatsmeow's connection is over as far as we are concerned. whatsmeow
# would reconnect by itself after some of them; the link stops the client instead, so the session
# machine is the one place that decides about reconnecting.
TERMINAL_EVENTS: Final = frozenset(
    {
        "neonize.LoggedOut",
        "neonize.StreamReplaced",
        "neonize.TemporaryBan",
        "neonize.ConnectFailure",
        "neonize.ClientOutdated",
        "neonize.Disconnected",
    }
)

_USER_SERVER: Final = "s.whatsapp.net"
_LID_SERVER: Final = "lid"
_PHONE_DIGITS: Final = re.compile(r"\d{5,20}")


class Jid(Protocol):
    """The fields of neonize's ``JID`` protobuf we read."""

    User: str
    Server: str
    Device: int


class MessageSource(Protocol):
    """The fields of neonize's ``MessageSource`` protobuf we read."""

    Chat: Jid
    Sender: Jid
    SenderAlt: Jid
    IsFromMe: bool
    IsGroup: bool


class _MessageInfo(Protocol):
    MessageSource: MessageSource


class _MessageEvent(Protocol):
    Info: _MessageInfo


def type_name(ev: object) -> str:
    """The protobuf type name of a neonize event (``"neonize.Connected"``), or ``""``."""
    descriptor = getattr(ev, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", ""))


def is_terminal(ev: object) -> bool:
    """True when ``ev`` ends the connection (the link then stops the client and reports it)."""
    return type_name(ev) in TERMINAL_EVENTS


def format_jid(jid: Jid) -> str:
    """``79001234567:12@s.whatsapp.net`` from a neonize ``JID`` (device part only when non-zero)."""
    if not jid.User and not jid.Server:
        return ""
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{device}@{jid.Server}"


def failure_code(reason: int) -> int:
    """WhatsApp's numeric code for a ``neonize.ConnectFailureReason`` value."""
    return _FAILURE_REASON_CODES.get(reason, NETWORK_ERROR)


def qr_issued(code: str, seq: int) -> QrIssued:
    """The ``seq``-th QR code of a batch (``seq`` counts from 1), with WhatsApp's lifetime for it."""
    return QrIssued(code=code, ttl_s=qr_ttl_s(seq), seq=seq)


def format_pairing_code(raw: str) -> str:
    """``ABCD-EFGH`` however whatsmeow punctuated it (it already inserts the dash today)."""
    chars = "".join(c for c in raw if c.isalnum()).upper()
    if len(chars) != 8:
        return raw.strip()
    return f"{chars[:4]}-{chars[4:]}"


def map_login_status(status: str) -> Disconnected | None:
    """How a QR batch ended (whatsmeow's ``QRChannelItem.Event``), as the link's end, if it ended.

    ``"success"`` is not an end: the pairing continues with ``PairStatus`` and ``Connected``.
    ``"timeout"`` means the batch ran out (WhatsApp closes such attempts with 408, as Baileys
    reports it); whatsmeow then drops the socket itself *without* a ``Disconnected`` event, so this
    callback is the only place the end is visible.
    """
    if status in ("success", "code", ""):
        return None
    if status == "timeout":
        return Disconnected(reason=CONNECTION_LOST, detail="qr batch ended")
    if status == "err-client-outdated":
        return Disconnected(reason=CLIENT_OUTDATED, detail=status)
    return Disconnected(reason=NETWORK_ERROR, detail=f"pairing failed: {status}")


def message_text(message: Any) -> str | None:
    """The text of a WhatsApp message: plain, extended (with link preview/quote) or a caption."""
    if message.conversation:
        return str(message.conversation)
    if message.HasField("extendedTextMessage") and message.extendedTextMessage.text:
        return str(message.extendedTextMessage.text)
    for media in ("imageMessage", "videoMessage", "documentMessage"):
        if message.HasField(media) and getattr(message, media).caption:
            return str(getattr(message, media).caption)
    return None


def phone_of(jid: Jid) -> str | None:
    """The phone number (digits) a phone-number JID (``…@s.whatsapp.net``) names, else None."""
    if jid.Server == _USER_SERVER and _PHONE_DIGITS.fullmatch(jid.User):
        return str(jid.User)
    return None


def message_peer(source: MessageSource) -> str | None:
    """The phone number (digits) of the other side of a one-to-one chat, if the message tells it.

    Chats addressed by LID (``…@lid``, WhatsApp's privacy ids) carry the phone number in
    ``SenderAlt`` when the server sends it (whatsmeow: ``sender_pn``); else only the LID is known.
    """
    for jid in (source.Chat, source.Sender, source.SenderAlt):
        phone = phone_of(jid)
        if phone is not None:
            return phone
    return None


def message_lid(source: MessageSource) -> str | None:
    """The LID (``"<digits>@lid"``, no device part) of the other side when the chat is addressed by one."""
    for jid in (source.Chat, source.Sender):
        if jid.Server == _LID_SERVER and _PHONE_DIGITS.fullmatch(jid.User):
            return f"{jid.User}@{_LID_SERVER}"
    return None


def map_event(ev: object, now: float, *, own_jid: str = "", lid_phone: str | None = None) -> TransportEvent | None:
    """Map one neonize event object to a transport event, or ``None`` for ones we do not report.

    Args:
        ev: a protobuf event from ``neonize.events`` (``ConnectedEv``, ``LoggedOutEv``, …).
        now: the caller's clock (trio's), used for ``MessageReceived.at`` and ban expiries.
        own_jid: this device's JID; neonize's ``Connected`` event does not carry it, so the link
            reads it from the client (``get_me()``) and passes it in.
        lid_phone: for a message from a LID-addressed chat without a phone number in it, the
            number whatsmeow's LID map gives for that LID (the link asks the client), if any.
    """
    name = type_name(ev)
    e: Any = ev
    if name == "neonize.PairStatus":
        # PairStatus.Status: SUCCESS = 2, ERROR = 1. A pairing error ends the QR batch, which the
        # login-status callback reports; the error itself is not a connection event.
        if e.Status == 2:
            return PairSuccess(jid=format_jid(e.ID))
        return None
    if name == "neonize.Connected":
        return Connected(jid=own_jid)
    if name == "neonize.KeepAliveTimeout":
        return KeepaliveTimeout()
    if name == "neonize.KeepAliveRestored":
        return KeepaliveRestored()
    if name == "neonize.LoggedOut":
        reason = failure_code(e.Reason) if e.HasField("Reason") else LOGGED_OUT
        if reason == NETWORK_ERROR:
            reason = LOGGED_OUT
        where = "on connect" if e.OnConnect else "while connected"
        return Disconnected(reason=reason, detail=f"logged out {where}")
    if name == "neonize.StreamReplaced":
        return Disconnected(reason=CONNECTION_REPLACED, detail="connection replaced")
    if name == "neonize.TemporaryBan":
        # Expire is whatsmeow's ban duration in whole seconds (EncodeTemporaryBan).
        return Disconnected(
            reason=TEMPORARILY_BANNED,
            detail=f"temporarily banned (reason {e.Code})",
            ban_expires_at=now + float(e.Expire),
        )
    if name == "neonize.ClientOutdated":
        return Disconnected(reason=CLIENT_OUTDATED, detail="client outdated")
    if name == "neonize.ConnectFailure":
        reason = failure_code(e.Reason) if e.HasField("Reason") else NETWORK_ERROR
        return Disconnected(reason=reason, detail=e.Message or "connect failure")
    if name == "neonize.Disconnected":
        return Disconnected(reason=NETWORK_ERROR, detail="connection lost")
    if name == "neonize.Message":
        return _map_message(e, now, lid_phone)
    return None


def is_inbound_chat(source: MessageSource) -> bool:
    """True for a one-to-one chat a client wrote to us in (not our echo, a group or a broadcast)."""
    return not (source.IsFromMe or source.IsGroup or source.Chat.Server in ("broadcast", "newsletter"))


def needs_lid_lookup(ev: object) -> str | None:
    """The LID to look up for an inbound message that names its sender only by LID, else None."""
    if type_name(ev) != "neonize.Message":
        return None
    source = cast(_MessageEvent, ev).Info.MessageSource
    if not is_inbound_chat(source) or message_peer(source) is not None:
        return None
    return message_lid(source)


def _map_message(e: Any, now: float, lid_phone: str | None) -> MessageReceived | None:
    source = e.Info.MessageSource
    # Our own messages echo back from the phone, groups and status broadcasts are not a salon's
    # one-to-one conversation with a client: none of them is an inbound message for the product.
    if not is_inbound_chat(source):
        return None
    text = message_text(e.Message)
    if text is None or not e.Info.ID:
        return None
    lid = message_lid(source)
    peer = message_peer(source)
    if peer is None and lid_phone is not None and _PHONE_DIGITS.fullmatch(lid_phone):
        peer = lid_phone
    if peer is None and lid is None:
        return None  # neither a phone number nor a LID: nobody to attribute it to
    # A LID that resolves to no number is still a client's message: it is stored with the LID
    # (peer "") and counted, never dropped.
    return MessageReceived(wa_id=e.Info.ID, peer=peer or "", text=text, at=now, peer_lid=lid)
