"""A Redis outage on ``actor-admin dev --nodes 3``: real processes, a Redis the test owns.

Ownership lives in PostgreSQL only; Redis carries the routed calls, the bus, the inbound stream and
the YClients pacing (docs/cluster.md#why-it-holds). So:

* Redis stopped for less than the TTL and started again: no connection is dropped or replaced (the
  simulator's ``live_sessions`` never dips, ``replaced_total`` stays 0, no salon's
  ``whatsapp_connected_at`` changes), every salon stays on its node, and a call routed to another
  node answers ``owner_unreachable`` while Redis is down and works again once it is back;
* Redis stopped for longer than the TTL and started again *empty*: the same — no salon moved.
"""

from __future__ import annotations

from datetime import datetime

import httpx
import trio

from tests.cluster._devnodes import (
    DevCluster,
    all_connected,
    cluster_fixture,
    connected_since,
    link_salons,
    placed_as,
    sim_stats,
)
from tests.ops._serve import poll_until

NODES = 3
SALONS = 12
TTL_S = 4.0  # CLUSTER_TTL
SHORT_OUTAGE_S = TTL_S / 2
LONG_OUTAGE_S = TTL_S + 2
BACK_WITHIN_S = 15.0  # routed calls work again this soon after Redis is back (the pub/sub listener's backoff)

cluster = cluster_fixture(NODES, TTL_S, own_redis=True)


class Watch:
    """Samples the simulator's counters until cancelled: the fewest live sessions seen, the most replaced."""

    def __init__(self) -> None:
        self.min_live: int | None = None
        self.max_replaced = 0
        self.samples = 0

    async def run(self, sim: httpx.AsyncClient) -> None:
        while True:
            stats = await sim_stats(sim)
            live = stats["live_sessions"]
            self.min_live = live if self.min_live is None else min(self.min_live, live)
            self.max_replaced = max(self.max_replaced, stats["replaced_total"])
            self.samples += 1
            await trio.sleep(0.05)


async def routed_send(http: httpx.AsyncClient, dev: DevCluster, via: str, salon_id: int, key: str) -> httpx.Response:
    """``POST /admin/companies/{salon_id}/messages`` on node ``via`` (not the owner: the call is routed)."""
    url, _ = dev.nodes[via]
    return await http.post(
        f"{url}/admin/companies/{salon_id}/messages",
        json={"to": "79990000002", "text": f"routed {key}", "idempotency_key": key},
    )


async def outage(
    dev: DevCluster, sim: httpx.AsyncClient, http: httpx.AsyncClient, down_s: float, salon_id: int, via: str, tag: str
) -> Watch:
    """Stop the test's Redis for ``down_s``, start it (empty), and wait until a routed call works again.

    A call routed while Redis is down waits for the node's pub/sub listener up to its deadline
    (docs/cluster.md#routing): it answers 202 once Redis is back in time, else 503
    ``owner_unreachable`` in the documented shape — never anything else, never a hang.
    Returns what the watcher saw from before the stop until the routed call worked again.
    """
    assert dev.redis is not None
    watch = Watch()
    during: list[tuple[httpx.Response, float]] = []

    async def call_while_down() -> None:
        answer = await routed_send(http, dev, via, salon_id, f"{tag}-down")
        during.append((answer, trio.current_time() - stopped_at))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run, sim)
        await dev.redis.stop()
        stopped_at = trio.current_time()
        async with trio.open_nursery() as calls:
            calls.start_soon(call_while_down)
            await trio.sleep(down_s)
            await dev.redis.start()
        back_at = trio.current_time()
        ((answer, took),) = during
        assert answer.status_code in (202, 503), answer.text
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "owner_unreachable", answer.text
        print(
            f"Redis down {down_s:.1f} s ({tag}): the routed call made while it was down answered"
            f" {answer.status_code} after {took:.2f} s; Redis answered again after {back_at - stopped_at:.2f} s"
        )
        attempt = 0

        async def routed_again() -> bool:
            nonlocal attempt
            attempt += 1
            answer = await routed_send(http, dev, via, salon_id, f"{tag}-back-{attempt}")
            assert answer.status_code in (202, 503), answer.text
            return answer.status_code == 202

        with trio.fail_after(BACK_WITHIN_S):
            await poll_until(routed_again)
        print(f"  routed calls work again {trio.current_time() - back_at:.2f} s after Redis is back")
        nursery.cancel_scope.cancel()
    return watch


async def test_a_redis_outage_disconnects_no_salon_and_moves_none(
    cluster: DevCluster, pg_dsn: str, aio_loop: object
) -> None:
    dev = cluster
    salons = set(range(701, 701 + SALONS))
    headers = {"Authorization": f"Bearer {dev.secrets['ADMIN_TOKEN']}"}
    async with (
        httpx.AsyncClient(base_url=dev.simulator, timeout=5) as sim,
        httpx.AsyncClient(timeout=30, headers=headers) as http,
    ):
        with trio.fail_after(30):
            await link_salons(dev, sim, pg_dsn, salons, via_marketplace=True)
        every_node = sorted(dev.nodes)
        with trio.fail_after(30):
            placed = await all_connected(dev, sim, every_node, salons)
        since: dict[int, datetime] = await connected_since(pg_dsn, salons)
        salon_id = min(salons)
        via = next(n for n in every_node if n != placed[salon_id])
        answer = await routed_send(http, dev, via, salon_id, "before")
        assert answer.status_code == 202, answer.text

        for down_s, tag in ((SHORT_OUTAGE_S, "short"), (LONG_OUTAGE_S, "long")):
            watch = await outage(dev, sim, http, down_s, salon_id, via, tag)
            assert watch.samples > 0
            assert watch.min_live == SALONS, (tag, watch.min_live)
            assert watch.max_replaced == 0, (tag, watch.max_replaced)
            stats = await sim_stats(sim)
            assert stats["live_sessions"] == SALONS and stats["replaced_total"] == 0, (tag, stats)
            assert stats["max_live_per_device"] == 1, (tag, stats)
            with trio.fail_after(10):
                await poll_until(lambda: placed_as(dev, every_node, placed))
            assert await connected_since(pg_dsn, salons) == since, f"a salon reconnected ({tag} outage)"

