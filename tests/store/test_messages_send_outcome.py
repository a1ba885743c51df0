"""``Messages.record_send_outcome``: what the actor's ``RecordSendOutcome`` effect writes."""

from __future__ import annotations

from actor_admin.store import Store


async def test_a_sent_message_gets_its_whatsapp_id(store: Store) -> None:
    message_id, _ = await store.messages.insert_outbound(7, "key-1", "79001112233", "hello")
    assert await store.messages.record_send_outcome(7, "key-1", wa_id="WA-1", error=None) is True
    message = await store.messages.get(message_id)
    assert message is not None and (message.status, message.wa_id) == ("sent", "WA-1")


async def test_a_failed_send_is_marked_failed_and_its_reason_is_an_event(store: Store) -> None:
    message_id, _ = await store.messages.insert_outbound(7, "key-1", "79001112233", "hello")
    assert await store.messages.record_send_outcome(7, "key-1", wa_id=None, error="not connected") is True
    message = await store.messages.get(message_id)
    assert message is not None and (message.status, message.wa_id) == ("failed", None)
    (event,) = await store.events.list(7)
    assert (event.type, event.data["error"], event.data["message_id"]) == (
        "message_send_failed",
        "not connected",
        message_id,
    )


async def test_the_outcome_is_matched_by_salon_and_key(store: Store) -> None:
    mine, _ = await store.messages.insert_outbound(7, "key-1", "79001112233", "mine")
    other, _ = await store.messages.insert_outbound(8, "key-1", "79001112233", "another salon's")
    assert await store.messages.record_send_outcome(7, "key-1", wa_id="WA-1", error=None)
    assert [(await store.messages.get(i)).status for i in (mine, other)] == ["sent", "queued"]  # type: ignore[union-attr]
    assert await store.messages.record_send_outcome(7, "no-such-key", wa_id="WA-2", error=None) is False


async def test_a_late_outcome_never_overwrites_a_final_one(store: Store) -> None:
    message_id, _ = await store.messages.insert_outbound(7, "key-1", "79001112233", "hello")
    assert await store.messages.record_send_outcome(7, "key-1", wa_id="WA-1", error=None)
    assert await store.messages.record_send_outcome(7, "key-1", wa_id=None, error="late failure") is False
    message = await store.messages.get(message_id)
    assert message is not None and (message.status, message.wa_id) == ("sent", "WA-1")


async def test_get_outbound_finds_a_message_by_its_key(store: Store) -> None:
    message_id, _ = await store.messages.insert_outbound(7, "key-1", "79001112233", "hello")
    found = await store.messages.get_outbound(7, "key-1")
    assert found is not None and found.id == message_id
    assert await store.messages.get_outbound(8, "key-1") is None
