"""The one interface between a company's actor and WhatsApp.

A :class:`Transport` opens :class:`Link` s: one link is one connection attempt for one company.
Links report everything through the ``deliver`` callback as
:mod:`actor_admin.session` transport events (QR codes, connected, disconnected with WhatsApp's
reason code, messages, new credentials). ``deliver`` is synchronous and must not block: the actor
passes its mailbox's ``send_nowait``-style function. A link reports exactly one
:class:`~actor_admin.session.Disconnected` when it ends by itself; after ``aclose()`` or
``logout()`` it reports nothing more.

Like trio-websocket's ``connect_websocket``, ``open`` takes the nursery that runs the link's
background tasks, so the link lives and dies with its actor; what the link is for travels as one
:class:`LinkSpec`, the same for every transport.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, final

import attrs
import trio

from actor_admin.session import TransportEvent

Deliver = Callable[[TransportEvent], None]

#: Which kind of WhatsApp a transport talks to; stored with the credentials it makes, because only
#: the kind that made them can say they are void (docs/data.md#credential-origin).
TransportKind = Literal["neonize", "simulator"]


class TransportError(Exception):
    """A transport operation failed (not connected, phone unknown, WhatsApp refused, …)."""


class Link(Protocol):
    async def request_pairing_code(self, phone: str) -> None:
        """Ask for a pairing code for ``phone`` (digits only); it arrives as ``PairingCodeIssued``."""

    async def send_message(self, to: str, text: str) -> str:
        """Send ``text`` to ``to`` (digits only); return WhatsApp's message id or raise TransportError."""

    async def received(self, wa_id: str) -> None:
        """The inbound message ``wa_id`` this link delivered is stored: it need not come again.

        Until then the server delivers it again on the next connection, so a node killed or paused
        between delivery and storage loses nothing (docs/cluster.md#why-it-holds). A link with
        nothing to send returns without a checkpoint: the actor calls this once per inbound message
        and yields soon after anyway (docs/capacity.md#inbound-messages).
        """

    async def logout(self) -> None:
        """Unlink this device from the phone (credentials become useless), then close."""

    async def aclose(self) -> None:
        """Close the connection without logging out; stored credentials stay valid."""


@final
@attrs.frozen(kw_only=True)
class LinkSpec:
    """One connection attempt: for which salon, with which stored credentials (None: a fresh
    pairing, a QR batch), and where its events go."""

    salon_id: int
    credentials: bytes | None = attrs.field(default=None, repr=False)
    deliver: Deliver


class Transport(Protocol):
    @property
    def kind(self) -> TransportKind:
        """Real WhatsApp (``neonize``) or the simulator (``simulator``)."""
        ...

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> Link:
        """Start connecting the link ``spec`` describes; its background tasks run in ``nursery``."""
