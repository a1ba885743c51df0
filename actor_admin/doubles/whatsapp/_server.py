"""The simulator's networked front: the websocket link endpoint and the HTTP control API.

:func:`simulator_blueprint` holds both (``/link`` for servers' connections, the control routes for
the phones), so it works the same mounted under ``/_dev/whatsapp/`` in ``actor-admin dev`` or at
``/`` of ``actor-admin simulator`` (:func:`serve_simulator`). The link protocol is described in
``docs/simulator-protocol.md``; control errors are JSON ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import EllipsisType
from typing import Final, TypeVar, final

import hypercorn.config
import hypercorn.trio
import trio
from quart import Blueprint, Response, jsonify, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from wsproto.frame_protocol import CloseReason

from actor_admin.http_json import ApiError, error_response, fail, http_error_response, json_object
from actor_admin.json_types import JSON
from actor_admin.session import NETWORK_ERROR, Disconnected, MessageReceived, TransportEvent
from actor_admin.whatsapp import TransportError
from actor_admin.whatsapp.simulator_protocol import (
    LINK_PATH,
    FrameError,
    decode_credentials,
    dump,
    event_frame,
    parse_frame,
)

from ._core import (
    ServerConnection,
    SimulatorCore,
    SimulatorInputError,
    SimulatorLookupError,
    checked_phone,
)

T = TypeVar("T")

MAX_BODY_BYTES: Final = 64 * 1024
HELLO_TIMEOUT_S: Final = 10.0
# Frames waiting for a slow client; past this the simulator cuts the connection, as a server would.
OUTGOING_BUFFER: Final = 1024
# A connection the simulator drops (a cut network, a client too slow to read) ends as a server error would.
CLOSE_DROPPED: Final = CloseReason.INTERNAL_ERROR


async def _body() -> JSON:
    data = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if len(data) > MAX_BODY_BYTES:
        fail(413, "payload_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    return await json_object(empty_is_object=True)


def _field(
    body: JSON, name: str, kind: type[T] | tuple[type[T], ...], *, default: T | EllipsisType = ...
) -> T:
    """``body[name]`` if it is a ``kind`` (a bool is not a number here), else 422; ``default`` when absent."""
    if name not in body:
        if not isinstance(default, EllipsisType):
            return default
        fail(422, f"missing_{name}", f"{name!r} is required")
    value: object = body[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        fail(422, f"invalid_{name}", f"{name!r} has the wrong type")
    return value


def simulator_blueprint(core: SimulatorCore) -> Blueprint:
    """The control API and the ``/link`` websocket endpoint over ``core``, mountable anywhere."""
    bp = Blueprint("whatsapp_simulator", __name__)

    @bp.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @bp.errorhandler(SimulatorLookupError)
    async def lookup_error(exc: SimulatorLookupError) -> Response:
        return error_response(404, exc.code, exc.message)

    @bp.errorhandler(SimulatorInputError)
    async def input_error(exc: SimulatorInputError) -> Response:
        return error_response(422, exc.code, exc.message)

    @bp.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return http_error_response(exc)

    @bp.get("/")
    async def index() -> Response:
        return jsonify(
            {
                "service": "whatsapp-simulator",
                "link": LINK_PATH.lstrip("/"),
                "docs": "docs/simulator-protocol.md",
                "stats": core.stats(),
            }
        )

    @bp.get("/stats")
    async def stats() -> Response:
        return jsonify(core.stats())

    @bp.post("/scan")
    async def scan() -> Response:
        body = await _body()
        qr = _field(body, "qr", str)
        phone = checked_phone(_field(body, "phone", str))
        return jsonify({"jid": core.scan(qr, phone), "phone": phone})

    @bp.post("/pair")
    async def pair() -> Response:
        body = await _body()
        return jsonify({"jid": core.pair(_field(body, "code", str))})

    @bp.post("/phones/<phone>/logout")
    async def logout(phone: str) -> Response:
        return jsonify({"unlinked": core.logout(phone)})

    @bp.post("/phones/<phone>/messages")
    async def inbound(phone: str) -> Response:
        body = await _body()
        wa_id = core.inbound(
            phone,
            _field(body, "from", str),
            _field(body, "text", str),
            _field(body, "id", (str, type(None)), default=None),
        )
        return jsonify({"id": wa_id})

    @bp.get("/phones/<phone>/messages")
    async def outbound_log(phone: str) -> Response:
        sent = core.sent_messages(checked_phone(phone))
        return jsonify(
            {
                "messages": [
                    {"id": m.wa_id, "to": m.to, "text": m.text, "at": m.at, "salon_id": m.salon_id} for m in sent
                ]
            }
        )

    @bp.post("/drop")
    async def drop() -> Response:
        body = await _body()
        return jsonify({"dropped": core.drop(_field(body, "phone", str))})

    @bp.post("/stall")
    async def stall() -> Response:
        body = await _body()
        stalled = _field(body, "stalled", bool, default=True)
        return jsonify({"connections": core.stall(_field(body, "phone", str), stalled), "stalled": stalled})

    @bp.post("/ban")
    async def ban() -> Response:
        body = await _body()
        seconds = _field(body, "seconds", (int, float))
        expires_at = core.ban(_field(body, "phone", str), seconds)
        return jsonify({"ban_expires_in": expires_at - trio.current_time()})

    @bp.post("/outdate")
    async def outdate() -> Response:
        body = await _body()
        enabled = _field(body, "enabled", bool, default=True)
        core.outdate(enabled)
        return jsonify({"outdated": enabled})

    @bp.post("/outage")
    async def outage() -> Response:
        body = await _body()
        dropped = core.outage(_field(body, "seconds", (int, float)))
        return jsonify({"dropped": dropped, "outage_ends_in": core.outage_remaining()})

    @bp.get("/outage")
    async def outage_now() -> Response:
        return jsonify({"unreachable": core.unreachable, "outage_ends_in": core.outage_remaining()})

    @bp.get("/salons/<int:salon_id>")
    async def salon(salon_id: int) -> Response:
        return jsonify(
            {
                "salon_id": salon_id,
                "qr": core.qr_for(salon_id),
                "qr_expires_in": core.qr_expires_in(salon_id),
                "pairing_code": core.pairing_code_for(salon_id),
            }
        )

    @bp.websocket(LINK_PATH)
    async def link() -> None:
        await _serve_link(core)

    return bp


def simulator_app(core: SimulatorCore | None = None) -> QuartTrio:
    """The standalone simulator: the blueprint at ``/``, JSON errors for every path."""
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.register_blueprint(simulator_blueprint(core if core is not None else SimulatorCore()))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return http_error_response(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # A bug, not a bad request: still answer JSON so tools never parse an HTML traceback.
        return error_response(500, "internal_error", "the simulator failed; see its log")

    return app


async def serve_simulator(
    host: str = "127.0.0.1",
    port: int = 9000,
    core: SimulatorCore | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the standalone simulator on ``host:port`` until cancelled (or ``shutdown_trigger`` returns).

    ``task_status.started`` receives hypercorn's bound URLs (e.g. ``["http://127.0.0.1:9000"]``), so
    ``port=0`` works in tests.
    """
    config = hypercorn.config.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    await hypercorn.trio.serve(simulator_app(core), config, shutdown_trigger=shutdown_trigger, task_status=task_status)


