"""Re-announcing inbound messages that never reached the stream (docs/data.md#reannouncing), on real
PostgreSQL and Redis: messages stored while Redis was down reach the stream once it is back — once
each, in each salon's order, new ones queued behind the backlog; a node announces only the salons it
owns and cannot mark a salon it lost meanwhile; at start-up, rows a crash left are announced first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence

import pytest
import trio

from actor_admin.backoff import Backoff
from actor_admin.cluster import (
    EmbeddedRedis,
    InboundAnnouncer,
    InboundStream,
    ReannounceOptions,
    Reannouncer,
    RedisClient,
    inbound_fields,
)
from actor_admin.runtime import GroupCommitOptions
from actor_admin.store import Claim, Member, PublishedMark, Store, StoreUnavailable, Unpublished, UnpublishedSalon

from ._ownership_helpers import own, sql

pytestmark = pytest.mark.integration

PEER = "79001112233"
NODE_A = Member("node-a", "inc-a", "1.0")
NODE_B = Member("node-b", "inc-b", "1.0")
QUICK = ReannounceOptions(batch=3, pause_s=0.0, retry=Backoff(initial_s=0.05, max_s=0.05, jitter=0.0))


async def _receive(store: Store, announcer: InboundAnnouncer, salon_id: int, wa_id: str, fence: int) -> None:
    """What a salon's actor does with an inbound message: store it, then hand it to the announcer."""
    assert await store.messages.insert_inbound(salon_id, wa_id, PEER, f"text of {wa_id}", fence=fence)
    await announcer.publish_inbound(salon_id, inbound_fields(wa_id, PEER, f"text of {wa_id}"), fence=fence)


async def _on_stream(client: RedisClient) -> list[tuple[int, str]]:
    entries = await client.execute("XRANGE", client.key("inbound"), "-", "+")
    return [(int(fields["salon_id"]), fields["wa_id"]) for _, fields in entries]


async def _unpublished(pg_dsn: str) -> list[str]:
    rows = await sql(pg_dsn, "SELECT wa_id FROM messages WHERE direction = 'in' AND published_at IS NULL ORDER BY id")
    return [r["wa_id"] for r in rows]


class Watched:
    """The store's messages, telling the test each time the re-announcer read or marked a batch (it
    releases salons right after either, before it waits again), and, when asked, doing something
    between its read and its marks."""

    def __init__(self, store: Store, after_read: Callable[[], Awaitable[None]] | None = None) -> None:
        self._messages = store.messages
        self.progress = trio.Event()
        self.after_read = after_read

    async def unpublished_salons(
        self, *, node_id: str | None, retention_days: int
    ) -> tuple[list[UnpublishedSalon], int]:
        return await self._messages.unpublished_salons(node_id=node_id, retention_days=retention_days)

    async def unpublished_of(
        self, salons: Collection[int], *, node_id: str | None, retention_days: int, limit: int
    ) -> Unpublished:
        found = await self._messages.unpublished_of(salons, node_id=node_id, retention_days=retention_days, limit=limit)
        if found.messages and self.after_read is not None:
            await self.after_read()
        self.progress.set()
        return found

    async def mark_published_many(self, marks: Sequence[PublishedMark]) -> list[int | Exception]:
        results = await self._messages.mark_published_many(marks)
        self.progress.set()
        return results


class Signals:
    """Events the test waits on instead of the clock: a batch on the stream (and marked), a message
    held back or a batch refused. Installed after the re-announcer's own hooks, which still run."""

    def __init__(self, announcer: InboundAnnouncer) -> None:
        self.answered = trio.Event()
        self.held = trio.Event()
        answered, held = announcer.on_answered, announcer.on_held

        def on_answered() -> None:
            self.answered.set()
            answered()

        def on_held() -> None:
            self.held.set()
            held()

        announcer.on_answered, announcer.on_held = on_answered, on_held


