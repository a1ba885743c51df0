"""The company_events audit log: append, list newest first, never rewritten."""

from __future__ import annotations

import asyncpg
import pytest
import trio_asyncio

from actor_admin.store import Store


async def test_append_then_list_newest_first_with_data(store: Store) -> None:
    first = await store.events.append(7, "registration_started", {"user": "u1"})
    second = await store.events.append(7, "whatsapp_connected", {"phone": "79001234567"})
    await store.events.append(8, "other_salon")
    events = await store.events.list(7)
    assert [(e.id, e.type, e.data) for e in events] == [
        (second, "whatsapp_connected", {"phone": "79001234567"}),
        (first, "registration_started", {"user": "u1"}),
    ]
    assert all(e.salon_id == 7 for e in events)


async def test_events_of_unknown_salons_are_recorded_and_absent_salons_list_empty(store: Store) -> None:
    await store.events.append(999, "webhook_unknown_event", {"event": "paid"})
    assert [e.type for e in await store.events.list(999)] == ["webhook_unknown_event"]
    assert await store.events.list(404) == []


async def test_list_limit_keeps_the_latest(store: Store) -> None:
    for n in range(5):
        await store.events.append(7, f"e{n}")
    assert [e.type for e in await store.events.list(7, limit=2)] == ["e4", "e3"]


async def test_the_log_refuses_updates_and_deletes(store: Store, pg_dsn: str) -> None:
    await store.events.append(7, "registration_started")

    async def attempt(query: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(query)
        finally:
            await conn.close()

    for query in ("UPDATE company_events SET type = 'x'", "DELETE FROM company_events"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await trio_asyncio.aio_as_trio(attempt)(query)
    assert len(await store.events.list(7)) == 1
