"""Membership and salon ownership in PostgreSQL: joins, heartbeats, claims, takeovers, releases.

Two ``Store`` instances (two pools) stand for two nodes racing on one real database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from actor_admin.store import (
    Claim,
    Keyring,
    Member,
    NodeIdOccupied,
    NodeRef,
    NodeSuperseded,
    Owner,
    Store,
    Takeover,
    open_store,
)

from ._ownership_helpers import add_companies, open_transaction, sql, wait_for_lock_waiters

pytestmark = pytest.mark.integration

A = Member("node-a", "inc-a", "1.0")
B = Member("node-b", "inc-b", "1.0")
C = Member("node-c", "inc-c", "1.0")


@pytest.fixture
async def other_store(store: Store, pg_dsn: str, credentials_keyring: Keyring) -> AsyncIterator[Store]:
    """A second pool on the same database: another node."""
    async with open_store(pg_dsn, pool_size=4, credentials_keys=credentials_keyring) as opened:
        yield opened


async def _ref(store: Store, node_id: str) -> NodeRef:
    (record,) = [n for n in await store.ownership.nodes() if n.node_id == node_id]
    return record.ref


async def _takeovers(store: Store, dead: NodeRef) -> list[Claim]:
    owned = await store.ownership.owned(dead.node_id)
    return [Claim(salon_id, Takeover(dead, fence)) for salon_id, fence in owned.items()]


async def _setup(store: Store, pg_dsn: str, salons: list[int], *members: Member) -> None:
    """Companies for ``salons`` and ``members`` joined (any pool can speak for any member)."""
    await add_companies(pg_dsn, salons)
    for member in members:
        await store.ownership.join(member)


async def _race(*racers: tuple[Member, Store, list[Claim]]) -> dict[str, dict[int, int]]:
    """Each racer claims its list concurrently with the others, in many small batches so they really
    interleave; returns what each won."""
    won: dict[str, dict[int, int]] = {node.node_id: {} for node, _, _ in racers}

    async def claim_all(node: Member, via: Store, claims: list[Claim]) -> None:
        for start in range(0, len(claims), 20):
            won[node.node_id].update(await via.ownership.claim(node, claims[start:start + 20]))

    async with trio.open_nursery() as nursery:
        for racer in racers:
            nursery.start_soon(claim_all, *racer)
    return won


# --- membership ---------------------------------------------------------------------------------


async def test_join_registers_the_node_and_heartbeats_count_up(store: Store) -> None:
    record = await store.ownership.join(A)
    assert (record.node_id, record.incarnation, record.version, record.draining) == ("node-a", "inc-a", "1.0", False)
    first = await store.ownership.heartbeat(A)
    second = await store.ownership.heartbeat(A)
    assert second.seq == first.seq + 1 > record.heartbeat_seq
    assert [n.ref for n in second.nodes] == [NodeRef("node-a", "inc-a", second.seq)]
    assert second.owned is None


async def test_a_heartbeat_lists_every_node_as_it_is_after_the_beat(store: Store) -> None:
    await store.ownership.join(A)
    await store.ownership.join(B)
    await store.ownership.set_draining(B)
    beat = await store.ownership.heartbeat(A)
    assert [(n.node_id, n.draining) for n in beat.nodes] == [("node-a", False), ("node-b", True)]
    assert all(0.0 <= n.heartbeat_age_s < 60.0 for n in beat.nodes)


async def test_joining_twice_with_the_same_incarnation_is_harmless(store: Store) -> None:
    await store.ownership.join(A)
    again = await store.ownership.join(A)
    assert again.incarnation == A.incarnation


async def test_joining_again_naming_itself_as_replaced_keeps_what_it_owns(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A)
    fences = await store.ownership.claim(A, [Claim(1)])
    await store.ownership.join(A, replacing=await _ref(store, "node-a"))
    assert await store.ownership.owned("node-a") == fences


async def test_a_second_process_with_the_same_node_id_is_refused(store: Store) -> None:
    await store.ownership.join(A)
    twin = Member.new("node-a", "1.1")
    with pytest.raises(NodeIdOccupied) as refused:
        await store.ownership.join(twin)
    assert refused.value.occupant.incarnation == "inc-a"


async def test_replacing_a_silent_incarnation_releases_its_salons_with_new_fences(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1, 2], A)
    old = await store.ownership.claim(A, [Claim(1), Claim(2)])
    observed = await _ref(store, "node-a")
    restarted = Member.new("node-a", "1.1")
    record = await store.ownership.join(restarted, replacing=observed)
    assert record.incarnation == restarted.incarnation and record.version == "1.1"
    owners = await store.ownership.owners()
    assert all(owners[s].node_id is None and owners[s].fence > old[s] for s in (1, 2))
    with pytest.raises(NodeSuperseded):
        await store.ownership.heartbeat(A)
    assert await store.ownership.release(A, old) == set()


async def test_an_incarnation_that_beat_since_it_was_observed_is_not_replaced(store: Store) -> None:
    await store.ownership.join(A)
    observed = await _ref(store, "node-a")
    await store.ownership.heartbeat(A)  # it is alive after all: two processes share the node id
    with pytest.raises(NodeIdOccupied):
        await store.ownership.join(Member.new("node-a", "1.1"), replacing=observed)
    assert (await store.ownership.heartbeat(A)).seq > observed.heartbeat_seq


async def test_leave_releases_everything_and_removes_the_node(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1, 2, 3], A, B)
    await store.ownership.claim(A, [Claim(1), Claim(2)])
    await store.ownership.claim(B, [Claim(3)])
    assert await store.ownership.leave(A) == [1, 2]
    assert [n.node_id for n in await store.ownership.nodes()] == ["node-b"]
    owners = await store.ownership.owners()
    assert (owners[1].node_id, owners[2].node_id, owners[3].node_id) == (None, None, "node-b")
    assert await store.ownership.leave(A) == []
    with pytest.raises(NodeSuperseded):
        await store.ownership.heartbeat(A)


async def test_forget_removes_only_a_dead_node_that_owns_nothing(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A, B)
    fences = await store.ownership.claim(A, [Claim(1)])
    dead = await _ref(store, "node-a")
    assert await store.ownership.forget(dead) is False  # still owns salon 1
    await store.ownership.claim(B, [Claim(1, Takeover(dead, fences[1]))])
    stale = NodeRef(dead.node_id, dead.incarnation, dead.heartbeat_seq - 1)
    assert await store.ownership.forget(stale) is False
    assert await store.ownership.forget(dead) is True
    assert [n.node_id for n in await store.ownership.nodes()] == ["node-b"]


# --- claims and releases ------------------------------------------------------------------------


async def test_a_released_salon_is_claimed_once_with_a_growing_fence(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A, B)
    first = await store.ownership.claim(A, [Claim(1)])
    assert await store.ownership.claim(B, [Claim(1)]) == {}
    assert await store.ownership.release(A, first) == {1}
    second = await store.ownership.claim(B, [Claim(1)])
    assert second[1] > first[1]
    assert (await store.ownership.owners())[1] == Owner("node-b", second[1])
    assert await store.ownership.owned("node-b") == second


async def test_unknown_salons_are_not_claimed(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A)
    assert set(await store.ownership.claim(A, [Claim(1), Claim(999)])) == {1}


async def test_a_draining_or_unregistered_node_claims_nothing(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A)
    await store.ownership.set_draining(A)
    assert await store.ownership.claim(A, [Claim(1)]) == {}
    assert await store.ownership.claim(B, [Claim(1)]) == {}  # never joined
    await store.ownership.set_draining(A, False)
    assert set(await store.ownership.claim(A, [Claim(1)])) == {1}


async def test_release_with_a_stale_fence_changes_nothing(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A)
    fences = await store.ownership.claim(A, [Claim(1)])
    assert await store.ownership.release(A, {1: fences[1] - 1}) == set()
    assert await store.ownership.release(B, fences) == set()  # not B's
    assert (await store.ownership.owners())[1] == Owner("node-a", fences[1])


async def test_two_nodes_racing_for_the_same_salons_win_each_exactly_once(
    store: Store, other_store: Store, pg_dsn: str
) -> None:
    salons = list(range(1, 301))
    await _setup(store, pg_dsn, salons, A, B)
    claims = [Claim(s) for s in salons]
    for round_ in range(3):
        won = await _race((A, store, claims), (B, other_store, claims[::-1]))
        assert set(won["node-a"]).isdisjoint(won["node-b"])
        assert set(won["node-a"]) | set(won["node-b"]) == set(salons)
        owners = await store.ownership.owners()
        for node_id, fences in won.items():
            assert all(owners[s] == Owner(node_id, f) for s, f in fences.items()), round_
        assert await store.ownership.release(A, won["node-a"]) == set(won["node-a"])
        assert await other_store.ownership.release(B, won["node-b"]) == set(won["node-b"])


# --- takeovers ----------------------------------------------------------------------------------


async def test_a_dead_nodes_salons_are_taken_over_with_new_fences(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1, 2], A, B)
    old = await store.ownership.claim(A, [Claim(1), Claim(2)])
    dead = await _ref(store, "node-a")
    taken = await store.ownership.claim(B, await _takeovers(store, dead))
    assert set(taken) == {1, 2} and all(taken[s] > old[s] for s in taken)
    beat = await store.ownership.heartbeat(A, include_owned=True)  # it was only paused: it learns at once
    assert beat.owned == {}
    assert await store.ownership.release(A, old) == set()


async def test_no_takeover_from_a_node_that_beat_since_it_was_observed(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A, B)
    await store.ownership.claim(A, [Claim(1)])
    observed = await _ref(store, "node-a")
    claims = await _takeovers(store, observed)
    await store.ownership.heartbeat(A)
    assert await store.ownership.claim(B, claims) == {}
    assert (await store.ownership.owners())[1].node_id == "node-a"


async def test_no_takeover_with_a_stale_fence_or_from_the_wrong_node(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A, B, C)
    fences = await store.ownership.claim(A, [Claim(1)])
    dead_a, dead_c = await _ref(store, "node-a"), await _ref(store, "node-c")
    assert await store.ownership.claim(B, [Claim(1, Takeover(dead_a, fences[1] - 1))]) == {}
    assert await store.ownership.claim(B, [Claim(1, Takeover(dead_c, fences[1]))]) == {}
    assert await store.ownership.claim(B, [Claim(1)]) == {}  # owned, not released
    assert (await store.ownership.owners())[1] == Owner("node-a", fences[1])


async def test_two_survivors_racing_to_take_over_win_each_salon_once(
    store: Store, other_store: Store, pg_dsn: str
) -> None:
    salons = list(range(1, 201))
    await _setup(store, pg_dsn, salons, A, B, C)
    await store.ownership.claim(A, [Claim(s) for s in salons])
    claims = await _takeovers(store, await _ref(store, "node-a"))
    won = await _race((B, store, claims), (C, other_store, claims[::-1]))
    assert set(won["node-b"]).isdisjoint(won["node-c"])
    assert set(won["node-b"]) | set(won["node-c"]) == set(salons)
    assert await store.ownership.owned("node-a") == {}


async def test_a_takeover_waits_for_the_dead_nodes_heartbeat_in_flight_then_fails(
    store: Store, pg_dsn: str
) -> None:
    await _setup(store, pg_dsn, [1], A, B)
    await store.ownership.claim(A, [Claim(1)])
    claims = await _takeovers(store, await _ref(store, "node-a"))
    won: dict[int, int] | None = None

    async def take_over() -> None:
        nonlocal won
        won = await store.ownership.claim(B, claims)

    async with trio.open_nursery() as nursery:
        async with open_transaction(pg_dsn) as tx:  # node-a's heartbeat, not yet committed
            await tx("UPDATE cluster_nodes SET heartbeat_seq = heartbeat_seq + 1 WHERE node_id = 'node-a'")
            nursery.start_soon(take_over)
            await wait_for_lock_waiters(pg_dsn)
            assert won is None  # queued behind the heartbeat's row lock
        # the heartbeat commits here; the takeover then sees the new heartbeat_seq
    assert won == {}
    assert (await store.ownership.owners())[1].node_id == "node-a"


async def test_heartbeat_with_owned_lists_exactly_what_the_node_owns(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1, 2, 3], A, B)
    mine = await store.ownership.claim(A, [Claim(1), Claim(2)])
    await store.ownership.claim(B, [Claim(3)])
    assert (await store.ownership.heartbeat(A, include_owned=True)).owned == mine
    assert await store.ownership.owned_counts() == {"node-a": 2, "node-b": 1}


async def test_deleting_a_company_removes_its_owner_row(store: Store, pg_dsn: str) -> None:
    await _setup(store, pg_dsn, [1], A)
    await store.ownership.claim(A, [Claim(1)])
    await sql(pg_dsn, "DELETE FROM companies WHERE salon_id = 1")
    assert await store.ownership.owners() == {}
