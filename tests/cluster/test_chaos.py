"""A bounded chaos run of ``actor-admin dev --nodes 3``: nodes killed, restarted and paused at random.

Three node processes on one PostgreSQL and Redis, 100+ salons linked through the simulator's control
API (tests/cluster/_devnodes.py). Then, every few seconds, one seeded random action (the seed is
printed; ``CHAOS_SEED`` replays it): ``kill -9`` of a node and its restart with the same environment,
or SIGSTOP of a node for longer than the TTL and SIGCONT. Phones send inbound messages throughout.

Checked after every action and at the end (docs/cluster.md):

* every salon is connected again, once, within TTL + 5 s of its owner's death or pause;
* the simulator's ``replaced_total`` never exceeds the salons taken over from paused owners (a paused
  owner's connection is still open when the new owner connects), and is 0 with no pause;
  ``max_live_per_device`` is 1 with no pause;
* every inbound message the phones sent is stored exactly once in ``messages``.

Redis is not restarted: the nodes share ``dev``'s embedded Redis, which this test does not own.
``CHAOS_DURATION_S`` sets how long the actions go on (``make chaos`` runs ten minutes).
"""

from __future__ import annotations

import os
import random
import signal

import asyncpg
import attrs
import httpx
import pytest
import trio
import trio_asyncio

from tests.cluster._devnodes import (
    DevCluster,
    all_connected,
    cluster_fixture,
    exited,
    link_salons,
    node_environment,
    phone_of,
    restart_node,
    settled,
    sim_stats,
)

pytestmark = pytest.mark.chaos

NODES = 3
SALONS = 102
TTL_S = 4.0  # CLUSTER_TTL: the reconnection bound is TTL + 5 s
PAUSE_S = TTL_S + 2.0
ACTION_EVERY_S = 3.0
DURATION_S = float(os.environ.get("CHAOS_DURATION_S", "30"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(1_000_000))))
MESSAGE_EVERY_S = 0.1
LINKING_AT_ONCE = 8


cluster = cluster_fixture(NODES, TTL_S)


@attrs.define
class Tally:
    """What the run did and saw."""

    kills: int = 0
    pauses: int = 0
    taken_from_paused: int = 0
    reconnect_s: list[float] = attrs.Factory(list)
    sent: list[str] = attrs.Factory(list)
    restarted: list[trio.Process] = attrs.Factory(list)


async def _reconnected(
    dev: DevCluster, sim: httpx.AsyncClient, nodes: list[str], salons: set[int], since: float, tally: Tally
) -> float:
    """Every salon connected once on ``nodes``; the seconds since ``since``, checked against TTL + 5 s."""
    with trio.fail_after(TTL_S + 5 + 15):  # the bound asserted below, plus slack to report the figure
        await all_connected(dev, sim, nodes, salons)
    took = trio.current_time() - since
    assert took <= TTL_S + 5, f"reconnected after {took:.2f} s (seed {SEED})"
    await _check_connections(sim, tally, salons)
    return took


async def _check_connections(sim: httpx.AsyncClient, tally: Tally, salons: set[int]) -> None:
    stats = await sim_stats(sim)
    assert stats["live_sessions"] == len(salons), (stats, SEED)
    assert stats["replaced_total"] <= tally.taken_from_paused, (stats, tally.taken_from_paused, SEED)
    if not tally.pauses:
        assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1, (stats, SEED)


async def _phones(sim: httpx.AsyncClient, salons: list[int], rng: random.Random, tally: Tally) -> None:
    """Phones write to random salons until cancelled; each message's id is remembered."""
    while True:
        salon_id = rng.choice(salons)
        answer = await sim.post(
            f"/phones/{phone_of(salon_id)}/messages", json={"from": "79990000001", "text": f"hello {salon_id}"}
        )
        assert answer.status_code == 200, answer.text
        tally.sent.append(answer.json()["id"])
        await trio.sleep(MESSAGE_EVERY_S)


