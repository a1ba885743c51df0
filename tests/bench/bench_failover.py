"""Failover and hand-over of a real ``actor-admin dev --nodes 3`` cluster (tests/cluster/_devnodes.py).

``run(results)`` adds, for ``SALONS`` salons linked through the cluster's simulator:

* ``failover_p99_s`` — ``kill -9`` of the node owning the most salons → each of its salons connected
  on a survivor (per salon, the 99th percentile over ``ROUNDS`` kills); compare with ``failover_ttl_s``;
* ``handoff_p99_s`` — SIGTERM of a node → each of its salons connected on its new owner;
* ``failover_ttl_s`` — the ``CLUSTER_TTL`` the nodes ran with.

A salon is "connected" when a live node's ``/status`` shows it connected on that node and the
simulator counts one live connection per salon; both are polled every 50 ms, so each figure carries
up to that much extra. Needs ``DATABASE_URL`` (an admin DSN: a throwaway database is created on it).
"""

from __future__ import annotations

import os
import signal
import sys

import httpx
import trio
import trio_asyncio

from tests._pg import drop_database, make_database
from tests.cluster._devnodes import (
    DevCluster,
    connected_where,
    dev_cluster,
    dev_data_dir,
    exited,
    link_salons,
    node_environment,
    restart_node,
    settled,
)

NODES = 3
SALONS = 30
TTL_S = 4.0
ROUNDS = 3
POLL_S = 0.05


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _moved(dev: DevCluster, nodes: list[str], salons: set[int], since: float) -> list[float]:
    """Seconds from ``since`` until each of ``salons`` shows connected on one of ``nodes``."""
    seen: dict[int, float] = {}
    with trio.fail_after(60):
        while len(seen) < len(salons):
            where = await connected_where(dev, nodes)
            now = trio.current_time()
            for salon_id in salons & set(where):
                seen.setdefault(salon_id, now - since)
            await trio.sleep(POLL_S)
    return list(seen.values())


async def _measure(dsn: str) -> tuple[list[float], list[float]]:
    failovers: list[float] = []
    handoffs: list[float] = []
    started: list[trio.Process] = []
    async with trio_asyncio.open_loop():
        with dev_data_dir() as root:
            async with dev_cluster(root, dsn, NODES, TTL_S) as dev:
                try:
                    await _rounds(dev, dsn, failovers, handoffs, started)
                finally:
                    for process in started:
                        if process.returncode is None:
                            process.kill()
                        await process.wait()
    return failovers, handoffs


async def _rounds(
    dev: DevCluster, dsn: str, failovers: list[float], handoffs: list[float], started: list[trio.Process]
) -> None:
    salons = set(range(801, 801 + SALONS))
    async with httpx.AsyncClient(base_url=dev.simulator, timeout=5) as sim:
        await link_salons(dev, sim, dsn, salons)
        every_node = sorted(dev.nodes)
        for kind in ["kill", "term"] * ROUNDS:
            placed = await settled(dev, sim, every_node, salons)
            victim = max(every_node, key=lambda n: sum(1 for owner in placed.values() if owner == n))
            lost = {s for s, owner in placed.items() if owner == victim}
            survivors = [n for n in every_node if n != victim]
            pid = dev.nodes[victim][1]
            env = node_environment(pid)
            since = trio.current_time()
            os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            times = await _moved(dev, survivors, lost, since)
            (failovers if kind == "kill" else handoffs).extend(times)
            print(f"  {kind} {victim}: {len(lost)} salons, slowest {max(times):.2f} s", file=sys.stderr)
            await exited(pid)
            await restart_node(dev, victim, env, started)


def run(results: dict[str, float]) -> None:
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        print("  bench_failover: DATABASE_URL is not set; skipped", file=sys.stderr)
        return
    dsn = make_database(admin)
    try:
        failovers, handoffs = trio.run(_measure, dsn)
    finally:
        drop_database(admin, dsn)
    results["failover_p99_s"] = _p99(failovers)
    results["handoff_p99_s"] = _p99(handoffs)
    results["failover_ttl_s"] = TTL_S
