"""The client side of the networked simulator: a :class:`~actor_admin.whatsapp.Transport` over
trio-websocket, speaking the link protocol of ``docs/simulator-protocol.md``.

Used when ``WHATSAPP_SIMULATOR_URL`` names a standalone ``actor-admin simulator`` (multi-node dev
setups, chaos tests). Everything the network does wrong — refused, reset, server gone, handshake
timeout — reaches the actor as ``Disconnected(NETWORK_ERROR)``, exactly like a dial failure of the
real client.

Why it lives here and not with the simulator in :mod:`actor_admin.doubles.whatsapp`: nothing in it
is pretend. It is a real :class:`~actor_admin.whatsapp.Transport` doing real network I/O, which
``actor-admin serve`` runs when ``WHATSAPP_SIMULATOR_URL`` is set, and its failure handling is what
production relies on; only the far end is a double. Keeping it next to neonize keeps the rule "real
code never imports a double" true. The frame definitions both ends share are in
:mod:`actor_admin.whatsapp.simulator_protocol`, which imports neither end, so the simulator's server
imports it from here without a cycle.
"""

from __future__ import annotations

import base64
import itertools
from typing import ClassVar, Final, final
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

from actor_admin.json_types import JSON
from actor_admin.session import (
    NETWORK_ERROR,
    CredsUpdated,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
)
from actor_admin.whatsapp._transport import Deliver, Link, LinkSpec, TransportError, TransportKind
from actor_admin.whatsapp.simulator_protocol import LINK_PATH, FrameError, dump, frame_event, parse_frame

# Real WhatsApp clients ping every 20–30 s (docs/whatsapp.md#keep-alive).
KEEPALIVE_INTERVAL_S: Final = 20.0
KEEPALIVE_TIMEOUT_S: Final = 10.0
REQUEST_TIMEOUT_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 10.0
_NETWORK_FAILURES = (OSError, HandshakeError, ConnectionClosed, trio.BrokenResourceError, trio.TooSlowError)


def link_url(base_url: str) -> str:
    """The websocket endpoint under a simulator base URL.

    ``http://127.0.0.1:9000`` → ``ws://127.0.0.1:9000/link``;
    ``https://h/_dev/whatsapp/`` → ``wss://h/_dev/whatsapp/link``.

    Raises:
        ValueError: the URL is not http(s):// or ws(s)://.
    """
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"the simulator URL must be http(s)://host[:port][/path], got {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + LINK_PATH, "", ""))


@final
@attrs.frozen
class NetworkSimulatorTransport:
    """Opens links to the simulator at ``base_url`` (e.g. the value of ``WHATSAPP_SIMULATOR_URL``).

    The timings are keyword options so tests can shrink them; the defaults follow real clients.
    """

    kind: ClassVar[TransportKind] = "simulator"
    base_url: str
    keepalive_interval_s: float = KEEPALIVE_INTERVAL_S
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S
    request_timeout_s: float = REQUEST_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    url: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "url", link_url(self.base_url))

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> Link:
        """Connect and say hello; returns once the hello is sent or the attempt has failed.

        A failure is not raised: it is delivered as ``Disconnected(NETWORK_ERROR)``.
        """
        link = _NetworkLink(self, spec.salon_id, spec.credentials, spec.deliver)
        await nursery.start(link.run)
        return link


@final
class _Pending:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: JSON | None = None


