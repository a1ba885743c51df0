"""The Bus: every viewer of a company gets every frame, on any node; slow viewers hurt nobody."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from actor_admin.cluster import (
    EmbeddedRedis,
    LocalBus,
    RedisBus,
    RedisClient,
    SubscriberTooSlow,
    open_redis_bus,
)

from ._wait import wait_until

# -- LocalBus (in-process; virtual time) ---------------------------------------------------------


async def test_local_publish_reaches_every_subscriber_of_the_company() -> None:
    bus = LocalBus()
    async with bus.subscribe(1) as first, bus.subscribe(1) as second, bus.subscribe(2) as other:
        await bus.publish(1, {"type": "state", "state": "qr"})
        assert first.receive_nowait() == {"type": "state", "state": "qr"}
        assert second.receive_nowait() == {"type": "state", "state": "qr"}
        with pytest.raises(trio.WouldBlock):
            other.receive_nowait()


async def test_local_frames_arrive_in_publish_order() -> None:
    bus = LocalBus()
    async with bus.subscribe(1) as frames:
        for seq in range(5):
            await bus.publish(1, {"type": "qr", "seq": seq})
        assert [frames.receive_nowait()["seq"] for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_a_slow_local_subscriber_is_dropped_without_blocking_the_publisher_or_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = LocalBus(buffer_size=2)
    async with bus.subscribe(1) as slow, bus.subscribe(1) as fast:
        received: list[int] = []
        async with trio.open_nursery() as nursery:

            async def read_fast() -> None:
                async for frame in fast:
                    received.append(frame["seq"])
                    if frame["seq"] == 9:
                        return

            nursery.start_soon(read_fast)
            for seq in range(10):
                with trio.fail_after(0.001):  # never waits, whatever the slow one does
                    await bus.publish(1, {"seq": seq})
                await trio.testing.wait_all_tasks_blocked()
        assert received == list(range(10))
        assert slow.dropped
        assert [slow.receive_nowait()["seq"] for _ in range(2)] == [0, 1]  # buffered ones still come
        with pytest.raises(SubscriberTooSlow):
            slow.receive_nowait()
    assert bus.statistics().subscribers_dropped_total == 1


async def test_leaving_a_local_subscription_cleans_up() -> None:
    bus = LocalBus()
    async with bus.subscribe(1), bus.subscribe(1):
        assert (bus.statistics().topics, bus.statistics().subscribers) == (1, 2)
    assert (bus.statistics().topics, bus.statistics().subscribers) == (0, 0)
    await bus.publish(1, {"type": "state"})  # nobody listening is fine


async def test_publishing_copies_the_frame() -> None:
    bus = LocalBus()
    frame = {"type": "state", "state": "qr"}
    async with bus.subscribe(1) as frames:
        await bus.publish(1, frame)
        frame["state"] = "changed later"
        assert frames.receive_nowait()["state"] == "qr"


async def test_publishing_hands_the_frame_over_without_yielding() -> None:
    # A yield would cost the frame a whole scheduling round, which under a herd of salons is every
    # other salon's work (docs/architecture.md#qr-rendering, the latency).
    bus = LocalBus()
    async with bus.subscribe(1) as viewer:
        with trio.testing.assert_no_checkpoints():
            await bus.publish(1, {"type": "pong"})
        assert viewer.receive_nowait() == {"type": "pong"}


# -- RedisBus (two instances stand for two nodes) ------------------------------------------------


@asynccontextmanager
async def two_nodes(
    redis_client: RedisClient, redis_url: str, **options: int
) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    other = await RedisClient.open(redis_url, prefix=redis_client.prefix)
    try:
        async with open_redis_bus(redis_client, **options) as here, open_redis_bus(other, **options) as there:
            with trio.fail_after(5):
                await here.wait_connected()
                await there.wait_connected()
            yield here, there
    finally:
        await other.aclose()


@pytest.mark.integration
async def test_a_frame_published_on_one_node_reaches_viewers_on_both(redis_client: RedisClient, redis_url: str) -> None:
    async with two_nodes(redis_client, redis_url) as (here, there):
        async with here.subscribe(7) as local, there.subscribe(7) as remote:
            await here.publish(7, {"type": "connected", "phone": "79001234567"})
            with trio.fail_after(5):
                assert await remote.receive() == {"type": "connected", "phone": "79001234567"}
            assert local.receive_nowait() == {"type": "connected", "phone": "79001234567"}
            # ...and the publishing node's own viewer gets it once, not again via Redis; handed over
            # without yielding, like LocalBus.
            with trio.testing.assert_no_checkpoints():
                await here.publish(7, {"type": "pong"})
            with trio.fail_after(5):
                assert await remote.receive() == {"type": "pong"}
            assert local.receive_nowait() == {"type": "pong"}
            with pytest.raises(trio.WouldBlock):
                local.receive_nowait()


@pytest.mark.integration
async def test_the_topic_channel_is_named_for_the_company(redis_client: RedisClient) -> None:
    async with open_redis_bus(redis_client) as bus:
        assert bus.channel(42) == redis_client.prefix + "company:42"


@pytest.mark.integration
async def test_frames_of_other_companies_do_not_arrive(redis_client: RedisClient, redis_url: str) -> None:
    async with two_nodes(redis_client, redis_url) as (here, there):
        async with there.subscribe(1) as mine:
            await here.publish(2, {"type": "state", "for": 2})
            await here.publish(1, {"type": "state", "for": 1})
            with trio.fail_after(5):
                assert (await mine.receive())["for"] == 1


@pytest.mark.integration
async def test_a_slow_remote_subscriber_does_not_hold_up_others(redis_client: RedisClient, redis_url: str) -> None:
    async with two_nodes(redis_client, redis_url, buffer_size=4) as (here, there):
        async with there.subscribe(3) as slow, there.subscribe(3) as fast:
            received = []
            for seq in range(20):  # the slow one reads nothing; its buffer of 4 overflows at frame 5
                await here.publish(3, {"seq": seq})
                with trio.fail_after(5):
                    received.append((await fast.receive())["seq"])
            assert received == list(range(20))
            assert slow.dropped
            assert there.statistics().subscribers_dropped_total == 1


@pytest.mark.integration
async def test_leaving_unsubscribes_the_node_from_redis(redis_client: RedisClient) -> None:
    async with open_redis_bus(redis_client) as bus:
        await bus.wait_connected()
        channel = bus.channel(5)

        async def subscribers_in_redis() -> int:
            reply = await redis_client.execute("PUBSUB", "NUMSUB", channel)  # [channel, count]
            return int(reply[1])

        async with bus.subscribe(5), bus.subscribe(5):
            assert await subscribers_in_redis() == 1  # one connection per process, shared

        async def unsubscribed() -> bool:
            return await subscribers_in_redis() == 0

        await wait_until(unsubscribed)
        assert (bus.statistics().topics, bus.statistics().subscribers) == (0, 0)


@pytest.mark.integration
async def test_without_redis_local_viewers_are_still_served_and_publish_does_not_wait(
    aio_loop: object, closed_port_url: str
) -> None:
    async with await RedisClient.open(closed_port_url) as client, open_redis_bus(client) as bus:
        async with bus.subscribe(1) as frames:
            with trio.fail_after(0.5):
                for seq in range(3):
                    await bus.publish(1, {"seq": seq})
            assert [frames.receive_nowait()["seq"] for _ in range(3)] == [0, 1, 2]
        assert not bus.statistics().connected


@pytest.mark.integration
async def test_viewers_get_remote_frames_again_after_a_redis_restart(
    aio_loop: object, embedded_redis: EmbeddedRedis
) -> None:
    async with (
        await RedisClient.open(embedded_redis.url) as one,
        await RedisClient.open(embedded_redis.url) as two,
        open_redis_bus(one) as here,
        open_redis_bus(two) as there,
    ):
        async with there.subscribe(9) as remote:
            await here.wait_connected()
            await there.wait_connected()
            await trio.to_thread.run_sync(embedded_redis.stop)
            await trio.to_thread.run_sync(embedded_redis.start)

            async def delivered() -> bool:
                await here.publish(9, {"type": "pong"})
                with trio.move_on_after(0.2):
                    return await remote.receive() == {"type": "pong"}
                return False

            await wait_until(delivered, timeout_s=10)
