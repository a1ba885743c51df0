"""Helpers for the marketplace, websocket and dev-double tests: websocket viewers, signed redirect
URLs, forged tokens, and extra app instances on the same PostgreSQL and Redis as the ``node``."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from actor_admin.api import Services
from actor_admin.config import Settings
from actor_admin.doubles.whatsapp import SimulatorTransport
from actor_admin.node import Parts

from .conftest import JWT_SECRET, TestNode, free_port, serve_node

WAIT_S = 5.0


def headers(pairs: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs.items()]


@asynccontextmanager
async def viewer(
    ws_url: str,
    token: str | None = None,
    *,
    extra: Mapping[str, str] | None = None,
    query: str = "",
    message_queue_size: int = 64,
) -> AsyncIterator[WebSocketConnection]:
    """A websocket client of ``/marketplace/ws``; with ``token`` it authenticates by first frame."""
    async with open_websocket_url(
        ws_url + query, extra_headers=headers(extra or {}), message_queue_size=message_queue_size
    ) as ws:
        if token is not None:
            await ws.send_message(json.dumps({"type": "auth", "token": token}))
        yield ws


async def receive(ws: WebSocketConnection, within: float = WAIT_S) -> dict[str, Any]:
    with trio.fail_after(within):
        return dict(json.loads(await ws.get_message()))


async def frame_of(ws: WebSocketConnection, kind: str, within: float = WAIT_S, **match: Any) -> dict[str, Any]:
    """Read frames until one of type ``kind`` (and the ``match`` fields) arrives."""
    with trio.fail_after(within):
        while True:
            frame = json.loads(await ws.get_message())
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return dict(frame)


async def close_code(ws: WebSocketConnection, within: float = WAIT_S) -> tuple[int, list[dict[str, Any]]]:
    """Read until the server closes; the close code and the frames received before it."""
    frames: list[dict[str, Any]] = []
    with trio.fail_after(within):
        try:
            while True:
                frames.append(json.loads(await ws.get_message()))
        except ConnectionClosed as closed:
            assert closed.reason is not None
            return closed.reason.code, frames


async def qr_shown(node: TestNode, salon_id: int) -> str:
    """A viewer asks for a QR; returns the raw QR once it is on the salon's page."""
    async with viewer(node.ws_url, node.token(salon_id)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type":"request_qr"}')
        return str((await frame_of(ws, "qr"))["qr"])


# -- tokens ------------------------------------------------------------------------------------------


def claims(salon_id: int, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "actor-admin",
        "aud": "onboarding",
        "sub": str(salon_id),
        "salon_id": salon_id,
        "iat": now,
        "exp": now + 3600,
        "jti": "test-jti",
    }
    base.update(overrides)
    return base


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bad_tokens(salon_id: int, good: str) -> dict[str, str]:
    """Every kind of token docs/http-api.md#onboarding-token says must be refused, by name."""
    now = int(time.time())
    header, payload, signature = good.split(".")
    other = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other["salon_id"], other["sub"] = salon_id + 1, str(salon_id + 1)
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "tampered": f"{header}.{_b64(json.dumps(other).encode())}.{signature}",
        "expired": jwt.encode(claims(salon_id, iat=now - 7200, exp=now - 3600), JWT_SECRET, algorithm="HS256"),
        "alg_none": f"{none_header}.{_b64(json.dumps(claims(salon_id)).encode())}.",
        "wrong_audience": jwt.encode(claims(salon_id, aud="admin"), JWT_SECRET, algorithm="HS256"),
        "wrong_secret": jwt.encode(claims(salon_id), "x" * 40, algorithm="HS256"),
        "garbage": "not-a-jwt",
    }


# -- the redirect ------------------------------------------------------------------------------------


def install_url(node: TestNode, salon_ids: Sequence[int], **kwargs: Any) -> str:
    """The signed registration redirect YClients would send for ``salon_ids`` (path and query)."""
    fake = node.services.fake_yclients
    url: str = fake.install_url(list(salon_ids), **kwargs)
    return url.removeprefix(node.base_url)


# -- more app instances --------------------------------------------------------------------------------


@asynccontextmanager
async def served_app(node: TestNode, make_settings: Callable[[int], Settings]) -> AsyncIterator[tuple[str, Services]]:
    """Another app instance over ``node``'s PostgreSQL and Redis, served on its own port with the
    settings ``make_settings(port)``."""
    settings = make_settings(free_port())
    parts = Parts(
        store=node.services.store,
        redis=node.services.redis,
        transport=SimulatorTransport(node.core),
        simulator=node.core if settings.mode == "dev" else None,
        fake_yclients=node.services.fake_yclients if settings.mode == "dev" else None,
    )
    async with serve_node(settings, parts, workers=False) as services:
        yield f"http://127.0.0.1:{settings.port}", services


async def get(base_url: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.get(path, **kwargs)
