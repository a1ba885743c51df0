"""A bounded chaos run of ``actor-admin dev --nodes 3``: nodes killed, restarted and paused at random.

Three node processes on one PostgreSQL and a Redis this test owns, 100+ salons installed through the
fake marketplace and linked through the simulator's control API (tests/cluster/_devnodes.py). Then,
every few seconds, one seeded random action (the seed is printed; ``CHAOS_SEED`` replays it):
``kill -9`` of a node and its restart with the same environment, or SIGSTOP of a node for longer than
the TTL and SIGCONT; once, at a seeded moment, Redis is stopped for a couple of seconds and started
again, empty. Phones send inbound messages throughout, and the salons' activation calls go out to
the fake marketplace while all this happens.

Checked after every action and at the end (docs/cluster.md):

* every salon is connected again, once, within TTL + 5 s of its owner's death or pause;
* the simulator's ``replaced_total`` never exceeds the salons taken over from paused owners (a paused
  owner's connection is still open when the new owner connects), and is 0 with no pause;
  ``max_live_per_device`` is 1 with no pause;
* the Redis restart disconnects no salon: ``live_sessions`` never dips while it happens, nothing is
  replaced, no salon reconnects (``whatsapp_connected_at``) or moves;
* every inbound message the phones sent is stored exactly once in ``messages`` (those received while
  Redis was down too: PostgreSQL is the record, the stream only announces);
* every salon ends ``active``, with exactly one activation YClients took (``POST
  /marketplace/partner/callback`` answered 201 once; an "already installed" repeat only as the
  at-least-once send a ``kill -9`` can cause, at most one per kill). The fake marketplace fails every
  activation call until the actions begin, so each salon's activation is retried and goes through
  during the chaos.

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
    company_fields,
    connected_since,
    connected_where,
    exited,
    link_salons,
    node_environment,
    phone_of,
    placed_as,
    restart_node,
    settled,
    sim_stats,
)
from tests.ops._serve import poll_until

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
REDIS_DOWN_S = (1.5, 3.0)  # how long the one Redis restart keeps it down (seeded within this range)
# Every salon active by then after the actions end: an activation claimed by a node killed before it
# sent the call is due again once the outbox's claim lease (60 s) passes; retries back off to 60 s.
ACTIVE_WITHIN_S = 75.0
ACTIVATION = "/marketplace/partner/callback"


cluster = cluster_fixture(NODES, TTL_S, own_redis=True)


@attrs.define
class Tally:
    """What the run did and saw."""

    kills: int = 0
    pauses: int = 0
    redis_restarts: int = 0
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
        # Shielded: cancelled with the request in flight, the simulator may have sent the message
        # while its id never reached the tally, which then misses a message that was stored.
        with trio.CancelScope(shield=True):
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


async def _restart_redis(
    dev: DevCluster,
    sim: httpx.AsyncClient,
    pg_dsn: str,
    nodes: list[str],
    salons: set[int],
    down_s: float,
    tally: Tally,
) -> int:
    """Stop the test's Redis for ``down_s`` and start it again, empty; no salon may notice.
    Returns how many inbound messages the phones sent while it was down."""
    assert dev.redis is not None
    placed = await connected_where(dev, nodes)
    since = await connected_since(pg_dsn, salons)
    before = await sim_stats(sim)
    fewest = before["live_sessions"]

    async def watch() -> None:
        nonlocal fewest
        while True:
            fewest = min(fewest, (await sim_stats(sim))["live_sessions"])
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await dev.redis.stop()
        sent_before = len(tally.sent)
        await trio.sleep(down_s)
        sent_while_down = len(tally.sent) - sent_before
        await dev.redis.start()
        with trio.fail_after(TTL_S + 5):  # nothing should change at all; the bound only reports it
            await poll_until(lambda: placed_as(dev, nodes, placed))
        await trio.sleep(1.0)  # a salon the outage had dropped would show by now
        nursery.cancel_scope.cancel()
    after = await sim_stats(sim)
    assert fewest == len(salons), (fewest, SEED)
    assert after["replaced_total"] == before["replaced_total"], (before, after, SEED)
    assert await connected_since(pg_dsn, salons) == since, f"a salon reconnected across the Redis restart (seed {SEED})"
    return sent_while_down


async def _statuses(pg_dsn: str, salons: set[int]) -> dict[int, str]:
    """Each salon's ``integration_status``."""
    return await company_fields(pg_dsn, salons, "integration_status")


async def _activated_once(dev: DevCluster, pg_dsn: str, salons: set[int], kills: int) -> dict[int, list[int]]:
    """Every salon ``active``, and YClients took exactly one activation for each; returns each salon's
    activation calls' statuses in order.

    One repeat is explained by each ``kill -9``: a node killed after YClients answered and before it
    recorded the answer leaves the call to be sent again, and YClients answers "already installed"
    (the outbox's at-least-once send, docs/architecture.md#activation-outbox). Any other repeat is a
    second activation.
    """
    statuses: dict[int, str] = {}

    async def all_active() -> bool:
        nonlocal statuses
        statuses = await _statuses(pg_dsn, salons)
        return set(statuses) == salons and set(statuses.values()) == {"active"}

    with trio.move_on_after(ACTIVE_WITHIN_S):
        await poll_until(all_active)
    not_active = {s: status for s, status in statuses.items() if status != "active"}
    assert set(statuses) == salons and not not_active, (not_active, SEED)
    async with httpx.AsyncClient(base_url=dev.fake_yclients, timeout=10) as http:
        calls = (await http.get("/_fake/calls", params={"path": ACTIVATION})).json()
    per_salon: dict[int, list[int]] = {salon_id: [] for salon_id in salons}
    for call in calls:
        if call["method"] == "POST":
            per_salon.setdefault(call["json"]["salon_id"], []).append(call["status"])
    # 201: installed. 403 is "already installed": a second activation YClients saw (ours reads it as
    # success). Anything else is a failed attempt, which may be retried.
    effective = {s: [status for status in seen if status in (201, 403)] for s, seen in per_salon.items()}
    wrong = {s: per_salon[s] for s, taken in effective.items() if taken not in ([201], [201, 403])}
    resent = {s: per_salon[s] for s, taken in effective.items() if taken == [201, 403]}
    assert not wrong, (wrong, SEED)
    assert len(resent) <= kills, (resent, kills, SEED)
    return per_salon


