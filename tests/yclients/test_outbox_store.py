"""The store methods the outbox worker and the admin retry rely on: ``Outbox.fail_overdue`` and
``Companies.requeue_activation`` (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actor_admin.store import Store


def payload(api_key: str) -> Mapping[str, Any]:
    return {"salon_id": 7, "api_key": api_key, "webhook_urls": ["http://our.example/webhook/yclients"]}


async def test_overdue_rows_fail_and_their_activating_company_becomes_activation_failed(store: Store) -> None:
    await store.companies.upsert_registration(7)
    record = await store.companies.record_connection(7, "79001234567", activation_payload=payload, window_s=0)
    assert record is not None and record.outbox_id is not None
    (item,) = await store.outbox.fail_overdue(error="deadline_passed")
    assert (item.id, item.last_error) == (record.outbox_id, "deadline_passed") and item.failed_at is not None
    company = await store.companies.get(7)
    assert company is not None and company.integration_status == "activation_failed"
    assert await store.outbox.fail_overdue() == []


async def test_a_claimed_row_in_flight_is_not_failed_behind_its_workers_back(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.record_connection(7, "79001234567", activation_payload=payload, window_s=0)
    (claimed,) = await store.outbox.claim_due(10, lease_s=60)
    assert await store.outbox.fail_overdue() == []
    assert await store.outbox.mark_delivered(claimed.id, integration_status="active")


async def test_rows_without_a_deadline_or_not_yet_due_are_left_alone(store: Store) -> None:
    await store.outbox.enqueue("other", 7, {})  # no deadline
    await store.outbox.enqueue("activation", 8, {}, deadline_s=3600)
    assert await store.outbox.fail_overdue() == []


async def test_an_active_company_keeps_its_status_when_a_stray_row_expires(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.set_integration_status(7, "active")
    await store.outbox.enqueue("activation", 7, payload("k"), deadline_s=-1)
    assert len(await store.outbox.fail_overdue()) == 1
    company = await store.companies.get(7)
    assert company is not None and company.integration_status == "active"


async def test_requeue_needs_activation_failed_and_a_connected_whatsapp(store: Store) -> None:
    assert await store.companies.requeue_activation(404, activation_payload=payload) is None
    await store.companies.upsert_registration(7)
    not_failed = await store.companies.requeue_activation(7, activation_payload=payload)
    assert not_failed is not None and not not_failed.activation_enqueued
    await store.companies.set_integration_status(7, "activation_failed")
    not_connected = await store.companies.requeue_activation(7, activation_payload=payload)
    assert not_connected is not None and not not_connected.activation_enqueued
    assert (await store.outbox.stats()).pending == 0


async def test_requeue_keeps_the_api_key_and_writes_a_fresh_deadline(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.record_connection(7, "79001234567", activation_payload=payload, window_s=0)
    await store.outbox.fail_overdue()
    before = await store.companies.get(7)
    assert before is not None and before.api_key
    record = await store.companies.requeue_activation(7, activation_payload=payload, window_s=3600)
    assert record is not None and record.activation_enqueued and record.outbox_id is not None
    assert record.company.integration_status == "activating" and record.company.api_key == before.api_key
    item = await store.outbox.get(record.outbox_id)
    assert item is not None and item.payload["api_key"] == before.api_key
    assert item.deadline is not None and (item.deadline - item.created_at).total_seconds() == 3600
