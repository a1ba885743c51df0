"""Waiting for conditions that live on Redis' wall clock (TTLs), which trio's MockClock cannot move."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    with trio.fail_after(timeout_s):
        # Polling on purpose: the condition is in Redis, nothing here can signal an Event for it.
        while not await predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)
