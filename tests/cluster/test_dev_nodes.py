"""``actor-admin dev --nodes 3`` as a developer runs it, then a node killed and another stopped.

Real processes on loopback: the command's own simulator and fake YClients, three node processes on
the test's PostgreSQL database (an embedded Redis in the temporary DATA_DIR: the nodes' Redis keys
carry no per-test prefix). Salons are linked through the command's simulator — a QR scanned over
its control API, exactly what a phone does — and their credentials stored, so the nodes' keepers
claim and connect them from stored credentials (docs/cluster.md). Then:

* ``kill -9`` of the node owning the most salons: each of them is connected again on a survivor
  within the TTL + 5 s (read from the survivors' ``/status``), with no connection replaced;
* SIGTERM of a second node: it hands its salons over with no connection replaced and exits 0;
* SIGTERM of ``dev``: every node is gone and ``dev`` exits 0.
"""

from __future__ import annotations

import os
import signal

import httpx
import trio

from tests.cluster._devnodes import (
    SHUTDOWN_DEADLINE_S,
    DevCluster,
    alive,
    all_connected,
    cluster_fixture,
    exited,
    link_salons,
    sim_stats,
)

NODES = 3
SALONS = 12
TTL_S = 4.0  # CLUSTER_TTL for this test: the failover bound is TTL + 5 s


cluster = cluster_fixture(NODES, TTL_S)


async def test_dev_nodes_fail_over_a_killed_node_and_hand_over_a_stopped_one(
    cluster: DevCluster, pg_dsn: str, aio_loop: object
) -> None:
    dev = cluster
    salons = set(range(501, 501 + SALONS))
    async with httpx.AsyncClient(base_url=dev.simulator, timeout=5) as sim:
        with trio.fail_after(30):
            await link_salons(dev, sim, pg_dsn, salons)

        every_node = sorted(dev.nodes)
        with trio.fail_after(30):  # each keeper finds the new salons at its next planning round
            placed = await all_connected(dev, sim, every_node, salons)
        assert (await sim_stats(sim))["live_sessions"] == SALONS
        counts = {n: sum(1 for owner in placed.values() if owner == n) for n in every_node}
        print(f"placement of {SALONS} salons over {NODES} nodes: {counts}")

        # kill -9 the node owning the most salons: the survivors take them after the TTL.
        victim = max(every_node, key=lambda n: counts[n])
        survivors = [n for n in every_node if n != victim]
        lost = {s for s, owner in placed.items() if owner == victim}
        assert lost
        killed_at = trio.current_time()
        os.kill(dev.nodes[victim][1], signal.SIGKILL)
        with trio.fail_after(TTL_S + 5 + 10):  # the bound checked below, plus slack to report the figure
            after_failover = await all_connected(dev, sim, survivors, salons)
        failover_s = trio.current_time() - killed_at
        print(f"kill -9 {victim} ({len(lost)} salons): all connected on {survivors} after {failover_s:.2f} s")
        assert failover_s <= TTL_S + 5, failover_s
        assert all(after_failover[s] in survivors for s in lost)
        stats = await sim_stats(sim)
        assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1, stats
        assert stats["live_sessions"] == SALONS, stats

        # SIGTERM a second node: it hands its salons to the last one (no connection replaced) and exits 0.
        leaving = max(survivors, key=lambda n: sum(1 for owner in after_failover.values() if owner == n))
        (last,) = [n for n in survivors if n != leaving]
        url, pid = dev.nodes[leaving]
        stopped_at = trio.current_time()
        os.kill(pid, signal.SIGTERM)
        with trio.fail_after(SHUTDOWN_DEADLINE_S + 5):
            await exited(pid)
        exit_s = trio.current_time() - stopped_at
        with trio.fail_after(15):
            await all_connected(dev, sim, [last], salons)
        handover_s = trio.current_time() - stopped_at
        print(f"SIGTERM {leaving}: exited after {exit_s:.2f} s; all on {last} after {handover_s:.2f} s")
        assert f"node {leaving} ({url}) stopped: exit status 0" in dev.output()
        assert exit_s < SHUTDOWN_DEADLINE_S
        stats = await sim_stats(sim)
        assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1, stats
        assert stats["live_sessions"] == SALONS, stats

    # SIGTERM dev itself: every node stops, nothing is left behind, exit 0.
    dev.process.send_signal(signal.SIGTERM)
    with trio.fail_after(SHUTDOWN_DEADLINE_S + 10):
        code = await dev.process.wait()
    assert code == 0, dev.output()
    assert not [pid for pid in dev.pids() if alive(pid)]
