"""Redis round trip through our client (redis-py asyncio under trio-asyncio) vs plain redis.asyncio.

``run(results)`` adds:

* ``redis_roundtrip_ms`` — median INCR through :class:`actor_admin.cluster.RedisClient` under trio;
* ``redis_roundtrip_native_ms`` — median INCR with plain ``redis.asyncio`` on asyncio, in a subprocess,
  against the same server;
* ``redis_ratio`` — the first over the second: what the trio-asyncio bridge costs.

Uses ``REDIS_URL`` when set, else an embedded server in a temporary directory.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid

import trio
import trio_asyncio

from actor_admin.cluster import RedisClient

from ._redis import bench_redis_url

CALLS = 2000
WARMUP = 100

_NATIVE = """
import asyncio, statistics, sys, time
import redis.asyncio as aioredis

async def main(url, key, calls, warmup):
    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(warmup):
            await client.incr(key)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.incr(key)
            samples.append(time.perf_counter() - started)
        await client.delete(key)
    finally:
        await client.aclose()
    print(statistics.median(samples) * 1000)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def _ours(url: str) -> float:
    async with trio_asyncio.open_loop():
        client = await RedisClient.open(url, prefix=f"actor-admin-bench:{uuid.uuid4().hex[:8]}:")
        try:
            key = client.key("counter")
            for _ in range(WARMUP):
                await client.execute("INCR", key)
            samples = []
            for _ in range(CALLS):
                started = time.perf_counter()
                await client.execute("INCR", key)
                samples.append(time.perf_counter() - started)
            await client.execute("DEL", key)
        finally:
            await client.aclose()
    return statistics.median(samples) * 1000


def _native(url: str) -> float:
    key = f"actor-admin-bench:{uuid.uuid4().hex[:8]}:native"
    out = subprocess.run(
        [sys.executable, "-c", _NATIVE, url, key, str(CALLS), str(WARMUP)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return float(out.stdout.strip())


def _measure(url: str, results: dict[str, float]) -> None:
    ours = trio.run(_ours, url)
    native = _native(url)
    results["redis_roundtrip_ms"] = ours
    results["redis_roundtrip_native_ms"] = native
    results["redis_ratio"] = ours / native


def run(results: dict[str, float]) -> None:
    with bench_redis_url() as url:
        _measure(url, results)


if __name__ == "__main__":
    found: dict[str, float] = {}
    run(found)
    for name, value in found.items():
        print(f"{name} = {value:.3f}")
