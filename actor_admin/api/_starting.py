"""The node's front door from its first second (docs/http-api.md#starting): while the node waits for
PostgreSQL at start it already listens, answers ``/healthz`` 200 and a 503 ``/readyz`` that names what
it waits for, and 503 ``starting`` elsewhere; then :meth:`FrontDoor.open` hands every request to the
real app, on the same socket, without a moment of "connection refused".

A plain ASGI app, not Quart: the real app and everything it needs (the store above all) do not exist
yet. The real app's lifespan (Quart-trio's startup and its background nursery) is run by
:meth:`FrontDoor.open`, since the server's own lifespan events went to the front door long before.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from actor_admin.cluster import RedisClient
from actor_admin.json_types import JSON

from ._http import DRAIN_LIMIT, DRAIN_SECONDS, Message, Receive, Scope, Send

#: Any ASGI application (Quart's app is typed with hypercorn's event types, ours with plain mappings).
App = Callable[..., Awaitable[None]]

#: How long the front door waits for the real app's lifespan to start or stop.
LIFESPAN_TIMEOUT_S: Final = 30.0
#: The bound on the Redis check of the starting ``/readyz`` (as for the running one).
CHECK_TIMEOUT_S: Final = 2.0
RETRY_AFTER_S: Final = 5


@attrs.define
class Starting:
    """What the node waits for at start, for the starting ``/readyz`` and the progress lines."""

    redis: RedisClient | None = None
    waiting_for: str = "postgres"
    reason: str = "not tried yet"
    attempts: int = 0
    since: float = attrs.field(factory=trio.current_time)

    def failed(self, reason: str) -> None:
        self.attempts += 1
        self.reason = reason

    async def readiness(self) -> JSON:
        """The body of ``/readyz`` while starting: the running node's shape plus ``starting``."""
        redis = await self._check_redis()
        failing = [self.waiting_for] + ([] if redis["ok"] else ["redis"])
        reasons = {self.waiting_for: f"waiting for PostgreSQL at start: {self.reason}"}
        if not redis["ok"]:
            reasons["redis"] = str(redis["error"])
        return {
            "ready": False,
            "failing": failing,
            "reasons": reasons,
            "dependencies": {
                "postgres": {"ok": False, "latency_ms": None, "schema_version": None, "error": self.reason},
                "redis": redis,
            },
            "starting": {
                "waiting_for": self.waiting_for,
                "attempts": self.attempts,
                "waiting_s": round(trio.current_time() - self.since, 3),
            },
        }

    async def _check_redis(self) -> JSON:
        if self.redis is None:
            return {"ok": False, "latency_ms": None, "error": "REDIS_URL is not configured"}
        try:
            latency_ms = await self.redis.ping(timeout_s=CHECK_TIMEOUT_S)
        except Exception as exc:
            return {"ok": False, "latency_ms": None, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "latency_ms": round(latency_ms, 3)}


@attrs.define(eq=False)
class _Lifespan:
    """The real app's lifespan task, driven through two channels."""

    to_app: trio.MemorySendChannel[Message]
    from_app: trio.MemoryReceiveChannel[Message]

    async def step(self, event: str) -> None:
        with trio.fail_after(LIFESPAN_TIMEOUT_S):
            await self.to_app.send({"type": f"lifespan.{event}"})
            answer = await self.from_app.receive()
        if answer["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"the app's lifespan {event} failed: {answer.get('message', answer['type'])}")


@attrs.define(eq=False)
class FrontDoor:
    """The ASGI app the server runs for the node's whole life: :class:`Starting`'s answers, then ``app``."""

    starting: Starting
    _app: App | None = None
    _lifespan_scope: Scope | None = None
    _lifespan: _Lifespan | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(scope, receive, send)
        elif self._app is not None:
            await self._app(scope, receive, send)
        elif scope["type"] == "http":
            drained = await _drain(receive)
            await self._answer_starting(scope, send, close=not drained)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1013, "reason": "starting"})  # try again later

    async def open(self, app: App, nursery: trio.Nursery) -> None:
        """Start ``app``'s lifespan in ``nursery`` (which must outlive serving), then route everything to it."""
        to_app, app_inbox = trio.open_memory_channel[Message](1)
        app_outbox, from_app = trio.open_memory_channel[Message](1)
        scope = dict(self._lifespan_scope or {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}})
        scope.setdefault("state", {})
        nursery.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        lifespan = _Lifespan(to_app, from_app)
        await lifespan.step("startup")
        self._lifespan = lifespan
        self._app = app

    async def _serve_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._lifespan_scope = scope
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._lifespan is not None:
                    await self._lifespan.step("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer_starting(self, scope: Scope, send: Send, *, close: bool) -> None:
        path = scope.get("path", "")
        headers = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
        if close:
            headers.append((b"connection", b"close"))
        body: JSON
        if path == "/healthz":
            status, body = 200, {"ok": True}
        elif path == "/readyz":
            status, body = 503, await self.starting.readiness()
        else:
            status = 503
            body = {
                "error": {
                    "code": "starting",
                    "message": "the node is starting and waits for PostgreSQL; retry shortly",
                }
            }
            headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
        await _send_json(send, status, body, headers)


async def _drain(receive: Receive) -> bool:
    """Read the request body (bounded) before answering: an early answer hangs a keep-alive connection
    (docs/architecture.md#early-413). False when the bound was hit: then the answer closes it."""
    read = 0
    with trio.move_on_after(DRAIN_SECONDS):
        while read <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return True
            read += len(message.get("body", b""))
    return False


async def _send_json(
    send: Send, status: int, body: JSON, headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
