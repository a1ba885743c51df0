"""What keeping its leases costs a node that owns 1,000 or 10,000 salons, against a real PostgreSQL.

One real :class:`~actor_admin.cluster.Keeper` (default timings: a heartbeat a second, a quiet
planning round every ``QUIET_ROUNDS`` heartbeats) owns N salons with stored credentials; its actors
are stand-ins that start at once. Once it owns and runs all N, every statement its pool sends is
counted for ``WINDOW_S`` seconds (asyncpg's query logger on every pooled connection), with the
process's CPU time. ``run(results)`` adds, for ``1k`` and ``10k``:

* ``lease_upkeep_ops_per_s_<n>`` — PostgreSQL statements a second: the heartbeats (an ``UPDATE`` of
  the node's own row and a ``SELECT`` of the node rows) plus the quiet planning rounds (owners and
  the salons that should run, every ``QUIET_ROUNDS`` s);
* ``lease_upkeep_redis_ops_per_s_<n>`` — Redis operations a second (the keeper only publishes
  nudges after hand-overs, so 0 when nothing moves);
* ``heartbeat_ms_<n>`` — median heartbeat (both statements, one asyncio crossing);
* ``planning_round_ms_<n>`` — median planning read (``owners()``: every owner row);
* ``lease_upkeep_cpu_ms_per_s_<n>`` — CPU milliseconds a second the whole process spent meanwhile.

Needs ``DATABASE_URL`` (an admin DSN: a throwaway database is created on it).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import trio
import trio_asyncio

from actor_admin import __version__
from actor_admin.cluster import Keeper, OwnershipTimings
from actor_admin.node import _wanted
from actor_admin.store import Member, Ownership, Store

from ._cluster_db import StatementCounter, add_salons, bench_database, counting_store

SIZES = {"1k": 1_000, "10k": 10_000}
#: Two quiet planning rounds at the default timings.
WINDOW_S = 10.0


class _Timed:
    """The store's ownership operations, timing heartbeats and planning reads."""

    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership
        self.heartbeats: list[float] = []
        self.plans: list[float] = []

    async def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        beat = await self._ownership.heartbeat(*args, **kwargs)
        self.heartbeats.append(time.perf_counter() - started)
        return beat

    async def owners(self) -> Any:
        started = time.perf_counter()
        owners = await self._ownership.owners()
        self.plans.append(time.perf_counter() - started)
        return owners

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ownership, name)


class _Actors:
    """Company actors that start and stop at once (the cost measured is the keeper's, not theirs)."""

    async def start(self, salon_id: int) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def stop(self, salon_id: int, *, grace: float | None = None) -> bool:
        await trio.lowlevel.checkpoint()
        return True


async def _reset(store: Store, count: int) -> None:
    async def work(conn: Any) -> None:
        await conn.execute("TRUNCATE salon_owners, cluster_nodes, whatsapp_credentials, companies CASCADE")

    await store._db.run(work)
    await add_salons(store, 1, count)

    async def credentials(conn: Any) -> None:  # should run: stored credentials (never decrypted here)
        await conn.execute(
            "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) SELECT salon_id, '\\x00', 'k' FROM companies"
        )

    await store._db.run(credentials)


async def _one(store: Store, counter: StatementCounter, count: int) -> dict[str, float]:
    await _reset(store, count)
    timed = _Timed(store.ownership)
    nudges = 0

    async def nudge(node_id: str) -> None:
        nonlocal nudges
        nudges += 1
        await trio.lowlevel.checkpoint()

    keeper = Keeper(
        timed,  # type: ignore[arg-type]
        Member.new("bench-node", __version__),
        OwnershipTimings(),
        _Actors(),
        lambda: _wanted(store),
        restore_per_second=1e6,
        nudge=nudge,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keeper.run)
        with trio.fail_after(60):
            while len(keeper.local) < count or not keeper.planned.is_set():  # noqa: ASYNC110 - a benchmark's setup
                await trio.sleep(0.1)
            await keeper.restore()
        timed.heartbeats.clear()
        timed.plans.clear()
        counter.total, nudges = 0, 0
        cpu, wall = time.process_time(), time.perf_counter()
        await trio.sleep(WINDOW_S)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        statements = counter.total
        nursery.cancel_scope.cancel()
    return {
        "ops_per_s": statements / wall,
        "redis_ops_per_s": nudges / wall,
        "heartbeat_ms": statistics.median(timed.heartbeats) * 1000,
        "planning_round_ms": statistics.median(timed.plans) * 1000 if timed.plans else float("nan"),
        "cpu_ms_per_s": cpu / wall * 1000,
        "heartbeats": len(timed.heartbeats),
        "plans": len(timed.plans),
    }


async def _measure(dsn: str) -> dict[str, dict[str, float]]:
    counter = StatementCounter()
    async with trio_asyncio.open_loop(), counting_store(dsn, counter) as store:
        measured = {}
        for label, count in SIZES.items():
            measured[label] = figures = await _one(store, counter, count)
            print(
                f"  {count} owned: {figures['ops_per_s']:.2f} statements/s over {figures['heartbeats']:.0f} "
                f"heartbeats and {figures['plans']:.0f} planning rounds",
                file=sys.stderr,
            )
        return measured


def run(results: dict[str, float]) -> None:
    """``python -m tests.bench --only leases``."""
    with bench_database() as dsn:
        if dsn is None:
            print("  bench_leases: DATABASE_URL is not set; skipped", file=sys.stderr)
            return
        measured = trio.run(_measure, dsn)
    for label, figures in measured.items():
        results[f"lease_upkeep_ops_per_s_{label}"] = figures["ops_per_s"]
        results[f"lease_upkeep_redis_ops_per_s_{label}"] = figures["redis_ops_per_s"]
        results[f"heartbeat_ms_{label}"] = figures["heartbeat_ms"]
        results[f"planning_round_ms_{label}"] = figures["planning_round_ms"]
        results[f"lease_upkeep_cpu_ms_per_s_{label}"] = figures["cpu_ms_per_s"]
