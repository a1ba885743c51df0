"""Shared test wiring. Area fixtures live in plugin modules so each area owns its own file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import trio_asyncio

pytest_plugins = [
    "tests._scheduling",
    "tests._pg",
    "tests._redis",
    "tests._browser",
    "tests._fake_yclients",
]


@pytest.fixture
async def aio_loop() -> AsyncIterator[object]:
    """trio-asyncio's loop, opened around the test as the composition root opens it around serve."""
    async with trio_asyncio.open_loop() as loop:
        yield loop


@pytest.fixture(scope="session")
def require_browser() -> bool:
    return os.environ.get("REQUIRE_BROWSER") == "1"
