"""The trio-native Redis client: round trips, prefixes, and outages as RedisUnavailable."""

from __future__ import annotations

import pytest
import redis.exceptions
import trio

from actor_admin.cluster import EmbeddedRedis, RedisClient, RedisUnavailable

pytestmark = pytest.mark.integration


async def test_ping_reports_a_latency_in_milliseconds(redis_client: RedisClient) -> None:
    latency_ms = await redis_client.ping()
    assert 0 <= latency_ms < redis_client.timeout_s * 1000


async def test_keys_are_named_under_the_prefix(redis_client: RedisClient) -> None:
    assert redis_client.key("lease", 42) == redis_client.prefix + "lease:42"


async def test_execute_runs_a_command(redis_client: RedisClient) -> None:
    key = redis_client.key("counter")
    assert await redis_client.execute("INCR", key) == 1
    assert await redis_client.execute("INCR", key) == 2


async def test_execute_many_runs_a_pipeline_in_order(redis_client: RedisClient) -> None:
    key = redis_client.key("pipelined")
    assert await redis_client.execute_many([("INCR", key), ("INCRBY", key, 5), ("GET", key)]) == [1, 6, "6"]


async def test_a_bad_command_is_a_programming_error_not_an_outage(redis_client: RedisClient) -> None:
    key = redis_client.key("text")
    await redis_client.execute("SET", key, "not a number")
    with pytest.raises(redis.exceptions.ResponseError):
        await redis_client.execute("INCR", key)


async def test_an_unreachable_server_raises_redis_unavailable(aio_loop: object, closed_port_url: str) -> None:
    async with await RedisClient.open(closed_port_url) as client:
        with pytest.raises(RedisUnavailable):
            await client.ping()


async def test_opening_does_not_need_the_server(aio_loop: object, closed_port_url: str) -> None:
    client = await RedisClient.open(closed_port_url)
    await client.aclose()


async def test_client_recovers_when_the_server_comes_back(aio_loop: object, embedded_redis: EmbeddedRedis) -> None:
    async with await RedisClient.open(embedded_redis.url, prefix="outage:") as client:
        assert await client.execute("SET", client.key("k"), "v")
        await trio.to_thread.run_sync(embedded_redis.stop)
        with pytest.raises(RedisUnavailable):
            await client.execute("GET", client.key("k"))
        await trio.to_thread.run_sync(embedded_redis.start)
        # Same port again, so the same client reconnects; the data is gone (no persistence).
        assert await client.execute("GET", client.key("k")) is None
        assert await client.ping() >= 0


async def test_calls_outside_trio_asyncios_loop_say_what_is_missing(redis_url: str) -> None:
    client = await RedisClient.open(redis_url)
    with pytest.raises(RuntimeError, match="open_loop"):
        await client.execute("PING")
