"""The simulator's in-process front: a :class:`~actor_admin.whatsapp.Transport` made of direct calls.

Used by actor and session tests under ``MockClock`` and by ``actor-admin dev`` without a standalone
simulator. ``open`` runs the connection handshake before it returns, so right after
``await transport.open(...)`` a log-in's ``Connected`` (or a refusal) has already been delivered. A new
device's first QR comes from the connection's task, after the handshake, as from WhatsApp
(docs/doubles.md#whatsapp-simulator): wait for it (:meth:`SimulatorCore.wait_qr`).
"""

from __future__ import annotations

from typing import ClassVar, final

import trio

from actor_admin.session import (
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
    TransportEvent,
)
from actor_admin.whatsapp import Deliver, Link, LinkSpec, TransportError, TransportKind

from ._core import ServerConnection, SimulatorCore


@final
class SimulatorTransport:
    """Opens links straight into ``core``; one link per :meth:`open`, as with the real service."""

    kind: ClassVar[TransportKind] = "simulator"

    def __init__(self, core: SimulatorCore) -> None:
        self.core = core

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> Link:
        """Connect now; the connection's timers run in ``nursery`` (its cancellation drops the link)."""
        await trio.lowlevel.checkpoint()
        link = _InProcessLink(spec.deliver)
        link.connection = self.core.accept(spec.salon_id, spec.credentials, link)
        nursery.start_soon(link.connection.serve)
        return link


@final
class _InProcessLink:
    """Both sides of one in-process connection: the client's :class:`Link` and the core's sink."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._closed = False  # the client closed it: nothing more is delivered
        self.connection: ServerConnection | None = None

    # -- ConnectionSink (called by the core) ---------------------------------------------------

    def event(self, event: TransportEvent) -> None:
        if not self._closed:
            self._deliver(event)

    def message(self, tag: int, event: MessageReceived) -> bool:
        if self._closed:
            return False
        self._deliver(event)
        return True

    def keepalive(self, ok: bool) -> None:
        if not self._closed:
            self._deliver(KeepaliveRestored() if ok else KeepaliveTimeout())

    def ended(self, event: Disconnected | None) -> None:
        if event is not None and not self._closed:
            self._deliver(event)

    # -- Link (called by the actor) --------------------------------------------------------------

    def _server(self) -> ServerConnection:
        assert self.connection is not None, "open() sets the connection before returning the link"
        return self.connection

    async def request_pairing_code(self, phone: str) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise TransportError("link is closed")
        self._server().request_pairing_code(phone)

    async def send_message(self, to: str, text: str) -> str:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise TransportError("link is closed")
        return self._server().send_message(to, text)

    async def received(self, wa_id: str) -> None:
        """Nothing to do: handed over for good in message(), one process, nothing to lose (no
        checkpoint: see Link.received)."""

    async def logout(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True
        server = self._server()
        server.core.logout_link(server)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True
        server = self._server()
        server.core.close(server)
