"""The fake marketplace served over real HTTP on a free loopback port, for the YClients and doubles tests."""

from __future__ import annotations

from functools import partial

import attrs
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from actor_admin.doubles.yclients import FakeYClients, create_fake_yclients, create_standalone_app

PARTNER_TOKEN = "partner-token-0123456789abcdef"
APPLICATION_ID = 77
OUR_PUBLIC_URL = "http://our.example"


async def serve_app(nursery: trio.Nursery, app: QuartTrio) -> str:
    """Serve ``app`` on 127.0.0.1 with a free port inside ``nursery``; return its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds: list[str] = await nursery.start(partial(serve, app, config, shutdown_trigger=trio.sleep_forever))
    return binds[0]


@attrs.frozen
class FakeServer:
    fake: FakeYClients
    url: str  # the API root; the control API is under url + "/_fake"

    @property
    def control(self) -> str:
        return self.url + "/_fake"


@pytest.fixture
async def fake_server(nursery: trio.Nursery) -> FakeServer:
    fake = create_fake_yclients(PARTNER_TOKEN, APPLICATION_ID, OUR_PUBLIC_URL)
    url = await serve_app(nursery, create_standalone_app(fake))
    return FakeServer(fake=fake, url=url)
