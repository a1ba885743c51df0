"""Inbound messages group-committed (docs/data.md#group-commit), on real PostgreSQL (and Redis for the
announcements): stored exactly once, in order per salon, a stale fence refused for its own salon
only, a rejected row failing alone, an outage failing every waiter and writing nothing."""

from __future__ import annotations

import random

import pytest
import trio
import trio_asyncio

from actor_admin.cluster import InboundAnnouncer, InboundStream, RedisClient
from actor_admin.runtime import GroupCommitOptions
from actor_admin.store import (
    EmbeddedPostgres,
    Fenced,
    InboundRow,
    Keyring,
    Member,
    PublishedMark,
    Store,
    StoreUnavailable,
    open_store,
)
from actor_admin.store._migrations import migrate_aio

from ._ownership_helpers import own, sql

pytestmark = pytest.mark.integration

PEER = "79001112233"
NODE = Member("node-a", "inc-a", "1.0")


async def _rows(pg_dsn: str) -> list[tuple[int, str, str]]:
    """(salon, wa_id, text) of every inbound row, in the order they were inserted."""
    found = await sql(pg_dsn, "SELECT salon_id, wa_id, text FROM messages WHERE direction = 'in' ORDER BY id")
    return [(r["salon_id"], r["wa_id"], r["text"]) for r in found]


async def test_many_salons_at_once_are_stored_once_in_few_batches(
    grouped: Store, pg_dsn: str, schedule_seed: int
) -> None:
    """Twenty salons' actors each send their messages one after another (waiting for each answer, as
    an actor does), every message delivered twice (a redelivery) — in a seeded order of arrival."""
    shuffle = random.Random(schedule_seed)
    salons = list(range(1, 21))
    fences = await own(grouped, pg_dsn, NODE, salons)
    answers: dict[tuple[int, str], list[bool]] = {}

    async def actor(salon_id: int) -> None:
        for n in range(3):
            wa_id = f"wa-{salon_id}-{n}"
            for _ in range(2):
                stored = await grouped.messages.insert_inbound(salon_id, wa_id, PEER, f"m{n}", fence=fences[salon_id])
                answers.setdefault((salon_id, wa_id), []).append(stored)
            await trio.sleep(shuffle.random() * 0.002)

    async with trio.open_nursery() as nursery:
        for salon_id in shuffle.sample(salons, len(salons)):
            nursery.start_soon(actor, salon_id)

    assert all(a == [True, False] for a in answers.values()) and len(answers) == 60
    rows = await _rows(pg_dsn)
    assert len(rows) == 60 and len(set(rows)) == 60
    for salon_id in salons:  # each salon's messages were written in the order they came
        assert [wa for s, wa, _ in rows if s == salon_id] == [f"wa-{salon_id}-{n}" for n in range(3)]
    stats = grouped.messages.group_statistics()["inbound_inserts"]
    assert stats.requests == 120 and stats.batches < 120  # gathered: fewer statements than messages


async def test_duplicates_inside_one_batch_and_across_batches_count_once(store: Store, pg_dsn: str) -> None:
    first = [
        InboundRow(7, "a", PEER, "1"),
        InboundRow(7, "b", PEER, "2"),
        InboundRow(7, "a", PEER, "1 again"),
        InboundRow(8, "a", PEER, "other salon, same id"),
    ]
    assert await store.messages.insert_inbound_many(first) == [True, True, False, True]
    again = [InboundRow(7, "b", PEER, "2 again"), InboundRow(7, "c", PEER, "3")]
    assert await store.messages.insert_inbound_many(again) == [False, True]
    assert await _rows(pg_dsn) == [(7, "a", "1"), (7, "b", "2"), (8, "a", "other salon, same id"), (7, "c", "3")]


async def test_concurrent_redeliveries_through_the_group_commit_yield_one_new(grouped: Store, pg_dsn: str) -> None:
    results: list[bool] = []

    async def deliver() -> None:
        results.append(await grouped.messages.insert_inbound(7, "WA-dup", PEER, "hi"))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(deliver)
    assert sorted(results) == [False] * 9 + [True]
    assert len(await _rows(pg_dsn)) == 1


async def test_a_stale_fence_refuses_its_own_salon_and_no_other(store: Store, pg_dsn: str) -> None:
    fences = await own(store, pg_dsn, NODE, [1, 2, 3, 5])
    stale = fences[2]
    await store.ownership.release(NODE, {2: stale, 5: fences[5]})  # salons 2 and 5 moved on: stale fences now
    batch = [
        InboundRow(1, "a", PEER, "ok", fence=fences[1]),
        InboundRow(2, "b", PEER, "stale", fence=stale),
        InboundRow(3, "c", PEER, "ok", fence=fences[3]),
        InboundRow(4, "d", PEER, "unfenced writer"),
        InboundRow(2, "e", PEER, "stale again", fence=stale),
        InboundRow(5, "f", PEER, "another stale salon", fence=fences[5]),
    ]
    results = await store.messages.insert_inbound_many(batch)
    assert results[0] is True and results[2] is True and results[3] is True
    for refused in (results[1], results[4]):
        assert isinstance(refused, Fenced) and (refused.salon_id, refused.fence) == (2, stale)
    assert isinstance(results[5], Fenced) and (results[5].salon_id, results[5].fence) == (5, fences[5])
    assert [(s, wa) for s, wa, _ in await _rows(pg_dsn)] == [(1, "a"), (3, "c"), (4, "d")]

    marks = [
        PublishedMark(1, ("a",), fences[1]),
        PublishedMark(2, ("b",), stale),
        PublishedMark(3, ("c", "x"), fences[3]),  # "x" was never stored
    ]
    marked = await store.messages.mark_published_many(marks)
    assert marked[0] == 1 and isinstance(marked[1], Fenced) and marked[2] == 1
    assert [m.wa_id for m in await store.messages.unpublished_inbound()] == ["d"]


