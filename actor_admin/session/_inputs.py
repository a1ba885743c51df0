"""What the actor feeds the session machine besides transport events.

Commands come from callers (the websocket, the admin API, the webhook, the supervisor). Each
carries an optional ``request_id``: the actor's handle for the caller awaiting an answer. The
machine hands it back unchanged in a :class:`~._effects.Reply` effect — at once for most commands,
later for :class:`RequestPairingCode` (when the code arrives). ``None`` means nobody waits; the
machine still emits the ``Reply`` and the actor drops it.

The feedback events report what happened to effects the actor performed: a timer went off, an
ownership check finished, opening a link or asking for a pairing code failed.
"""

from __future__ import annotations

from typing import final

import attrs

from ._transport_events import TransportEvent

# --- commands -------------------------------------------------------------------------------


@final
@attrs.frozen
class Start:
    """Bring the session up on its own: connect when credentials exist, otherwise wait for a viewer.

    Also the only command a ``frozen`` or ``uninstalled`` session accepts (re-activation by a new
    marketplace redirect), and the admin "restart" that clears ``failed`` and ``conflict``.
    """

    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class RequestQr:
    """A viewer wants to link by QR: start a QR batch when none runs; answer the current status."""

    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class RequestPairingCode:
    """A viewer wants to link by code; ``phone`` as typed (normalised by the machine)."""

    phone: str
    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class Stop:
    """Graceful shutdown: close the link without logging out; the device stays linked."""

    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class Logout:
    """Admin: unlink the WhatsApp device and delete its credentials."""

    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class Freeze:
    """Marketplace ``freeze``: close the link, keep the credentials, refuse work until ``Start``."""

    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class Uninstall:
    """Marketplace ``uninstall``: close the link, delete the credentials, refuse work until ``Start``."""

    request_id: int | None = attrs.field(default=None, kw_only=True)


@final
@attrs.frozen
class Send:
    """Send ``text`` to ``to``; ``idempotency_key`` names the message across retries."""

    to: str
    text: str
    idempotency_key: str
    request_id: int | None = attrs.field(default=None, kw_only=True)


Command = Start | RequestQr | RequestPairingCode | Stop | Logout | Freeze | Uninstall | Send

# --- feedback from the actor ----------------------------------------------------------------


@final
@attrs.frozen
class Timer:
    """The timer the machine set with ``SetTimer(name, at)`` went off."""

    name: str


@final
@attrs.frozen
class OwnershipChecked:
    """The answer to ``CheckOwnership``: does this node still own the company?"""

    owned: bool


@final
@attrs.frozen
class LinkFailed:
    """Opening the link (the ``Connect`` effect) raised before the link could report anything.

    ``upstream_down``: the node did not even dial, because it knows WhatsApp is unreachable (an
    outage, held back behind one probe connection): go straight to the slow cadence.
    """

    detail: str = ""
    upstream_down: bool = attrs.field(default=False, kw_only=True)


@final
@attrs.frozen
class PairingCodeFailed:
    """Asking the link for a pairing code (the ``AskPairingCode`` effect) raised."""

    detail: str = ""


Feedback = Timer | OwnershipChecked | LinkFailed | PairingCodeFailed

Event = Command | Feedback | TransportEvent
