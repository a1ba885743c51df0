"""What routing costs: ``Router.ask`` to a salon on another node vs one on this node.

``run(results)`` adds:

* ``routed_ask_ms`` — median ask of a salon another node owns (request and reply through Redis
  pub/sub, both codecs, the other router's local delivery);
* ``local_ask_ms`` — median ask of a salon this node owns (the same actor, no Redis);
* ``routing_overhead_ratio`` — the first over the second;
* ``routed_ask_cpu_ms``, ``local_ask_cpu_ms`` — this process's CPU time per ask (both nodes'
  work, codecs and the trio-asyncio bridge; not Redis'): steadier than wall time on a busy host,
  and the part of the cost that is this code's.

Both nodes run in this one process on one Redis (``REDIS_URL`` or an embedded server), so the
routed figure includes the serving node's work on the same core, as on a busy one-core host.
"""

from __future__ import annotations

import statistics
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

import trio
import trio_asyncio

from actor_admin.actors import Router
from actor_admin.cluster import RedisClient, open_node_rpc
from actor_admin.runtime import ActorContext, Request, open_supervisor
from actor_admin.session import Accepted, RequestQr
from tests._owners import Owners, TableLocator

from ._redis import bench_redis_url

CALLS = 1000
WARMUP = 100
LOCAL_SALON, REMOTE_SALON = 1, 2


async def _accepting(ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    async for message in ctx.inbox:
        if isinstance(message, Request):
            message.reply(Accepted("connected"))


async def _median_ask_s(router: Router, salon_id: int) -> tuple[float, float]:
    """The median ask's wall time and the mean CPU time per ask, in seconds."""
    for _ in range(WARMUP):
        await router.ask(salon_id, RequestQr())
    samples = []
    cpu = time.process_time()
    for _ in range(CALLS):
        started = time.perf_counter()
        await router.ask(salon_id, RequestQr())
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), (time.process_time() - cpu) / CALLS


async def _measure(url: str) -> tuple[tuple[float, float], tuple[float, float]]:
    owners = Owners({LOCAL_SALON: "a", REMOTE_SALON: "b"})
    async with trio_asyncio.open_loop(), AsyncExitStack() as stack:
        client = await RedisClient.open(url, prefix=f"actor-admin-bench:{uuid.uuid4().hex[:8]}:")
        stack.push_async_callback(client.aclose)
        routers = []
        for name in ("a", "b"):
            supervisor = await stack.enter_async_context(open_supervisor(lambda _salon: _accepting))
            router = Router(supervisor, locator=TableLocator(name, owners))
            rpc = await stack.enter_async_context(open_node_rpc(client, name, router.serve))
            router.remote = rpc
            await rpc.wait_ready()
            routers.append(router)
        a = routers[0]
        return await _median_ask_s(a, REMOTE_SALON), await _median_ask_s(a, LOCAL_SALON)


def run(results: dict[str, float]) -> None:
    """Measure both asks (``python -m tests.bench --only routing``)."""
    with bench_redis_url() as url:
        (routed, routed_cpu), (local, local_cpu) = trio.run(_measure, url)
    results["routed_ask_ms"] = routed * 1000
    results["local_ask_ms"] = local * 1000
    results["routing_overhead_ratio"] = routed / local
    results["routed_ask_cpu_ms"] = routed_cpu * 1000
    results["local_ask_cpu_ms"] = local_cpu * 1000
