"""The router delivers to a salon's owner wherever it is: two routers, each with its own supervisor,
on one real Redis, with a test ``Locator`` that says which node owns what."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from actor_admin.actors import OWNER_UNREACHABLE, Router, SessionUnavailable
from actor_admin.actors._company import GetSnapshot, Snapshot
from actor_admin.cluster import NodeRpc, RedisClient, open_node_rpc
from actor_admin.runtime import ActorContext, Request, open_supervisor
from actor_admin.session import Accepted, Freeze, RequestQr, Uninstall
from tests._owners import Owners, TableLocator

pytestmark = pytest.mark.integration


SILENT_SALON = 13  # its actor never answers


@attrs.define
class Node:
    name: str
    router: Router
    rpc: NodeRpc
    received: list[tuple[int, Any]]


def fake_actor(name: str, received: list[tuple[int, Any]]) -> Callable[[int], Any]:
    """An actor that records what it got and answers where it runs."""

    def factory(salon_id: int) -> Any:
        async def actor(ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            async for message in ctx.inbox:
                if isinstance(message, Request) and salon_id != SILENT_SALON:
                    received.append((salon_id, message.body))
                    if isinstance(message.body, GetSnapshot):
                        message.reply(Snapshot([{"type": "state", "state": "connected", "phone": name}]))
                    else:
                        message.reply(Accepted("connected"))

        return actor

    return factory


@asynccontextmanager
async def two_nodes(redis: RedisClient, owners: Owners) -> AsyncIterator[tuple[Node, Node]]:
    async with AsyncExitStack() as stack:
        nodes = []
        for name in ("a", "b"):
            received: list[tuple[int, Any]] = []
            supervisor = await stack.enter_async_context(open_supervisor(fake_actor(name, received)))
            router = Router(supervisor, locator=TableLocator(name, owners))
            rpc = await stack.enter_async_context(open_node_rpc(redis, name, router.serve))
            router.remote = rpc
            await rpc.wait_ready()
            nodes.append(Node(name, router, rpc, received))
        yield nodes[0], nodes[1]


async def test_an_ask_at_a_non_owner_runs_on_the_owner_only(redis_client: RedisClient) -> None:
    async with two_nodes(redis_client, Owners({42: "b"})) as (a, b):
        with trio.fail_after(5):
            assert await a.router.ask(42, RequestQr()) == Accepted("connected")
        assert b.received == [(42, RequestQr())]
        assert a.received == []
        assert b.router.running(42) and not a.router.running(42)
        assert await a.router.is_running(42)
        stats = a.router.statistics()
        assert stats.calls["ok"] == 2 and stats.latency_count == 2
        assert stats.latency_buckets[-1] == 2  # both well under 10 s


async def test_a_snapshot_comes_from_the_owner(redis_client: RedisClient) -> None:
    async with two_nodes(redis_client, Owners({42: "b"})) as (a, _b):
        with trio.fail_after(5):
            assert await a.router.snapshot(42) == [{"type": "state", "state": "connected", "phone": "b"}]


async def test_withdrawing_at_a_non_owner_stops_the_owners_actor_before_returning(redis_client: RedisClient) -> None:
    async with two_nodes(redis_client, Owners({42: "b"})) as (a, b):
        await a.router.ask(42, RequestQr())
        with trio.fail_after(5):
            assert await a.router.withdraw(42, Uninstall(), grace=1.0) is True
        assert not b.router.running(42)  # already stopped when withdraw returned
        assert b.received[-1] == (42, Uninstall())
        assert await a.router.withdraw(42, Freeze(), grace=1.0) is False  # nothing ran: nothing started


async def test_an_owner_that_moved_is_located_again_once(redis_client: RedisClient) -> None:
    owners = Owners({42: "a"}, stale={("a", 42): ["b"]})  # a still thinks b owns it; b knows better
    async with two_nodes(redis_client, owners) as (a, b):
        with trio.fail_after(5):
            assert await a.router.ask(42, RequestQr()) == Accepted("connected")
        assert a.received == [(42, RequestQr())] and b.received == []
        assert a.router.statistics().calls["moved"] == 1


async def test_a_salon_that_moves_again_is_unreachable_not_a_loop(redis_client: RedisClient) -> None:
    owners = Owners({42: "a"}, stale={("a", 42): ["b", "b"]})
    async with two_nodes(redis_client, owners) as (a, b):
        with trio.fail_after(5), pytest.raises(SessionUnavailable) as caught:
            await a.router.ask(42, RequestQr())
        assert caught.value.code == OWNER_UNREACHABLE
        assert a.router.statistics().calls["moved"] == 2
        assert a.received == b.received == []


async def test_no_owner_is_the_documented_error(redis_client: RedisClient) -> None:
    async with two_nodes(redis_client, Owners({42: None})) as (a, _b):
        with pytest.raises(SessionUnavailable) as caught:
            await a.router.ask(42, RequestQr())
        assert caught.value.code == OWNER_UNREACHABLE


async def test_an_owner_that_is_gone_is_the_documented_error_at_once(redis_client: RedisClient) -> None:
    async with two_nodes(redis_client, Owners({42: "dead"})) as (a, _b):
        with trio.fail_after(1), pytest.raises(SessionUnavailable) as caught:
            await a.router.ask(42, RequestQr(), timeout=30)
        assert caught.value.code == OWNER_UNREACHABLE
        assert a.router.statistics().calls[OWNER_UNREACHABLE] == 1


async def test_the_owners_session_timeout_reaches_the_caller_with_its_code(redis_client: RedisClient) -> None:
    async with two_nodes(redis_client, Owners({SILENT_SALON: "b"})) as (a, _b):
        with trio.fail_after(5), pytest.raises(SessionUnavailable) as caught:
            await a.router.ask(SILENT_SALON, RequestQr(), timeout=0.2)
        assert caught.value.code == "timeout"  # b's own ask timed out first, and said so
        assert a.router.statistics().calls["session_unavailable"] == 1
