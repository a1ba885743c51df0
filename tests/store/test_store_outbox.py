"""The outbox: leased claiming with SKIP LOCKED, retries, final states, backlog statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from actor_admin.store import Keyring, Store, open_store


async def test_enqueued_item_is_claimed_once_and_counts_the_attempt(store: Store) -> None:
    item_id = await store.outbox.enqueue("activation", 7, {"salon_id": 7}, deadline_s=3600)
    claimed = await store.outbox.claim_due(10)
    assert [(i.id, i.attempts, i.payload) for i in claimed] == [(item_id, 1, {"salon_id": 7})]
    assert claimed[0].deadline is not None
    assert await store.outbox.claim_due(10) == []  # leased: not due again yet


async def test_absent_item_paths(store: Store) -> None:
    assert await store.outbox.get(404) is None
    assert await store.outbox.mark_delivered(404) is False
    assert await store.outbox.mark_failed(404, "x") is False
    assert await store.outbox.mark_retry(404, delay_s=1, error="x") is False
    assert await store.outbox.claim_due(10) == []


async def test_lease_expiry_makes_an_item_due_again(store: Store) -> None:
    item_id = await store.outbox.enqueue("activation", 7, {})
    await store.outbox.claim_due(10, lease_s=60)
    later = datetime.now(UTC) + timedelta(seconds=120)
    again = await store.outbox.claim_due(10, now=later)
    assert [(i.id, i.attempts) for i in again] == [(item_id, 2)]


async def test_retry_schedules_the_next_attempt_and_keeps_the_error(store: Store) -> None:
    item_id = await store.outbox.enqueue("activation", 7, {})
    await store.outbox.claim_due(10)
    assert await store.outbox.mark_retry(item_id, delay_s=30, error="503 from YClients")
    item = await store.outbox.get(item_id)
    assert item is not None and item.last_error == "503 from YClients"
    assert await store.outbox.claim_due(10, now=item.next_attempt_at - timedelta(seconds=1)) == []
    assert [i.id for i in await store.outbox.claim_due(10, now=item.next_attempt_at)] == [item_id]


async def test_delivery_is_final_and_can_activate_the_company_in_the_same_transaction(store: Store) -> None:
    await store.companies.upsert_registration(7)
    item_id = await store.outbox.enqueue("activation", 7, {})
    assert await store.outbox.mark_delivered(item_id, integration_status="active")
    company = await store.companies.get(7)
    assert company is not None and company.integration_status == "active" and company.connected_at is not None
    assert await store.outbox.mark_delivered(item_id) is False
    assert await store.outbox.mark_failed(item_id, "late") is False
    assert await store.outbox.claim_due(10, now=datetime.now(UTC) + timedelta(days=1)) == []


async def test_failure_is_final_and_can_mark_activation_failed(store: Store) -> None:
    await store.companies.upsert_registration(7)
    item_id = await store.outbox.enqueue("activation", 7, {})
    assert await store.outbox.mark_failed(item_id, "window passed", integration_status="activation_failed")
    assert (await store.companies.get(7)).integration_status == "activation_failed"  # type: ignore[union-attr]
    item = await store.outbox.get(item_id)
    assert item is not None and item.failed_at is not None and item.last_error == "window passed"


async def test_stats_count_pending_and_failed_and_age_the_oldest(store: Store) -> None:
    empty = await store.outbox.stats()
    assert (empty.pending, empty.oldest_pending_s, empty.failed) == (0, None, 0)
    a = await store.outbox.enqueue("activation", 1, {})
    await store.outbox.enqueue("activation", 2, {})
    b = await store.outbox.enqueue("activation", 3, {})
    await store.outbox.mark_failed(a, "x")
    await store.outbox.mark_delivered(b)
    stats = await store.outbox.stats()
    assert (stats.pending, stats.failed) == (1, 1)
    assert stats.oldest_pending_s is not None and stats.oldest_pending_s >= 0


async def test_concurrent_claimers_never_get_the_same_item(
    store: Store, pg_dsn: str, credentials_keyring: Keyring
) -> None:
    ids = {await store.outbox.enqueue("activation", n, {"n": n}) for n in range(60)}
    claimed: list[int] = []

    async def claimer(other: Store) -> None:
        while batch := await other.outbox.claim_due(7):
            claimed.extend(i.id for i in batch)

    async with open_store(pg_dsn, pool_size=4, credentials_keys=credentials_keyring) as second:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(claimer, store)
                nursery.start_soon(claimer, second)
    assert sorted(claimed) == sorted(ids)  # every item exactly once