async def test_messages_stored_while_redis_was_down_reach_the_stream_once_in_order_when_it_is_back(
    store: Store, pg_dsn: str, embedded_redis: EmbeddedRedis
) -> None:
    fences = await own(store, pg_dsn, NODE_A, [1, 2])
    client = await RedisClient.open(embedded_redis.url, timeout_s=0.5, prefix="reannounce:")
    watched = Watched(store)
    announcer = InboundAnnouncer(InboundStream(client), store.messages, GroupCommitOptions(max_batch=2))
    reannouncer = Reannouncer(announcer, watched, node_id=NODE_A.node_id, retention_days=90, options=QUICK)
    signals = Signals(announcer)
    async with announcer.running(), trio.open_nursery() as nursery:
        with trio.fail_after(10):
            for salon_id in (1, 2):
                signals.answered = trio.Event()
                await _receive(store, announcer, salon_id, f"before-{salon_id}", fences[salon_id])
                await signals.answered.wait()  # on the stream and marked
            await trio.to_thread.run_sync(embedded_redis.stop)
            for salon_id in (1, 2):
                signals.held = trio.Event()
                await _receive(store, announcer, salon_id, f"down-{salon_id}-0", fences[salon_id])
                await signals.held.wait()  # its batch refused: the salon is held from now on
        for n in range(1, 5):  # the rest of the outage: held back, for the re-announcer
            for salon_id in (1, 2):
                await _receive(store, announcer, salon_id, f"down-{salon_id}-{n}", fences[salon_id])
        assert set(announcer.held) == {1, 2} and len(await _unpublished(pg_dsn)) == 10
        nursery.start_soon(reannouncer.run)  # fails while Redis is down, and retries
        await trio.to_thread.run_sync(embedded_redis.start)
        for salon_id in (1, 2):  # Redis is back, the backlog not yet announced: this one waits behind it
            await _receive(store, announcer, salon_id, f"back-{salon_id}", fences[salon_id])
        with trio.fail_after(10):
            while True:
                watched.progress = trio.Event()
                if not announcer.held and not await _unpublished(pg_dsn):
                    break  # released: new messages are announced right away again
                await watched.progress.wait()
            for salon_id in (1, 2):
                signals.answered = trio.Event()
                await _receive(store, announcer, salon_id, f"after-{salon_id}", fences[salon_id])
                await signals.answered.wait()
        nursery.cancel_scope.cancel()
    seen = await _on_stream(client)  # Redis restarted empty: what was announced since
    assert len(seen) == len(set(seen)) == 2 * 7  # once each; before-1 and before-2 not again
    for salon_id in (1, 2):
        expected = [f"down-{salon_id}-{n}" for n in range(5)] + [f"back-{salon_id}", f"after-{salon_id}"]
        assert [wa for s, wa in seen if s == salon_id] == expected
    assert reannouncer.reannounced_total == 12
    assert await _unpublished(pg_dsn) == []
    await client.aclose()


async def test_a_node_announces_only_its_own_salons_and_cannot_mark_one_it_lost(
    grouped: Store, pg_dsn: str, redis_client: RedisClient
) -> None:
    fences_a = await own(grouped, pg_dsn, NODE_A, [1, 3])
    fences_b = await own(grouped, pg_dsn, NODE_B, [2])
    for salon_id, fence in [(1, fences_a[1]), (2, fences_b[2]), (3, fences_a[3])]:
        assert await grouped.messages.insert_inbound(salon_id, f"left-{salon_id}", PEER, "x", fence=fence)

    async def lose_salon_3() -> None:  # between node A's read and its marks, salon 3 moves to B
        if await grouped.ownership.release(NODE_A, {3: fences_a[3]}):
            await grouped.ownership.claim(NODE_B, [Claim(3)])

    stream = InboundStream(redis_client)
    announcer_a = InboundAnnouncer(stream, grouped.messages)
    node_a = Reannouncer(announcer_a, Watched(grouped, lose_salon_3), node_id=NODE_A.node_id, retention_days=90)
    await node_a.start_up()
    assert set(announcer_a.held) == {1, 2, 3}
    assert await node_a.drain() == 2
    assert await _on_stream(redis_client) == [(1, "left-1"), (3, "left-3")]  # never salon 2: B owns it
    assert await _unpublished(pg_dsn) == ["left-2", "left-3"]  # salon 3's mark refused: A lost it

    node_b = Reannouncer(
        InboundAnnouncer(stream, grouped.messages), grouped.messages, node_id=NODE_B.node_id, retention_days=90
    )
    await node_b.start_up()
    assert await node_b.drain() == 2
    assert await _unpublished(pg_dsn) == []
    # salon 3's message twice on the stream (A's XADD, then its owner's): at least once, never lost
    assert await _on_stream(redis_client) == [(1, "left-1"), (3, "left-3"), (2, "left-2"), (3, "left-3")]


