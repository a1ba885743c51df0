"""Leases with fencing tokens: at most one actor per company across the cluster."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actor_admin.cluster import Lease, LeaseLostReason, LeaseManager, RedisClient

from ._wait import wait_until

pytestmark = pytest.mark.integration


async def test_a_free_lease_is_acquired_with_this_nodes_id(redis_client: RedisClient) -> None:
    leases = LeaseManager(redis_client, "node-a")
    lease = await leases.try_acquire(42, ttl_s=30)
    assert lease is not None
    assert (lease.salon_id, lease.node_id, lease.ttl_s) == (42, "node-a", 30)
    assert await leases.owner(42) == "node-a"
    assert 0 < await redis_client.execute("PTTL", leases.key_for(42)) <= 30_000


async def test_the_lease_key_is_named_for_the_company(redis_client: RedisClient) -> None:
    assert LeaseManager(redis_client, "n").key_for(42) == redis_client.prefix + "lease:42"


async def test_only_one_of_many_concurrent_acquirers_wins(redis_client: RedisClient, redis_url: str) -> None:
    clients = [await RedisClient.open(redis_url, prefix=redis_client.prefix) for _ in range(4)]
    results: dict[str, Lease | None] = {}
    try:

        async def contend(node_id: str, client: RedisClient) -> None:
            results[node_id] = await LeaseManager(client, node_id).try_acquire(7, ttl_s=30)

        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(contend, f"node-{n}", clients[n % len(clients)])
    finally:
        for client in clients:
            await client.aclose()
    winners = [node for node, lease in results.items() if lease is not None]
    assert len(results) == 40
    assert len(winners) == 1
    assert await LeaseManager(redis_client, "observer").owner(7) == winners[0]


async def test_another_node_cannot_take_a_held_lease(redis_client: RedisClient) -> None:
    assert await LeaseManager(redis_client, "node-a").try_acquire(1, ttl_s=30) is not None
    assert await LeaseManager(redis_client, "node-b").try_acquire(1, ttl_s=30) is None


async def test_fencing_tokens_increase_with_every_acquisition(redis_client: RedisClient) -> None:
    a, b = LeaseManager(redis_client, "node-a"), LeaseManager(redis_client, "node-b")
    tokens = []
    for manager in (a, b, a):
        lease = await manager.try_acquire(1, ttl_s=30)
        assert lease is not None
        tokens.append(lease.token)
        assert await manager.release(lease)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


async def test_the_same_node_reacquiring_fences_its_old_incarnation(redis_client: RedisClient) -> None:
    leases = LeaseManager(redis_client, "node-a")
    old = await leases.try_acquire(1, ttl_s=30)
    new = await leases.try_acquire(1, ttl_s=30)
    assert old is not None and new is not None and new.token > old.token
    assert not await leases.renew(old)
    assert await leases.renew(new)


async def test_only_the_owner_renews(redis_client: RedisClient) -> None:
    a, b = LeaseManager(redis_client, "node-a"), LeaseManager(redis_client, "node-b")
    lease = await a.try_acquire(1, ttl_s=30)
    assert lease is not None
    await redis_client.execute("PEXPIRE", a.key_for(1), 5_000)
    forged = Lease(salon_id=1, node_id="node-b", token=lease.token, ttl_s=30)
    assert not await b.renew(forged)
    assert await redis_client.execute("PTTL", a.key_for(1)) <= 5_000
    assert await a.renew(lease)
    assert await redis_client.execute("PTTL", a.key_for(1)) > 5_000


async def test_only_the_owner_releases(redis_client: RedisClient) -> None:
    a, b = LeaseManager(redis_client, "node-a"), LeaseManager(redis_client, "node-b")
    lease = await a.try_acquire(1, ttl_s=30)
    assert lease is not None
    assert not await b.release(Lease(salon_id=1, node_id="node-b", token=lease.token, ttl_s=30))
    assert await a.owner(1) == "node-a"
    assert await a.release(lease)
    assert await a.owner(1) is None
    assert not await a.release(lease)  # twice is harmless


async def test_expiry_lets_another_node_take_it_and_the_old_owner_cannot_renew(redis_client: RedisClient) -> None:
    a, b = LeaseManager(redis_client, "node-a"), LeaseManager(redis_client, "node-b")
    old = await a.try_acquire(1, ttl_s=0.05)
    assert old is not None
    taken: list[Lease] = []

    async def b_took_it() -> bool:
        lease = await b.try_acquire(1, ttl_s=30)
        if lease is not None:
            taken.append(lease)
        return lease is not None

    await wait_until(b_took_it)  # Redis' own clock expires the key
    assert taken[0].token > old.token
    assert not await a.renew(old)
    assert not await a.release(old)
    assert await a.owner(1) == "node-b"


async def test_holder_reports_node_and_token(redis_client: RedisClient) -> None:
    leases = LeaseManager(redis_client, "host:123")  # node ids contain ':' (hostname:pid)
    lease = await leases.try_acquire(1, ttl_s=30)
    assert lease is not None
    holder = await leases.holder(1)
    assert holder is not None and (holder.node_id, holder.token) == ("host:123", lease.token)


async def test_keep_renewed_keeps_the_lease_past_its_ttl(redis_client: RedisClient) -> None:
    leases = LeaseManager(redis_client, "node-a")
    lease = await leases.try_acquire(1, ttl_s=0.3)
    assert lease is not None
    lost: list[LeaseLostReason] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(leases.keep_renewed, lease, lost.append)
        started = trio.current_time()

        async def two_ttls_passed_while_held() -> bool:
            assert await leases.owner(1) == "node-a"
            return trio.current_time() - started > 2 * lease.ttl_s

        await wait_until(two_ttls_passed_while_held)
        nursery.cancel_scope.cancel()
    assert lost == []


async def test_keep_renewed_reports_loss_when_the_lease_is_taken(redis_client: RedisClient) -> None:
    leases = LeaseManager(redis_client, "node-a")
    lease = await leases.try_acquire(1, ttl_s=0.3)
    assert lease is not None
    lost = trio.Event()
    reasons: list[LeaseLostReason] = []

    async def on_lost(reason: LeaseLostReason) -> None:
        reasons.append(reason)
        lost.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(leases.keep_renewed, lease, on_lost)
        await redis_client.execute("SET", leases.key_for(1), "999999:thief", "PX", 30_000)
        with trio.fail_after(5):
            await lost.wait()
    assert reasons == ["taken"]


async def test_keep_renewed_gives_up_before_the_ttl_when_redis_is_unreachable(
    aio_loop: object, closed_port_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with await RedisClient.open(closed_port_url) as client:
        leases = LeaseManager(client, "node-a")
        lease = Lease(salon_id=1, node_id="node-a", token=1, ttl_s=30)
        reasons: list[tuple[LeaseLostReason, float]] = []
        started = trio.current_time()
        await leases.keep_renewed(lease, lambda reason: reasons.append((reason, trio.current_time() - started)))
    [(reason, after_s)] = reasons
    assert reason == "expired"
    assert 10 < after_s < 30  # it retried past the first failure, and stopped before another node could take over
