"""Request/reply between nodes over a real Redis: calls reach the named node and come back matched
by id; a node that is gone, silent, overloaded or cut off from Redis is one error within the
deadline, never a hang."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from actor_admin.cluster import OwnerUnreachable, RedisClient, open_node_rpc

pytestmark = pytest.mark.integration


async def echo(body: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return {"echo": body}


async def test_a_call_reaches_the_named_node_and_its_reply_comes_back(redis_client: RedisClient) -> None:
    seen: list[Any] = []

    async def b_handler(body: Any) -> Any:
        seen.append(body)
        return {"from": "b", "body": body}

    async with open_node_rpc(redis_client, "a", echo) as a, open_node_rpc(redis_client, "b", b_handler) as b:
        await a.wait_ready()
        await b.wait_ready()
        with trio.fail_after(5):
            reply = await a.call("b", {"n": 1, "text": "привет"}, timeout_s=5)
        assert reply == {"from": "b", "body": {"n": 1, "text": "привет"}}
        assert seen == [{"n": 1, "text": "привет"}]
        assert b.statistics().served_total == 1
        assert a.statistics().served_total == 0


async def test_concurrent_calls_get_their_own_replies(redis_client: RedisClient) -> None:
    async def slow_echo(body: Any) -> Any:
        await trio.sleep(0.05 * (body % 3))  # replies come back out of order
        return body * 10

    async with open_node_rpc(redis_client, "a", echo) as a, open_node_rpc(redis_client, "b", slow_echo) as b:
        await a.wait_ready()
        await b.wait_ready()
        results: dict[int, Any] = {}

        async def one(n: int) -> None:
            results[n] = await a.call("b", n, timeout_s=5)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for n in range(30):
                    nursery.start_soon(one, n)
        assert results == {n: n * 10 for n in range(30)}
        assert a.statistics().calls_in_flight == 0


async def test_a_node_nobody_listens_for_is_unreachable_at_once(redis_client: RedisClient) -> None:
    async with open_node_rpc(redis_client, "a", echo) as a:
        await a.wait_ready()
        with trio.fail_after(1), pytest.raises(OwnerUnreachable, match="not listening"):
            await a.call("gone", {}, timeout_s=30)


async def test_a_silent_node_is_unreachable_within_the_deadline_and_its_work_is_cut_off(
    redis_client: RedisClient,
) -> None:
    cancelled = trio.Event()

    async def hang(body: Any) -> Any:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with open_node_rpc(redis_client, "a", echo) as a, open_node_rpc(redis_client, "b", hang) as b:
        await a.wait_ready()
        await b.wait_ready()
        started = trio.current_time()
        with pytest.raises(OwnerUnreachable, match=r"did not answer within 0\.3 s"):
            await a.call("b", {}, timeout_s=0.3)
        assert 0.3 <= trio.current_time() - started < 2.0
        with trio.fail_after(2):
            await cancelled.wait()  # the serving node bounded the handler by the request's deadline


async def test_a_failing_handler_is_reported_to_the_caller(redis_client: RedisClient) -> None:
    async def broken(body: Any) -> Any:
        raise RuntimeError("bug")

    async with open_node_rpc(redis_client, "a", echo) as a, open_node_rpc(redis_client, "b", broken) as b:
        await a.wait_ready()
        await b.wait_ready()
        with trio.fail_after(5), pytest.raises(OwnerUnreachable, match="could not serve the call: RuntimeError"):
            await a.call("b", {}, timeout_s=5)


async def test_calls_beyond_the_in_flight_limit_are_refused_not_queued(redis_client: RedisClient) -> None:
    entered, release = trio.Event(), trio.Event()

    async def held(body: Any) -> Any:
        entered.set()
        await release.wait()
        return body

    async with (
        open_node_rpc(redis_client, "a", echo) as a,
        open_node_rpc(redis_client, "b", held, max_in_flight=1) as b,
    ):
        await a.wait_ready()
        await b.wait_ready()
        async with trio.open_nursery() as nursery:
            first: list[Any] = []

            async def call_first() -> None:
                first.append(await a.call("b", 1, timeout_s=5))

            nursery.start_soon(call_first)
            with trio.fail_after(5):
                await entered.wait()  # the first request holds b's one slot
                with pytest.raises(OwnerUnreachable, match="too many calls in flight"):
                    await a.call("b", 2, timeout_s=5)
            release.set()
        assert first == [1]
        assert b.statistics().refused_total == 1


async def test_garbled_messages_on_a_nodes_channel_are_ignored(redis_client: RedisClient) -> None:
    async with open_node_rpc(redis_client, "a", echo) as a, open_node_rpc(redis_client, "b", echo) as b:
        await a.wait_ready()
        await b.wait_ready()
        channel = b.channel("b")
        for garbage in (
            "not json",
            "[]",
            '{"v": 2, "k": "req", "id": "x", "reply_to": "r", "budget_s": 1, "body": null}',
            '{"v": 1, "k": "req", "id": "x", "reply_to": "r", "budget_s": 1e9, "body": null}',
            '{"v": 1, "k": "req", "id": "x", "reply_to": "r", "budget_s": 1, "body": null, "more": 1}',
            '{"v": 1, "k": "rep", "id": 5, "body": null}',
        ):
            await redis_client.execute("PUBLISH", channel, garbage)
        with trio.fail_after(5):
            assert await a.call("b", "still here", timeout_s=5) == {"echo": "still here"}
        assert b.statistics().garbled_total == 6


async def test_a_nudge_reaches_the_named_node_only_and_a_garbled_one_is_ignored(redis_client: RedisClient) -> None:
    nudged: list[str] = []
    async with (
        open_node_rpc(redis_client, "a", echo, on_nudge=lambda: nudged.append("a")) as a,
        open_node_rpc(redis_client, "b", echo, on_nudge=lambda: nudged.append("b")) as b,
    ):
        await a.wait_ready()
        await b.wait_ready()
        assert await a.nudge("b") is True
        assert await a.nudge("nobody-listens") is False
        await redis_client.execute("PUBLISH", b.channel("b"), '{"v": 1, "k": "nudge", "salons": [1]}')
        with trio.fail_after(5):  # a call after the nudges: the listener handled them in order
            assert await a.call("b", "after", timeout_s=5) == {"echo": "after"}
        assert nudged == ["b"]
        assert (b.statistics().nudges_total, b.statistics().garbled_total) == (1, 1)


async def test_without_redis_a_call_fails_within_its_deadline(aio_loop: object, closed_port_url: str) -> None:
    async with await RedisClient.open(closed_port_url, timeout_s=0.5) as client, open_node_rpc(client, "a", echo) as a:
        with trio.fail_after(3), pytest.raises(OwnerUnreachable, match="not connected to Redis"):
            await a.call("b", {}, timeout_s=1.0)
        assert not a.statistics().connected
