"""The registry of this node's sessions: counts, and waiting for a salon's state."""

from __future__ import annotations

import trio
import trio.testing

from actor_admin.actors import Registry
from actor_admin.actors._registry import SessionView


async def test_a_waiter_wakes_only_for_its_own_salon() -> None:
    # 500 pages waiting for their QR must not each wake on every other salon's change.
    registry = Registry()
    registry.update(1, "starting", None, None)
    checks = 0
    seen: list[SessionView] = []

    def accept(view: SessionView) -> bool:
        nonlocal checks
        checks += 1
        return view.state == "qr"

    async def waiter() -> None:
        seen.append(await registry.wait_until(1, accept))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        for salon_id in range(2, 102):
            registry.update(salon_id, "connecting", None, None)
            await trio.testing.wait_all_tasks_blocked()
        assert checks == 1  # only its first look: no other salon's change woke it
        registry.update(1, "qr", None, None)
    assert [view.state for view in seen] == ["qr"]
    assert checks == 2
    assert registry.by_state() == {"connecting": 100, "qr": 1}


async def test_wait_for_sees_every_change() -> None:
    registry = Registry()
    done = trio.Event()

    async def waiter() -> None:
        await registry.wait_for(lambda: registry.count("connected") == 3)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        for salon_id in (1, 2, 3):
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()
            registry.update(salon_id, "connected", "79000000000", None)
        with trio.fail_after(1):
            await done.wait()
        registry.forget(3)
        assert registry.count("connected") == 2


async def test_a_forgotten_salon_wakes_its_waiter() -> None:
    registry = Registry()
    registry.update(7, "qr", None, None)
    results: list[SessionView] = []

    async def waiter() -> None:
        results.append(await registry.wait_state(7, "connected"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        registry.forget(7)
        await trio.testing.wait_all_tasks_blocked()
        assert results == []  # woken, looked, and waits on
        registry.update(7, "connected", "79000000007", None)
    assert [view.state for view in results] == ["connected"]
