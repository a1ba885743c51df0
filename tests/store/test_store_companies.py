"""The companies repository: registration, lifecycle, the connection + activation transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import trio_asyncio

from actor_admin.store import ACTIVATION, MarketplaceUser, Store


def _payload(api_key: str) -> dict[str, Any]:
    return {"salon_id": 7, "application_id": 1, "api_key": api_key, "webhook_urls": ["https://x/webhook/yclients"]}


async def test_registration_creates_a_pending_company_with_user_fields(store: Store) -> None:
    user = MarketplaceUser(user_id="u1", name="Анна", phone="79001234567", email="a@example.com")
    company = await store.companies.upsert_registration(7, title="Salon 7", user=user)
    assert (company.salon_id, company.title, company.integration_status) == (7, "Salon 7", "pending_whatsapp")
    assert (company.user_id, company.user_name, company.user_phone, company.user_email) == (
        "u1", "Анна", "79001234567", "a@example.com")
    assert not company.whatsapp_connected
    assert await store.companies.get(7) == company


async def test_absent_company_is_none_everywhere(store: Store) -> None:
    assert await store.companies.get(404) is None
    assert await store.companies.set_integration_status(404, "active") is None
    assert await store.companies.record_connection(404, "79001234567", activation_payload=_payload) is None
    assert await store.companies.mark_disconnected(404) is None
    assert await store.companies.mark_frozen(404) is None
    assert await store.companies.mark_uninstalled(404) is None


async def test_repeated_registration_keeps_known_fields_and_restarts_the_window(store: Store) -> None:
    first = await store.companies.upsert_registration(7, title="Salon 7", user=MarketplaceUser(name="Анна"))
    again = await store.companies.upsert_registration(7)
    assert again.title == "Salon 7" and again.user_name == "Анна"
    assert again.registered_at >= first.registered_at
    assert again.created_at == first.created_at


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("active", "active"),
        ("activating", "activating"),
        ("frozen", "pending_whatsapp"),
        ("uninstalled", "pending_whatsapp"),
        ("activation_failed", "pending_whatsapp"),
        ("pending_whatsapp", "pending_whatsapp"),
    ],
)
async def test_registration_status_rules(store: Store, before: str, after: str) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.set_integration_status(7, before)  # type: ignore[arg-type]
    assert (await store.companies.upsert_registration(7)).integration_status == after


async def test_unknown_status_is_refused_before_reaching_the_database(store: Store) -> None:
    with pytest.raises(ValueError, match="integration_status"):
        await store.companies.set_integration_status(7, "pending")  # type: ignore[arg-type]


async def test_set_integration_status_to_active_stamps_connected_at(store: Store) -> None:
    await store.companies.upsert_registration(7)
    company = await store.companies.set_integration_status(7, "active")
    assert company is not None and company.integration_status == "active"
    assert company.connected_at is not None


async def test_set_integration_status_only_from_guards_the_transition(store: Store) -> None:
    await store.companies.upsert_registration(7)
    assert await store.companies.set_integration_status(7, "active", only_from=["activating"]) is None
    assert (await store.companies.get(7)).integration_status == "pending_whatsapp"  # type: ignore[union-attr]
    changed = await store.companies.set_integration_status(7, "activating", only_from=["pending_whatsapp"])
    assert changed is not None and changed.integration_status == "activating"


async def test_first_connection_enqueues_exactly_one_activation_atomically(store: Store) -> None:
    registered = await store.companies.upsert_registration(7)
    record = await store.companies.record_connection(7, "79006464263:15@s.whatsapp.net", activation_payload=_payload)
    assert record is not None and record.activation_enqueued and record.outbox_id is not None
    company = record.company
    assert company.whatsapp_connected and company.whatsapp_phone == "79006464263"
    assert company.integration_status == "activating"
    assert company.api_key is not None and len(company.api_key) == 64
    item = await store.outbox.get(record.outbox_id)
    assert item is not None and item.kind == ACTIVATION and item.salon_id == 7
    assert item.payload["api_key"] == company.api_key
    assert item.deadline == registered.registered_at + timedelta(hours=1)


async def test_reconnection_does_not_enqueue_a_second_activation(store: Store) -> None:
    await store.companies.upsert_registration(7)
    first = await store.companies.record_connection(7, "79006464263", activation_payload=_payload)
    await store.companies.mark_disconnected(7)
    again = await store.companies.record_connection(7, "79006464263", activation_payload=_payload)
    assert first is not None and again is not None
    assert not again.activation_enqueued and again.outbox_id is None
    assert again.company.api_key == first.company.api_key
    assert (await store.outbox.stats()).pending == 1


async def test_connection_of_an_active_company_enqueues_nothing(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.set_integration_status(7, "active")
    record = await store.companies.record_connection(7, "79006464263", activation_payload=_payload)
    assert record is not None and not record.activation_enqueued
    assert record.company.integration_status == "active" and record.company.whatsapp_connected


async def test_invalid_phone_is_refused(store: Store) -> None:
    await store.companies.upsert_registration(7)
    with pytest.raises(ValueError, match="phone"):
        await store.companies.record_connection(7, "abc")


async def test_mark_disconnected_clears_the_flag_and_keeps_the_phone(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.record_connection(7, "79006464263")
    company = await store.companies.mark_disconnected(7)
    assert company is not None and not company.whatsapp_connected
    assert company.whatsapp_phone == "79006464263" and company.disconnected_at is not None


async def test_uninstall_deletes_credentials_and_api_key(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.companies.record_connection(7, "79006464263", activation_payload=_payload)
    await store.credentials.save(7, b"creds")
    company = await store.companies.mark_uninstalled(7)
    assert company is not None
    assert (company.integration_status, company.whatsapp_connected, company.api_key) == ("uninstalled", False, None)
    assert await store.credentials.load(7) is None


async def test_freeze_keeps_credentials(store: Store) -> None:
    await store.companies.upsert_registration(7)
    await store.credentials.save(7, b"creds")
    company = await store.companies.mark_frozen(7)
    assert company is not None and company.integration_status == "frozen"
    assert await store.credentials.load(7) == b"creds"


async def test_list_pages_and_filters_with_a_total(store: Store) -> None:
    for salon_id in range(1, 6):
        await store.companies.upsert_registration(salon_id)
    await store.companies.set_integration_status(2, "active")
    await store.companies.set_integration_status(4, "active")
    rows, total = await store.companies.list(page=2, page_size=2)
    assert [c.salon_id for c in rows] == [3, 4] and total == 5
    rows, total = await store.companies.list(integration_status="active")
    assert [c.salon_id for c in rows] == [2, 4] and total == 2
    rows, total = await store.companies.list(page=9, page_size=2)
    assert rows == [] and total == 5


async def test_list_with_credentials_skips_frozen_and_uninstalled(store: Store) -> None:
    for salon_id in (1, 2, 3, 4):
        await store.companies.upsert_registration(salon_id)
    for salon_id in (1, 2, 3):
        await store.credentials.save(salon_id, b"c")
    await store.companies.mark_frozen(2)
    assert [c.salon_id for c in await store.companies.list_with_credentials()] == [1, 3]


async def test_database_refuses_an_unknown_status_and_a_phone_with_a_suffix(store: Store, pg_dsn: str) -> None:
    await store.companies.upsert_registration(7)

    async def attempt(query: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(query)
        finally:
            await conn.close()

    for query in ("UPDATE companies SET integration_status = 'pending'",
                  "UPDATE companies SET whatsapp_phone = '79006464263:15'"):
        with pytest.raises(asyncpg.CheckViolationError):
            await trio_asyncio.aio_as_trio(attempt)(query)