# -- the link endpoint --------------------------------------------------------------------------


@final
class _WebSocketSink:
    """Turns the core's pushes into outgoing frames; a single writer task sends them in order.

    Items are frame texts, or an ``int``: close the websocket with that code after what came before.
    """

    def __init__(self, outgoing: trio.MemorySendChannel[str | int]) -> None:
        self._outgoing = outgoing

    def push(self, item: str | int) -> None:
        try:
            self._outgoing.send_nowait(item)
        except trio.WouldBlock:
            # The client reads too slowly: cut it off (the writer then closes with CLOSE_DROPPED).
            self._outgoing.close()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def send(self, frame: JSON) -> None:
        self.push(dump(frame))

    def event(self, event: TransportEvent) -> None:
        self.send(event_frame(event, trio.current_time()))

    def message(self, tag: int, event: MessageReceived) -> bool:
        self.send(event_frame(event, trio.current_time(), tag=tag))
        return False  # kept until the client sends "received" for the tag

    def keepalive(self, ok: bool) -> None:
        pass  # a stalled connection simply stops answering pings; the client notices

    def ended(self, event: Disconnected | None) -> None:
        if event is None:
            self.push(CloseReason.NORMAL_CLOSURE)
        elif event.reason == NETWORK_ERROR:
            self.push(CLOSE_DROPPED)  # a cut network says nothing: no disconnected frame
        else:
            self.send(event_frame(event, trio.current_time()))
            self.push(CloseReason.NORMAL_CLOSURE)


