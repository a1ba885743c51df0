"""Store round trip through trio-asyncio versus plain asyncpg on asyncio, same server, same query.

``pg_roundtrip_ms``: median of ``Store.ping()`` (pool acquire + ``SELECT 1`` + release, one
``aio_as_trio`` crossing) under trio. ``pg_roundtrip_native_ms``: the same unit of work with asyncpg's
pool on plain asyncio, in a subprocess so neither loop disturbs the other. ``pg_ratio`` = bridged/native.
Uses ``DATABASE_URL`` if set, else a throwaway embedded server.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio_asyncio

from actor_admin.store import EmbeddedPostgres, Keyring, open_store

CALLS = 2000
WARMUP = 200

_NATIVE = """
import asyncio, statistics, sys, time
import asyncpg

async def main(dsn, calls, warmup):
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    samples = []
    for n in range(warmup + calls):
        started = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        if n >= warmup:
            samples.append(time.perf_counter() - started)
    await pool.close()
    print(statistics.median(samples) * 1000)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def _bridged(dsn: str) -> float:
    samples: list[float] = []
    async with trio_asyncio.open_loop():
        async with open_store(dsn, pool_size=2, credentials_keys=Keyring(os.urandom(32))) as store:
            for n in range(WARMUP + CALLS):
                started = time.perf_counter()
                await store.ping()
                if n >= WARMUP:
                    samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _native(dsn: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _NATIVE, dsn, str(CALLS), str(WARMUP)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return float(out.stdout.strip())


def run(results: dict[str, float]) -> None:
    dsn = os.environ.get("DATABASE_URL")
    server: EmbeddedPostgres | None = None
    root: Path | None = None
    if not dsn:
        root = Path(tempfile.mkdtemp(prefix="aa-bench-pg-"))
        root.chmod(0o755)
        server = EmbeddedPostgres(root / "pg", fast_unsafe=True)
        dsn = server.start()
    try:
        bridged = trio.run(_bridged, dsn)
        native = _native(dsn)
    finally:
        if server is not None:
            server.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    results["pg_roundtrip_ms"] = bridged
    results["pg_roundtrip_native_ms"] = native
    results["pg_ratio"] = bridged / native


if __name__ == "__main__":
    measured: dict[str, float] = {}
    run(measured)
    for name, value in measured.items():
        print(f"{name}: {value:.3f}")
