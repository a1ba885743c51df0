"""Cluster membership by heartbeat, for /status."""

from __future__ import annotations

import pytest
import trio

from actor_admin.cluster import NodeRegistry, RedisClient

from ._wait import wait_until

pytestmark = pytest.mark.integration


async def test_registered_nodes_are_listed(redis_client: RedisClient) -> None:
    registry = NodeRegistry(redis_client)
    await registry.register_node("host-a:1")
    await registry.register_node("host-b:2")
    assert sorted(await registry.nodes()) == ["host-a:1", "host-b:2"]
    assert registry.key == redis_client.prefix + "nodes"


async def test_an_unregistered_node_is_gone_at_once(redis_client: RedisClient) -> None:
    registry = NodeRegistry(redis_client)
    await registry.register_node("host-a:1")
    await registry.unregister_node("host-a:1")
    assert await registry.nodes() == []


async def test_a_silent_node_drops_out(redis_client: RedisClient) -> None:
    registry = NodeRegistry(redis_client, ttl_s=0.05)
    await registry.register_node("host-a:1")
    assert await registry.nodes() == ["host-a:1"]

    async def gone() -> bool:
        return await registry.nodes() == []

    await wait_until(gone)  # Redis' clock decides staleness


async def test_keep_registered_heartbeats(redis_client: RedisClient) -> None:
    registry = NodeRegistry(redis_client, ttl_s=0.3)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.keep_registered, "host-a:1")
        started = trio.current_time()

        async def two_ttls_passed_while_listed() -> bool:
            assert await registry.nodes() == ["host-a:1"]
            return trio.current_time() - started > 2 * registry.ttl_s

        await wait_until(two_ttls_passed_while_listed)
        nursery.cancel_scope.cancel()