async def _stored_once(pg_dsn: str, sent: list[str]) -> None:
    """Every sent message's id is in ``messages`` exactly once (waiting for the last ones to land)."""
    connection = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    try:
        counts: dict[str, int] = {}
        with trio.move_on_after(30):
            while True:
                rows = await trio_asyncio.aio_as_trio(connection.fetch)(
                    "SELECT wa_id, count(*) AS n FROM messages WHERE direction = 'in' GROUP BY wa_id"
                )
                counts = {row["wa_id"]: row["n"] for row in rows}
                if all(counts.get(wa_id) == 1 for wa_id in sent):
                    break
                await trio.sleep(0.2)
    finally:
        await trio_asyncio.aio_as_trio(connection.close)()
    missing = [wa_id for wa_id in sent if wa_id not in counts]
    doubled = {wa_id: n for wa_id, n in counts.items() if n != 1}
    assert not missing and not doubled, (len(missing), doubled, SEED)
    assert set(counts) == set(sent), SEED


async def test_chaos_nodes_killed_restarted_and_paused(cluster: DevCluster, pg_dsn: str, aio_loop: object) -> None:
    print(f"chaos seed {SEED} (CHAOS_SEED replays it), {DURATION_S:.0f} s of actions")
    dev = cluster
    rng = random.Random(SEED)
    salons = set(range(601, 601 + SALONS))
    tally = Tally()
    async with httpx.AsyncClient(base_url=dev.simulator, timeout=5) as sim:
        with trio.fail_after(60):
            await link_salons(dev, sim, pg_dsn, salons, at_once=LINKING_AT_ONCE)

        every_node = sorted(dev.nodes)
        started = trio.current_time()
        placed = await settled(dev, sim, every_node, salons)
        print(f"{SALONS} salons connected on {NODES} nodes after {trio.current_time() - started:.2f} s")
        await _check_connections(sim, tally, salons)

        try:
            async with trio.open_nursery() as phones:
                phones.start_soon(_phones, sim, sorted(salons), random.Random(SEED + 1), tally)
                ends = trio.current_time() + DURATION_S
                while trio.current_time() < ends:
                    await trio.sleep(ACTION_EVERY_S)
                    node_id = rng.choice(every_node)
                    pid = dev.nodes[node_id][1]
                    survivors = [n for n in every_node if n != node_id]
                    owned = sum(1 for owner in placed.values() if owner == node_id)
                    kill = rng.random() < 0.5
                    print(f"{'kill -9' if kill else 'SIGSTOP'} {node_id} ({owned} salons) …")
                    if kill:
                        env = node_environment(pid)
                        tally.kills += 1
                        hit_at = trio.current_time()
                        os.kill(pid, signal.SIGKILL)
                        await exited(pid)
                        took = await _reconnected(dev, sim, survivors, salons, hit_at, tally)
                        print(f"  all connected after {took:.2f} s")
                        await restart_node(dev, node_id, env, tally.restarted)
                    else:
                        tally.pauses += 1
                        tally.taken_from_paused += owned
                        hit_at = trio.current_time()
                        os.kill(pid, signal.SIGSTOP)
                        try:
                            took = await _reconnected(dev, sim, survivors, salons, hit_at, tally)
                            await trio.sleep(max(0.0, PAUSE_S - (trio.current_time() - hit_at)))
                        finally:
                            os.kill(pid, signal.SIGCONT)
                        print(f"  all connected after {took:.2f} s; SIGCONT after {PAUSE_S:.0f} s")
                    tally.reconnect_s.append(took)
                    placed = await settled(dev, sim, every_node, salons)
                    await _check_connections(sim, tally, salons)
                phones.cancel_scope.cancel()

            await _stored_once(pg_dsn, tally.sent)
            stats = await sim_stats(sim)
            print(
                f"chaos: {tally.kills} kills, {tally.pauses} pauses ({tally.taken_from_paused} salons taken from"
                f" paused owners), reconnected within max {max(tally.reconnect_s, default=0):.2f} s,"
                f" {len(tally.sent)} inbound messages stored once; simulator {stats}"
            )
            assert tally.kills + tally.pauses >= 1
        finally:
            for process in tally.restarted:
                if process.returncode is None:
                    process.kill()
                await process.wait()
