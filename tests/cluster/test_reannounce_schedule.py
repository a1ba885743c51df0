"""When the re-announcer looks for unpublished rows (docs/data.md#reannouncing): ``start_up`` looks
before the actors start, so ``run`` waits a whole check interval before it looks again — a node that
stops right after it started has no query of the re-announcer's in flight. Virtual time, a fake log."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import trio
import trio.testing

from actor_admin.cluster import InboundAnnouncer, ReannounceOptions, Reannouncer
from actor_admin.store import PublishedMark, Unpublished, UnpublishedSalon

INTERVAL_S = 60.0


class LookingLog:
    """Notes when it was asked for the unpublished salons; there are never any."""

    def __init__(self) -> None:
        self.looked_at: list[float] = []

    async def unpublished_salons(
        self, *, node_id: str | None, retention_days: int
    ) -> tuple[list[UnpublishedSalon], int]:
        self.looked_at.append(trio.current_time())
        return [], 0

    async def unpublished_of(
        self, salons: Collection[int], *, node_id: str | None, retention_days: int, limit: int
    ) -> Unpublished:
        raise AssertionError("nothing is held, so nothing is read")

    async def mark_published_many(self, marks: Sequence[PublishedMark]) -> list[int | Exception]:
        raise AssertionError("nothing is held, so nothing is marked")


def reannouncer(log: LookingLog) -> Reannouncer:
    stream: Any = object()  # never written: nothing is held
    announcer = InboundAnnouncer(stream, log)  # type: ignore[arg-type]
    return Reannouncer(
        announcer, log, node_id="node-a", retention_days=90, options=ReannounceOptions(check_interval_s=INTERVAL_S)
    )


async def test_after_start_up_the_first_check_waits_a_whole_interval(autojump_clock: trio.testing.MockClock) -> None:
    log = LookingLog()
    job = reannouncer(log)
    await job.start_up()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run)
        await trio.sleep(INTERVAL_S - 1)
        assert log.looked_at == [0.0]  # start_up's look only
        await trio.sleep(2)
        assert log.looked_at == [0.0, INTERVAL_S]
        nursery.cancel_scope.cancel()


async def test_without_a_start_up_look_the_first_check_is_at_once(autojump_clock: trio.testing.MockClock) -> None:
    log = LookingLog()
    job = reannouncer(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run)
        await trio.sleep(1)
        assert log.looked_at == [0.0]
        nursery.cancel_scope.cancel()
