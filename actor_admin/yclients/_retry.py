"""Retrying a YClients call on transient failures, on trio's clock.

The activation callback must land within an hour of the salon granting access
(docs/yclients.md#activation-window), so callers retry :class:`RetryableError` with exponential
back-off and jitter up to a deadline; :class:`FinalError` is never retried.
"""

from __future__ import annotations

import random as _random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ._errors import RetryableError

T = TypeVar("T")


def backoff_delay(
    attempt: int,
    *,
    random: _random.Random,
    base_s: float = 1.0,
    factor: float = 2.0,
    max_s: float = 60.0,
    jitter: float = 0.5,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    ``min(max_s, base_s·factor^(attempt-1))`` scaled by a random factor in ``[1 - jitter, 1]`` so that
    many callers failing together do not come back together. A server's ``Retry-After`` is a lower
    bound: we never come back earlier than asked, nor faster than our own back-off.
    """
    delay = min(max_s, base_s * factor ** (attempt - 1))
    delay *= 1.0 - jitter * random.random()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    deadline: float,
    random: _random.Random,
    base_s: float = 1.0,
    factor: float = 2.0,
    max_s: float = 60.0,
    jitter: float = 0.5,
) -> T:
    """Call ``fn()`` until it returns, retrying :class:`RetryableError` with back-off.

    Args:
        attempts: most calls of ``fn`` in all (≥ 1).
        deadline: absolute :func:`trio.current_time` after which no attempt is started or kept running;
            an attempt still running at the deadline is cancelled.
        random: the source of jitter (pass a seeded ``random.Random`` in tests).

    Raises:
        RetryableError: the last transient failure, once attempts or time run out (a deadline hit
            mid-attempt is reported as a ``RetryableError`` too).
        FinalError: at once, as ``fn`` raised it.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    attempt = 0
    while True:
        attempt += 1
        last: RetryableError
        with trio.move_on_at(deadline) as scope:
            try:
                return await fn()
            except RetryableError as exc:
                last = exc
        if scope.cancelled_caught:
            raise RetryableError("retry", "deadline reached during an attempt")
        if attempt >= attempts:
            raise last
        delay = backoff_delay(
            attempt,
            random=random,
            base_s=base_s,
            factor=factor,
            max_s=max_s,
            jitter=jitter,
            retry_after=last.retry_after,
        )
        if trio.current_time() + delay >= deadline:
            raise last
        await trio.sleep(delay)
