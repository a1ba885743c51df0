"""Redis fixtures for every area's tests.

``redis_url``: the test environment's ``REDIS_URL`` when set (CI and the Makefile export it when a
server answers), otherwise one embedded ``redis-server`` for the whole session.

Isolation on a shared server: each test gets its own key prefix (``redis_prefix``), the cluster
objects put it in front of every key and channel they make, and teardown deletes only keys under
that prefix — never FLUSHDB/FLUSHALL, the server may hold other people's data.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from actor_admin.cluster import EmbeddedRedis, RedisClient, RedisUnavailable


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-session"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    return f"actor-admin-test:{uuid.uuid4().hex[:12]}:"


async def delete_prefixed(client: RedisClient) -> None:
    """Delete every key under the client's prefix (SCAN, not KEYS: the server may be big)."""
    cursor = 0
    while True:
        cursor, keys = await client.execute("SCAN", cursor, "MATCH", client.prefix + "*", "COUNT", 500)
        if keys:
            await client.execute("DEL", *keys)
        if int(cursor) == 0:
            return


@pytest.fixture
async def redis_client(aio_loop: object, redis_url: str, redis_prefix: str) -> AsyncIterator[RedisClient]:
    """An opened client with this test's own key prefix; its keys are deleted afterwards."""
    client = await RedisClient.open(redis_url, prefix=redis_prefix)
    try:
        yield client
    finally:
        try:
            await delete_prefixed(client)
        except RedisUnavailable:
            pass  # a test that broke Redis on purpose uses its own server
        await client.aclose()


@pytest.fixture
def embedded_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A started embedded server of this test's own, for tests that stop and start Redis."""
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL nobody listens on (bound and released, so connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
