"""Two nodes' YClients clients share one pace through Redis (YClients limits per IP, not per process)."""

from __future__ import annotations

from typing import Any

import trio

from actor_admin.cluster import RateLimiter
from actor_admin.yclients import SharedThrottle


async def test_two_nodes_together_stay_within_five_calls_per_second(redis_client: Any) -> None:
    nodes = [SharedThrottle(RateLimiter(redis_client)), SharedThrottle(RateLimiter(redis_client))]
    times: list[float] = []

    async def caller(throttle: SharedThrottle) -> None:
        for _ in range(6):
            await throttle.acquire()
            times.append(trio.current_time())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for throttle in nodes:
                nursery.start_soon(caller, throttle)
    times.sort()
    assert len(times) == 12
    # Any six consecutive calls span at least (almost) a second: never more than five in a second.
    assert min(later - earlier for earlier, later in zip(times, times[5:], strict=False)) >= 0.95


async def test_with_redis_down_the_local_bucket_still_paces(aio_loop: object, closed_port_url: str) -> None:
    from actor_admin.cluster import RedisClient

    client = await RedisClient.open(closed_port_url, timeout_s=0.2)
    try:
        throttle = SharedThrottle(RateLimiter(client, timeout_s=0.2))
        start = trio.current_time()
        for _ in range(3):
            await throttle.acquire()
        assert trio.current_time() - start >= 0.39  # 5 a second locally: 3 calls span ≥ 0.4 s
    finally:
        await client.aclose()
