"""Fixtures for the YClients area: our client against the fake marketplace (``fake_server``, from
``tests/_fake_yclients.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from actor_admin.yclients import NoThrottle, YClientsClient
from tests._fake_yclients import APPLICATION_ID, PARTNER_TOKEN, FakeServer


@pytest.fixture
async def client(fake_server: FakeServer) -> AsyncIterator[YClientsClient]:
    async with YClientsClient(
        api_url=fake_server.url,
        partner_token=PARTNER_TOKEN,
        application_id=APPLICATION_ID,
        throttle=NoThrottle(),
        timeout_s=2.0,
    ) as yc:
        yield yc
