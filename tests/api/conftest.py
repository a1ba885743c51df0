"""A whole node for HTTP and websocket tests: real PostgreSQL and Redis, the in-process WhatsApp
simulator, the fake YClients mounted as in ``actor-admin dev``, served by hypercorn on a real port.

It is wired by ``actor_admin.node.open_services`` — the same code the real node runs.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from actor_admin.api import Services, create_app
from actor_admin.api._tokens import mint_onboarding_token
from actor_admin.cluster import Locator
from actor_admin.config import Settings, load_settings
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.doubles.yclients import create_fake_yclients
from actor_admin.node import Parts, _start_workers, open_services

ADMIN_TOKEN = "admin-" + "a" * 32
PARTNER_TOKEN = "partner-" + "p" * 24
JWT_SECRET = "jwt-" + "j" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_settings(port: int, **overrides: str) -> Settings:
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "JWT_SECRET": JWT_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CREDENTIALS_KEY": base64.b64encode(bytes(range(32))).decode(),
        "YCLIENTS_PARTNER_TOKEN": PARTNER_TOKEN,
        "YCLIENTS_APP_ID": "1",
        "NODE_ID": f"test-node-{port}",
    }
    env.update(overrides)
    return load_settings("dev", env, dotenv=None)


@attrs.define
class TestNode:
    __test__ = False  # a helper, not a test class

    settings: Settings
    services: Services
    core: SimulatorCore
    base_url: str
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/marketplace/ws"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def token(self, salon_id: int, *, now: float | None = None) -> str:
        return mint_onboarding_token(JWT_SECRET, salon_id, now=time.time() if now is None else now)

    def bearer(self, salon_id: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(salon_id)}"}

    async def register(self, salon_id: int, title: str | None = None) -> Any:
        """A salon as after a successful marketplace redirect (pending_whatsapp)."""
        return await self.services.store.companies.upsert_registration(salon_id, title=title)


@asynccontextmanager
async def serve_node(
    settings: Settings, parts: Parts, *, workers: bool = True, locator: Locator | None = None
) -> AsyncIterator[Services]:
    """Wire ``parts`` as production does and serve the app on ``settings.port`` until the block ends
    (with the node's background workers unless ``workers=False``; ``locator`` as the node's)."""
    config = Config()
    config.bind = [f"127.0.0.1:{settings.port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    async with open_services(settings, parts, locator=locator) as services, trio.open_nursery() as nursery:
        stop = trio.Event()
        app = create_app(services)
        await nursery.start(lambda task_status: serve(app, config, shutdown_trigger=stop.wait, task_status=task_status))
        if workers:
            _start_workers(nursery, services)
        yield services
        services.shutting_down.set()
        stop.set()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def node(store: Any, redis_client: Any) -> AsyncIterator[TestNode]:
    settings = node_settings(free_port())
    core = SimulatorCore()
    fake = create_fake_yclients(PARTNER_TOKEN, 1, settings.public_url)
    parts = Parts(
        store=store, redis=redis_client, transport=SimulatorTransport(core), simulator=core, fake_yclients=fake
    )
    async with (
        serve_node(settings, parts) as services,
        httpx.AsyncClient(base_url=settings.public_url, timeout=10) as http,
    ):
        yield TestNode(settings, services, core, settings.public_url, http)
