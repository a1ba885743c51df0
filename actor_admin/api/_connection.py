"""The connection under a websocket, so that a viewer whose socket stopped taking data can be let go.

hypercorn 0.18 (``hypercorn/trio/tcp_server.py``, ``protocol_send``) writes every frame under a
*shielded* cancel scope while holding the connection's send lock. A peer that stopped reading
(its receive window full) or vanished without a FIN leaves that write waiting for the kernel — for
minutes, or for ever while the peer keeps acknowledging with a zero window — and no cancellation,
hence no timeout of ours, reaches it; a close frame would wait for the same lock. The one thing
that ends such a write is closing the stream under it: trio wakes the write with
``ClosedResourceError``, which hypercorn takes as the peer gone (it ends the ASGI connection with
``websocket.disconnect``). Neither ASGI nor hypercorn offers that, so :class:`KeepConnection` puts
the server's ``send`` in the scope and :meth:`Connection.abort` follows it to hypercorn's stream
(docs/websocket.md#limits).
"""

from __future__ import annotations

import logging
from typing import Final

import trio
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.tcp_server import TCPServer

from ._http import ASGIApp, Receive, Scope, Send

log = logging.getLogger("actor_admin.api")

#: Where :class:`KeepConnection` leaves the websocket's :class:`Connection` in the ASGI scope.
SCOPE_KEY: Final = "actor_admin.connection"


class Connection:
    """The server side of one websocket, as far as aborting it goes."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    def stream(self) -> trio.abc.AsyncResource | None:
        """hypercorn's stream under this websocket, or None when it is not served that way
        (another server, hypercorn's HTTP/2, a hypercorn whose insides changed)."""
        ws_stream = getattr(self._send, "__self__", None)  # WSStream.app_send
        if not isinstance(ws_stream, WSStream):
            return None
        protocol = getattr(ws_stream.send, "__self__", None)  # H11Protocol.stream_send
        if not isinstance(protocol, H11Protocol):
            return None
        server = getattr(protocol.send, "__self__", None)  # TCPServer.protocol_send
        if not isinstance(server, TCPServer):
            return None
        stream: trio.abc.AsyncResource = server.stream
        return stream

    async def abort(self) -> bool:
        """Close the connection at once, unsent data and all; False when it could not be reached."""
        stream = self.stream()
        if stream is None:
            log.warning("cannot reach the websocket's connection to close it: not hypercorn 0.18 over HTTP/1.1")
            return False
        await trio.aclose_forcefully(stream)
        return True


class KeepConnection:
    """ASGI middleware: hands each websocket its :class:`Connection` in ``scope[SCOPE_KEY]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Into hypercorn's own scope, not a copy: a copy is about a kilobyte a viewer, and
            # nothing upstream reads this key.
            scope[SCOPE_KEY] = Connection(send)
        await self.app(scope, receive, send)