@final
class _NetworkLink:
    def __init__(
        self, transport: NetworkSimulatorTransport, salon_id: int, credentials: bytes | None, deliver: Deliver
    ) -> None:
        self._transport = transport
        self._salon_id = salon_id
        self._credentials = credentials
        self._deliver = deliver
        self._ws: WebSocketConnection | None = None
        self._unacknowledged: dict[str, object] = {}  # inbound wa_id → the server's tag, until stored
        self._scope = trio.CancelScope()
        self._closed = False  # closed by us (aclose/logout): deliver nothing more
        self._ended = False  # the connection is over, whoever ended it
        self._gone = trio.Event()  # set with _ended
        self._connected = False
        self._refs = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._pong: tuple[int, trio.Event] | None = None
        self._keepalive_missed = False

    # -- the connection task ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    try:
                        with trio.fail_after(self._transport.connect_timeout_s):
                            ws = await connect_websocket_url(nursery, self._transport.url)
                            self._ws = ws
                            hello = {
                                "type": "hello",
                                "salon_id": self._salon_id,
                                "credentials": _b64(self._credentials),
                            }
                            await ws.send_message(dump(hello))
                    except _NETWORK_FAILURES as exc:
                        self._end(Disconnected(NETWORK_ERROR, f"cannot reach the simulator: {exc!r}"))
                        task_status.started()
                        return
                    task_status.started()
                    started = True
                    nursery.start_soon(self._keepalive, ws)
                    await self._read(ws)
                    if self._closed:
                        # aclose() is closing: its close handshake needs trio-websocket's reader
                        # task in this nursery; aclose cancels the scope when it is done.
                        await trio.sleep_forever()
                    nursery.cancel_scope.cancel()
        except* _NETWORK_FAILURES as group:
            self._end(Disconnected(NETWORK_ERROR, f"connection failed: {group.exceptions[0]!r}"))
        self._end(Disconnected(NETWORK_ERROR, "connection ended"))
        if not started:
            task_status.started()

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            try:
                raw = await ws.get_message()
            except ConnectionClosed as exc:
                self._end(Disconnected(NETWORK_ERROR, f"connection closed without a reason ({exc.reason})"))
                return
            try:
                frame = parse_frame(raw)
                if await self._handle(ws, frame):
                    return
            except FrameError:
                continue  # a newer simulator may send more; nothing to do with what we don't know

    async def _handle(self, ws: WebSocketConnection, frame: JSON) -> bool:
        """Dispatch one server frame; True when the server has ended the connection."""
        kind = frame["type"]
        if kind in {"ack", "nack", "logged_out"}:
            pending = self._pending.get(frame.get("ref"))  # type: ignore[arg-type]
            if pending is not None:
                pending.reply = frame
                pending.done.set()
            return False
        if kind == "pong":
            if self._pong is not None and frame.get("ref") == self._pong[0]:
                self._pong[1].set()
            return False
        if kind == "error":
            return False
        event = frame_event(frame, trio.current_time())
        if isinstance(event, Disconnected):
            self._end(event)
            return True
        if isinstance(event, CredsUpdated):
            self._credentials = event.credentials
        self._connected = self._connected or kind == "connected"
        if not self._closed:
            self._deliver(event)
        if isinstance(event, MessageReceived):
            # Acknowledged by received() once stored: an unacknowledged message is delivered again.
            self._unacknowledged[event.wa_id] = frame.get("tag")
        return False

    async def _keepalive(self, ws: WebSocketConnection) -> None:
        interval = self._transport.keepalive_interval_s
        while True:
            await trio.sleep(interval)
            ref = next(self._refs)
            answered = trio.Event()
            self._pong = (ref, answered)
            await self._send(ws, {"type": "ping", "ref": ref})
            with trio.move_on_after(self._transport.keepalive_timeout_s):
                await answered.wait()
            if answered.is_set() and self._keepalive_missed:
                self._keepalive_missed = False
                self._emit(KeepaliveRestored())
            elif not answered.is_set() and not self._keepalive_missed:
                self._keepalive_missed = True
                self._emit(KeepaliveTimeout())

    def _emit(self, event: KeepaliveTimeout | KeepaliveRestored) -> None:
        if not self._closed and not self._ended:
            self._deliver(event)

    async def _send(self, ws: WebSocketConnection, frame: JSON) -> None:
        try:
            await ws.send_message(dump(frame))
        except ConnectionClosed:
            pass  # the reader sees the close and reports it

    def _end(self, event: Disconnected) -> None:
        """The connection is over: report it once (unless we closed it) and fail waiting requests."""
        if self._ended:
            return
        self._ended = True
        self._gone.set()
        self._connected = False
        for pending in self._pending.values():
            pending.done.set()
        if not self._closed:
            self._deliver(event)

    # -- Link ---------------------------------------------------------------------------------------

    async def _request(self, frame: JSON) -> JSON:
        ws = self._ws
        if ws is None or self._ended:
            raise TransportError("not connected")
        ref = next(self._refs)
        pending = self._pending[ref] = _Pending()
        try:
            try:
                await ws.send_message(dump({**frame, "ref": ref}))
            except ConnectionClosed:
                raise TransportError("not connected") from None
            with trio.move_on_after(self._transport.request_timeout_s):
                await pending.done.wait()
        finally:
            del self._pending[ref]
        reply = pending.reply
        if reply is None:
            raise TransportError("the simulator did not answer (connection ended or timed out)")
        if reply["type"] == "nack":
            raise TransportError(str(reply.get("error", "refused")))
        return reply

    async def received(self, wa_id: str) -> None:
        tag = self._unacknowledged.pop(wa_id, None)
        ws = self._ws
        if tag is None or ws is None or self._ended:
            await trio.lowlevel.checkpoint()
            return
        await self._send(ws, {"type": "received", "tag": tag})

    async def request_pairing_code(self, phone: str) -> None:
        await self._request({"type": "request_pairing_code", "phone": phone})

    async def send_message(self, to: str, text: str) -> str:
        if not self._connected:
            await trio.lowlevel.checkpoint()
            raise TransportError("not connected")
        reply = await self._request({"type": "send", "to": to, "text": text})
        wa_id = reply.get("wa_id")
        if not isinstance(wa_id, str):
            raise TransportError("the simulator answered a send without a message id")
        return wa_id

    async def logout(self) -> None:
        self._closed = True
        try:
            if not self._ended:
                await self._request({"type": "logout"})
                # The server closes right after its ack; let it, rather than racing it with our close.
                with trio.move_on_after(self._transport.request_timeout_s):
                    await self._gone.wait()
            elif self._credentials is not None:
                await self._logout_with_credentials(self._credentials)
        finally:
            await self.aclose()

    async def _logout_with_credentials(self, credentials: bytes) -> None:
        """The link is gone: a short connection that only unlinks the device."""
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(self._transport.request_timeout_s):
                    ws = await connect_websocket_url(nursery, self._transport.url)
                    hello = {"type": "hello", "salon_id": self._salon_id, "credentials": _b64(credentials)}
                    await ws.send_message(dump({**hello, "intent": "logout"}))
                    await ws.get_message()
                    await ws.aclose()
        except* _NETWORK_FAILURES as group:
            raise TransportError(f"cannot reach the simulator to log out: {group.exceptions[0]!r}") from None

    async def aclose(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is not None and not self._ended:
            with trio.move_on_after(1.0) as cleanup:
                cleanup.shield = True
                await ws.aclose()
        else:
            await trio.lowlevel.checkpoint()
        self._ended = True
        self._scope.cancel()


def _b64(credentials: bytes | None) -> str | None:
    return None if credentials is None else base64.b64encode(credentials).decode()