async def test_a_stale_fence_in_a_gathered_batch_fails_only_its_actor(grouped: Store, pg_dsn: str) -> None:
    fences = await own(grouped, pg_dsn, NODE, [1, 2])
    await grouped.ownership.release(NODE, {2: fences[2]})
    outcomes: dict[int, object] = {}

    async def actor(salon_id: int) -> None:
        fence = fences[salon_id]
        try:
            outcomes[salon_id] = await grouped.messages.insert_inbound(salon_id, "m", PEER, "hi", fence=fence)
        except Fenced as exc:
            outcomes[salon_id] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor, 1)
        nursery.start_soon(actor, 2)
    assert outcomes[1] is True and isinstance(outcomes[2], Fenced)
    assert [s for s, _, _ in await _rows(pg_dsn)] == [1]


async def test_a_row_postgresql_rejects_fails_alone(store: Store, pg_dsn: str) -> None:
    batch = [
        InboundRow(7, "a", PEER, "fine"),
        InboundRow(7, "nobody", "", "no phone, no LID"),
        InboundRow(7, "lid", "", "LID only", peer_lid="123@lid"),
    ]
    results = await store.messages.insert_inbound_many(batch)
    assert results[0] is True and results[2] is True and isinstance(results[1], Exception)
    assert [wa for _, wa, _ in await _rows(pg_dsn)] == ["a", "lid"]


async def test_store_down_fails_every_waiting_caller_and_writes_nothing(
    aio_loop: object, own_server: EmbeddedPostgres
) -> None:
    await trio_asyncio.aio_as_trio(migrate_aio)(own_server.dsn)
    async with (
        open_store(own_server.dsn, pool_size=2, credentials_keys=Keyring(bytes(32))) as store,
        store.messages.grouped(),
    ):
        assert await store.messages.insert_inbound(1, "before", PEER, "stored") is True
        await trio.to_thread.run_sync(own_server.stop)
        errors: list[BaseException] = []

        async def actor(salon_id: int) -> None:
            try:
                await store.messages.insert_inbound(salon_id, f"down-{salon_id}", PEER, "lost?")
            except StoreUnavailable as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for salon_id in range(1, 11):
                nursery.start_soon(actor, salon_id)
        assert len(errors) == 10 and len({id(e) for e in errors}) == 10  # each caller its own error
        await trio.to_thread.run_sync(own_server.start)
        # WhatsApp delivers them again (never acknowledged): now they are new, and nothing was half-written.
        for salon_id in range(1, 11):
            assert await store.messages.insert_inbound(salon_id, f"down-{salon_id}", PEER, "again") is True
        assert len(await store.messages.latest(1, "in")) == 2


async def test_the_announcer_keeps_each_salons_order_and_records_it(
    grouped: Store, pg_dsn: str, redis_client: RedisClient
) -> None:
    fences = await own(grouped, pg_dsn, NODE, [1, 2])
    stream = InboundStream(redis_client)
    async with InboundAnnouncer(stream, grouped.messages, GroupCommitOptions(max_batch=3)).running() as announcer:
        for n in range(5):
            for salon_id in (1, 2):
                wa_id = f"wa-{salon_id}-{n}"
                assert await grouped.messages.insert_inbound(salon_id, wa_id, PEER, f"#{n}", fence=fences[salon_id])
                await announcer.publish_inbound(
                    salon_id, {"wa_id": wa_id, "peer": PEER, "text": f"#{n}"}, fence=fences[salon_id]
                )
        with trio.fail_after(5):
            while await stream.length() < 10 or await grouped.messages.unpublished_inbound():  # noqa: ASYNC110
                await trio.sleep(0.01)
    entries = await redis_client.execute("XRANGE", stream.name, "-", "+")
    seen = [fields for _, fields in entries]
    for salon_id in ("1", "2"):
        assert [e["wa_id"] for e in seen if e["salon_id"] == salon_id] == [f"wa-{salon_id}-{n}" for n in range(5)]
    assert all(e["peer"] == PEER for e in seen)


async def test_redis_down_leaves_the_messages_stored_and_unpublished(
    grouped: Store, caplog: pytest.LogCaptureFixture
) -> None:
    dead = await RedisClient.open("redis://127.0.0.1:1/0", timeout_s=0.5)
    async with InboundAnnouncer(InboundStream(dead), grouped.messages).running() as announcer:
        assert await grouped.messages.insert_inbound(7, "wa-1", PEER, "hi")
        await announcer.publish_inbound(7, {"wa_id": "wa-1", "peer": PEER, "text": "hi"})  # queued, not waited for
        with trio.fail_after(5):
            while "not announced" not in caplog.text:  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert [m.wa_id for m in await grouped.messages.unpublished_inbound()] == ["wa-1"]
    await dead.aclose()
