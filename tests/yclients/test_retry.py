"""``call_with_retries``: back-off with jitter, ``Retry-After``, the deadline — all on virtual time."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing

from actor_admin.yclients import FinalError, RetryableError, backoff_delay, call_with_retries


class Flaky:
    """Fails with the given errors in turn, then returns "done"; notes when each call happened."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def transient(retry_after: float | None = None) -> RetryableError:
    return RetryableError("test", "unavailable", status=503, retry_after=retry_after)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_returns_first_success(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky()
    result = await call_with_retries(fn, attempts=3, deadline=trio.current_time() + 60, random=random.Random(1))
    assert result == "done"
    assert len(fn.calls) == 1


async def test_retries_transient_failures_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fn = Flaky(transient(), transient(), transient())
    result = await call_with_retries(
        fn, attempts=5, deadline=trio.current_time() + 600, random=random.Random(7), jitter=0.0
    )
    assert result == "done"
    assert gaps(fn.calls) == pytest.approx([1.0, 2.0, 4.0])


async def test_jitter_stays_within_its_band(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(*[transient() for _ in range(6)])
    await call_with_retries(
        fn, attempts=10, deadline=trio.current_time() + 600, random=random.Random(3), jitter=0.5, max_s=60
    )
    for n, gap in enumerate(gaps(fn.calls)):
        full = min(60.0, 2.0**n)
        assert 0.5 * full - 1e-9 <= gap <= full + 1e-9


async def test_jitter_differs_between_seeds(autojump_clock: trio.testing.MockClock) -> None:
    a = Flaky(*[transient() for _ in range(3)])
    b = Flaky(*[transient() for _ in range(3)])
    await call_with_retries(a, attempts=5, deadline=trio.current_time() + 600, random=random.Random(1))
    await call_with_retries(b, attempts=5, deadline=trio.current_time() + 600, random=random.Random(2))
    assert gaps(a.calls) != pytest.approx(gaps(b.calls))


async def test_backoff_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(*[transient() for _ in range(8)])
    await call_with_retries(
        fn, attempts=10, deadline=trio.current_time() + 3600, random=random.Random(0), jitter=0.0, max_s=10
    )
    assert max(gaps(fn.calls)) == pytest.approx(10.0)


async def test_waits_at_least_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(transient(retry_after=30.0))
    await call_with_retries(fn, attempts=3, deadline=trio.current_time() + 600, random=random.Random(0))
    assert gaps(fn.calls) == pytest.approx([30.0])


async def test_small_retry_after_does_not_undercut_backoff(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(transient(), transient(retry_after=0.0))
    await call_with_retries(fn, attempts=3, deadline=trio.current_time() + 600, random=random.Random(0), jitter=0.0)
    assert gaps(fn.calls) == pytest.approx([1.0, 2.0])


async def test_final_error_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(FinalError("test", "bad body", status=422))
    with pytest.raises(FinalError):
        await call_with_retries(fn, attempts=5, deadline=trio.current_time() + 600, random=random.Random(0))
    assert len(fn.calls) == 1


async def test_gives_up_after_attempts(autojump_clock: trio.testing.MockClock) -> None:
    fn = Flaky(*[transient() for _ in range(10)])
    with pytest.raises(RetryableError):
        await call_with_retries(fn, attempts=3, deadline=trio.current_time() + 600, random=random.Random(0))
    assert len(fn.calls) == 3


async def test_gives_up_before_sleeping_past_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    fn = Flaky(*[transient() for _ in range(100)])
    with pytest.raises(RetryableError):
        await call_with_retries(fn, attempts=100, deadline=start + 20, random=random.Random(0), jitter=0.0)
    # Attempts at 0, 1, 3, 7, 15; the next would start at 31 > 20.
    assert [t - start for t in fn.calls] == pytest.approx([0, 1, 3, 7, 15])
    assert trio.current_time() - start == pytest.approx(15)


async def test_retry_after_beyond_the_deadline_gives_up_at_once(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    fn = Flaky(transient(retry_after=3600))
    with pytest.raises(RetryableError) as caught:
        await call_with_retries(fn, attempts=5, deadline=start + 60, random=random.Random(0))
    assert caught.value.retry_after == 3600
    assert trio.current_time() == start


async def test_an_attempt_running_at_the_deadline_is_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()

    async def hangs() -> str:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(RetryableError, match="deadline"):
        await call_with_retries(hangs, attempts=3, deadline=start + 5, random=random.Random(0))
    assert trio.current_time() - start == pytest.approx(5)


def test_backoff_delay_grows_then_caps() -> None:
    rng = random.Random(0)
    delays = [backoff_delay(n, random=rng, jitter=0.0, max_s=8.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