async def test_at_start_up_rows_a_crash_left_go_out_first_and_old_ones_stay(
    store: Store, pg_dsn: str, redis_client: RedisClient
) -> None:
    fences = await own(store, pg_dsn, NODE_A, [1, 2])
    # A crash between the store and the XADD, before this start: two rows of salon 1, none of salon 2,
    # and one of salon 1 past retention (the pruning job deletes it; nobody would act on it now).
    await sql(
        pg_dsn,
        "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, at) "
        "VALUES (1, 'in', 'ancient', $1, 'x', 'received', now() - interval '91 days')",
        PEER,
    )
    for wa_id in ("crash-0", "crash-1"):
        assert await store.messages.insert_inbound(1, wa_id, PEER, "x", fence=fences[1])
    announcer = InboundAnnouncer(InboundStream(redis_client), store.messages)
    reannouncer = Reannouncer(announcer, store.messages, node_id=NODE_A.node_id, retention_days=90)
    await reannouncer.start_up()
    assert set(announcer.held) == {1}
    signals = Signals(announcer)
    async with announcer.running():
        await _receive(store, announcer, 1, "new-1", fences[1])  # held back behind the crash's rows
        await _receive(store, announcer, 2, "new-2", fences[2])
        with trio.fail_after(10):
            await signals.answered.wait()
    await reannouncer.check()
    assert reannouncer.backlog == 3  # crash-0, crash-1 and new-1: within retention and unpublished
    assert await reannouncer.drain() == 3
    seen = await _on_stream(redis_client)
    assert [wa for s, wa in seen if s == 1] == ["crash-0", "crash-1", "new-1"]
    assert [wa for s, wa in seen if s == 2] == ["new-2"]
    assert await _unpublished(pg_dsn) == ["ancient"]
    assert not announcer.held


async def test_a_check_takes_rows_unpublished_since_the_previous_check_not_newer_ones(
    grouped: Store, pg_dsn: str, redis_client: RedisClient
) -> None:
    """A salon claimed after its owner crashed: the next check finds what was left, but a row stored
    since the previous check may still be on its way through the announcer, and waits for the next."""
    fences = await own(grouped, pg_dsn, NODE_A, [1])
    announcer = InboundAnnouncer(InboundStream(redis_client), grouped.messages)
    reannouncer = Reannouncer(announcer, grouped.messages, node_id=NODE_A.node_id, retention_days=90)
    await reannouncer.check()
    assert await grouped.messages.insert_inbound(1, "left", PEER, "x", fence=fences[1])
    await reannouncer.check()
    assert reannouncer.backlog == 1 and not announcer.held and await reannouncer.drain() == 0
    await reannouncer.check()
    assert set(announcer.held) == {1}
    assert await reannouncer.drain() == 1
    assert await _on_stream(redis_client) == [(1, "left")] and reannouncer.backlog == 0


async def test_marks_postgresql_refused_keep_the_salon_held_and_the_message_is_announced_again(
    store: Store, pg_dsn: str, redis_client: RedisClient
) -> None:
    """XADD, then the marks fail (PostgreSQL down): the pass fails, the salon stays held, and the
    next pass announces the message again — at least once, never lost (docs/data.md#inbound-stream)."""
    fences = await own(store, pg_dsn, NODE_A, [1])
    assert await store.messages.insert_inbound(1, "m", PEER, "x", fence=fences[1])

    class MarksFailOnce(Watched):
        failed = False

        async def mark_published_many(self, marks: Sequence[PublishedMark]) -> list[int | Exception]:
            if not self.failed:
                self.failed = True
                return [StoreUnavailable("PostgreSQL is down") for _ in marks]
            return await super().mark_published_many(marks)

    announcer = InboundAnnouncer(InboundStream(redis_client), store.messages)
    reannouncer = Reannouncer(announcer, MarksFailOnce(store), node_id=NODE_A.node_id, retention_days=90)
    await reannouncer.start_up()
    with pytest.raises(StoreUnavailable):
        await reannouncer.drain()
    assert set(announcer.held) == {1} and await _unpublished(pg_dsn) == ["m"]
    assert await reannouncer.drain() == 1
    assert not announcer.held and await _unpublished(pg_dsn) == []
    assert await _on_stream(redis_client) == [(1, "m"), (1, "m")]
