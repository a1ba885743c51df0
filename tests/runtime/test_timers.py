"""The timer wheel: every actor's timers behind one task, on trio's (virtual) clock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from actor_admin.runtime import TimerWheel


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_timers_fire_at_their_deadline_in_order(autojump_clock: trio.testing.MockClock) -> None:
    wheel = TimerWheel()
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)):
        wheel.call_at(start + delay, lambda name=name: fired.append((name, trio.current_time() - start)))
    await trio.sleep(10)
    assert fired == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]  # ties in the order they were set


async def test_an_earlier_timer_moves_the_wheel(autojump_clock: trio.testing.MockClock) -> None:
    wheel = TimerWheel()
    fired: list[float] = []
    start = trio.current_time()
    wheel.call_at(start + 100, lambda: fired.append(trio.current_time() - start))
    await trio.sleep(1)  # the wheel now sleeps until +100
    wheel.call_at(start + 5, lambda: fired.append(trio.current_time() - start))
    await trio.sleep(200)
    assert fired == [5.0, 100.0]


async def test_a_cancelled_timer_never_fires(autojump_clock: trio.testing.MockClock) -> None:
    wheel = TimerWheel()
    fired: list[str] = []
    start = trio.current_time()
    first = wheel.call_at(start + 1, lambda: fired.append("first"))
    wheel.call_at(start + 2, lambda: fired.append("second"))
    assert first.cancel() is True
    assert first.cancel() is False
    await trio.sleep(3)
    assert fired == ["second"]
    assert len(wheel) == 0


async def test_cancelled_timers_do_not_pile_up(autojump_clock: trio.testing.MockClock) -> None:
    # A timer re-set again and again (each far in the future) must not keep every old entry.
    wheel = TimerWheel()
    at = trio.current_time() + 86_400
    handle = wheel.call_at(at, lambda: None)
    for _ in range(10_000):
        handle.cancel()
        handle = wheel.call_at(at, lambda: None)
    assert len(wheel) <= 2048


async def test_a_failing_callback_is_logged_and_the_rest_still_run(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = TimerWheel()
    fired: list[str] = []
    start = trio.current_time()

    def boom() -> None:
        raise RuntimeError("boom")

    wheel.call_at(start + 1, boom)
    wheel.call_at(start + 1, lambda: fired.append("after"))
    with caplog.at_level(logging.ERROR, logger="actor_admin.runtime"):
        await trio.sleep(2)
    assert fired == ["after"]
    assert "a timer's callback failed" in caplog.text


def test_a_wheel_serves_one_run_after_another() -> None:
    wheel = TimerWheel()
    fired: list[int] = []

    async def main(n: int) -> None:
        wheel.call_at(trio.current_time() + 1, lambda: fired.append(n))
        if n == 1:
            wheel.call_at(trio.current_time() + 50, lambda: fired.append(-1))  # this run ends first
        await trio.sleep(2)

    for n in (1, 2):
        trio.run(main, n, clock=trio.testing.MockClock(autojump_threshold=0))
    assert fired == [1, 2]
