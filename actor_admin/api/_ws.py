"""``WS /marketplace/ws`` (docs/websocket.md): the connect page's live view of one salon's WhatsApp session.

The handshake is refused before anything else happens for a foreign ``Origin`` (403), for a
client IP over 10 new connections a minute across the cluster (429, counted in Redis — the
original counted in process memory, where behind several processes it limited nothing: fault 9),
and while the node shuts down (503). After ``accept`` the viewer authenticates (the first token
source present decides), subscribes to its salon's topic on the bus *before* asking for the
snapshot — so no frame published in between is lost — then gets the snapshot and every frame after
it. A viewer never owns anything: closing the tab cancels this handler and releases the
subscription; the actor does not notice.

Close codes: 4401 bad/missing token; 1008 a flood of frames (policy); 1009 a frame over 16 KiB;
1013 the viewer fell too far behind (reconnect for fresh state); 1001 the node is going away. A
close whose frames cannot go out in CLOSE_TIMEOUT_S — the peer stopped reading — aborts the
connection instead (docs/websocket.md#limits).
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Final, TypeVarTuple
from urllib.parse import urlsplit

import trio
from quart import Blueprint, Response, websocket
from wsproto.frame_protocol import CloseReason

from actor_admin.actors import SessionUnavailable
from actor_admin.cluster import SubscriberTooSlow, Subscription
from actor_admin.json_types import JSON, JsonRejected, loads_untrusted
from actor_admin.session import (
    INACTIVE_REFUSALS,
    Frame,
    Refused,
    error_frame,
    pairing_code_frame,
    pong_frame,
    state_frame,
)

from ._connection import SCOPE_KEY, Connection
from ._http import error_response
from ._onboarding import inactive_status, request_pairing_code, request_qr, unavailable, verify_token
from ._services import Services

log = logging.getLogger("actor_admin.api")

Args = TypeVarTuple("Args")

WS_PATH: Final = "/marketplace/ws"
AUTH_TIMEOUT_S: Final = 10.0
MAX_FRAME_BYTES: Final = 16 * 1024
# A page sends a ping every 25 s and a handful of commands; these bounds are far above that.
MAX_BAD_FRAMES: Final = 20
FLOOD_FRAMES: Final = 30
FLOOD_WINDOW_S: Final = 10.0
CONNECTS_PER_IP: Final = 10
CONNECTS_WINDOW_S: Final = 60.0
# A viewer whose connection has had a frame waiting to go out for this long straight is cut off: it
# holds a task, its subscription and a socket for nothing (docs/websocket.md#limits).
SEND_TIMEOUT_S: Final = 10.0
# The close frame's own bound; past it the connection is aborted.
CLOSE_TIMEOUT_S: Final = 2.0

# The standard's close codes are wsproto's CloseReason; this one is ours (docs/websocket.md).
CLOSE_UNAUTHORIZED: Final = 4401

UNAUTHORIZED_MESSAGE: Final = "the onboarding link expired or is invalid; open the app again from YClients"
TOKEN_EXPIRED_MESSAGE: Final = "the onboarding link has expired (it lasts one hour); open the app again from YClients"


# -- the handshake -----------------------------------------------------------------------------------


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Is ``origin`` in the allow-list? Exact match, or ``scheme://*.host`` for any subdomain of
    ``host`` (at any depth) under the same scheme and port; never ``host`` itself."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or "@" in parts.netloc:
        return False
    netloc = parts.netloc
    for entry in allowed:
        rule = urlsplit(entry.strip().lower().rstrip("/"))
        if rule.scheme != parts.scheme:
            continue
        if rule.netloc == netloc:
            return True
        if rule.netloc.startswith("*."):
            suffix = rule.netloc[1:]  # ".yclients.com" (with the port, if the rule has one)
            label = netloc[: -len(suffix)] if netloc.endswith(suffix) else ""
            if label and all(part and all(c.isalnum() or c == "-" for c in part) for part in label.split(".")):
                return True
    return False


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(entries: Iterable[str]) -> list[Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.warning("TRUSTED_PROXIES: ignoring %r (not an IP address or network)", entry)
    return networks


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(peer: str, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy — then the right-most
    ``X-Forwarded-For`` hop that is not itself a trusted proxy (hops further left are whatever the
    client claimed and cannot be believed)."""

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    if not forwarded_for or not is_trusted(_ip(peer)):
        return peer
    for hop in reversed(forwarded_for.split(",")[-32:]):
        address = _ip(hop)
        if address is None:
            return peer  # a proxy we trust wrote garbage: do not guess
        if not is_trusted(address):
            return str(address)
    return peer


