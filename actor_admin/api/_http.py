"""The HTTP edge: body limit, the JSON error shape, security headers.

Every error leaves the server as ``{"error": {"code": "snake_case", "message": "…"}}`` (docs/http-api.md#conventions),
except pages meant for a salon's browser, which render HTML themselves. The shape and the body
reader are :mod:`actor_admin.http_json`'s, shared with the doubles; the routes import them from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from actor_admin.http_json import ApiError as ApiError
from actor_admin.http_json import error_body
from actor_admin.http_json import error_response as error_response
from actor_admin.http_json import fail as fail
from actor_admin.http_json import http_error_response as http_error_response
from actor_admin.http_json import json_object as json_object

MAX_BODY = 64 * 1024
# After the limit is hit we keep reading (and discarding) up to this much so the keep-alive
# connection stays usable; see _reject below for why.
DRAIN_LIMIT = 4 * 1024 * 1024
DRAIN_SECONDS = 5.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

YCLIENTS_FRAME_ANCESTORS = "https://yclients.com https://*.yclients.com"


def content_security_policy(frame_ancestors: str = YCLIENTS_FRAME_ANCESTORS) -> str:
    # 'self' in connect-src covers same-origin ws:/wss: in current browsers (CSP level 3).
    return (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors 'self' {frame_ancestors}"
    )


class BodyLimit:
    """ASGI middleware: reads the whole request body (≤ ``limit``) before the app sees it.

    Over the limit it answers 413 itself. It first drains the rest of the body (bounded in bytes
    and time): with quart-trio 0.12 + hypercorn 0.18 an early answer while the client is still
    sending leaves the keep-alive connection hung (docs/architecture.md#early-413). When the drain bound is hit
    it answers with ``Connection: close`` instead.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _answer(send, 400, "bad_request", "Content-Length header is not a number", close=True)
            return
        if declared is not None and declared > self.limit:
            await self._reject(receive, send, already=0)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.limit:
                if more:
                    await self._reject(receive, send, already=len(body))
                else:
                    await _answer(send, 413, "payload_too_large", self._too_large())
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body is larger than {self.limit // 1024} KiB"

    async def _reject(self, receive: Receive, send: Send, *, already: int) -> None:
        drained = already
        complete = False
        with trio.move_on_after(DRAIN_SECONDS):
            while drained <= DRAIN_LIMIT:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True
                    break
        await _answer(send, 413, "payload_too_large", self._too_large(), close=not complete)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _answer(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    body = error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
