"""The cluster-wide rate limiter (docs/websocket.md#handshake: 10 new websocket connections per IP per 60 s)."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing

from actor_admin.cluster import RateLimiter, RedisClient

from ._wait import wait_until

pytestmark = pytest.mark.integration


async def test_allows_limit_hits_then_refuses(redis_client: RedisClient) -> None:
    limiter = RateLimiter(redis_client)
    decisions = [await limiter.hit("ip:203.0.113.7", limit=3, window_s=60) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 0 < decisions[-1].retry_after <= 60
    assert not any(d.degraded for d in decisions)


async def test_keys_are_counted_separately(redis_client: RedisClient) -> None:
    limiter = RateLimiter(redis_client)
    assert (await limiter.hit("ip:a", limit=1, window_s=60)).allowed
    assert (await limiter.hit("ip:b", limit=1, window_s=60)).allowed
    assert not (await limiter.hit("ip:a", limit=1, window_s=60)).allowed


async def test_keys_expire_by_themselves(redis_client: RedisClient) -> None:
    limiter = RateLimiter(redis_client)
    await limiter.hit("ip:203.0.113.8", limit=10, window_s=60)
    pttl = await redis_client.execute("PTTL", limiter.key_for("ip:203.0.113.8"))
    assert 0 < pttl <= 60_000


async def test_a_refused_key_keeps_its_expiry(redis_client: RedisClient) -> None:
    limiter = RateLimiter(redis_client)
    for _ in range(3):
        await limiter.hit("ip:x", limit=1, window_s=60)
    assert 0 < await redis_client.execute("PTTL", limiter.key_for("ip:x")) <= 60_000


async def test_hits_are_allowed_again_once_the_window_slides_past(redis_client: RedisClient) -> None:
    limiter = RateLimiter(redis_client)
    assert (await limiter.hit("ip:slide", limit=1, window_s=0.05)).allowed
    assert not (await limiter.hit("ip:slide", limit=1, window_s=0.05)).allowed

    async def allowed_again() -> bool:
        return (await limiter.hit("ip:slide", limit=1, window_s=0.05)).allowed

    await wait_until(allowed_again)


async def test_two_limiters_share_one_count(redis_client: RedisClient, redis_url: str) -> None:
    other_node = await RedisClient.open(redis_url, prefix=redis_client.prefix)
    try:
        here, there = RateLimiter(redis_client), RateLimiter(other_node)
        assert (await here.hit("ip:shared", limit=2, window_s=60)).allowed
        assert (await there.hit("ip:shared", limit=2, window_s=60)).allowed
        assert not (await here.hit("ip:shared", limit=2, window_s=60)).allowed
        assert not (await there.hit("ip:shared", limit=2, window_s=60)).allowed
    finally:
        await other_node.aclose()


async def test_fails_open_with_a_warning_when_redis_is_down(
    aio_loop: object, closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actor_admin.cluster")
    async with await RedisClient.open(closed_port_url) as client:
        limiter = RateLimiter(client)
        decisions = [await limiter.hit("ip:1", limit=1, window_s=60) for _ in range(3)]
    assert all(d.allowed and d.degraded for d in decisions)
    assert limiter.failed_open_total == 3
    warnings = [r for r in caplog.records if r.name == "actor_admin.cluster" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage, not once per hit
    assert "failing open" in warnings[0].getMessage()


async def test_rejects_a_nonsense_limit(redis_client: RedisClient) -> None:
    with pytest.raises(ValueError):
        await RateLimiter(redis_client).hit("ip:1", limit=0, window_s=60)


async def test_fails_open_within_its_timeout_when_redis_hangs(
    aio_loop: object, autojump_clock: trio.testing.MockClock
) -> None:
    # A listening socket that never answers: connections queue in the kernel's backlog.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        async with await RedisClient.open(f"redis://127.0.0.1:{silent.getsockname()[1]}/0") as client:
            limiter = RateLimiter(client, timeout_s=0.5)
            started = trio.current_time()
            decision = await limiter.hit("ip:1", limit=1, window_s=60)
    assert decision.allowed and decision.degraded
    assert trio.current_time() - started == pytest.approx(0.5)