async def _write(outgoing: trio.MemoryReceiveChannel[str | int], done: trio.CancelScope) -> None:
    code: int = CLOSE_DROPPED  # the channel closed under us: the buffer overflowed
    async for item in outgoing:
        if isinstance(item, int):
            code = item
            break
        await websocket.send(item)
    await websocket.close(code)
    done.cancel()


async def _serve_link(core: SimulatorCore) -> None:
    await websocket.accept()
    raw: str | bytes | None = None
    with trio.move_on_after(HELLO_TIMEOUT_S):
        raw = await websocket.receive()
    if raw is None:
        await websocket.close(CloseReason.POLICY_VIOLATION, "no hello")
        return
    try:
        hello = parse_frame(raw)
        if hello["type"] != "hello":
            raise FrameError("the first frame must be 'hello'")
        salon_id = hello.get("salon_id")
        if isinstance(salon_id, bool) or not isinstance(salon_id, int):
            raise FrameError("hello needs an integer 'salon_id'")
        credentials = decode_credentials(hello.get("credentials"))
    except FrameError as exc:
        await websocket.send(dump({"type": "error", "code": "bad_hello", "message": str(exc)}))
        await websocket.close(CloseReason.POLICY_VIOLATION)
        return
    if hello.get("intent") == "logout" and core.unreachable:
        await websocket.close(CLOSE_DROPPED)  # WhatsApp is unreachable: the one-shot fails like a dial
        return
    if hello.get("intent") == "logout":
        done = credentials is not None and core.logout_credentials(credentials)
        await websocket.send(dump({"type": "logged_out", "unlinked": done}))
        await websocket.close(CloseReason.NORMAL_CLOSURE)
        return
    send, receive = trio.open_memory_channel[str | int](OUTGOING_BUFFER)
    sink = _WebSocketSink(send)
    connection = core.accept(salon_id, credentials, sink)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, receive, nursery.cancel_scope)
            nursery.start_soon(connection.serve)
            while not _answer(core, connection, sink, await websocket.receive()):
                pass
            await trio.sleep_forever()  # logged out: the writer ends the nursery after the close
    finally:
        # The client went away (quart cancels the handler) or the server ended it: either way gone.
        core.close(connection)


def _answer(core: SimulatorCore, connection: ServerConnection, sink: _WebSocketSink, raw: str | bytes) -> bool:
    """Handle one client frame; True when the client asked to end (logout)."""
    try:
        frame = parse_frame(raw)
    except FrameError as exc:
        sink.send({"type": "error", "code": "bad_frame", "message": str(exc)})
        return False
    ref = frame.get("ref")
    kind = frame["type"]
    if kind == "ping":
        if not connection.stalled:
            sink.send({"type": "pong", "ref": ref})
    elif kind == "received":
        tag = frame.get("tag")
        if isinstance(tag, int):
            connection.ack(tag)
    elif kind in {"request_pairing_code", "send"}:
        try:
            if kind == "send":
                result = {"wa_id": connection.send_message(frame.get("to"), frame.get("text"))}  # type: ignore[arg-type]
            else:
                connection.request_pairing_code(frame.get("phone"))  # type: ignore[arg-type]
                result = {}
        except TransportError as exc:
            sink.send({"type": "nack", "ref": ref, "error": str(exc)})
        else:
            sink.send({"type": "ack", "ref": ref, **result})
    elif kind == "logout":
        sink.send({"type": "ack", "ref": ref})
        core.logout_link(connection)  # ends the connection: the sink closes after the ack
        return True
    else:
        sink.send({"type": "error", "code": "unknown_frame", "message": f"unknown frame type {kind!r}"})
    return False
