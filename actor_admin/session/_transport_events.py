"""What a WhatsApp transport reports about one connection.

These are the session machine's inputs from the wire. Every transport (the simulator, neonize)
produces exactly these and nothing else, so the session machine never knows which one runs.
WhatsApp's own reason codes travel unchanged in :class:`Disconnected` (see ``reason`` below).
"""

from __future__ import annotations

from typing import Final, final

import attrs

# WhatsApp's disconnect reason codes (Baileys' names), the vocabulary of the per-reason policy.
CONNECTION_CLOSED: Final = 428
CONNECTION_LOST: Final = 408  # also "QR refs attempts ended": the QR batch ran out
LOGGED_OUT: Final = 401
TEMPORARILY_BANNED: Final = 402
FORBIDDEN: Final = 403
CLIENT_OUTDATED: Final = 405
BANNED: Final = 406
CONNECTION_REPLACED: Final = 440
MULTIDEVICE_MISMATCH: Final = 411
BAD_SESSION: Final = 500
UNAVAILABLE_SERVICE: Final = 503
RESTART_REQUIRED: Final = 515
NETWORK_ERROR: Final = 0  # no reason from the server: dial failure, reset, timeout

# WhatsApp's QR timing (set by its server): a link without credentials shows a batch of
# QR_BATCH_SIZE codes, the first valid QR_FIRST_TTL_S, each later one QR_NEXT_TTL_S; when the last
# expires the link ends with CONNECTION_LOST (408).
QR_BATCH_SIZE: Final = 6
QR_FIRST_TTL_S: Final = 60.0
QR_NEXT_TTL_S: Final = 20.0
QR_BATCH_S: Final = QR_FIRST_TTL_S + (QR_BATCH_SIZE - 1) * QR_NEXT_TTL_S


def qr_ttl_s(seq: int) -> float:
    """How long WhatsApp accepts the ``seq``-th QR code of a batch (``seq`` counts from 1)."""
    return QR_FIRST_TTL_S if seq <= 1 else QR_NEXT_TTL_S


@final
@attrs.frozen
class QrIssued:
    """A QR code to show; ``ttl_s`` is how long WhatsApp accepts it (:func:`qr_ttl_s`)."""

    code: str
    ttl_s: float
    seq: int


@final
@attrs.frozen
class PairingCodeIssued:
    """A pairing code (``ABCD-EFGH``) to type on the phone under "Link with phone number"."""

    code: str
    ttl_s: float


@final
@attrs.frozen
class PairSuccess:
    """The phone accepted the QR or code; a 515 "restart required" follows."""

    jid: str


@final
@attrs.frozen
class CredsUpdated:
    """New device credentials to persist (opaque bytes; encrypted at rest by the store)."""

    credentials: bytes


@final
@attrs.frozen
class Connected:
    """The connection is open and logged in as ``jid`` (e.g. ``79001234567:12@s.whatsapp.net``)."""

    jid: str


@final
@attrs.frozen
class Disconnected:
    """The connection ended. ``reason`` is WhatsApp's code, :data:`NETWORK_ERROR` when none.

    ``ban_expires_at`` is set for :data:`TEMPORARILY_BANNED` (seconds on the caller's clock).
    """

    reason: int
    detail: str = ""
    ban_expires_at: float | None = None


@final
@attrs.frozen
class KeepaliveTimeout:
    """The transport missed keep-alive answers while it still believes it is connected."""


@final
@attrs.frozen
class KeepaliveRestored:
    """Keep-alives answer again."""


@final
@attrs.frozen
class MessageReceived:
    """An inbound message. ``wa_id`` is WhatsApp's message id: a redelivery repeats it.

    ``peer`` is the sender's phone number (digits), or ``""`` when WhatsApp named the sender only
    by a LID (its privacy id) that could not be resolved to a number; ``peer_lid`` is that LID
    (``"123456789012345@lid"``) whenever the chat was addressed by one, resolved or not.
    """

    wa_id: str
    peer: str
    text: str
    at: float
    peer_lid: str | None = None


@final
@attrs.frozen
class MessageSent:
    """The outcome of a send the session asked for, matched by ``idempotency_key``."""

    idempotency_key: str
    wa_id: str | None
    error: str | None = None


TransportEvent = (
    QrIssued
    | PairingCodeIssued
    | PairSuccess
    | CredsUpdated
    | Connected
    | Disconnected
    | KeepaliveTimeout
    | KeepaliveRestored
    | MessageReceived
    | MessageSent
)
