"""The process-wide token bucket that keeps us under YClients' 5 requests per second, on virtual time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actor_admin.yclients import NoThrottle, Throttle, TokenBucket


async def test_default_is_five_per_second_evenly_spaced(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket()
    start = trio.current_time()
    times = []
    for _ in range(11):
        await bucket.acquire()
        times.append(trio.current_time() - start)
    assert times == pytest.approx([i * 0.2 for i in range(11)])


async def test_no_one_second_window_sees_more_than_five(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=5.0)
    times: list[float] = []

    async def caller() -> None:
        for _ in range(6):
            await bucket.acquire()
            times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(caller)
    assert len(times) == 30
    for t in times:
        in_window = [u for u in times if t <= u < t + 1.0 - 1e-9]
        assert len(in_window) <= 5


async def test_burst_lets_that_many_through_at_once(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=5.0, burst=5)
    start = trio.current_time()
    for _ in range(5):
        await bucket.acquire()
    assert trio.current_time() == start
    await bucket.acquire()
    assert trio.current_time() - start == pytest.approx(0.2)


async def test_idle_time_refills_only_up_to_burst(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=5.0, burst=2)
    await bucket.acquire()
    await trio.sleep(100)
    start = trio.current_time()
    await bucket.acquire()
    await bucket.acquire()
    assert trio.current_time() == start
    await bucket.acquire()
    assert trio.current_time() - start == pytest.approx(0.2)


async def test_acquire_nowait_raises_when_empty(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=5.0)
    bucket.acquire_nowait()
    with pytest.raises(trio.WouldBlock):
        bucket.acquire_nowait()
    await trio.sleep(0.2)
    bucket.acquire_nowait()


async def test_waiters_are_served_in_arrival_order(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=5.0)
    await bucket.acquire()
    order: list[int] = []

    async def caller(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(caller, i)
            await trio.testing.wait_all_tasks_blocked()
    assert order == list(range(5))


async def test_statistics_count_waiting_tasks(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=1.0)
    await bucket.acquire()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(bucket.acquire)
        await trio.testing.wait_all_tasks_blocked()
        assert bucket.statistics().tasks_waiting == 3
    assert bucket.statistics().tasks_waiting == 0


async def test_cancelled_waiter_takes_no_token(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=1.0)
    await bucket.acquire()
    with trio.move_on_after(0.5):
        await bucket.acquire()
    start = trio.current_time()
    await bucket.acquire()
    assert trio.current_time() - start == pytest.approx(0.5)


def test_rejects_nonsense_rates() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        TokenBucket(burst=0)


def test_implementations_satisfy_the_protocol() -> None:
    assert isinstance(TokenBucket(), Throttle)
    assert isinstance(NoThrottle(), Throttle)