#: The error code of each refused handshake's status (for ``/metrics``).
_REFUSED_BY_STATUS: Final = {403: "forbidden_origin", 429: "rate_limited", 503: "shutting_down"}


def _handshake_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    response = error_response(status, code, message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# -- one viewer --------------------------------------------------------------------------------------


def _token_from_handshake() -> str | None:
    """The token of the first present source — ``Authorization: Bearer``, ``x-auth-token``, query
    ``token`` — even if it is empty (a present source decides); None when none is present."""
    authorization = websocket.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    header = websocket.headers.get("X-Auth-Token")
    if header is not None:
        return header.strip()
    query = websocket.args.get("token")
    if query is not None:
        return query
    return None


def _too_big(data: str | bytes) -> bool:
    if isinstance(data, str):
        return len(data) > MAX_FRAME_BYTES // 4 and len(data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES
    return len(data) > MAX_FRAME_BYTES


def _parse(data: str | bytes | None) -> JSON:
    """A client frame as a JSON object with a string ``type``.

    Raises:
        JsonRejected: anything else, with the reason (the viewer gets a ``malformed_frame`` error).
    """
    if not isinstance(data, str):
        # Binary frames (and quart's None for an empty one) carry nothing we speak.
        raise JsonRejected("malformed_frame", 'a frame is a text frame holding a JSON object with a "type"')
    frame = loads_untrusted(data)
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise JsonRejected("malformed_frame", 'a frame is a JSON object with a "type"')
    return frame


def _error(refused: Refused) -> Frame:
    return error_frame(refused.code, refused.message)


class _Closing(Exception):
    """Raised inside the viewer to end it with a close code (after ``farewell``, if any)."""

    def __init__(self, code: int, reason: str, farewell: Frame | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.farewell = farewell


def _first(group: BaseExceptionGroup[_Closing]) -> _Closing:
    """The first ``_Closing`` in a (possibly nested) group: whichever task decided first wins."""
    for exc in group.exceptions:
        if isinstance(exc, _Closing):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
    raise AssertionError("empty exception group")


class FrameEncoder:
    """Encodes each frame once however many viewers send it.

    The bus hands the same frame object to every local subscriber of a salon, and their forwarders
    run one after another, so remembering the last few objects encoded saves a ``json.dumps`` per
    viewer even when two salons' fan-outs interleave. Frames are never changed after they are
    published; a frame is recognised by identity, and held here only until ``KEPT`` newer ones came.
    """

    KEPT: Final = 8

    def __init__(self) -> None:
        self._recent: collections.deque[tuple[Frame, str]] = collections.deque(maxlen=self.KEPT)

    def encode(self, frame: Frame) -> str:
        for known, text in reversed(self._recent):
            if known is frame:
                return text
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        self._recent.append((frame, text))
        return text


class Viewer:
    """One accepted websocket: authentication, then the forwarder, the reader and the commands."""

    # Every connected viewer holds one of these for as long as it watches: slots, and no lock
    # (hypercorn already writes one frame at a time to a connection), keep what the collector
    # walks per viewer small (docs/websocket.md#garbage-collection).
    __slots__ = (
        "bad_frames",
        "client",
        "closed",
        "command_running",
        "encoder",
        "expiry",
        "nursery",
        "qr_asked_at",
        "recent",
        "salon_id",
        "sending",
        "services",
        "watch",
    )

    def __init__(self, services: Services, encoder: FrameEncoder, client: str = "unknown") -> None:
        self.services = services
        self.encoder = encoder
        #: The client's address (as the rate limit sees it), for the log line of a refusal.
        self.client = client
        self.salon_id = 0
        #: When the token expires, on trio's clock.
        self.expiry = math.inf
        self.closed = False
        #: Writes in flight, and the watcher's scope: its deadline is the token's expiry, or
        #: SEND_TIMEOUT_S after the writes in flight began (``_write``).
        self.sending = 0
        self.watch: trio.CancelScope | None = None
        self.bad_frames = 0
        #: When the client's recent frames arrived (the flood limit); made at its first frame.
        self.recent: collections.deque[float] | None = None
        self.command_running = False
        # When this viewer asked for a QR and has not been sent one since (for the QR latency metric).
        self.qr_asked_at: float | None = None
        self.nursery: trio.Nursery | None = None

    async def send(self, frame: Frame) -> None:
        """Send one frame, unless the close frame went first. Frames leave in the order their
        sends began: hypercorn queues writers to a connection in turn."""
        if not self.closed:
            await self._write(self.encoder.encode(frame))

    async def _write(self, text: str) -> None:
        """Write one frame, watched. hypercorn writes under a shielded scope, so no timeout here
        could end a write the peer does not take; ``_watch`` notices instead, its deadline moved
        to SEND_TIMEOUT_S after each start of writing, and has the connection aborted
        (docs/websocket.md#limits)."""
        watch = self.watch
        if not self.sending and watch is not None:
            watch.deadline = min(trio.current_time() + SEND_TIMEOUT_S, self.expiry)
        self.sending += 1
        try:
            await websocket.send(text)
        finally:
            self.sending -= 1

    async def close(self, closing: _Closing) -> None:
        """Send the farewell frame, if any, and the close frame, once. Bounded whatever the peer
        does: when they are not out within CLOSE_TIMEOUT_S the connection is aborted, which also
        ends any write of ours stuck under it; nothing cancels this meanwhile."""
        if self.closed:
            return
        self.closed = True
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_abort_after, CLOSE_TIMEOUT_S)
                if closing.farewell is not None:
                    await websocket.send(self.encoder.encode(closing.farewell))
                await websocket.close(closing.code, closing.reason)
                nursery.cancel_scope.cancel()

    async def run(self) -> None:
        try:
            if not await self._authenticate():
                return
            async with self.services.bus.subscribe(self.salon_id) as frames, trio.open_nursery() as nursery:
                self.nursery = nursery
                self.watch = trio.CancelScope(deadline=self.expiry)
                nursery.start_soon(self._closing_first, self._watch)
                for frame in await self._initial_frames():
                    await self.send(frame)
                nursery.start_soon(self._closing_first, partial(self._forward, frames))
                nursery.start_soon(self._closing_first, self._read)
        except* _Closing as group:
            await self.close(_first(group))

    async def _closing_first(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of the viewer's tasks; the one that ends the viewer closes the connection before
        the others are cancelled, since one of them may be in a write only that close ends."""
        try:
            await task()
        except _Closing as closing:
            await self.close(closing)
            raise

    # -- authentication ------------------------------------------------------------------------------

    async def _authenticate(self) -> bool:
        token = _token_from_handshake()
        if token is None:
            token = await self._auth_frame()
        claims = verify_token(self.services, token or "", where=f"the websocket from {self.client}")
        if claims is None:
            await self._refuse()
            return False
        self.salon_id = claims.salon_id
        self.expiry = trio.current_time() + max(0.0, claims.expires_at - self.services.wall_clock())
        return True

    async def _auth_frame(self) -> str | None:
        """The token of the first message, which must be ``{"type": "auth", "token": …}``."""
        with trio.move_on_after(AUTH_TIMEOUT_S):
            data = await websocket.receive()
            if _too_big(data):
                raise _Closing(CloseReason.MESSAGE_TOO_BIG, "frame too large")
            with contextlib.suppress(JsonRejected):
                frame = _parse(data)
                if frame["type"] == "auth" and isinstance(frame.get("token"), str):
                    return str(frame["token"])
        return None

    async def _refuse(self) -> None:
        if self.services.metrics is not None:
            self.services.metrics.count_websocket_refusal("unauthorized")
        raise _Closing(CLOSE_UNAUTHORIZED, "unauthorized", error_frame("unauthorized", UNAUTHORIZED_MESSAGE))

    # -- server → client ---------------------------------------------------------------------------

    async def _initial_frames(self) -> list[Frame]:
        """The state (and QR, code or reason) a viewer must see first; never starts a session for a
        salon YClients withdrew."""
        try:
            inactive = await inactive_status(self.services, self.salon_id)
        except Exception as exc:  # the store is down: the session's own snapshot still tells the truth
            log.warning("could not read the company record: %s", exc, extra={"salon_id": self.salon_id})
            inactive = None
        if inactive is not None:
            return [state_frame(inactive), _error(INACTIVE_REFUSALS[inactive])]
        try:
            return await self.services.router.snapshot(self.salon_id)  # the owner's view, wherever it runs
        except SessionUnavailable as exc:
            view = self.services.registry.get(self.salon_id)
            state = "failed" if exc.code == "failed" else (view.state if view is not None else "idle")
            return [state_frame(state), _error(unavailable(exc))]

    async def _forward(self, frames: Subscription) -> None:
        # Every frame of a fan-out takes this path once per viewer: one write, whose time the
        # watcher bounds with one deadline move, no cancel scope of its own (docs/websocket.md#limits).
        try:
            async for frame in frames:
                if self.closed:  # as ``send``: nothing after the close frame
                    continue
                # The bus's own object, unchanged: the FrameEncoder encodes it once for all viewers.
                await self._write(self.encoder.encode(frame))
                if frame.get("type") == "qr":
                    self._qr_delivered()
        except SubscriberTooSlow:
            raise _Closing(CloseReason.TRY_AGAIN_LATER, "fell behind; reconnect") from None
        raise _Closing(CloseReason.GOING_AWAY, "the bus closed")

    def _qr_delivered(self) -> None:
        """Report how long the viewer waited from ``request_qr`` to its QR (``/metrics``)."""
        asked, self.qr_asked_at = self.qr_asked_at, None
        metrics = self.services.metrics
        if asked is not None and metrics is not None:
            metrics.observe_qr_latency(trio.current_time() - asked)

    async def _watch(self) -> None:
        """End the connection when the node shuts down; when the onboarding token expires (it
        opens the page for one hour, YClients' activation window, and an open connection ends with
        it as a fresh one would be refused); or when writes have been waiting SEND_TIMEOUT_S
        straight (``_write``). One task for all three: a task is many objects, and a node holds
        thousands of viewers."""
        watch = self.watch
        assert watch is not None  # made by ``run`` before this starts
        while True:
            with watch:
                await self.services.shutting_down.wait()
                raise _Closing(CloseReason.GOING_AWAY, "server shutting down")
            if trio.current_time() >= self.expiry:
                expired = error_frame("token_expired", TOKEN_EXPIRED_MESSAGE)
                raise _Closing(CLOSE_UNAUTHORIZED, "token expired", expired)
            if self.sending:  # the deadline was SEND_TIMEOUT_S after these writes began
                raise _Closing(CloseReason.TRY_AGAIN_LATER, "too slow")
            # The writes that moved the deadline ended in time: wait again (a scope that fired is spent).
            watch = self.watch = trio.CancelScope(deadline=self.expiry)

    # -- client → server ---------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            data = await websocket.receive()
            now = trio.current_time()
            recent = self.recent
            if recent is None:
                recent = self.recent = collections.deque()
            recent.append(now)
            while recent and recent[0] <= now - FLOOD_WINDOW_S:
                recent.popleft()
            if len(recent) > FLOOD_FRAMES:
                raise _Closing(CloseReason.POLICY_VIOLATION, "too many frames")
            if _too_big(data):
                raise _Closing(CloseReason.MESSAGE_TOO_BIG, "frame too large")
            try:
                frame = _parse(data)
            except JsonRejected as exc:
                await self._bad("malformed_frame", exc.message)
                continue
            await self._dispatch(frame)

    async def _bad(self, code: str, message: str) -> None:
        self.bad_frames += 1
        if self.bad_frames > MAX_BAD_FRAMES:
            raise _Closing(CloseReason.POLICY_VIOLATION, "too many bad frames")
        await self.send(error_frame(code, message))

    async def _dispatch(self, frame: JSON) -> None:
        kind = frame["type"]
        if kind == "ping":
            await self.send(pong_frame())
        elif kind == "auth":
            await self._reauth(frame.get("token"))
        elif kind == "request_qr":
            if self.qr_asked_at is None:
                self.qr_asked_at = trio.current_time()
            await self._start_command(self._request_qr)
        elif kind == "request_pairing_code":
            phone_raw = frame.get("phone")
            if not isinstance(phone_raw, str):
                await self._bad("malformed_frame", 'request_pairing_code needs "phone" as a string')
                return
            await self._start_command(self._request_pairing_code, phone_raw)
        else:
            await self._bad("unknown_type", "known types: auth, request_qr, request_pairing_code, ping")

    async def _reauth(self, token: object) -> None:
        """An ``auth`` frame after authentication: a bad token ends the connection like a first one;
        a valid one for another salon is refused (one connection watches one salon)."""
        where = f"the websocket's auth frame from {self.client}"
        claims = verify_token(self.services, token if isinstance(token, str) else "", where=where)
        if claims is None:
            await self._refuse()
        elif claims.salon_id != self.salon_id:
            await self.send(error_frame("wrong_salon", "this connection already watches another salon"))

    async def _start_command(self, command: Callable[[*Args], Awaitable[None]], *args: *Args) -> None:
        """Run a command beside the reader (a pairing code can take seconds), one at a time."""
        if self.command_running:
            await self.send(error_frame("busy", "the previous request is still being handled"))
            return
        self.command_running = True

        async def run() -> None:
            try:
                await command(*args)
            except (_Closing, trio.Cancelled):
                raise
            except Exception as exc:  # the store or Redis is down: say so, keep the viewer
                log.warning("viewer command failed: %s", exc, extra={"salon_id": self.salon_id})
                await self.send(error_frame("unavailable", "the service is temporarily unavailable; try again"))
            finally:
                self.command_running = False

        assert self.nursery is not None  # commands come from the reader, which runs in it
        self.nursery.start_soon(run)

    async def _request_qr(self) -> None:
        outcome = await request_qr(self.services, self.salon_id)
        if isinstance(outcome, Refused):
            await self.send(_error(outcome))
        # Otherwise the state and QR frames reach this viewer (and every other) through the bus.

    async def _request_pairing_code(self, phone_raw: str) -> None:
        outcome = await request_pairing_code(self.services, self.salon_id, phone_raw)
        if isinstance(outcome, Refused):
            await self.send(_error(outcome))
        else:
            await self.send(pairing_code_frame(outcome.code, outcome.expires_in))


async def _abort_after(seconds: float) -> None:
    """Abort the current websocket's connection after ``seconds`` (unless cancelled first)."""
    await trio.sleep(seconds)
    connection = websocket.scope.get(SCOPE_KEY)
    if isinstance(connection, Connection):
        await connection.abort()
    else:
        log.warning("cannot abort a websocket served without KeepConnection")


# -- the blueprint -----------------------------------------------------------------------------------


def blueprint(services: Services) -> Blueprint:
    bp = Blueprint("marketplace_ws", __name__)
    settings = services.settings
    trusted = _networks(settings.trusted_proxies)
    encoder = FrameEncoder()

    async def refusal(ip: str) -> Response | None:
        """The HTTP answer that refuses this handshake from ``ip``, or None to go on."""
        if services.shutting_down.is_set():
            return _handshake_error(503, "shutting_down", "this node is shutting down; reconnect", {"Retry-After": "1"})
        origin = websocket.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, settings.allowed_origins):
            services.refusals.refused("origin", f"websocket Origin {origin[:200]!r} from {ip}: not in ALLOWED_ORIGINS")
            return _handshake_error(403, "forbidden_origin", "this page's origin may not open the websocket")
        if services.limiter is not None:
            decision = await services.limiter.hit("ws:" + ip, CONNECTS_PER_IP, CONNECTS_WINDOW_S)
            if not decision.allowed:
                limit = f"over {CONNECTS_PER_IP} new connections in {CONNECTS_WINDOW_S:g} s"
                services.refusals.refused("rate_limit", f"websocket from {ip}: {limit}")
                retry = str(max(1, math.ceil(decision.retry_after)))
                return _handshake_error(
                    429,
                    "rate_limited",
                    "too many new connections from this address; wait a minute",
                    {"Retry-After": retry},
                )
        return None

    @bp.websocket(WS_PATH)
    async def marketplace_ws() -> Response | None:
        peer = str((websocket.scope.get("client") or ("unknown",))[0])
        ip = client_ip(peer, websocket.headers.get("X-Forwarded-For"), trusted)
        refused = await refusal(ip)
        if refused is not None:
            if services.metrics is not None:
                services.metrics.count_websocket_refusal(_REFUSED_BY_STATUS[refused.status_code])
            return refused
        await websocket.accept()
        counters = services.counters
        counters.websockets_open += 1
        counters.websockets_total += 1
        try:
            await Viewer(services, encoder, ip).run()
        finally:
            counters.websockets_open -= 1
        return None

    return bp