async def _marketplace_down(dev: DevCluster) -> None:
    """The fake marketplace fails every activation call (an HTML page, 429s, then 503s) until
    :func:`_marketplace_up`: the salons' activations are retried, and go through during the actions."""
    faults: list[dict[str, object]] = [
        {"path": ACTIVATION, "html": True, "times": 3},
        {"path": ACTIVATION, "status": 429, "retry_after": 1, "times": 3},
        {"path": ACTIVATION, "status": 503, "times": 100_000},
    ]
    async with httpx.AsyncClient(base_url=dev.fake_yclients, timeout=10) as http:
        for fault in faults:
            answer = await http.post("/_fake/faults", json=fault)
            assert answer.status_code == 201, answer.text


async def _marketplace_up(dev: DevCluster) -> None:
    async with httpx.AsyncClient(base_url=dev.fake_yclients, timeout=10) as http:
        answer = await http.delete("/_fake/faults")
        assert answer.status_code == 200, answer.text


async def test_chaos_nodes_killed_restarted_and_paused(cluster: DevCluster, pg_dsn: str, aio_loop: object) -> None:
    print(f"chaos seed {SEED} (CHAOS_SEED replays it), {DURATION_S:.0f} s of actions")
    dev = cluster
    rng = random.Random(SEED)
    redis_rng = random.Random(SEED + 2)
    redis_at = redis_rng.uniform(0, DURATION_S)  # seconds into the actions
    redis_down_s = redis_rng.uniform(*REDIS_DOWN_S)
    salons = set(range(601, 601 + SALONS))
    tally = Tally()
    test_started = trio.current_time()
    await _marketplace_down(dev)
    async with httpx.AsyncClient(base_url=dev.simulator, timeout=5) as sim:
        with trio.fail_after(60):
            await link_salons(dev, sim, pg_dsn, salons, at_once=LINKING_AT_ONCE, via_marketplace=True)

        every_node = sorted(dev.nodes)
        started = trio.current_time()
        placed = await settled(dev, sim, every_node, salons)
        print(
            f"{SALONS} salons connected on {NODES} nodes after {trio.current_time() - started:.2f} s"
            f" ({trio.current_time() - test_started:.2f} s since linking began)"
        )
        await _check_connections(sim, tally, salons)
        await _marketplace_up(dev)  # the activations retried so far go through while the actions run

        try:
            async with trio.open_nursery() as phones:
                phones.start_soon(_phones, sim, sorted(salons), random.Random(SEED + 1), tally)
                begins = trio.current_time()
                ends = begins + DURATION_S

                async def restart_redis() -> None:
                    print(f"Redis restart ({redis_down_s:.1f} s down) …")
                    sent = await _restart_redis(dev, sim, pg_dsn, every_node, salons, redis_down_s, tally)
                    tally.redis_restarts += 1
                    print(f"  no salon noticed; {sent} inbound messages sent while it was down")

                while trio.current_time() < ends:
                    await trio.sleep(ACTION_EVERY_S)
                    if not tally.redis_restarts and trio.current_time() - begins >= redis_at:
                        await restart_redis()  # besides this round's node action, not instead of it
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
                if not tally.redis_restarts:  # the actions took longer than planned: restart it now
                    await restart_redis()
                phones.cancel_scope.cancel()

            await _stored_once(pg_dsn, tally.sent)
            waited = trio.current_time()
            activations = await _activated_once(dev, pg_dsn, salons, tally.kills)
            print(f"every salon active {trio.current_time() - waited:.1f} s after the actions and the messages")
            retried = sum(1 for statuses in activations.values() for status in statuses if status not in (201, 403))
            resent = sum(1 for statuses in activations.values() if 403 in statuses)
            assert retried > 0, SEED  # the marketplace failed calls until the actions began
            stats = await sim_stats(sim)
            print(
                f"chaos: {tally.kills} kills, {tally.pauses} pauses ({tally.taken_from_paused} salons taken from"
                f" paused owners), {tally.redis_restarts} Redis restart,"
                f" reconnected within max {max(tally.reconnect_s, default=0):.2f} s,"
                f" {len(tally.sent)} inbound messages stored once, {SALONS} salons activated once"
                f" ({retried} failed attempts retried, {resent} sent again after a kill); simulator {stats};"
                f" {trio.current_time() - test_started:.0f} s in all"
            )
            assert tally.kills + tally.pauses >= 1 and tally.redis_restarts == 1
        finally:
            for process in tally.restarted:
                if process.returncode is None:
                    process.kill()
                await process.wait()
