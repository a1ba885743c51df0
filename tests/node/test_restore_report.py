"""The start-up line counts salons that reconnected, not attempts (docs/commands-and-settings.md#dev)."""

from __future__ import annotations

import trio
import trio.testing

from actor_admin.actors import Registry
from actor_admin.node import RESTORE_REPORT_WAIT_S, report_restored


async def test_the_line_counts_connected_salons_and_names_the_rest(autojump_clock: trio.testing.MockClock) -> None:
    registry = Registry()
    for salon_id in (1, 2, 3, 4, 5):
        registry.update(salon_id, "connecting", None, None)
    registry.update(1, "connected", "79001234567", None)
    registry.update(2, "connected", "79001234568", None)
    registry.update(3, "failed", None, "transport_mismatch")
    started = trio.current_time()
    line = await report_restored(registry, [1, 2, 3, 4, 5])
    assert line == "reconnected 2 of 5 salon(s); 1 failed (transport_mismatch); 2 still connecting"
    assert trio.current_time() - started == RESTORE_REPORT_WAIT_S  # bounded: it waited, then said so


async def test_the_line_comes_as_soon_as_every_salon_settled(autojump_clock: trio.testing.MockClock) -> None:
    registry = Registry()
    registry.update(1, "connecting", None, None)
    async with trio.open_nursery() as nursery:

        async def connects_later() -> None:
            await trio.sleep(2)
            registry.update(1, "connected", "79001234567", None)

        nursery.start_soon(connects_later)
        started = trio.current_time()
        assert await report_restored(registry, [1]) == "reconnected 1 of 1 salon(s)"
        assert trio.current_time() - started == 2
