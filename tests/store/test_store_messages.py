"""Messages: inbound de-duplicated by WhatsApp id in the database, outbound idempotent by key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio

from actor_admin.store import Store


async def test_inbound_is_new_once_per_company_and_wa_id(store: Store) -> None:
    assert await store.messages.insert_inbound(7, "WA1", "79001112233", "hello") is True
    assert await store.messages.insert_inbound(7, "WA1", "79001112233", "hello") is False
    assert await store.messages.insert_inbound(8, "WA1", "79001112233", "same id, other salon") is True
    assert [m.text for m in await store.messages.latest(7, "in")] == ["hello"]


async def test_concurrent_redeliveries_yield_exactly_one_new(store: Store) -> None:
    results: list[bool] = []

    async def deliver() -> None:
        results.append(await store.messages.insert_inbound(7, "WA-dup", "79001112233", "hi"))

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(deliver)
    assert sorted(results) == [False] * 7 + [True]


async def test_inbound_keeps_the_given_time(store: Store) -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.messages.insert_inbound(7, "WA1", "79001112233", "hi", at)
    (message,) = await store.messages.latest(7)
    assert (message.at, message.direction, message.status, message.wa_id) == (at, "in", "received", "WA1")


async def test_outbound_same_key_returns_the_same_id_and_is_not_created_twice(store: Store) -> None:
    first = await store.messages.insert_outbound(7, "key-1", "79001112233", "hello")
    again = await store.messages.insert_outbound(7, "key-1", "79001112233", "hello")
    other = await store.messages.insert_outbound(7, "key-2", "79001112233", "hello")
    assert first[1] is True and again == (first[0], False)
    assert other[1] is True and other[0] != first[0]
    message = await store.messages.get(first[0])
    assert message is not None and (message.status, message.idempotency_key) == ("queued", "key-1")


async def test_set_status_records_the_wa_id_and_absent_messages_are_none(store: Store) -> None:
    message_id, _ = await store.messages.insert_outbound(7, "k", "79001112233", "hello")
    assert await store.messages.set_status(message_id, "sent", wa_id="WA-OUT-1")
    message = await store.messages.get(message_id)
    assert message is not None and (message.status, message.wa_id) == ("sent", "WA-OUT-1")
    assert await store.messages.set_status(404, "sent") is False
    assert await store.messages.get(404) is None
    assert await store.messages.latest(404) == []


async def test_latest_is_newest_first_filtered_and_limited(store: Store) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(4):
        await store.messages.insert_inbound(7, f"WA{n}", "79001112233", f"in {n}", base + timedelta(minutes=n))
    await store.messages.insert_outbound(7, "k", "79001112233", "out")
    assert [m.text for m in await store.messages.latest(7, "in", limit=2)] == ["in 3", "in 2"]
    assert [m.text for m in await store.messages.latest(7, "out")] == ["out"]
    assert len(await store.messages.latest(7)) == 5


async def test_unpublished_inbound_until_marked_published(store: Store) -> None:
    await store.messages.insert_inbound(7, "WA1", "79001112233", "a")
    await store.messages.insert_inbound(7, "WA2", "79001112233", "b")
    assert [m.wa_id for m in await store.messages.unpublished_inbound()] == ["WA1", "WA2"]
    assert await store.messages.mark_published(7, ["WA1"]) == 1
    assert await store.messages.mark_published(7, ["WA1"]) == 0
    assert [m.wa_id for m in await store.messages.unpublished_inbound(salon_id=7)] == ["WA2"]
    assert await store.messages.unpublished_inbound(salon_id=8) == []


async def test_an_inbound_message_known_only_by_lid_is_stored_once_with_its_lid(store: Store) -> None:
    assert await store.messages.insert_inbound(7, "WA-lid", "", "Здравствуйте", peer_lid="1234567890123@lid") is True
    assert await store.messages.insert_inbound(7, "WA-lid", "", "Здравствуйте", peer_lid="1234567890123@lid") is False
    [message] = await store.messages.latest(7, "in")
    assert (message.peer, message.peer_lid, message.text) == ("", "1234567890123@lid", "Здравствуйте")


async def test_an_inbound_message_without_phone_number_or_lid_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match="messages_peer_known"):
        await store.messages.insert_inbound(7, "WA-nobody", "", "?")
